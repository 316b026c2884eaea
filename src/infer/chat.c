// DeepSeek-V3 chat template renderer (see chat.h). The renderer is a hand translation of the Jinja template
// below; tests/test_chat.c checks it byte for byte against HF renders (tests/fixtures/chat/cases.jsonl, made
// by tools/ref/make_chat_fixtures.py).
//
// Template state, as in the Jinja `ns` namespace:
//   is_first       false until the first tool call of the conversation is rendered; never reset.
//   is_output_first true until the first tool output of the conversation is rendered; never reset.
//   is_tool        set by a tool message; cleared by a user message, an assistant message with content, and an
//                  assistant message with null content (tool calls). System messages leave it alone.
// Quirks this reproduces on purpose: a single tool call's block is never closed; a second tool-calling turn has
// no <｜Assistant｜><｜tool▁calls▁begin｜> and its outputs no <｜tool▁outputs▁begin｜>; a user (or tool-calling
// assistant) message right after tool outputs does not emit <｜tool▁outputs▁end｜>; an assistant answer after
// tool outputs gets <｜tool▁outputs▁end｜> instead of <｜Assistant｜>; no generation prompt after trailing tool
// outputs.
#include "infer/chat.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/text.h"
#include "tokenizer/tokenizer.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define BOS_FALLBACK ""
#define T_USER "<｜User｜>"
#define T_ASSISTANT "<｜Assistant｜>"
#define T_EOS "<｜end▁of▁sentence｜>"
#define T_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define T_CALLS_END "<｜tool▁calls▁end｜>"
#define T_CALL_BEGIN "<｜tool▁call▁begin｜>"
#define T_CALL_END "<｜tool▁call▁end｜>"
#define T_SEP "<｜tool▁sep｜>"
#define T_OUTS_BEGIN "<｜tool▁outputs▁begin｜>"
#define T_OUTS_END "<｜tool▁outputs▁end｜>"
#define T_OUT_BEGIN "<｜tool▁output▁begin｜>"
#define T_OUT_END "<｜tool▁output▁end｜>"

