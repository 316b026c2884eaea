// libFuzzer harness: arbitrary bytes as tokenizer.json. Loading must either fail with a message or
// give a tokenizer that encodes and decodes a fixed text without crashing. Built by fuzz/run.sh.
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsv3_tokenizer *t = dsv3_tokenizer_load_json((const char *)data, size, "fuzz.json");
    if (!t) {
        if (!dsv3_error()[0]) abort(); // a failure must say why
        return 0;
    }
    static const char text[] = "Hello, world! 12345 \xe4\xb8\xad\xe6\x96\x87 <|endoftext|>\t\r\n  x\xff\xfe";
    int32_t *ids;
    size_t n;
    if (dsv3_tokenizer_encode(t, text, sizeof text - 1, 0, &ids, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= dsv3_tokenizer_vocab_size(t)) abort();
        size_t dl;
        free(dsv3_tokenizer_decode(t, ids, n, 1, &dl));
        free(dsv3_tokenizer_decode_lossy(t, ids, n, 0, &dl));
        free(ids);
    }
    dsv3_tokenizer_free(t);
    return 0;
}
