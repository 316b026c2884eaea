// Training data pipeline: documents, FIM, packing, shards, manifest, reader. See data.h and docs/DATA.md.
#include "train/data.h"
#include "tokenizer/tokenizer.h"
#include "core/error.h"
#include "core/fileio.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/text.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ---------------------------------------------------------------------------------------------
// Documents

static void dl_push(dsv3_doclist *dl, const char *text, size_t len) {
    if (dl->n == dl->cap) {
        dl->cap = dl->cap ? 2 * dl->cap : 1024;
        dl->docs = dsv3_realloc(dl->docs, dl->cap * sizeof *dl->docs);
    }
    dl->docs[dl->n++] = (dsv3_doc){text, len};
    dl->bytes += len;
}

static void dl_own(dsv3_doclist *dl, char *buf) {
    if (dl->nbufs == dl->bufs_cap) {
        dl->bufs_cap = dl->bufs_cap ? 2 * dl->bufs_cap : 16;
        dl->bufs = dsv3_realloc(dl->bufs, dl->bufs_cap * sizeof *dl->bufs);
    }
    dl->bufs[dl->nbufs++] = buf;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_blank_byte(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int dsv3_jsonl_line_text(const char *line, size_t len, cJSON **obj, const char **text, size_t *tlen) {
    *obj = NULL, *text = NULL, *tlen = 0;
    size_t a = 0, b = len;
    while (a < b && is_blank_byte(line[a])) a++;
    while (b > a && is_blank_byte(line[b - 1])) b--;
    if (a == b) return 0;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(line + a, b - a, &end, 0);
    if (!o) return dsv3_errorf("not valid JSON (each line of a .jsonl input must be one JSON object)");
    // cJSON stops after the first value: anything after it (a second object, stray text) is an error,
    // not silently dropped.
    if (end < line + b) {
        cJSON_Delete(o);
        return dsv3_errorf("unexpected bytes after the JSON object (one object per line)");
    }
    const cJSON *t = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
    if (!cJSON_IsString(t)) {
        cJSON_Delete(o);
        return dsv3_errorf("expected a JSON object with a string field \"text\"");
    }
    if (dsv3_json_has_nul_escape(line + a, b - a) || memchr(line + a, 0, b - a)) { // cJSON also keeps raw NULs
        cJSON_Delete(o);
        return dsv3_errorf("a \\u0000 character (or NUL byte) in \"text\" is not supported");
    }
    *obj = o, *text = t->valuestring, *tlen = strlen(t->valuestring);
    return 1;
}

int dsv3_doclist_read(dsv3_doclist *dl, const char *path) {
    size_t size = 0;
    char *buf = dsv3_read_file(path, &size);
    if (!buf) return -1;
    if (!ends_with(path, ".jsonl")) {
        dl_own(dl, buf);
        if (size) dl_push(dl, buf, size);
        return 0;
    }
    // JSONL: decode each line's "text" into one new buffer (texts are never longer than their line).
    char *out = dsv3_malloc(size + 1);
    size_t at = 0, line_no = 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && buf[j] != '\n') j++;
        line_no++;
        cJSON *o;
        const char *t;
        size_t n;
        int r = dsv3_jsonl_line_text(buf + i, j - i, &o, &t, &n);
        if (r < 0) {
            free(buf), free(out);
            return dsv3_error_context("%s:%zu", path, line_no);
        }
        if (r > 0) {
            memcpy(out + at, t, n);
            cJSON_Delete(o);
            at += n;
            out[at++] = 0;
        }
        i = j + 1;
    }
    free(buf);
    dl_own(dl, out);
    // second pass over the packed NUL-separated texts (out is no longer reallocated)
    for (size_t p = 0; p < at;) {
        size_t n = strlen(out + p);
        if (n) dl_push(dl, out + p, n);
        p += n + 1;
    }
    return 0;
}

void dsv3_doclist_free(dsv3_doclist *dl) {
    for (size_t i = 0; i < dl->nbufs; i++) free(dl->bufs[i]);
    free(dl->bufs), free(dl->docs);
    memset(dl, 0, sizeof *dl);
}

// ---------------------------------------------------------------------------------------------
// Randomness: stateless, so results do not depend on the thread schedule.

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t rand3(uint64_t seed, uint64_t a, uint64_t b) {
    return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b);
}

double dsv3_data_uniform(uint64_t seed, uint64_t doc, uint64_t draw) {
    return (double)(rand3(seed, doc, draw) >> 11) * 0x1.0p-53;
}

// uniform integer in [0, n) from a 64-bit random value
static uint64_t bounded(uint64_t r, uint64_t n) { return (uint64_t)(((unsigned __int128)r * n) >> 64); }

// Seeded Fisher-Yates permutation of 0..n-1 (stream tag separates independent uses).
static void permute(uint64_t *p, uint64_t n, uint64_t seed, uint64_t tag) {
    for (uint64_t i = 0; i < n; i++) p[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = bounded(rand3(seed, tag, i), i);
        uint64_t t = p[i - 1];
        p[i - 1] = p[j], p[j] = t;
    }
}

// ---------------------------------------------------------------------------------------------
// Documents -> tokens

