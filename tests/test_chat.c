// Chat template tests: the C renderer against HF renders of the DeepSeek-V3 template
// (tests/fixtures/chat/cases.jsonl, tools/ref/make_chat_fixtures.py), the spec §5.3/§5.4 examples, the messages
// JSON parser's errors, template identification, and render + tokenize (no double BOS).
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "infer/chat.h"
#include "tokenizer/tokenizer.h"
#include <cjson/cJSON.h>
#include <stdint.h>
#include <unistd.h>

static const char *TOK_PATH = "models/deepseek-v3/tokenizer.json";
static const char *CFG_PATH = "models/deepseek-v3/tokenizer_config.json";
#define BOS "<｜begin▁of▁sentence｜>"

// Renders `m` and compares with `want` (NUL-terminated); prints the first differing byte on failure.
static void check_render(const char *what, const dsv3_chat_msg *m, int n, int gen, const char *want) {
    size_t len = 0;
    char *got = dsv3_chat_render(m, n, gen, BOS, &len);
    CHECK(got != NULL, "%s: render failed: %s", what, dsv3_error());
    if (!got) return;
    size_t wl = strlen(want), i = 0;
    while (i < len && i < wl && got[i] == want[i]) i++;
    CHECK(len == wl && i == wl && got[len] == 0, "%s: render differs at byte %zu (got %zu bytes, want %zu)\n got: %s\nwant: %s",
          what, i, len, wl, got, want);
    free(got);
}

static int ids_equal(const int32_t *a, size_t na, const cJSON *want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != na) return 0;
    size_t i = 0;
    for (const cJSON *e = want->child; e; e = e->next, i++)
        if (!cJSON_IsNumber(e) || a[i] != (int32_t)e->valuedouble) return 0;
    return 1;
}

static void test_fixtures(const dsv3_tokenizer *t) {
    size_t len;
    char *data = dsv3_read_file(FIXTURE("chat/cases.jsonl"), &len);
    CHECK(data != NULL, "cannot read chat fixtures: %s", dsv3_error());
    if (!data) return;
    int ncase = 0, bad = 0, ntool = 0;
    for (char *line = data, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!*line) continue;
        cJSON *c = cJSON_Parse(line);
        const cJSON *name = cJSON_GetObjectItem(c, "name"), *msgs = cJSON_GetObjectItem(c, "messages");
        const cJSON *gen = cJSON_GetObjectItem(c, "add_generation_prompt"), *text = cJSON_GetObjectItem(c, "text");
        const cJSON *ids = cJSON_GetObjectItem(c, "ids");
        if (!cJSON_IsString(name) || !cJSON_IsArray(msgs) || !cJSON_IsBool(gen) || !cJSON_IsString(text) ||
            !cJSON_IsArray(ids)) {
            CHECK(0, "chat fixture %d is malformed", ncase);
            cJSON_Delete(c);
            bad++;
            ncase++;
            continue;
        }
        const char *nm = name->valuestring;
        int g = cJSON_IsTrue(gen);
        char *mj = cJSON_PrintUnformatted(msgs);
        dsv3_chat_msgs *store = NULL;
        const dsv3_chat_msg *m = NULL;
        int n = dsv3_chat_parse_json(mj, strlen(mj), &store, &m);
        CHECK(n == cJSON_GetArraySize(msgs), "%s: parse gave %d (%s)", nm, n, dsv3_error());
        if (n >= 0) {
            for (int i = 0; i < n; i++) ntool += m[i].content == NULL && m[i].n_tool_calls > 0;
            int f0 = t_failed;
            check_render(nm, m, n, g, text->valuestring);
            int32_t *got = NULL;
            size_t ng = 0;
            int r = dsv3_chat_encode(t, m, n, g, &got, &ng);
            CHECK(r == 0, "%s: encode failed: %s", nm, dsv3_error());
            CHECK(r != 0 || ids_equal(got, ng, ids), "%s: ids differ (%zu ids, want %d)", nm, ng,
                  cJSON_GetArraySize(ids));
            CHECK(r != 0 || (ng >= 1 && got[0] == 0 && (ng == 1 || got[1] != 0)), "%s: want exactly one leading BOS",
                  nm);
            free(got);
            if (t_failed != f0) bad++;
        } else {
            bad++;
        }
        dsv3_chat_msgs_free(store);
        free(mj);
        cJSON_Delete(c);
        ncase++;
    }
    free(data);
    CHECK(ncase >= 25, "only %d chat fixture cases", ncase);
    CHECK(ntool >= 8, "only %d tool-calling messages in the fixtures", ntool);
    printf("chat fixtures: %d cases, %d failed\n", ncase, bad);
}

