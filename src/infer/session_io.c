// Prompt-cache files: a session's tokens and latent cache rows on disk (include/dsv3.h).
//
// Layout (little-endian), written with the durable discipline of core/durable.h:
//   header (80 bytes)
//     0  char[8]  magic "DSV3KVC\0"
//     8  u32      version (1)
//    12  u32      dtype of the rows (0 fp32, 1 bf16)
//    16  u64      model fingerprint (dsv3_lm_fingerprint)
//    24  u32      layers with a cache (main + MTP)
//    28  u32      row width (kv_lora_rank + qk_rope_head_dim)
//    32  u32      main layers (num_hidden_layers)
//    36  u32      len: tokens / rows of each main layer
//    40  u32      mtp_len: rows of each MTP layer (<= len)
//    44  u32      vocab_size
//    48  u64      FNV-1a 64 of the payload
//    56  u64      payload bytes
//    64  u64      extra bytes (application data, e.g. `dsv3 chat`'s message history as JSON)
//    72  u64      reserved (0)
//   payload: tokens (len x i32), then per layer its rows (len or mtp_len rows of `row` values), then
//   the extra bytes.
#include "infer/infer_impl.h"
#include "core/durable.h"
#include "core/error.h"
#include "core/fileio.h"
#include "numerics/bf16.h"
#include "train/data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "DSV3KVC"
#define VERSION 1u
#define HDR 80
#define MAX_EXTRA ((size_t)64 << 20)

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i); return v; }

static int layer_rows(const dsv3_session *s, int l, int len, int mtp_len) {
    return l < s->lm->m.cfg.num_hidden_layers ? len : mtp_len;
}

int dsv3_session_save(const dsv3_session *s, const char *path) { return dsv3_session_save_ex(s, path, NULL, 0); }
int dsv3_session_load(dsv3_session *s, const char *path) { return dsv3_session_load_ex(s, path, NULL, NULL); }

int dsv3_session_save_ex(const dsv3_session *s, const char *path, const void *extra, size_t extra_len) {
    if (extra_len > MAX_EXTRA) return dsv3_errorf("%s: %zu bytes of extra data exceed the 64 MiB limit", path, extra_len);
    const size_t esz = s->dt == DSV3_CACHE_F32 ? 4 : 2;
    const int len = s->len, mtp = s->mtp_len < s->len ? s->mtp_len : s->len;
    size_t payload = (size_t)len * 4;
    for (int l = 0; l < s->n_layers; l++) payload += (size_t)layer_rows(s, l, len, mtp) * s->row * esz;
    payload += extra_len;
    unsigned char *buf = dsv3_malloc(HDR + payload);
    unsigned char *p = buf + HDR;
    memcpy(p, s->tokens, (size_t)len * 4); // little-endian hosts only (x86-64, aarch64)
    p += (size_t)len * 4;
    for (int l = 0; l < s->n_layers; l++) {
        size_t n = (size_t)layer_rows(s, l, len, mtp) * s->row * esz;
        memcpy(p, (const char *)s->cache + (size_t)l * s->ctx * s->row * esz, n);
        p += n;
    }
    if (extra_len) memcpy(p, extra, extra_len);
    memset(buf, 0, HDR);
    memcpy(buf, MAGIC, 8);
    put32(buf + 8, VERSION);
    put32(buf + 12, (uint32_t)s->dt);
    put64(buf + 16, s->lm->fingerprint);
    put32(buf + 24, (uint32_t)s->n_layers);
    put32(buf + 28, (uint32_t)s->row);
    put32(buf + 32, (uint32_t)s->lm->m.cfg.num_hidden_layers);
    put32(buf + 36, (uint32_t)len);
    put32(buf + 40, (uint32_t)mtp);
    put32(buf + 44, (uint32_t)s->lm->m.cfg.vocab_size);
    put64(buf + 48, dsv3_fnv1a64(buf + HDR, payload));
    put64(buf + 56, payload);
    put64(buf + 64, extra_len);
    int rc = dsv3_durable_write_file(path, buf, HDR + payload);
    free(buf);
    return rc;
}

