// libFuzzer harness: arbitrary bytes as text for the DeepSeek-V3 tokenizer
// (models/deepseek-v3/tokenizer.json, or $DSV3_FUZZ_TOKENIZER). Checks decode(encode(x)) == x
// byte for byte, that every id is in range, and that the built-in DeepSeek-V3 pre-tokenizer's
// pieces are non-empty and concatenate to x. Built by fuzz/run.sh.
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dsv3_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *p = getenv("DSV3_FUZZ_TOKENIZER");
    g_tok = dsv3_tokenizer_load(p ? p : "models/deepseek-v3/tokenizer.json");
    if (!g_tok) {
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", dsv3_error());
        exit(2);
    }
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    int bad;
} concat_check;

static void on_piece(const char *p, size_t len, void *ctx) {
    concat_check *c = ctx;
    if (len == 0 || c->pos + len > c->size || memcmp(c->data + c->pos, p, len) != 0) c->bad = 1;
    c->pos += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t *ids;
    size_t n, dl;
    if (dsv3_tokenizer_encode(g_tok, (const char *)data, size, 0, &ids, &n) != 0) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= dsv3_tokenizer_vocab_size(g_tok)) abort();
    char *d = dsv3_tokenizer_decode(g_tok, ids, n, 0, &dl);
    if (!d || dl != size || memcmp(d, data, size) != 0) abort();
    free(d);
    free(dsv3_tokenizer_decode_lossy(g_tok, ids, n, 0, &dl));
    free(ids);
    concat_check c = {data, size, 0, 0};
    if (dsv3_pretokenize_deepseek_v3((const char *)data, size, on_piece, &c) != 0 || c.bad || c.pos != size) abort();
    return 0;
}