// Spec §5.3 / §5.4 examples, built directly as C structs (no JSON).
static void test_spec_examples(const dsv3_tokenizer *t) {
    const dsv3_chat_msg three[] = {
        {"system", "You are a helpful assistant.", 0, NULL}, {"user", "Hello!", 0, NULL},
        {"assistant", "Hi! How can I help?", 0, NULL},       {"user", "What is 2+2?", 0, NULL},
        {"assistant", "4", 0, NULL},                         {"user", "And 3+3?", 0, NULL},
    };
    const char *three_gen = BOS "You are a helpful assistant.<｜User｜>Hello!<｜Assistant｜>Hi! How can I help?"
                                "<｜end▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>"
                                "<｜User｜>And 3+3?<｜Assistant｜>";
    CHECK(strlen(three_gen) == 244, "spec text is %zu bytes", strlen(three_gen));
    check_render("spec three-turn gen", three, 6, 1, three_gen);
    check_render("spec three-turn nogen", three, 6, 0,
                 BOS "You are a helpful assistant.<｜User｜>Hello!<｜Assistant｜>Hi! How can I help?"
                     "<｜end▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>And 3+3?");
    static const int32_t three_ids[] = {0,  3476, 477,    260,   11502, 22896,  16, 128803, 19923, 3,
                                        128804, 23166, 3,  1730,  588,   342,    1694, 33,  1,      128803,
                                        3085,   344,  223, 20,    13,    20,     33, 128804, 22,    1,
                                        128803, 4195, 223, 21,    13,    21,     33, 128804};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(dsv3_chat_encode(t, three, 6, 1, &ids, &n) == 0, "encode: %s", dsv3_error());
    CHECK(n == 38 && ids && memcmp(ids, three_ids, sizeof three_ids) == 0, "spec three-turn ids differ (%zu)", n);
    free(ids);

    const dsv3_chat_msg hi[] = {{"user", "Hi", 0, NULL}};
    check_render("spec smallest", hi, 1, 1, BOS "<｜User｜>Hi<｜Assistant｜>");
    CHECK(dsv3_chat_encode(t, hi, 1, 1, &ids, &n) == 0 && n == 4 && ids[0] == 0 && ids[1] == 128803 &&
              ids[2] == 23166 && ids[3] == 128804,
          "spec smallest ids");
    free(ids);
    const dsv3_chat_msg ab[] = {{"system", "A", 0, NULL}, {"user", "u", 0, NULL}, {"system", "B", 0, NULL}};
    check_render("spec two systems", ab, 3, 1, BOS "A\n\nB<｜User｜>u<｜Assistant｜>");
    const dsv3_chat_msg vec[] = {{"system", "You are helpful.", 0, NULL}, {"user", "Hi", 0, NULL},
                                 {"assistant", "Hello", 0, NULL}};
    static const int32_t vec_ids[] = {0, 3476, 477, 11502, 16, 128803, 23166, 128804, 19923, 1};
    CHECK(dsv3_chat_encode(t, vec, 3, 0, &ids, &n) == 0 && n == 10 && memcmp(ids, vec_ids, sizeof vec_ids) == 0,
          "spec test vector ids");
    free(ids);

    // §5.4: one call, result, answer, new user turn; then a second tool-calling turn (flags never reset).
    const dsv3_tool_call paris = {"function", "get_weather", "{\"city\": \"Paris\"}"};
    const dsv3_tool_call london = {"function", "get_weather", "{\"city\": \"London\"}"};
    const dsv3_chat_msg w1[] = {
        {"system", "S", 0, NULL},   {"user", "Weather in Paris?", 0, NULL}, {"assistant", NULL, 1, &paris},
        {"tool", "18C sunny", 0, NULL}, {"assistant", "It is 18C and sunny.", 0, NULL}, {"user", "Thanks", 0, NULL},
    };
    const char *w1_head =
        BOS "S<｜User｜>Weather in Paris?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
            "get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜>"
            "<｜tool▁output▁begin｜>18C sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>It is 18C and sunny."
            "<｜end▁of▁sentence｜>";
    char buf[2048];
    snprintf(buf, sizeof buf, "%s<｜User｜>Thanks<｜Assistant｜>", w1_head);
    check_render("spec one tool call", w1, 6, 1, buf);
    const dsv3_chat_msg w2[] = {
        w1[0], w1[1], w1[2], w1[3], w1[4], {"user", "And London?", 0, NULL}, {"assistant", NULL, 1, &london},
        {"tool", "12C rain", 0, NULL},
    };
    snprintf(buf, sizeof buf,
             "%s<｜User｜>And London?\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
             "{\"city\": \"London\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>\n"
             "<｜tool▁output▁begin｜>12C rain<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
             w1_head);
    check_render("spec second tool turn", w2, 8, 1, buf);
    const dsv3_tool_call fg[] = {{"function", "f", "{\"a\":1}"}, {"function", "g", "{\"b\":2}"}};
    const dsv3_chat_msg two[] = {
        {"user", "Q", 0, NULL}, {"assistant", NULL, 2, fg}, {"tool", "r1", 0, NULL}, {"tool", "r2", 0, NULL}};
    check_render("spec two calls", two, 4, 1,
                 BOS "<｜User｜>Q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
                     "{\"a\":1}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n```json\n{\"b\":2}\n"
                     "```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜>"
                     "<｜tool▁output▁begin｜>r1<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>r2<｜tool▁output▁end｜>"
                     "<｜tool▁outputs▁end｜>");
    // No messages: BOS (+ generation prompt). NULL bos renders as "".
    check_render("empty conversation", NULL, 0, 1, BOS "<｜Assistant｜>");
    size_t l = 99;
    char *s = dsv3_chat_render(hi, 1, 0, NULL, &l);
    CHECK(s && l == strlen("<｜User｜>Hi") && !strcmp(s, "<｜User｜>Hi"), "NULL bos_token");
    free(s);
}