int dsv3_data_special_ids_get(const dsv3_tokenizer *tok, dsv3_data_special_ids *ids, int need_fim) {
    ids->bos = dsv3_tokenizer_bos_id(tok);
    ids->eos = dsv3_tokenizer_eos_id(tok);
    ids->pad = dsv3_tokenizer_token_to_id(tok, "<\xEF\xBD\x9C\xE2\x96\x81pad\xE2\x96\x81\xEF\xBD\x9C>");
    ids->fim_begin = dsv3_tokenizer_token_to_id(tok, "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>");
    ids->fim_hole = dsv3_tokenizer_token_to_id(tok, "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>");
    ids->fim_end = dsv3_tokenizer_token_to_id(tok, "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>");
    if (ids->eos < 0) return dsv3_errorf("tokenizer has no EOS token (<｜end▁of▁sentence｜>)");
    if (ids->pad < 0) ids->pad = ids->eos;
    if (need_fim && (ids->fim_begin < 0 || ids->fim_hole < 0 || ids->fim_end < 0))
        return dsv3_errorf("tokenizer lacks the FIM tokens <｜fim▁begin｜>/<｜fim▁hole｜>/<｜fim▁end｜> (use --fim-rate 0)");
    return 0;
}

// Length of the UTF-8 character at s (1 for an invalid byte: it counts as one character).
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    int k = dsv3_utf8_seq_len(s, n);
    return k ? (size_t)k : 1;
}

typedef struct { int32_t *v; size_t n, cap; } ivec;
static void iv_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->v = dsv3_realloc(v->v, v->cap * sizeof *v->v);
    }
    v->v[v->n++] = x;
}

static int encode_append(const dsv3_tokenizer *tok, const char *text, size_t len, ivec *out) {
    if (!len) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (dsv3_tokenizer_encode(tok, text, len, 0, &ids, &n)) return -1;
    for (size_t i = 0; i < n; i++) iv_push(out, ids[i]);
    free(ids);
    return 0;
}