// The `chat_template` of deepseek-ai/DeepSeek-V3 tokenizer_config.json, byte for byte (models/deepseek-v3/).
static const char DEEPSEEK_V3_TEMPLATE[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n"
    "\n"
    "' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}"
    "{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n"
    "' + '```json' + '\n"
    "' + tool['function']['arguments'] + '\n"
    "' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n"
    "' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n"
    "' + '```json' + '\n"
    "' + tool['function']['arguments'] + '\n"
    "' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    "{%- set ns.is_tool = false -%}{%- else %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}{{'\n"
    "<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}"
    "{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";

const char *dsv3_chat_template_deepseek_v3(void) { return DEEPSEEK_V3_TEMPLATE; }

// ---- growable byte buffer ----

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        b->p = dsv3_realloc(b->p, cap);
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

// ---- renderer ----

enum { R_SYSTEM, R_USER, R_ASSISTANT, R_TOOL, R_UNKNOWN };

static int role_of(const char *r) {
    if (!r) return R_UNKNOWN;
    if (!strcmp(r, "system")) return R_SYSTEM;
    if (!strcmp(r, "user")) return R_USER;
    if (!strcmp(r, "assistant")) return R_ASSISTANT;
    if (!strcmp(r, "tool")) return R_TOOL;
    return R_UNKNOWN;
}

// Checks every message before anything is rendered, so errors never leave partial output.
static int check_msgs(const dsv3_chat_msg *m, int n) {
    if (n < 0) return dsv3_errorf("chat: negative message count %d", n);
    if (n > 0 && !m) return dsv3_errorf("chat: %d messages but no message array", n);
    for (int i = 0; i < n; i++) {
        int r = role_of(m[i].role);
        if (r == R_UNKNOWN)
            return dsv3_errorf("chat: messages[%d].role: %s%s%s is not one of system, user, assistant, tool", i,
                               m[i].role ? "\"" : "", m[i].role ? m[i].role : "(null)", m[i].role ? "\"" : "");
        if (r != R_ASSISTANT && !m[i].content)
            return dsv3_errorf("chat: messages[%d].content: null content in a %s message (only an assistant "
                               "message with tool calls may have null content)",
                               i, m[i].role);
        if (r == R_ASSISTANT && !m[i].content) {
            if (m[i].n_tool_calls < 0 || (m[i].n_tool_calls > 0 && !m[i].tool_calls))
                return dsv3_errorf("chat: messages[%d].tool_calls: bad count %d", i, m[i].n_tool_calls);
            for (int k = 0; k < m[i].n_tool_calls; k++) {
                const dsv3_tool_call *c = &m[i].tool_calls[k];
                const char *miss = !c->type ? "type" : !c->name ? "function.name" : !c->arguments ? "function.arguments" : NULL;
                if (miss) return dsv3_errorf("chat: messages[%d].tool_calls[%d].%s is null", i, k, miss);
            }
        }
    }
    return 0;
}

char *dsv3_chat_render(const dsv3_chat_msg *m, int n, int add_generation_prompt, const char *bos_token, size_t *len) {
    if (check_msgs(m, n) < 0) return NULL;
    sbuf b = {0};
    sb_puts(&b, bos_token ? bos_token : BOS_FALLBACK);
    // System prompt: every system message, in order, joined by "\n\n", right after BOS.
    int first_sp = 1;
    for (int i = 0; i < n; i++) {
        if (role_of(m[i].role) != R_SYSTEM) continue;
        if (!first_sp) sb_puts(&b, "\n\n");
        sb_puts(&b, m[i].content);
        first_sp = 0;
    }
    int is_first = 0, is_tool = 0, is_output_first = 1;
    for (int i = 0; i < n; i++) {
        const dsv3_chat_msg *x = &m[i];
        switch (role_of(x->role)) {
        case R_USER:
            is_tool = 0;
            sb_puts(&b, T_USER);
            sb_puts(&b, x->content);
            break;
        case R_ASSISTANT:
            if (!x->content) {
                is_tool = 0;
                for (int k = 0; k < x->n_tool_calls; k++) {
                    const dsv3_tool_call *c = &x->tool_calls[k];
                    int later = is_first; // not the first call of the whole conversation
                    sb_puts(&b, later ? "\n" T_CALL_BEGIN : T_ASSISTANT T_CALLS_BEGIN T_CALL_BEGIN);
                    is_first = 1;
                    sb_puts(&b, c->type);
                    sb_puts(&b, T_SEP);
                    sb_puts(&b, c->name);
                    sb_puts(&b, "\n```json\n");
                    sb_puts(&b, c->arguments);
                    sb_puts(&b, "\n```" T_CALL_END);
                    // The closing pair is written by the later-call branch only (template quirk): one call is
                    // left open, three calls are closed twice.
                    if (later) sb_puts(&b, T_CALLS_END T_EOS);
                }
            } else if (is_tool) {
                sb_puts(&b, T_OUTS_END);
                sb_puts(&b, x->content);
                sb_puts(&b, T_EOS);
                is_tool = 0;
            } else {
                sb_puts(&b, T_ASSISTANT);
                sb_puts(&b, x->content);
                sb_puts(&b, T_EOS);
            }
            break;
        case R_TOOL:
            is_tool = 1;
            if (is_output_first) {
                sb_puts(&b, T_OUTS_BEGIN T_OUT_BEGIN);
                is_output_first = 0;
            } else {
                sb_puts(&b, "\n" T_OUT_BEGIN);
            }
            sb_puts(&b, x->content);
            sb_puts(&b, T_OUT_END);
            break;
        default: break; // system: already emitted
        }
    }
    if (is_tool) sb_puts(&b, T_OUTS_END);
    if (add_generation_prompt && !is_tool) sb_puts(&b, T_ASSISTANT);
    if (len) *len = b.n;
    return b.p;
}

// ---- messages JSON ----

struct dsv3_chat_msgs {
    cJSON *root;            // the parsed document: most strings point into it
    dsv3_chat_msg *msgs;
    dsv3_tool_call *calls;  // all messages' tool calls, contiguous
    char **owned;           // concatenated content-part strings
    int n_owned;
};

void dsv3_chat_msgs_free(dsv3_chat_msgs *s) {
    if (!s) return;
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s->calls);
    free(s->msgs);
    cJSON_Delete(s->root);
    free(s);
}

static const char *json_type_name(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

// content: string (points into the tree), null (NULL), or text parts (concatenated into an owned string).
static int parse_content(dsv3_chat_msgs *s, const cJSON *c, int i, const char **out) {
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return 0;
    }
    if (cJSON_IsNull(c)) {
        *out = NULL;
        return 0;
    }
    if (!cJSON_IsArray(c))
        return dsv3_errorf("messages[%d].content: expected a string, null or an array of text parts, got %s", i,
                           json_type_name(c));
    sbuf b = {0};
    sb_put(&b, "", 0);
    int k = 0;
    for (const cJSON *p = c->child; p; p = p->next, k++) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0) {
            free(b.p);
            return dsv3_errorf("messages[%d].content[%d]: expected a {\"type\":\"text\",\"text\":...} part%s%s%s", i,
                               k, cJSON_IsString(ty) ? " (got type \"" : "", cJSON_IsString(ty) ? ty->valuestring : "",
                               cJSON_IsString(ty) ? "\")" : "");
        }
        if (!cJSON_IsString(tx)) {
            free(b.p);
            return dsv3_errorf("messages[%d].content[%d].text: expected a string, got %s", i, k, json_type_name(tx));
        }
        sb_puts(&b, tx->valuestring);
    }
    s->owned = dsv3_realloc(s->owned, sizeof *s->owned * (size_t)(s->n_owned + 1));
    s->owned[s->n_owned++] = b.p;
    *out = b.p;
    return 0;
}