// Parse `json`; expect -1 and an error message containing `needle`.
static void expect_parse_error(const char *json, const char *needle) {
    dsv3_chat_msgs *st = (dsv3_chat_msgs *)1;
    const dsv3_chat_msg *m = (const dsv3_chat_msg *)1;
    dsv3_error_clear();
    int n = dsv3_chat_parse_json(json, strlen(json), &st, &m);
    CHECK(n == -1 && st == NULL && m == NULL, "parse of %s gave %d, want -1", json, n);
    CHECK(strstr(dsv3_error(), needle) != NULL, "parse of %s: error \"%s\" lacks \"%s\"", json, dsv3_error(), needle);
}

static void test_parse(void) {
    expect_parse_error("[{\"role\":\"wizard\",\"content\":\"x\"}]", "messages[0].role");
    expect_parse_error("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"developer\",\"content\":\"x\"}]",
                       "messages[1].role: \"developer\"");
    expect_parse_error("[{\"content\":\"x\"}]", "messages[0].role");
    expect_parse_error("[{\"role\":7,\"content\":\"x\"}]", "messages[0].role: expected a string");
    expect_parse_error("[{\"role\":\"user\"}]", "messages[0].content: missing");
    expect_parse_error("[{\"role\":\"assistant\"}]", "messages[0].content: missing");
    expect_parse_error("[{\"role\":\"user\",\"content\":null}]", "messages[0].content: null");
    expect_parse_error("[{\"role\":\"tool\",\"content\":null}]", "messages[0].content: null");
    expect_parse_error("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":3}]",
                       "messages[1].content");
    expect_parse_error("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]",
                       "messages[0].content[0]");
    expect_parse_error("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]", "messages[0].content[0].text");
    expect_parse_error("[{\"role\":\"user\",\"content\":\"x\"", "malformed JSON");
    expect_parse_error("", "malformed JSON");
    expect_parse_error("[1] [2]", "after the JSON value");
    expect_parse_error("{\"role\":\"user\",\"content\":\"x\"}", "expected a JSON array");
    expect_parse_error("[\"hi\"]", "messages[0]: expected an object");
    expect_parse_error("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":{\"type\":\"function\"}}]",
                       "messages[0].tool_calls: expected an array");
    expect_parse_error("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":\"f\"}]",
                       "messages[0].tool_calls: expected an array");
    expect_parse_error("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\"}]}]",
                       "messages[0].tool_calls[0].function");
    expect_parse_error("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]",
                       "messages[0].tool_calls[0].function.arguments");
    expect_parse_error(
        "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]",
        "function.arguments: expected a string");
    expect_parse_error("[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]", "\\u0000");

    // Accepted forms: text parts concatenated; missing content + tool_calls = null; type defaults to "function";
    // tool_calls null = none; extra keys ignored; surrounding whitespace; an empty array.
    const char *ok = " [{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"},"
                     "{\"type\":\"text\",\"text\":\"lo\"}]},"
                     "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"function\":{\"name\":\"f\","
                     "\"arguments\":\"{}\"}}]},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
                     "{\"role\":\"assistant\",\"content\":\"done\",\"tool_calls\":null},"
                     "{\"role\":\"user\",\"content\":[]}]\n";
    dsv3_chat_msgs *st = NULL;
    const dsv3_chat_msg *m = NULL;
    int n = dsv3_chat_parse_json(ok, strlen(ok), &st, &m);
    CHECK(n == 5, "accepted forms: %d (%s)", n, dsv3_error());
    if (n == 5) {
        CHECK(!strcmp(m[0].content, "Hello"), "text parts: %s", m[0].content);
        CHECK(m[1].content == NULL && m[1].n_tool_calls == 1 && !strcmp(m[1].tool_calls[0].type, "function") &&
                  !strcmp(m[1].tool_calls[0].name, "f") && !strcmp(m[1].tool_calls[0].arguments, "{}"),
              "tool call message");
        CHECK(m[3].n_tool_calls == 0 && !strcmp(m[3].content, "done"), "tool_calls null");
        CHECK(!strcmp(m[4].content, ""), "empty parts");
        check_render("accepted forms", m, n, 1,
                     BOS "<｜User｜>Hello<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n"
                         "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r"
                         "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>done<｜end▁of▁sentence｜><｜User｜><｜Assistant｜>");
    }
    dsv3_chat_msgs_free(st);
    n = dsv3_chat_parse_json("[]", 2, &st, &m);
    CHECK(n == 0 && st != NULL, "empty array: %d", n);
    dsv3_chat_msgs_free(st);
    dsv3_chat_msgs_free(NULL);
    // Length is honoured: a prefix that is a complete document.
    n = dsv3_chat_parse_json("[]garbage", 2, &st, &m);
    CHECK(n == 0, "length-limited parse: %d (%s)", n, dsv3_error());
    dsv3_chat_msgs_free(st);
}