int dsv3_data_encode_document(const dsv3_tokenizer *tok, const dsv3_data_special_ids *ids, const char *text,
                              size_t len, int add_bos, double fim_rate, double u_fim, double u_cut1, double u_cut2,
                              int32_t **out, size_t *n, int *did_fim) {
    ivec v = {0};
    int fim = u_fim < fim_rate;
    if (add_bos) {
        if (ids->bos < 0) return dsv3_errorf("tokenizer has no BOS token (<｜begin▁of▁sentence｜>)");
        iv_push(&v, ids->bos);
    }
    int rc = 0;
    if (!fim) {
        rc = encode_append(tok, text, len, &v);
    } else {
        // Two cut points uniform over the character boundaries 0..nchars, sorted.
        const unsigned char *s = (const unsigned char *)text;
        size_t nchars = 0;
        for (size_t i = 0; i < len; i += utf8_char_len(s + i, len - i)) nchars++;
        size_t c1 = (size_t)(u_cut1 * (double)(nchars + 1)), c2 = (size_t)(u_cut2 * (double)(nchars + 1));
        if (c1 > nchars) c1 = nchars;
        if (c2 > nchars) c2 = nchars;
        if (c1 > c2) { size_t t = c1; c1 = c2; c2 = t; }
        size_t b1 = len, b2 = len, k = 0;
        for (size_t i = 0;; i += utf8_char_len(s + i, len - i), k++) {
            if (k == c1 && b1 == len) b1 = i;
            if (k == c2) { b2 = i; break; }
            if (i >= len) break;
        }
        if (b1 > b2) b1 = b2;
        // PSM: <fim_begin> prefix <fim_hole> suffix <fim_end> middle
        iv_push(&v, ids->fim_begin);
        rc = encode_append(tok, text, b1, &v);
        iv_push(&v, ids->fim_hole);
        if (!rc) rc = encode_append(tok, text + b2, len - b2, &v);
        iv_push(&v, ids->fim_end);
        if (!rc) rc = encode_append(tok, text + b1, b2 - b1, &v);
    }
    iv_push(&v, ids->eos);
    if (rc) {
        free(v.v);
        return -1;
    }
    *out = v.v, *n = v.n;
    if (did_fim) *did_fim = fim;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Shards

uint64_t dsv3_fnv1a64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

int dsv3_shard_write(const char *path, const uint32_t *tokens, uint64_t rows, uint32_t seq_len, uint32_t vocab_size,
                     uint32_t pad_id) {
    uint64_t ntok = rows * (uint64_t)(seq_len + 1);
    unsigned char h[DSV3_SHARD_HEADER_BYTES] = {0};
    memcpy(h, DSV3_SHARD_MAGIC, 8);
    put32(h + 8, DSV3_SHARD_VERSION);
    put32(h + 12, DSV3_SHARD_HEADER_BYTES);
    put32(h + 16, vocab_size);
    put32(h + 20, seq_len);
    put64(h + 24, rows);
    put64(h + 32, ntok);
    put32(h + 40, pad_id);
    // h[44..48) reserved (0)
    // The payload is written little-endian; on a little-endian host that is the memory layout.
    const unsigned char *payload = (const unsigned char *)tokens;
    unsigned char *tmp = NULL;
    {
        const uint32_t one = 1;
        if (*(const unsigned char *)&one != 1) {
            tmp = dsv3_malloc(ntok * 4 + 1);
            for (uint64_t i = 0; i < ntok; i++) put32(tmp + 4 * i, tokens[i]);
            payload = tmp;
        }
    }
    put64(h + 48, dsv3_fnv1a64(payload, ntok * 4));
    // h[56..64) reserved (0)
    dsv3_writer w;
    int rc = dsv3_writer_open(&w, path);
    if (!rc) rc = dsv3_writer_write(&w, h, sizeof h);
    if (!rc) rc = dsv3_writer_write(&w, payload, ntok * 4);
    if (!rc) rc = dsv3_writer_commit(&w);
    else if (w.f) dsv3_writer_abort(&w);
    free(tmp);
    return rc;
}

int dsv3_shard_parse_header(const unsigned char *data, size_t size, const char *path, dsv3_shard_header *h) {
    if (size < DSV3_SHARD_HEADER_BYTES)
        return dsv3_errorf("%s: not a token shard (file has %zu bytes, expected a %d-byte header)", path, size,
                           DSV3_SHARD_HEADER_BYTES);
    if (memcmp(data, DSV3_SHARD_MAGIC, 8) != 0)
        return dsv3_errorf("%s: not a token shard (bad magic: expected \"%s\")", path, DSV3_SHARD_MAGIC);
    h->version = get32(data + 8);
    h->header_bytes = get32(data + 12);
    h->vocab_size = get32(data + 16);
    h->seq_len = get32(data + 20);
    h->rows = get64(data + 24);
    h->tokens = get64(data + 32);
    h->pad_id = get32(data + 40);
    h->checksum = get64(data + 48);
    if (h->version != DSV3_SHARD_VERSION)
        return dsv3_errorf("%s: unsupported shard version %u (expected %u)", path, h->version, DSV3_SHARD_VERSION);
    if (h->header_bytes != DSV3_SHARD_HEADER_BYTES)
        return dsv3_errorf("%s: header size %u (expected %d)", path, h->header_bytes, DSV3_SHARD_HEADER_BYTES);
    if (h->seq_len == 0 || h->seq_len > (1u << 24) || h->vocab_size == 0)
        return dsv3_errorf("%s: bad header (seq_len %u, vocab_size %u)", path, h->seq_len, h->vocab_size);
    if (h->rows > (UINT64_MAX / 8) / (h->seq_len + 1ull) || h->tokens != h->rows * (h->seq_len + 1ull))
        return dsv3_errorf("%s: bad header (tokens %llu != rows %llu x (seq_len %u + 1))", path,
                           (unsigned long long)h->tokens, (unsigned long long)h->rows, h->seq_len);
    uint64_t want = DSV3_SHARD_HEADER_BYTES + 4 * h->tokens;
    if ((uint64_t)size != want)
        return dsv3_errorf("%s: %s (file has %zu bytes, header says %llu)", path,
                           (uint64_t)size < want ? "truncated" : "trailing bytes", size, (unsigned long long)want);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for the tokenizer fingerprint in the manifest.

typedef struct { uint32_t h[8]; unsigned char buf[64]; uint64_t len; size_t nbuf; } sha256_ctx;

static const uint32_t k_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(sha256_ctx *c, const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + k_sha_k[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0, c->nbuf = 0;
}

static void sha256_update(sha256_ctx *c, const unsigned char *p, size_t n) {
    c->len += n;
    while (n) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k, p += k, n -= k;
        if (c->nbuf == 64) sha256_block(c, c->buf), c->nbuf = 0;
    }
}

static void sha256_final(sha256_ctx *c, unsigned char out[32]) {
    uint64_t bits = c->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    sha256_update(c, &pad, 1);
    while (c->nbuf != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(c->h[i] >> (24 - 8 * j));
}

int dsv3_sha256_file(const char *path, char hex[65]) {
    dsv3_mmap m;
    if (dsv3_mmap_open(&m, path)) return -1;
    sha256_ctx c;
    sha256_init(&c);
    if (m.size) sha256_update(&c, m.data, m.size);
    unsigned char d[32];
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    dsv3_mmap_close(&m);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Packing

typedef struct {
    uint32_t *tok;        // (rows * (L+1))
    uint64_t rows;
    uint64_t pad_tokens;  // bestfit: PAD fill; concat: tokens dropped at the end of the stream
} packed;

// Concatenate documents (in `order`) and cut rows of L+1 tokens, consecutive rows sharing one token.
static void pack_concat(int32_t **dtok, const size_t *dlen, const uint64_t *order, uint64_t nd, uint32_t L,
                        packed *p) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < nd; i++) total += dlen[order[i]];
    p->rows = total >= L + 1ull ? (total - 1) / L : 0;
    p->pad_tokens = total - (p->rows ? p->rows * L + 1 : 0);
    p->tok = dsv3_malloc((p->rows * (L + 1ull) + 1) * sizeof *p->tok);
    uint64_t r = 0, c = 0; // row, column being filled
    for (uint64_t i = 0; i < nd && r < p->rows; i++) {
        const int32_t *t = dtok[order[i]];
        for (size_t k = 0; k < dlen[order[i]] && r < p->rows; k++) {
            p->tok[r * (L + 1) + c] = (uint32_t)t[k];
            if (++c == L + 1) { // the last token of row r is also the first of row r+1
                r++;
                if (r < p->rows) p->tok[r * (L + 1)] = (uint32_t)t[k];
                c = 1;
            }
        }
    }
}

typedef struct { uint64_t doc, off, len, rank; } chunk;

static int chunk_cmp(const void *x, const void *y) {
    const chunk *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

// Best-fit decreasing: chunks of <= L+1 tokens, each placed in the open row with the least room
// that still fits it (ties: the most recently touched such row), else in a new row.
static void pack_bestfit(int32_t **dtok, const size_t *dlen, const uint64_t *order, uint64_t nd, uint32_t L,
                         uint32_t pad, packed *p) {
    const uint64_t C = L + 1ull;
    uint64_t nch = 0;
    for (uint64_t i = 0; i < nd; i++) nch += (dlen[order[i]] + C - 1) / C;
    chunk *ch = dsv3_malloc((nch + 1) * sizeof *ch);
    uint64_t k = 0;
    for (uint64_t i = 0; i < nd; i++) {
        uint64_t d = order[i];
        for (uint64_t o = 0; o < dlen[d]; o += C) ch[k] = (chunk){d, o, dlen[d] - o < C ? dlen[d] - o : C, k}, k++;
    }
    qsort(ch, nch, sizeof *ch, chunk_cmp);
    // Buckets by free room 1..C-1 (full rows leave the structure): a stack of rows per room value and
    // a bitset of non-empty rooms.
    uint64_t nwords = (C + 63) / 64;
    uint64_t *bits = dsv3_calloc(nwords, sizeof *bits);
    uint64_t **stack = dsv3_calloc(C, sizeof *stack);
    uint64_t *sn = dsv3_calloc(C, sizeof *sn), *scap = dsv3_calloc(C, sizeof *scap);
    uint64_t *row_of = dsv3_malloc((nch + 1) * sizeof *row_of), *col_of = dsv3_malloc((nch + 1) * sizeof *col_of);
    uint64_t *fill = NULL, nrows = 0, rows_cap = 0;
    for (uint64_t i = 0; i < nch; i++) {
        uint64_t s = ch[i].len, room = 0;
        // smallest room >= s with a row
        for (uint64_t w = s / 64; w < nwords; w++) {
            uint64_t m = bits[w];
            if (w == s / 64) m &= ~0ull << (s % 64);
            if (m) { room = w * 64 + (uint64_t)__builtin_ctzll(m); break; }
        }
        uint64_t r;
        if (room) {
            r = stack[room][--sn[room]];
            if (!sn[room]) bits[room / 64] &= ~(1ull << (room % 64));
        } else {
            if (nrows == rows_cap) {
                rows_cap = rows_cap ? 2 * rows_cap : 1024;
                fill = dsv3_realloc(fill, rows_cap * sizeof *fill);
            }
            r = nrows++;
            fill[r] = 0;
        }
        row_of[i] = r, col_of[i] = fill[r];
        fill[r] += s;
        uint64_t left = C - fill[r];
        if (left) {
            if (sn[left] == scap[left]) {
                scap[left] = scap[left] ? 2 * scap[left] : 16;
                stack[left] = dsv3_realloc(stack[left], scap[left] * sizeof **stack);
            }
            stack[left][sn[left]++] = r;
            bits[left / 64] |= 1ull << (left % 64);
        }
    }
    p->rows = nrows;
    p->tok = dsv3_malloc((nrows * C + 1) * sizeof *p->tok);
    for (uint64_t i = 0; i < nrows * C; i++) p->tok[i] = pad;
    p->pad_tokens = nrows * C;
    for (uint64_t i = 0; i < nch; i++) {
        const int32_t *t = dtok[ch[i].doc] + ch[i].off;
        uint32_t *dst = p->tok + row_of[i] * C + col_of[i];
        for (uint64_t j = 0; j < ch[i].len; j++) dst[j] = (uint32_t)t[j];
        p->pad_tokens -= ch[i].len;
    }
    for (uint64_t i = 0; i < C; i++) free(stack[i]);
    free(stack), free(sn), free(scap), free(bits), free(row_of), free(col_of), free(fill), free(ch);
}

// ---------------------------------------------------------------------------------------------
// Prepare

static int mkdir_p(const char *dir) {
    char *p = dsv3_strdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) && errno != EEXIST) break;
            *s = '/';
        }
    int rc = mkdir(p, 0777);
    int e = errno;
    free(p);
    struct stat st;
    if (rc && !(e == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
        return dsv3_errorf("%s: cannot create output directory: %s", dir, strerror(e));
    return 0;
}

static const char *k_split_name[2] = {"train", "val"};

// After a successful run: remove shard files of an earlier run into the same directory that this
// run's manifest does not list ("<split>-NNNNN.bin" with an index >= this run's shard count) and
// temp files of interrupted runs ("<split>-NNNNN.bin.tmp.<pid>"). Only regular files with these
// exact name patterns are touched. The new output is complete already, so a file that cannot be
// removed only gets a warning on stderr.
static void remove_stale_shards(const char *dir, const uint64_t nshards[2]) {
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "data prepare: warning: cannot list %s to remove stale shards: %s\n", dir, strerror(errno));
        return;
    }
    struct dirent *de;
    while ((de = readdir(dp))) {
        const char *nm = de->d_name;
        for (int sp = 0; sp < 2; sp++) {
            size_t pl = strlen(k_split_name[sp]);
            if (strncmp(nm, k_split_name[sp], pl) != 0 || nm[pl] != '-') continue;
            const char *q = nm + pl + 1, *digits = q;
            while (*q >= '0' && *q <= '9') q++;
            if (q - digits < 5 || strncmp(q, ".bin", 4) != 0) continue;
            const char *rest = q + 4;
            int tmp = 0;
            if (*rest) { // only ".tmp.<digits>" may follow
                if (strncmp(rest, ".tmp.", 5) != 0 || !rest[5]) continue;
                const char *r = rest + 5;
                while (*r >= '0' && *r <= '9') r++;
                if (*r) continue;
                tmp = 1;
            }
            errno = 0;
            unsigned long long idx = strtoull(digits, NULL, 10);
            char canon[64];
            snprintf(canon, sizeof canon, "%s-%05llu.bin", k_split_name[sp], idx);
            int keep = !tmp && errno == 0 && idx < nshards[sp] && strlen(canon) == (size_t)(rest - nm) &&
                       strncmp(nm, canon, (size_t)(rest - nm)) == 0;
            if (keep) continue;
            char *path = dsv3_path_join(dir, nm);
            struct stat sb;
            if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(path) != 0 && errno != ENOENT)
                fprintf(stderr, "data prepare: warning: cannot remove stale shard %s: %s\n", path, strerror(errno));
            free(path);
        }
    }
    closedir(dp);
}

