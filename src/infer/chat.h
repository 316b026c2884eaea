// DeepSeek-V3 chat template: a C renderer byte-exact with HF transformers rendering the original (Dec-2024)
// `chat_template` of deepseek-ai/DeepSeek-V3's tokenizer_config.json (docs: shared spec inference.md §5),
// an OpenAI-style `messages` JSON parser, and render + tokenize.
//
// What is rendered (every quirk of that template is reproduced on purpose, see chat.c):
//   BOS + all system contents joined by "\n\n" (wherever they appear), then per message
//   user      -> <｜User｜>content
//   assistant -> content != NULL: <｜Assistant｜>content<｜end▁of▁sentence｜>, or, right after tool outputs,
//                <｜tool▁outputs▁end｜>content<｜end▁of▁sentence｜>; tool_calls are then ignored.
//                content == NULL: its tool calls; the first call of the whole conversation opens with
//                <｜Assistant｜><｜tool▁calls▁begin｜> and is not closed; every later call is "\n"-prefixed and
//                followed by <｜tool▁calls▁end｜><｜end▁of▁sentence｜> (flags never reset).
//   tool      -> first of the conversation <｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>content<｜tool▁output▁end｜>,
//                later ones "\n<｜tool▁output▁begin｜>content<｜tool▁output▁end｜>".
//                A user message, or a tool-calling assistant message, right after tool outputs does not emit
//                <｜tool▁outputs▁end｜> (only an assistant answer and the end of the conversation do).
//   end       -> <｜tool▁outputs▁end｜> if the last rendered turn was a tool output (system messages do not
//                count), else <｜Assistant｜> when add_generation_prompt.
// Deviations from the Jinja template (which would silently skip or crash): an unknown role, or NULL content
// on a user/system/tool message, or a NULL type/name/arguments in a rendered tool call, is an error here.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *type, *name, *arguments;
} dsv3_tool_call;

typedef struct {
    const char *role;    // "system", "user", "assistant" or "tool"
    const char *content; // NULL = JSON null (only meaningful for assistant: render its tool calls)
    int n_tool_calls;
    const dsv3_tool_call *tool_calls;
} dsv3_chat_msg;

// Rendered prompt text (malloc'ed, NUL-terminated, *len bytes; len may be NULL), or NULL + dsv3_error()
// (unknown role, NULL content for user/system/tool, NULL field in a rendered tool call, n < 0).
// bos_token NULL is rendered as "" (as Jinja renders an undefined bos_token).
char *dsv3_chat_render(const dsv3_chat_msg *m, int n, int add_generation_prompt, const char *bos_token, size_t *len);

// Parse an OpenAI-style messages JSON array
//   [{"role":..,"content":..,"tool_calls":[{"type":"function","function":{"name":..,"arguments":..}}]}]
// into messages (strings owned by *out; free with dsv3_chat_msgs_free; *msgs points into it).
// content: a string, null, or an array of {"type":"text","text":..} parts (concatenated; other part types
// are an error). Missing content is an error except on an assistant message that has tool_calls (then null).
// tool_calls: an array (or null = none; only rendered on an assistant message with null content); each
// "type" defaults to "function" when absent; function.name and function.arguments must be strings. Other
// keys (name, tool_call_id, ...) are ignored. The role must be one of the four above. An empty array
// gives 0. Returns the message count or -1 + dsv3_error() naming the bad index/field.
typedef struct dsv3_chat_msgs dsv3_chat_msgs;
int dsv3_chat_parse_json(const char *json, size_t len, dsv3_chat_msgs **out, const dsv3_chat_msg **msgs);
void dsv3_chat_msgs_free(dsv3_chat_msgs *m);

// Whether a tokenizer_config.json's "chat_template" is the DeepSeek-V3 one this renderer implements. The
// template text (after JSON decoding) is compared byte for byte, with no whitespace normalisation: a
// template that differs anywhere, even in whitespace, is "other" (the list form [{"name","template"}] is
// checked through its "default" entry). 1 yes, 0 other template or no chat_template, -1 + dsv3_error() when
// the file cannot be read or is not a JSON object.
int dsv3_chat_template_is_deepseek_v3(const char *tokenizer_config_path);

// The template text dsv3_chat_template_is_deepseek_v3 compares against (static, NUL-terminated).
const char *dsv3_chat_template_deepseek_v3(void);

// Render + tokenize without adding a BOS (the template emits it; spec §5.3 "double-BOS trap"), exactly as
// HF apply_chat_template(tokenize=True) (add_special_tokens=False). The BOS text is the tokenizer's BOS token
// string (dsv3_tokenizer_id_to_token(t, dsv3_tokenizer_bos_id(t))), "" if it has none. *ids is malloc'ed
// (free() it), *n_ids its length. Returns 0 or -1 + dsv3_error().
struct dsv3_tokenizer;
int dsv3_chat_encode(const struct dsv3_tokenizer *t, const dsv3_chat_msg *m, int n, int add_generation_prompt,
                     int32_t **ids, size_t *n_ids);
