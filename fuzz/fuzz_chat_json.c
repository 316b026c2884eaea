// libFuzzer harness: arbitrary bytes as an OpenAI-style messages array (src/infer/chat.h), then
// rendered with the DeepSeek-V3 chat template. The parser either fails with a message or returns
// messages the renderer turns into text or a message; nothing else. Built by fuzz/run.sh.
#include "infer/chat.h"
#include "core/error.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsv3_chat_msgs *store = NULL;
    const dsv3_chat_msg *msgs = NULL;
    dsv3_error_clear();
    int n = dsv3_chat_parse_json((const char *)data, size, &store, &msgs);
    if (n < 0) {
        if (!dsv3_error()[0]) abort();
        dsv3_chat_msgs_free(store);
        return 0;
    }
    for (int gen = 0; gen < 2; gen++) {
        size_t len = 0;
        dsv3_error_clear();
        char *t = dsv3_chat_render(msgs, n, gen, "<｜begin▁of▁sentence｜>", &len);
        if (!t && !dsv3_error()[0]) abort();
        if (t && strlen(t) != len) abort();
        free(t);
    }
    dsv3_chat_msgs_free(store);
    return 0;
}