int dsv3_data_prepare(const dsv3_tokenizer *tok, const dsv3_doclist *docs, const dsv3_data_prepare_opts *o,
                      dsv3_data_prepare_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = now_s();
    if (o->seq_len < 1 || o->seq_len > (1 << 24)) return dsv3_errorf("--seq-len must be in [1, 16777216], got %d", o->seq_len);
    if (!(o->fim_rate >= 0 && o->fim_rate <= 1)) return dsv3_errorf("--fim-rate must be in [0, 1], got %g", o->fim_rate);
    if (!(o->val_fraction >= 0 && o->val_fraction <= 1))
        return dsv3_errorf("--val-fraction must be in [0, 1], got %g", o->val_fraction);
    if (o->shard_rows < 1) return dsv3_errorf("--shard-rows must be >= 1");
    dsv3_data_special_ids ids;
    if (dsv3_data_special_ids_get(tok, &ids, o->fim_rate > 0)) return -1;
    if (o->add_bos && ids.bos < 0) return dsv3_errorf("tokenizer has no BOS token (use --no-bos)");
    char tok_sha[65];
    if (dsv3_sha256_file(o->tokenizer_path, tok_sha)) return -1;
    if (mkdir_p(o->out_dir)) return -1;
    {   // A manifest from an earlier run must not survive a failed run that overwrote its shards.
        char *old = dsv3_path_join(o->out_dir, "manifest.json");
        if (unlink(old) && errno != ENOENT) {
            int e = errno;
            free(old);
            return dsv3_errorf("%s/manifest.json: cannot remove the old manifest: %s", o->out_dir, strerror(e));
        }
        free(old);
    }
    const uint32_t L = (uint32_t)o->seq_len;
    const int vocab = dsv3_tokenizer_vocab_size(tok);
    const uint64_t nd = docs->n;

    // 1. tokenize (parallel over documents; every random draw depends only on (seed, doc, draw))
    int32_t **dtok = dsv3_calloc(nd + 1, sizeof *dtok);
    size_t *dlen = dsv3_calloc(nd + 1, sizeof *dlen);
    unsigned char *dfim = dsv3_calloc(nd + 1, 1), *dsplit = dsv3_calloc(nd + 1, 1);
    int failed = 0;
    char errmsg[512] = "";
    uint64_t bytes_done = 0;
    double last = now_s();
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (uint64_t d = 0; d < nd; d++) {
        int bad;
#pragma omp atomic read
        bad = failed;
        if (bad) continue;
        dsplit[d] = dsv3_data_uniform(o->seed, d, 0) < o->val_fraction;
        int fim = 0;
        if (dsv3_data_encode_document(tok, &ids, docs->docs[d].text, docs->docs[d].len, o->add_bos, o->fim_rate,
                                      dsv3_data_uniform(o->seed, d, 1), dsv3_data_uniform(o->seed, d, 2),
                                      dsv3_data_uniform(o->seed, d, 3), &dtok[d], &dlen[d], &fim)) {
#pragma omp critical(dsv3_data_err)
            {
                if (!failed) snprintf(errmsg, sizeof errmsg, "document %llu: %s", (unsigned long long)d, dsv3_error());
#pragma omp atomic write
                failed = 1; // atomic: other threads read it outside the critical section
            }
            continue;
        }
        dfim[d] = (unsigned char)fim;
        uint64_t done;
#pragma omp atomic capture
        done = bytes_done += docs->docs[d].len;
        if (o->progress && omp_get_thread_num() == 0 && now_s() - last > 1.0 && isatty(2)) {
            last = now_s();
            fprintf(stderr, "\rdata prepare: tokenized %.1f / %.1f MB (%.1f MB/s)", done / 1e6, docs->bytes / 1e6,
                    done / 1e6 / (last - t0));
        }
    }
    st->seconds_tokenize = now_s() - t0;
    st->input_bytes = docs->bytes;
    int rc = -1;
    cJSON *man = NULL;
    uint64_t *order = NULL;
    if (failed) {
        dsv3_errorf("%s", errmsg);
        goto done;
    }
    if (o->progress)
        fprintf(stderr, "%sdata prepare: tokenized %.1f MB in %.1fs\n", isatty(2) ? "\r\033[K" : "", docs->bytes / 1e6,
                st->seconds_tokenize);

    man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "format", "dsv3-token-shards");
    cJSON_AddNumberToObject(man, "version", DSV3_SHARD_VERSION);
    cJSON *jt = cJSON_AddObjectToObject(man, "tokenizer");
    cJSON_AddStringToObject(jt, "path", o->tokenizer_path);
    cJSON_AddStringToObject(jt, "sha256", tok_sha);
    cJSON_AddNumberToObject(jt, "vocab_size", vocab);
    cJSON_AddNumberToObject(jt, "bos_id", ids.bos);
    cJSON_AddNumberToObject(jt, "eos_id", ids.eos);
    cJSON_AddNumberToObject(jt, "pad_id", ids.pad);
    cJSON_AddNumberToObject(jt, "fim_begin_id", ids.fim_begin);
    cJSON_AddNumberToObject(jt, "fim_hole_id", ids.fim_hole);
    cJSON_AddNumberToObject(jt, "fim_end_id", ids.fim_end);
    cJSON_AddNumberToObject(man, "seq_len", L);
    cJSON_AddNumberToObject(man, "row_tokens", L + 1);
    cJSON_AddStringToObject(man, "packing", o->bestfit ? "bestfit" : "concat");
    cJSON_AddBoolToObject(man, "bos", o->add_bos);
    cJSON_AddNumberToObject(man, "fim_rate", o->fim_rate);
    cJSON_AddStringToObject(man, "fim_format", "PSM");
    cJSON_AddNumberToObject(man, "val_fraction", o->val_fraction);
    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(man, "seed", seedbuf); // a string: JSON numbers lose precision past 2^53
    cJSON_AddNumberToObject(man, "documents", (double)nd);
    cJSON_AddNumberToObject(man, "input_bytes", (double)docs->bytes);

    // 2. per split: shuffled document order, packing, shards
    order = dsv3_malloc((nd + 1) * sizeof *order);
    uint64_t *perm = dsv3_malloc((nd + 1) * sizeof *perm);
    permute(perm, nd, o->seed, 0x7061636bull /* "pack" */);
    for (int sp = 0; sp < 2; sp++) {
        uint64_t n = 0;
        for (uint64_t i = 0; i < nd; i++) {
            uint64_t d = perm[i];
            if (dsplit[d] != sp) continue;
            order[n++] = d;
            st->documents[sp]++;
            st->fim_documents[sp] += dfim[d];
            st->doc_tokens[sp] += dlen[d];
        }
        packed pk = {0};
        if (o->bestfit) pack_bestfit(dtok, dlen, order, n, L, (uint32_t)ids.pad, &pk);
        else pack_concat(dtok, dlen, order, n, L, &pk);
        st->rows[sp] = pk.rows;
        st->pad_tokens[sp] = pk.pad_tokens;
        cJSON *js = cJSON_AddObjectToObject(man, k_split_name[sp]);
        cJSON_AddNumberToObject(js, "documents", (double)st->documents[sp]);
        cJSON_AddNumberToObject(js, "fim_documents", (double)st->fim_documents[sp]);
        cJSON_AddNumberToObject(js, "document_tokens", (double)st->doc_tokens[sp]);
        cJSON_AddNumberToObject(js, "rows", (double)pk.rows);
        cJSON_AddNumberToObject(js, o->bestfit ? "pad_tokens" : "dropped_tokens", (double)pk.pad_tokens);
        cJSON *arr = cJSON_AddArrayToObject(js, "shards");
        for (uint64_t r0 = 0, s = 0; r0 < pk.rows; r0 += o->shard_rows, s++) {
            uint64_t nr = pk.rows - r0 < o->shard_rows ? pk.rows - r0 : o->shard_rows;
            char name[64];
            snprintf(name, sizeof name, "%s-%05llu.bin", k_split_name[sp], (unsigned long long)s);
            char *path = dsv3_path_join(o->out_dir, name);
            int w = dsv3_shard_write(path, pk.tok + r0 * (L + 1ull), nr, L, (uint32_t)vocab,
                                     o->bestfit ? (uint32_t)ids.pad : 0xFFFFFFFFu);
            free(path);
            if (w) {
                free(pk.tok), free(perm);
                goto done;
            }
            cJSON *sh = cJSON_CreateObject();
            cJSON_AddStringToObject(sh, "file", name);
            cJSON_AddNumberToObject(sh, "rows", (double)nr);
            char ck[32];
            snprintf(ck, sizeof ck, "%016llx",
                     (unsigned long long)dsv3_fnv1a64(pk.tok + r0 * (L + 1ull), nr * (L + 1ull) * 4));
            cJSON_AddStringToObject(sh, "fnv1a64", ck);
            cJSON_AddItemToArray(arr, sh);
            st->shards[sp]++;
        }
        free(pk.tok);
        if (o->progress)
            fprintf(stderr, "data prepare: %s: %llu documents (%llu FIM), %llu tokens -> %llu rows of %u, %llu shards\n",
                    k_split_name[sp], (unsigned long long)st->documents[sp], (unsigned long long)st->fim_documents[sp],
                    (unsigned long long)st->doc_tokens[sp], (unsigned long long)pk.rows, L + 1,
                    (unsigned long long)st->shards[sp]);
    }
    free(perm);
    {
        char *text = cJSON_Print(man);
        char *path = dsv3_path_join(o->out_dir, "manifest.json");
        dsv3_writer w;
        rc = dsv3_writer_open(&w, path);
        if (!rc) rc = dsv3_writer_write(&w, text, strlen(text));
        if (!rc) rc = dsv3_writer_write(&w, "\n", 1);
        if (!rc) rc = dsv3_writer_commit(&w);
        else if (w.f) dsv3_writer_abort(&w);
        free(path);
        cJSON_free(text);
    }
    if (!rc) remove_stale_shards(o->out_dir, st->shards);