static void test_render_errors(void) {
    const dsv3_chat_msg unk[] = {{"user", "a", 0, NULL}, {"developer", "x", 0, NULL}};
    size_t l;
    dsv3_error_clear();
    CHECK(dsv3_chat_render(unk, 2, 1, BOS, &l) == NULL && strstr(dsv3_error(), "messages[1].role"), "unknown role: %s",
          dsv3_error());
    const dsv3_chat_msg norole[] = {{NULL, "x", 0, NULL}};
    CHECK(dsv3_chat_render(norole, 1, 1, BOS, &l) == NULL && strstr(dsv3_error(), "messages[0].role"), "null role");
    const dsv3_chat_msg nul[] = {{"system", NULL, 0, NULL}};
    CHECK(dsv3_chat_render(nul, 1, 1, BOS, &l) == NULL && strstr(dsv3_error(), "messages[0].content"),
          "null system content");
    const dsv3_chat_msg nut[] = {{"user", "q", 0, NULL}, {"tool", NULL, 0, NULL}};
    CHECK(dsv3_chat_render(nut, 2, 1, BOS, &l) == NULL && strstr(dsv3_error(), "messages[1].content"),
          "null tool content");
    const dsv3_tool_call badc = {"function", "f", NULL};
    const dsv3_chat_msg nua[] = {{"assistant", NULL, 1, &badc}};
    CHECK(dsv3_chat_render(nua, 1, 1, BOS, &l) == NULL && strstr(dsv3_error(), "tool_calls[0].function.arguments"),
          "null arguments: %s", dsv3_error());
    CHECK(dsv3_chat_render(unk, -1, 1, BOS, &l) == NULL, "negative n");
    // An assistant with null content and no tool calls renders nothing (as the template does).
    const dsv3_chat_msg empty_asst[] = {{"user", "q", 0, NULL}, {"assistant", NULL, 0, NULL}};
    check_render("null assistant without calls", empty_asst, 2, 0, BOS "<｜User｜>q");
}