int dsv3_chat_parse_json(const char *json, size_t len, dsv3_chat_msgs **out, const dsv3_chat_msg **msgs) {
    *out = NULL;
    if (msgs) *msgs = NULL;
    if (!json) return dsv3_errorf("messages: no JSON text");
    if (dsv3_json_has_nul_escape(json, len))
        return dsv3_errorf("messages: strings containing \\u0000 are not supported");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return dsv3_errorf("messages: malformed JSON near byte %zu", at);
    }
    for (const char *p = end; p && p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0) {
            cJSON_Delete(root);
            return dsv3_errorf("messages: unexpected text after the JSON value at byte %zu", (size_t)(p - json));
        }
    if (!cJSON_IsArray(root)) {
        int r = dsv3_errorf("messages: expected a JSON array of messages, got %s", json_type_name(root));
        cJSON_Delete(root);
        return r;
    }
    dsv3_chat_msgs *s = dsv3_calloc(1, sizeof *s);
    s->root = root;
    int n = cJSON_GetArraySize(root), ncalls = 0;
    for (const cJSON *m = root->child; m; m = m->next) {
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (cJSON_IsArray(tc)) ncalls += cJSON_GetArraySize(tc);
    }
    s->msgs = dsv3_calloc((size_t)(n ? n : 1), sizeof *s->msgs);
    s->calls = dsv3_calloc((size_t)(ncalls ? ncalls : 1), sizeof *s->calls);
    int i = 0, ci = 0;
    for (const cJSON *m = root->child; m; m = m->next, i++) {
        dsv3_chat_msg *x = &s->msgs[i];
        if (!cJSON_IsObject(m)) {
            dsv3_errorf("messages[%d]: expected an object, got %s", i, json_type_name(m));
            goto fail;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) {
            dsv3_errorf("messages[%d].role: expected a string, got %s", i, json_type_name(role));
            goto fail;
        }
        int r = role_of(role->valuestring);
        if (r == R_UNKNOWN) {
            dsv3_errorf("messages[%d].role: \"%s\" is not one of system, user, assistant, tool", i,
                        role->valuestring);
            goto fail;
        }
        x->role = role->valuestring;
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        int has_calls = cJSON_IsArray(tc) && cJSON_GetArraySize(tc) > 0;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!content) {
            if (!(r == R_ASSISTANT && has_calls)) {
                dsv3_errorf("messages[%d].content: missing (required except on an assistant message with tool_calls)",
                            i);
                goto fail;
            }
            x->content = NULL;
        } else if (parse_content(s, content, i, &x->content) < 0) {
            goto fail;
        }
        if (!x->content && r != R_ASSISTANT) {
            dsv3_errorf("messages[%d].content: null in a %s message", i, role->valuestring);
            goto fail;
        }
        if (tc && !cJSON_IsNull(tc)) {
            if (!cJSON_IsArray(tc)) {
                dsv3_errorf("messages[%d].tool_calls: expected an array, got %s", i, json_type_name(tc));
                goto fail;
            }
            x->tool_calls = &s->calls[ci];
            int k = 0;
            for (const cJSON *c = tc->child; c; c = c->next, k++) {
                dsv3_tool_call *call = &s->calls[ci++];
                if (!cJSON_IsObject(c)) {
                    dsv3_errorf("messages[%d].tool_calls[%d]: expected an object, got %s", i, k, json_type_name(c));
                    goto fail;
                }
                const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c, "type");
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
                if (ty && !cJSON_IsString(ty)) {
                    dsv3_errorf("messages[%d].tool_calls[%d].type: expected a string, got %s", i, k,
                                json_type_name(ty));
                    goto fail;
                }
                call->type = ty ? ty->valuestring : "function";
                if (!cJSON_IsObject(fn)) {
                    dsv3_errorf("messages[%d].tool_calls[%d].function: expected an object, got %s", i, k,
                                json_type_name(fn));
                    goto fail;
                }
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
                if (!cJSON_IsString(name)) {
                    dsv3_errorf("messages[%d].tool_calls[%d].function.name: expected a string, got %s", i, k,
                                json_type_name(name));
                    goto fail;
                }
                if (!cJSON_IsString(args)) {
                    dsv3_errorf("messages[%d].tool_calls[%d].function.arguments: expected a string (JSON text), "
                                "got %s",
                                i, k, json_type_name(args));
                    goto fail;
                }
                call->name = name->valuestring;
                call->arguments = args->valuestring;
            }
            x->n_tool_calls = k;
        }
    }
    *out = s;
    if (msgs) *msgs = s->msgs;
    return n;