done:
    cJSON_Delete(man);
    free(order);
    for (uint64_t d = 0; d < nd; d++) free(dtok[d]);
    free(dtok), free(dlen), free(dfim), free(dsplit);
    st->seconds_total = now_s() - t0;
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Reader

struct dsv3_data {
    dsv3_mmap *maps;     // (nshards)
    uint64_t *first_row; // (nshards+1) cumulative
    int nshards;
    uint32_t seq_len, vocab;
    int64_t pad_id;
};

// A string field, or a number field that must be an integer in [lo, hi] (so that the casts below
// are defined whatever a hostile manifest holds).
static const cJSON *jget_range(const cJSON *o, const char *key, int type_number, double lo, double hi, const char *path,
                               const char *ctx) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || (type_number ? !cJSON_IsNumber(v) : !cJSON_IsString(v))) {
        dsv3_errorf("%s: %s%s\"%s\" missing or not a %s", path, ctx, *ctx ? ": " : "", key,
                    type_number ? "number" : "string");
        return NULL;
    }
    if (type_number && !(v->valuedouble >= lo && v->valuedouble <= hi && v->valuedouble == (double)(int64_t)v->valuedouble)) {
        dsv3_errorf("%s: %s%s\"%s\" must be an integer in [%.0f, %.0f], found %g", path, ctx, *ctx ? ": " : "", key,
                    lo, hi, v->valuedouble);
        return NULL;
    }
    return v;
}
#define jget(o, key, type_number, path, ctx) jget_range(o, key, type_number, 0, 4294967295.0, path, ctx)