static void test_template_id(void) {
    CHECK(dsv3_chat_template_is_deepseek_v3(CFG_PATH) == 1, "real tokenizer_config.json not recognised: %s",
          dsv3_error());
    size_t len;
    char *cfg = dsv3_read_file(CFG_PATH, &len);
    CHECK(cfg != NULL, "read config");
    if (!cfg) return;
    cJSON *root = cJSON_Parse(cfg);
    free(cfg);
    cJSON *tpl = cJSON_GetObjectItem(root, "chat_template");
    CHECK(cJSON_IsString(tpl) && !strcmp(tpl->valuestring, dsv3_chat_template_deepseek_v3()),
          "embedded template differs from the config");
    char path[] = "/tmp/dsv3_test_chat_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) {
        cJSON_Delete(root);
        return;
    }
    close(fd);
    // Variants: one byte changed in the template (a trailing newline), the template removed, and a non-object.
    const char *variants[3];
    char *mod = malloc(strlen(tpl->valuestring) + 2);
    sprintf(mod, "%s\n", tpl->valuestring);
    cJSON_ReplaceItemInObject(root, "chat_template", cJSON_CreateString(mod));
    char *v0 = cJSON_Print(root);
    cJSON_DeleteItemFromObject(root, "chat_template");
    char *v1 = cJSON_Print(root);
    variants[0] = v0;
    variants[1] = v1;
    variants[2] = "[1,2,3]";
    const int want[3] = {0, 0, -1};
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(path, "wb");
        fputs(variants[k], f);
        fclose(f);
        dsv3_error_clear();
        int r = dsv3_chat_template_is_deepseek_v3(path);
        CHECK(r == want[k], "template variant %d: %d, want %d", k, r, want[k]);
        if (want[k] < 0) CHECK(strstr(dsv3_error(), path) != NULL, "error names the file: %s", dsv3_error());
    }
    unlink(path);
    CHECK(dsv3_chat_template_is_deepseek_v3("/nonexistent/tokenizer_config.json") == -1 && dsv3_error()[0],
          "missing file");
    free(mod);
    free(v0);
    free(v1);
    cJSON_Delete(root);
}

int main(void) {
    dsv3_tokenizer *t = dsv3_tokenizer_load(TOK_PATH);
    CHECK(t != NULL, "load %s: %s", TOK_PATH, dsv3_error());
    if (t) {
        test_fixtures(t);
        test_spec_examples(t);
    }
    test_parse();
    test_render_errors();
    test_template_id();
    dsv3_tokenizer_free(t);
    return test_report("chat");
}