int dsv3_session_load_ex(dsv3_session *s, const char *path, char **extra, size_t *extra_len) {
    dsv3_session_truncate(s, 0);
    s->mtp_len = 0;
    if (extra) *extra = NULL;
    if (extra_len) *extra_len = 0;
    const size_t want_max = HDR + (size_t)s->ctx * 4 + (size_t)s->n_layers * s->ctx * s->row * 4 + MAX_EXTRA;
    size_t n = 0;
    unsigned char *b = (unsigned char *)dsv3_read_file_max(path, want_max, "session file", &n);
    if (!b) return -1;
    int rc = -1;
    if (n < HDR || memcmp(b, MAGIC, 8) != 0) { dsv3_errorf("%s: not a dsv3 session file (bad magic)", path); goto out; }
    if (get32(b + 8) != VERSION) { dsv3_errorf("%s: session file version %u, this build reads %u", path, get32(b + 8), VERSION); goto out; }
    const uint32_t dt = get32(b + 12), nl = get32(b + 24), row = get32(b + 28), nmain = get32(b + 32);
    const uint32_t len = get32(b + 36), mtp = get32(b + 40), vocab = get32(b + 44);
    const uint64_t fp = get64(b + 16), sum = get64(b + 48), payload = get64(b + 56), xlen = get64(b + 64);
    if (fp != s->lm->fingerprint) {
        dsv3_errorf("%s: the session belongs to another model (fingerprint %016llx, this model %016llx)", path,
                    (unsigned long long)fp, (unsigned long long)s->lm->fingerprint);
        goto out;
    }
    if (dt > 1 || nl != (uint32_t)s->n_layers || row != (uint32_t)s->row || nmain != (uint32_t)s->lm->m.cfg.num_hidden_layers ||
        vocab != (uint32_t)s->lm->m.cfg.vocab_size) {
        dsv3_errorf("%s: header does not match the model (dtype %u, %u layers of %u values, vocab %u; the model has %d "
                    "layers of %d, vocab %d)", path, dt, nl, row, vocab, s->n_layers, s->row, s->lm->m.cfg.vocab_size);
        goto out;
    }
    if (len > (uint32_t)s->ctx) { dsv3_errorf("%s: %u cached tokens do not fit the session's context of %d", path, len, s->ctx); goto out; }
    if (mtp > len) { dsv3_errorf("%s: MTP length %u exceeds the length %u", path, mtp, len); goto out; }
    const size_t esz = dt == 0 ? 4 : 2;
    uint64_t expect = (uint64_t)len * 4;
    for (uint32_t l = 0; l < nl; l++) expect += (uint64_t)(l < nmain ? len : mtp) * row * esz;
    if (xlen > MAX_EXTRA) { dsv3_errorf("%s: %llu bytes of extra data, above the 64 MiB limit", path, (unsigned long long)xlen); goto out; }
    expect += xlen;
    if (payload != expect || n != HDR + expect) {
        dsv3_errorf("%s: truncated or padded (%zu bytes; the header implies %llu)", path, n, (unsigned long long)(HDR + expect));
        goto out;
    }
    if (dsv3_fnv1a64(b + HDR, payload) != sum) { dsv3_errorf("%s: checksum mismatch (the file is corrupted)", path); goto out; }
    const unsigned char *p = b + HDR;
    int32_t *tok = (int32_t *)dsv3_malloc((size_t)len * 4 + 4);
    memcpy(tok, p, (size_t)len * 4);
    for (uint32_t i = 0; i < len; i++)
        if (tok[i] < 0 || tok[i] >= (int32_t)vocab) {
            dsv3_errorf("%s: token %d at position %u is outside the vocabulary", path, tok[i], i);
            free(tok);
            goto out;
        }
    memcpy(s->tokens, tok, (size_t)len * 4);
    free(tok);
    p += (size_t)len * 4;
    float *tmp = dsv3_malloc(sizeof(float) * row);
    for (uint32_t l = 0; l < nl; l++) {
        const uint32_t rows = l < nmain ? len : mtp;
        for (uint32_t r = 0; r < rows; r++, p += (size_t)row * esz) {
            if (dt == (uint32_t)s->dt) {
                memcpy((char *)s->cache + (((size_t)l * s->ctx + r) * row) * esz, p, (size_t)row * esz);
            } else {
                for (uint32_t j = 0; j < row; j++) {
                    if (esz == 4) memcpy(&tmp[j], p + 4 * j, 4);
                    else tmp[j] = dsv3_bf16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
                }
                dsv3_session_row_put(s, (int)l, (int)r, tmp);
            }
        }
    }
    free(tmp);
    if (extra) {
        *extra = dsv3_malloc((size_t)xlen + 1);
        memcpy(*extra, p, (size_t)xlen);
        (*extra)[xlen] = 0;
    }
    if (extra_len) *extra_len = (size_t)xlen;
    s->len = (int)len;
    s->mtp_len = (int)mtp;
    s->h_last_pos = -1;
    rc = 0;
out:
    free(b);
    return rc;
}