dsv3_data *dsv3_data_open(const char *manifest_path, const char *split, int verify) {
    const uint32_t one = 1;
    if (*(const unsigned char *)&one != 1) { // rows are handed out as pointers into little-endian shards
        dsv3_errorf("%s: the shard reader needs a little-endian host", manifest_path);
        return NULL;
    }
    size_t size;
    char *text = dsv3_read_file(manifest_path, &size);
    if (!text) return NULL;
    cJSON *man = cJSON_ParseWithLength(text, size);
    free(text);
    if (!man || !cJSON_IsObject(man)) {
        cJSON_Delete(man);
        dsv3_errorf("%s: not a valid JSON manifest", manifest_path);
        return NULL;
    }
    dsv3_data *d = dsv3_calloc(1, sizeof *d);
    const cJSON *v, *tk = cJSON_GetObjectItemCaseSensitive(man, "tokenizer");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(man, split);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(man, "format");
    const cJSON *shards = js ? cJSON_GetObjectItemCaseSensitive(js, "shards") : NULL;
    char *dir = dsv3_strdup(manifest_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "dsv3-token-shards") != 0) {
        dsv3_errorf("%s: not a dsv3 data manifest (\"format\" should be \"dsv3-token-shards\")", manifest_path);
        goto fail;
    }
    if (!cJSON_IsObject(tk) || !(v = jget_range(tk, "vocab_size", 1, 1, 4294967295.0, manifest_path, "tokenizer"))) {
        if (!cJSON_IsObject(tk)) dsv3_errorf("%s: \"tokenizer\" missing", manifest_path);
        goto fail;
    }
    d->vocab = (uint32_t)v->valuedouble;
    if (!(v = jget_range(man, "seq_len", 1, 1, 1 << 24, manifest_path, ""))) goto fail;
    d->seq_len = (uint32_t)v->valuedouble;
    if (!cJSON_IsObject(js) || !cJSON_IsArray(shards)) {
        dsv3_errorf("%s: no \"%s\" split with a \"shards\" list", manifest_path, split);
        goto fail;
    }
    const cJSON *packing = cJSON_GetObjectItemCaseSensitive(man, "packing");
    int bestfit = cJSON_IsString(packing) && strcmp(packing->valuestring, "bestfit") == 0;
    d->pad_id = -1;
    if (bestfit) {
        if (!(v = jget_range(tk, "pad_id", 1, 0, d->vocab - 1.0, manifest_path, "tokenizer"))) goto fail;
        d->pad_id = (int64_t)v->valuedouble;
    }
    d->nshards = cJSON_GetArraySize(shards);
    d->maps = dsv3_calloc((size_t)d->nshards + 1, sizeof *d->maps);
    d->first_row = dsv3_calloc((size_t)d->nshards + 1, sizeof *d->first_row);
    for (int i = 0; i < d->nshards; i++) {
        const cJSON *sh = cJSON_GetArrayItem(shards, i), *f, *rows;
        if (!(f = jget(sh, "file", 0, manifest_path, split)) ||
            !(rows = jget_range(sh, "rows", 1, 0, 9007199254740992.0, manifest_path, split)))
            goto fail;
        char *path = dsv3_path_join(*dir ? dir : ".", f->valuestring);
        int bad = dsv3_mmap_open(&d->maps[i], path);
        dsv3_shard_header h;
        if (!bad) bad = dsv3_shard_parse_header(d->maps[i].data, d->maps[i].size, path, &h);
        if (!bad && (h.seq_len != d->seq_len || h.vocab_size != d->vocab || h.rows != (uint64_t)rows->valuedouble))
            bad = dsv3_errorf("%s: header (seq_len %u, vocab %u, rows %llu) disagrees with %s (seq_len %u, vocab %u, "
                              "rows %.0f)", path, h.seq_len, h.vocab_size, (unsigned long long)h.rows, manifest_path,
                              d->seq_len, d->vocab, rows->valuedouble);
        if (!bad && verify &&
            dsv3_fnv1a64(d->maps[i].data + DSV3_SHARD_HEADER_BYTES, (size_t)h.tokens * 4) != h.checksum)
            bad = dsv3_errorf("%s: payload checksum mismatch (file corrupted)", path);
        if (!bad && verify) {
            const unsigned char *p = d->maps[i].data + DSV3_SHARD_HEADER_BYTES;
            for (uint64_t k = 0; k < h.tokens && !bad; k++)
                if (get32(p + 4 * k) >= d->vocab)
                    bad = dsv3_errorf("%s: token %llu has id %u >= vocab size %u", path, (unsigned long long)k,
                                      get32(p + 4 * k), d->vocab);
        }
        free(path);
        if (bad) goto fail;
        d->first_row[i + 1] = d->first_row[i] + h.rows;
    }
    free(dir);
    cJSON_Delete(man);
    return d;