fail:
    dsv3_chat_msgs_free(s);
    return -1;
}

// ---- template identification ----

int dsv3_chat_template_is_deepseek_v3(const char *path) {
    size_t len;
    char *text = dsv3_read_file_max(path, DSV3_READ_MAX_JSON, "a tokenizer_config.json", &len);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsv3_errorf("%s: not a JSON object", path);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    const char *tpl = NULL;
    if (cJSON_IsString(t)) {
        tpl = t->valuestring;
    } else if (cJSON_IsArray(t)) { // [{"name": "default", "template": ...}, ...] form
        for (const cJSON *e = t->child; e; e = e->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tx = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tx)) tpl = tx->valuestring;
        }
    }
    int r = tpl && strcmp(tpl, DEEPSEEK_V3_TEMPLATE) == 0;
    cJSON_Delete(root);
    return r;
}

// ---- render + tokenize ----

int dsv3_chat_encode(const struct dsv3_tokenizer *t, const dsv3_chat_msg *m, int n, int add_generation_prompt,
                     int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!t) return dsv3_errorf("chat: no tokenizer");
    int bos = dsv3_tokenizer_bos_id(t);
    const char *bos_text = bos >= 0 ? dsv3_tokenizer_id_to_token(t, bos) : NULL;
    size_t len;
    char *text = dsv3_chat_render(m, n, add_generation_prompt, bos_text ? bos_text : "", &len);
    if (!text) return -1;
    int r = dsv3_tokenizer_encode(t, text, len, 0, ids, n_ids);
    free(text);
    return r;
}