fail:
    free(dir);
    cJSON_Delete(man);
    dsv3_data_close(d);
    return NULL;
}

void dsv3_data_close(dsv3_data *d) {
    if (!d) return;
    if (d->maps)
        for (int i = 0; i < d->nshards; i++) dsv3_mmap_close(&d->maps[i]);
    free(d->maps), free(d->first_row), free(d);
}

uint64_t dsv3_data_num_rows(const dsv3_data *d) { return d->first_row[d->nshards]; }
int dsv3_data_seq_len(const dsv3_data *d) { return (int)d->seq_len; }
int dsv3_data_vocab_size(const dsv3_data *d) { return (int)d->vocab; }
int64_t dsv3_data_pad_id(const dsv3_data *d) { return d->pad_id; }

const uint32_t *dsv3_data_row(const dsv3_data *d, uint64_t i) {
    DSV3_ASSERT(i < dsv3_data_num_rows(d));
    int lo = 0, hi = d->nshards - 1; // last shard with first_row <= i
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->first_row[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    // Shards are little-endian uint32 after a 64-byte header, so rows are 4-byte aligned in the map.
    return (const uint32_t *)(d->maps[lo].data + DSV3_SHARD_HEADER_BYTES) + (i - d->first_row[lo]) * (d->seq_len + 1ull);
}

int dsv3_data_epoch_rows(uint64_t n_rows, uint64_t seed, uint64_t epoch, int rank, int world, int drop_remainder,
                         uint64_t **rows, uint64_t *n) {
    if (world < 1 || rank < 0 || rank >= world)
        return dsv3_errorf("data: rank %d of world %d is not valid (need 0 <= rank < world)", rank, world);
    uint64_t *perm = dsv3_malloc((n_rows + 1) * sizeof *perm);
    permute(perm, n_rows, seed, 0x65706f6368ull + epoch * 0x9E3779B97F4A7C15ull /* "epoch" */);
    uint64_t limit = drop_remainder ? n_rows / world * world : n_rows, k = 0;
    uint64_t *out = dsv3_malloc((n_rows / world + 2) * sizeof *out);
    for (uint64_t i = (uint64_t)rank; i < limit; i += (uint64_t)world) out[k++] = perm[i];
    free(perm);
    *rows = out, *n = k;
    return 0;
}
