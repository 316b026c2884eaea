// Training data pipeline: documents, FIM, packing, shards, manifest, reader. See data.h and docs/DATA.md.
#include "train/data.h"
#include "tokenizer/tokenizer.h"
#include "core/error.h"
#include "core/durable.h"
#include "core/fileio.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
    *out = dsv3_realloc(v.v, v.n * sizeof *v.v); // exact size: documents wait in the shuffle buffer
    *n = v.n;
    if (did_fim) *did_fim = fim;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Shards

static uint64_t fnv_update(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}
#define FNV_INIT 0xCBF29CE484222325ull

uint64_t dsv3_fnv1a64(const void *data, size_t n) { return fnv_update(FNV_INIT, data, n); }

#define SAMPLE_BLOCK 4096u
#define SAMPLE_BLOCKS 16u

uint64_t dsv3_shard_sample_checksum(const unsigned char *header, const unsigned char *payload, size_t n) {
    uint64_t h = fnv_update(FNV_INIT, header, DSV3_SHARD_HEADER_BYTES);
    if (n <= (size_t)SAMPLE_BLOCK * SAMPLE_BLOCKS) return fnv_update(h, payload, n);
    for (unsigned i = 0; i < SAMPLE_BLOCKS; i++) {
        size_t off = (size_t)((unsigned __int128)(n - SAMPLE_BLOCK) * i / (SAMPLE_BLOCKS - 1)) & ~(size_t)3;
        h = fnv_update(h, payload + off, SAMPLE_BLOCK);
    }
    return h;
}

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

int dsv3_shard_write(const char *path, const uint32_t *tokens, uint64_t rows, uint32_t seq_len, uint32_t vocab_size,
                     uint32_t pad_id, uint64_t run_id, uint64_t *checksum, uint64_t *sample) {
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
    uint64_t ck = dsv3_fnv1a64(payload, ntok * 4);
    put64(h + 48, ck);
    put64(h + 56, run_id);
    if (checksum) *checksum = ck;
    if (sample) *sample = dsv3_shard_sample_checksum(h, payload, ntok * 4);
    dsv3_durable w;
    int rc = dsv3_durable_open(&w, path);
    if (!rc) {
        rc = dsv3_durable_write(&w, h, sizeof h);
        if (!rc) rc = dsv3_durable_write(&w, payload, ntok * 4);
        if (!rc) rc = dsv3_durable_commit(&w);
        else dsv3_durable_abort(&w);
    }
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
    h->run_id = get64(data + 56);
    if (h->version != DSV3_SHARD_VERSION)
        return dsv3_errorf("%s: unsupported shard version %u (expected %u%s)", path, h->version, DSV3_SHARD_VERSION,
                           h->version < DSV3_SHARD_VERSION ? "; written by an older dsv3: run data prepare again" : "");
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
// Preparation: a streaming pipeline (docs/DATA.md §4)
//
//   inputs --(batches of ~4 MiB of text)--> parse the JSONL lines (parallel) --> number the documents
//   (in input order) --> tokenize + FIM (parallel) --> per split: document shuffle buffer --> packer
//   --> row queue --> shard files (durable, names of this run's generation) ... manifest last.
//
// Every random draw depends only on (seed, document index, draw) or on a per-split counter advanced
// in document order, so the bytes do not depend on the thread count or the batch boundaries.

static const char *k_split_name[2] = {"train", "val"};

#define BATCH_BYTES (4u << 20)
#define BATCH_DOCS 65536u
#define TAG_SHUFFLE 0x73687566ull  /* "shuf" */
#define TAG_SHARDS 0x7368617264ull /* "shard" */

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
        return dsv3_errorf("%s: cannot create the output folder: %s", dir, strerror(e));
    return 0;
}

// Names of the files a run writes: "g<generation>-<split>-<NNNNN>.bin" (1), or the names of the
// version-1 format "<split>-<NNNNN>.bin" (2); 0 for anything else. `len` bytes of `nm` are looked at.
static int parse_shard_name(const char *nm, size_t len, uint64_t *gen, int *sp, uint64_t *idx) {
    const char *p = nm, *end = nm + len;
    int kind = 2;
    *gen = 0;
    if (p < end && *p == 'g') {
        const char *q = p + 1;
        uint64_t g = 0;
        while (q < end && *q >= '0' && *q <= '9' && q - p <= 18) g = g * 10 + (uint64_t)(*q++ - '0');
        if (q == p + 1 || q >= end || *q != '-') return 0;
        *gen = g, kind = 1, p = q + 1;
    }
    int s = -1;
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(k_split_name[k]);
        if ((size_t)(end - p) > n && memcmp(p, k_split_name[k], n) == 0 && p[n] == '-') s = k, p += n + 1;
    }
    if (s < 0) return 0;
    const char *digits = p;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && p - digits <= 18) v = v * 10 + (uint64_t)(*p++ - '0');
    if (p - digits < 5 || end - p != 4 || memcmp(p, ".bin", 4) != 0) return 0;
    *sp = s, *idx = v;
    return kind;
}

static int accept_own_temp(const char *base, size_t len, void *ctx) {
    (void)ctx;
    uint64_t g, i;
    int sp;
    return (len == 13 && memcmp(base, "manifest.json", 13) == 0) || parse_shard_name(base, len, &g, &sp, &i) != 0;
}

// The next generation: 1 + the largest generation of any shard (or shard temp) in the folder.
static uint64_t next_generation(const char *dir) {
    DIR *dp = opendir(dir);
    uint64_t best = 0;
    if (!dp) return 1;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t len = strlen(de->d_name);
        pid_t pid;
        dsv3_temp_name_parse(de->d_name, &len, &pid); // a temp: look at its base name
        uint64_t g, i;
        int sp;
        if (parse_shard_name(de->d_name, len, &g, &sp, &i) == 1 && g > best) best = g;
    }
    closedir(dp);
    return best + 1;
}

// After the new manifest is in place: remove the shards it does not list (earlier generations, the
// version-1 names, runs killed before their manifest) and the temps of dead writers. The new dataset
// is complete already, so a file that cannot be removed only gets a warning.
static void remove_unreferenced(const char *dir, uint64_t gen, const uint64_t nshards[2]) {
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "data prepare: warning: cannot list %s to remove old shards: %s\n", dir, strerror(errno));
        return;
    }
    struct dirent *de;
    while ((de = readdir(dp))) {
        const char *nm = de->d_name;
        uint64_t g, idx;
        int sp;
        int kind = parse_shard_name(nm, strlen(nm), &g, &sp, &idx);
        if (!kind) continue;
        char canon[80];
        snprintf(canon, sizeof canon, "g%llu-%s-%05llu.bin", (unsigned long long)gen, k_split_name[sp],
                 (unsigned long long)idx);
        if (kind == 1 && g == gen && idx < nshards[sp] && strcmp(canon, nm) == 0) continue;
        char *path = dsv3_path_join(dir, nm);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "data prepare: warning: cannot remove old shard %s: %s\n", path, strerror(errno));
        free(path);
    }
    closedir(dp);
    dsv3_dir_clean_stale_temps(dir, accept_own_temp, NULL);
}

// ---------------------------------------------------------------------------------------------
// Per split: shuffle buffer -> packer -> row queue -> shards

typedef struct { int32_t *tok; size_t n; } tdoc;
typedef struct { uint64_t off, len, rank; } wchunk; // a window chunk: win[off .. off+len), len < L+1
typedef struct { char name[80]; uint64_t rows, checksum, sample; } shard_rec;

typedef struct prep prep;

typedef struct {
    prep *P;
    int sp;
    tdoc *sb;                      // (sb_n) document shuffle buffer
    size_t sb_n, sb_cap;
    uint64_t sb_tokens, sb_draw;
    uint32_t *win;                 // (win_n) best-fit window: tokens of chunks shorter than a row
    uint64_t win_n, win_cap;
    wchunk *wch;                   // (wch_n)
    uint64_t wch_n, wch_cap;
    uint32_t *cur;                 // (L+1) concat: the row being filled
    uint64_t cur_n;
    uint32_t *q;                   // (q_rows, L+1) rows waiting for the next shard
    uint64_t q_rows, q_cap;
    shard_rec *shards;             // (nshards) written so far, in write order
    uint64_t nshards, shards_cap;
} split_pipe;

struct prep {
    const dsv3_tokenizer *tok;
    const dsv3_data_prepare_opts *o;
    dsv3_data_prepare_stats *st;
    dsv3_data_special_ids ids;
    uint32_t L, vocab, pad_header;
    uint64_t C, window_tokens, shuffle_tokens, run_id, gen, next_doc;
    split_pipe pipe[2];
};

static int pipe_write_shard(split_pipe *p) {
    prep *P = p->P;
    if (p->nshards == p->shards_cap) {
        p->shards_cap = p->shards_cap ? 2 * p->shards_cap : 16;
        p->shards = dsv3_realloc(p->shards, p->shards_cap * sizeof *p->shards);
    }
    shard_rec *r = &p->shards[p->nshards];
    snprintf(r->name, sizeof r->name, "g%llu-%s-%05llu.bin", (unsigned long long)P->gen, k_split_name[p->sp],
             (unsigned long long)p->nshards);
    char *path = dsv3_path_join(P->o->out_dir, r->name);
    int rc = dsv3_shard_write(path, p->q, p->q_rows, P->L, P->vocab, P->pad_header, P->run_id, &r->checksum, &r->sample);
    free(path);
    if (rc) return -1;
    r->rows = p->q_rows;
    p->nshards++;
    P->st->shards[p->sp]++;
    p->q_rows = 0;
    return 0;
}

static int pipe_emit_row(split_pipe *p, const uint32_t *row) {
    prep *P = p->P;
    if (p->q_rows == p->q_cap) {
        uint64_t cap = p->q_cap ? 2 * p->q_cap : 64;
        if (cap > P->o->shard_rows) cap = P->o->shard_rows;
        p->q = dsv3_realloc(p->q, cap * P->C * sizeof *p->q);
        p->q_cap = cap;
    }
    memcpy(p->q + p->q_rows * P->C, row, P->C * sizeof *row);
    p->q_rows++;
    P->st->rows[p->sp]++;
    return p->q_rows == P->o->shard_rows ? pipe_write_shard(p) : 0;
}

static int wchunk_cmp(const void *x, const void *y) {
    const wchunk *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

// Best-fit decreasing over the window's chunks (all shorter than a row): each chunk goes into the
// open row with the least room that still fits it (ties: the most recently touched such row), else
// into a new row; the rest of each row is PAD. The rows are then emitted.
static int pipe_flush_window(split_pipe *p) {
    prep *P = p->P;
    const uint64_t C = P->C, nch = p->wch_n;
    if (!nch) return 0;
    wchunk *ch = p->wch;
    qsort(ch, nch, sizeof *ch, wchunk_cmp);
    // Buckets by free room 1..C-1 (full rows leave the structure): a stack of rows per room value
    // and a bitset of non-empty rooms.
    uint64_t nwords = (C + 63) / 64;
    uint64_t *bits = dsv3_calloc(nwords, sizeof *bits);
    uint64_t **stack = dsv3_calloc(C, sizeof *stack);
    uint64_t *sn = dsv3_calloc(C, sizeof *sn), *scap = dsv3_calloc(C, sizeof *scap);
    uint64_t *row_of = dsv3_malloc((nch + 1) * sizeof *row_of), *col_of = dsv3_malloc((nch + 1) * sizeof *col_of);
    uint64_t *fill = NULL, nrows = 0, rows_cap = 0;
    for (uint64_t i = 0; i < nch; i++) {
        uint64_t s = ch[i].len, room = 0;
        for (uint64_t w = s / 64; w < nwords; w++) { // smallest room >= s with a row
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
    for (uint64_t i = 0; i < C; i++) free(stack[i]);
    free(stack), free(sn), free(scap), free(bits), free(fill);
    uint32_t *rows = dsv3_malloc((nrows * C + 1) * sizeof *rows);
    for (uint64_t i = 0; i < nrows * C; i++) rows[i] = P->ids.pad;
    for (uint64_t i = 0; i < nch; i++) memcpy(rows + row_of[i] * C + col_of[i], p->win + ch[i].off, ch[i].len * 4);
    P->st->pad_tokens[p->sp] += nrows * C - p->win_n;
    free(row_of), free(col_of);
    p->win_n = p->wch_n = 0;
    int rc = 0;
    for (uint64_t r = 0; r < nrows && !rc; r++) rc = pipe_emit_row(p, rows + r * C);
    free(rows);
    return rc;
}

// One document (in shuffled order) into the packer.
static int pipe_pack_doc(split_pipe *p, const int32_t *t, size_t n) {
    prep *P = p->P;
    const uint64_t C = P->C;
    const uint32_t *u = (const uint32_t *)t; // ids are >= 0
    if (P->o->bestfit) {
        uint64_t off = 0;
        for (; off + C <= n; off += C) // a full chunk is a row of its own, as best-fit would make it
            if (pipe_emit_row(p, u + off)) return -1;
        if (off == n) return 0;
        uint64_t len = n - off;
        if (p->win_n + len > p->win_cap) {
            p->win_cap = p->win_cap ? 2 * p->win_cap : 1 << 16;
            while (p->win_cap < p->win_n + len) p->win_cap *= 2;
            p->win = dsv3_realloc(p->win, p->win_cap * sizeof *p->win);
        }
        if (p->wch_n == p->wch_cap) {
            p->wch_cap = p->wch_cap ? 2 * p->wch_cap : 1024;
            p->wch = dsv3_realloc(p->wch, p->wch_cap * sizeof *p->wch);
        }
        memcpy(p->win + p->win_n, u + off, len * 4);
        p->wch[p->wch_n] = (wchunk){p->win_n, len, p->wch_n};
        p->wch_n++;
        p->win_n += len;
        return p->win_n >= P->window_tokens ? pipe_flush_window(p) : 0;
    }
    // concat: one stream; row r is stream[r*L .. r*L+L], so consecutive rows share one token
    if (!p->cur) p->cur = dsv3_malloc(C * sizeof *p->cur);
    for (size_t k = 0; k < n;) {
        size_t take = C - p->cur_n < n - k ? (size_t)(C - p->cur_n) : n - k;
        memcpy(p->cur + p->cur_n, u + k, take * 4);
        p->cur_n += take, k += take;
        if (p->cur_n == C) {
            if (pipe_emit_row(p, p->cur)) return -1;
            p->cur[0] = p->cur[C - 1];
            p->cur_n = 1;
        }
    }
    return 0;
}

// Emit a random document of the shuffle buffer to the packer.
static int pipe_pop_doc(split_pipe *p) {
    prep *P = p->P;
    uint64_t j = bounded(rand3(P->o->seed, TAG_SHUFFLE + (uint64_t)p->sp, p->sb_draw++), p->sb_n);
    tdoc x = p->sb[j];
    p->sb[j] = p->sb[--p->sb_n];
    p->sb_tokens -= x.n;
    int rc = pipe_pack_doc(p, x.tok, x.n);
    free(x.tok);
    return rc;
}

// A tokenized document (ownership moves here) into the shuffle buffer; documents leave it in random
// order whenever it would hold more than shuffle_tokens tokens.
static int pipe_push_doc(split_pipe *p, int32_t *tok, size_t n) {
    while (p->sb_n && p->sb_tokens + n > p->P->shuffle_tokens)
        if (pipe_pop_doc(p)) {
            free(tok);
            return -1;
        }
    if (p->sb_n == p->sb_cap) {
        p->sb_cap = p->sb_cap ? 2 * p->sb_cap : 1024;
        p->sb = dsv3_realloc(p->sb, p->sb_cap * sizeof *p->sb);
    }
    p->sb[p->sb_n++] = (tdoc){tok, n};
    p->sb_tokens += n;
    return 0;
}

static int pipe_finish(split_pipe *p) {
    prep *P = p->P;
    while (p->sb_n)
        if (pipe_pop_doc(p)) return -1;
    if (P->o->bestfit) {
        if (pipe_flush_window(p)) return -1;
    } else { // the tail shorter than a row is dropped
        P->st->pad_tokens[p->sp] = P->st->rows[p->sp] ? p->cur_n - 1 : p->cur_n;
    }
    return p->q_rows ? pipe_write_shard(p) : 0;
}

static void pipe_free(split_pipe *p) {
    for (size_t i = 0; i < p->sb_n; i++) free(p->sb[i].tok);
    free(p->sb), free(p->win), free(p->wch), free(p->cur), free(p->q), free(p->shards);
    memset(p, 0, sizeof *p);
}

// ---------------------------------------------------------------------------------------------
// Document source: input files streamed in batches, or an in-memory document list

typedef struct {
    const char *text; size_t len;       // the document (JSONL: set by the parse phase)
    const char *line; size_t line_len;  // JSONL: the raw line; NULL when text is the document
    cJSON *obj;                         // owns text for JSONL lines
    uint64_t line_no, d;                // line in its input; document index
    int input, skip;                    // skip: blank line or empty "text"
    int32_t *tok;
    size_t ntok;
    int fim;
} bdoc;

typedef struct {
    bdoc *v;
    size_t n, cap, bytes;
    char **owned;                       // buffers the batch's texts point into
    size_t nowned, owned_cap;
} batch;

static void batch_add(batch *b, bdoc x) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 4096;
        b->v = dsv3_realloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n++] = x;
    b->bytes += x.line ? x.line_len : x.len;
}

static void batch_own(batch *b, char *buf) {
    if (b->nowned == b->owned_cap) {
        b->owned_cap = b->owned_cap ? 2 * b->owned_cap : 8;
        b->owned = dsv3_realloc(b->owned, b->owned_cap * sizeof *b->owned);
    }
    b->owned[b->nowned++] = buf;
}

static void batch_clear(batch *b) {
    for (size_t i = 0; i < b->n; i++) cJSON_Delete(b->v[i].obj), free(b->v[i].tok);
    for (size_t i = 0; i < b->nowned; i++) free(b->owned[i]);
    b->n = b->bytes = b->nowned = 0;
}

typedef struct {
    const char *path;
    int jsonl;
    uint64_t file_bytes, documents, text_bytes;
    char sha256[65];
} input_rec;

typedef struct {
    const dsv3_doclist *dl;             // in-memory documents, or:
    size_t dl_at;
    input_rec *rec;                     // (n) the input files
    int n, i;
    FILE *f;                            // the JSONL input being read
    char *buf;                          // (cap) its bytes: [start, have) not yet taken
    size_t cap, have, start;
    int eof, buf_in_batch;
    uint64_t line_no, read_bytes, total_bytes;
    size_t batch_bytes;                 // text per batch
    sha256_ctx sha;
} source;

static void hex_digest(const unsigned char d[32], char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

// Fill the source's buffer: at least one whole line, or up to the end of the file.
static int source_read(source *s, const char *path) {
    memmove(s->buf, s->buf + s->start, s->have - s->start);
    s->have -= s->start, s->start = 0;
    for (;;) {
        while (s->have < s->cap && !s->eof) {
            size_t r = fread(s->buf + s->have, 1, s->cap - s->have, s->f);
            if (r) sha256_update(&s->sha, (const unsigned char *)s->buf + s->have, r);
            s->have += r, s->read_bytes += r;
            if (r == 0) {
                if (ferror(s->f)) return dsv3_errorf("%s: read error: %s", path, strerror(errno));
                s->eof = 1;
            }
        }
        if (s->eof || memchr(s->buf, '\n', s->have)) return 0;
        s->cap *= 2; // a line longer than the buffer
        s->buf = dsv3_realloc(s->buf, s->cap);
    }
}

// Append the next documents (about batch_bytes of text) to b. At the end b->n stays 0.
static int source_fill(source *s, batch *b) {
    if (s->dl) {
        while (s->dl_at < s->dl->n && b->bytes < s->batch_bytes && b->n < BATCH_DOCS) {
            const dsv3_doc *x = &s->dl->docs[s->dl_at++];
            batch_add(b, (bdoc){.text = x->text, .len = x->len, .input = 0, .skip = x->len == 0});
        }
        return 0;
    }
    while (s->i < s->n && b->bytes < s->batch_bytes && b->n < BATCH_DOCS) {
        input_rec *r = &s->rec[s->i];
        if (!r->jsonl) { // the whole file is one document
            size_t size = 0;
            char *buf = dsv3_read_file(r->path, &size);
            if (!buf) return -1;
            sha256_ctx c;
            sha256_init(&c);
            sha256_update(&c, (const unsigned char *)buf, size);
            unsigned char d[32];
            sha256_final(&c, d);
            hex_digest(d, r->sha256);
            r->file_bytes = size;
            s->read_bytes += size;
            batch_own(b, buf);
            batch_add(b, (bdoc){.text = buf, .len = size, .input = s->i, .skip = size == 0});
            s->i++;
            continue;
        }
        if (!s->f) {
            s->f = strcmp(r->path, "-") == 0 ? stdin : fopen(r->path, "rb");
            if (!s->f) return dsv3_errorf("%s: cannot open: %s", r->path, strerror(errno));
            sha256_init(&s->sha);
            s->eof = 0, s->line_no = 0, s->have = s->start = 0;
            if (!s->buf) s->cap = 2 * s->batch_bytes, s->buf = dsv3_malloc(s->cap);
        }
        if (!s->buf_in_batch && !s->eof && source_read(s, r->path)) return -1;
        while (b->bytes < s->batch_bytes && b->n < BATCH_DOCS && s->start < s->have) {
            char *at = s->buf + s->start, *nl = memchr(at, '\n', s->have - s->start);
            if (!nl && !s->eof) break; // the rest of this line is not read yet
            size_t len = nl ? (size_t)(nl - at) : s->have - s->start;
            s->start += len + (nl != NULL);
            s->line_no++;
            batch_add(b, (bdoc){.line = at, .line_len = len, .line_no = s->line_no, .input = s->i});
            s->buf_in_batch = 1;
        }
        if (s->eof && s->start == s->have) { // this input is done
            unsigned char d[32];
            sha256_final(&s->sha, d);
            hex_digest(d, r->sha256);
            r->file_bytes = s->read_bytes;
            for (int k = 0; k < s->i; k++) r->file_bytes -= s->rec[k].file_bytes;
            if (s->f != stdin) fclose(s->f);
            s->f = NULL;
            if (s->buf_in_batch) batch_own(b, s->buf), s->buf = NULL; // the batch's lines point into it
            s->buf_in_batch = 0;
            s->i++;
            continue;
        }
        break; // the batch is full, or this input needs a refill (after this batch is done)
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The run

// The first failure of a parallel phase, by batch position (so the message does not depend on the
// thread schedule).
typedef struct { size_t at; char msg[600]; } first_err;

static void note_err(first_err *e, size_t at, const char *prefix) {
#pragma omp critical(dsv3_data_err)
    if (at < e->at) {
        e->at = at;
        snprintf(e->msg, sizeof e->msg, "%s%s", prefix, dsv3_error());
    }
}

static int process_batch(prep *P, source *s, batch *b) {
    const dsv3_data_prepare_opts *o = P->o;
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    first_err err = {(size_t)-1, ""};
    const long n = (long)b->n;
    // 1. JSONL lines -> texts
#pragma omp parallel for schedule(dynamic, 64) num_threads(nt)
    for (long i = 0; i < n; i++) {
        bdoc *x = &b->v[i];
        if (!x->line) continue;
        int r = dsv3_jsonl_line_text(x->line, x->line_len, &x->obj, &x->text, &x->len);
        if (r < 0) note_err(&err, (size_t)i, "");
        x->skip = r <= 0 || x->len == 0;
    }
    if (err.at != (size_t)-1) {
        const bdoc *x = &b->v[err.at];
        return dsv3_errorf("%s:%llu: %s", s->rec ? s->rec[x->input].path : "documents", (unsigned long long)x->line_no,
                           err.msg);
    }
    // 2. document numbers, in input order
    for (long i = 0; i < n; i++) {
        bdoc *x = &b->v[i];
        if (x->skip) continue;
        x->d = P->next_doc++;
        if (s->rec) s->rec[x->input].documents++, s->rec[x->input].text_bytes += x->len;
    }
    // 3. tokenize + FIM
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (long i = 0; i < n; i++) {
        bdoc *x = &b->v[i];
        if (x->skip) continue;
        if (dsv3_data_encode_document(P->tok, &P->ids, x->text, x->len, o->add_bos, o->fim_rate,
                                      dsv3_data_uniform(o->seed, x->d, 1), dsv3_data_uniform(o->seed, x->d, 2),
                                      dsv3_data_uniform(o->seed, x->d, 3), &x->tok, &x->ntok, &x->fim))
            note_err(&err, (size_t)i, "");
        cJSON_Delete(x->obj);
        x->obj = NULL;
    }
    if (err.at != (size_t)-1) {
        const bdoc *x = &b->v[err.at];
        if (!s->rec) return dsv3_errorf("document %llu: %s", (unsigned long long)x->d, err.msg);
        if (x->line) return dsv3_errorf("%s:%llu: %s", s->rec[x->input].path, (unsigned long long)x->line_no, err.msg);
        return dsv3_errorf("%s: %s", s->rec[x->input].path, err.msg);
    }
    // 4. split, then into the split's shuffle buffer (in document order)
    for (long i = 0; i < n; i++) {
        bdoc *x = &b->v[i];
        if (x->skip) continue;
        int sp = dsv3_data_uniform(o->seed, x->d, 0) < o->val_fraction;
        P->st->documents[sp]++;
        P->st->fim_documents[sp] += (uint64_t)x->fim;
        P->st->doc_tokens[sp] += x->ntok;
        P->st->input_bytes += x->len;
        int32_t *t = x->tok;
        x->tok = NULL;
        if (pipe_push_doc(&P->pipe[sp], t, x->ntok)) return -1;
    }
    return 0;
}

// "g<gen>-..." files of this run (written so far), removed when the run fails.
static void remove_run_files(prep *P) {
    for (int sp = 0; sp < 2; sp++)
        for (uint64_t i = 0; i < P->pipe[sp].nshards; i++) {
            char *path = dsv3_path_join(P->o->out_dir, P->pipe[sp].shards[i].name);
            unlink(path);
            free(path);
        }
}

static cJSON *manifest_build(prep *P, const char *tok_sha, const source *s, const char *mem_sha) {
    const dsv3_data_prepare_opts *o = P->o;
    dsv3_data_prepare_stats *st = P->st;
    char buf[64];
    cJSON *man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "format", "dsv3-token-shards");
    cJSON_AddNumberToObject(man, "version", DSV3_MANIFEST_VERSION);
    cJSON_AddStringToObject(man, "run_id", st->run_id);
    cJSON_AddNumberToObject(man, "generation", (double)P->gen);
    cJSON *jt = cJSON_AddObjectToObject(man, "tokenizer");
    cJSON_AddStringToObject(jt, "path", o->tokenizer_path);
    cJSON_AddStringToObject(jt, "sha256", tok_sha);
    cJSON_AddNumberToObject(jt, "vocab_size", P->vocab);
    cJSON_AddNumberToObject(jt, "bos_id", P->ids.bos);
    cJSON_AddNumberToObject(jt, "eos_id", P->ids.eos);
    cJSON_AddNumberToObject(jt, "pad_id", P->ids.pad);
    cJSON_AddNumberToObject(jt, "fim_begin_id", P->ids.fim_begin);
    cJSON_AddNumberToObject(jt, "fim_hole_id", P->ids.fim_hole);
    cJSON_AddNumberToObject(jt, "fim_end_id", P->ids.fim_end);
    cJSON_AddNumberToObject(man, "seq_len", P->L);
    cJSON_AddNumberToObject(man, "row_tokens", (double)P->C);
    cJSON_AddStringToObject(man, "packing", o->bestfit ? "bestfit" : "concat");
    cJSON_AddBoolToObject(man, "bos", o->add_bos);
    cJSON_AddNumberToObject(man, "fim_rate", o->fim_rate);
    cJSON_AddStringToObject(man, "fim_format", "PSM");
    cJSON_AddNumberToObject(man, "val_fraction", o->val_fraction);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(man, "seed", buf); // a string: JSON numbers lose precision past 2^53
    cJSON_AddNumberToObject(man, "shard_rows", (double)o->shard_rows);
    cJSON_AddNumberToObject(man, "shuffle_tokens", (double)P->shuffle_tokens);
    cJSON_AddNumberToObject(man, "pack_window_tokens", (double)P->window_tokens);
    cJSON_AddNumberToObject(man, "documents", (double)P->next_doc);
    cJSON_AddNumberToObject(man, "text_bytes", (double)st->input_bytes);
    cJSON *ins = cJSON_AddArrayToObject(man, "inputs");
    if (s->rec) {
        for (int i = 0; i < s->n; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "path", s->rec[i].path);
            cJSON_AddNumberToObject(x, "file_bytes", (double)s->rec[i].file_bytes);
            cJSON_AddNumberToObject(x, "documents", (double)s->rec[i].documents);
            cJSON_AddNumberToObject(x, "text_bytes", (double)s->rec[i].text_bytes);
            cJSON_AddStringToObject(x, "sha256", s->rec[i].sha256);
            cJSON_AddItemToArray(ins, x);
        }
    } else {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "path", "(documents in memory)");
        cJSON_AddNumberToObject(x, "documents", (double)P->next_doc);
        cJSON_AddNumberToObject(x, "text_bytes", (double)st->input_bytes);
        cJSON_AddStringToObject(x, "sha256", mem_sha);
        cJSON_AddItemToArray(ins, x);
    }
    for (int sp = 0; sp < 2; sp++) {
        split_pipe *p = &P->pipe[sp];
        cJSON *js = cJSON_AddObjectToObject(man, k_split_name[sp]);
        cJSON_AddNumberToObject(js, "documents", (double)st->documents[sp]);
        cJSON_AddNumberToObject(js, "fim_documents", (double)st->fim_documents[sp]);
        cJSON_AddNumberToObject(js, "document_tokens", (double)st->doc_tokens[sp]);
        cJSON_AddNumberToObject(js, "rows", (double)st->rows[sp]);
        cJSON_AddNumberToObject(js, o->bestfit ? "pad_tokens" : "dropped_tokens", (double)st->pad_tokens[sp]);
        cJSON *arr = cJSON_AddArrayToObject(js, "shards");
        // The shard order is shuffled too (seeded): a reader taking shards in manifest order sees
        // the corpus in a different order than it was written.
        uint64_t *perm = dsv3_malloc((p->nshards + 1) * sizeof *perm);
        permute(perm, p->nshards, o->seed, TAG_SHARDS + (uint64_t)sp);
        for (uint64_t i = 0; i < p->nshards; i++) {
            const shard_rec *r = &p->shards[perm[i]];
            cJSON *sh = cJSON_CreateObject();
            cJSON_AddStringToObject(sh, "file", r->name);
            cJSON_AddNumberToObject(sh, "rows", (double)r->rows);
            snprintf(buf, sizeof buf, "%016llx", (unsigned long long)r->checksum);
            cJSON_AddStringToObject(sh, "fnv1a64", buf);
            snprintf(buf, sizeof buf, "%016llx", (unsigned long long)r->sample);
            cJSON_AddStringToObject(sh, "sample_fnv1a64", buf);
            cJSON_AddItemToArray(arr, sh);
        }
        free(perm);
    }
    return man;
}

static int prepare_run(const dsv3_tokenizer *tok, source *s, const dsv3_data_prepare_opts *o,
                       dsv3_data_prepare_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = now_s();
    if (o->seq_len < 1 || o->seq_len > (1 << 24)) return dsv3_errorf("--seq-len must be in [1, 16777216], got %d", o->seq_len);
    if (!(o->fim_rate >= 0 && o->fim_rate <= 1)) return dsv3_errorf("--fim-rate must be in [0, 1], got %g", o->fim_rate);
    if (!(o->val_fraction >= 0 && o->val_fraction <= 1))
        return dsv3_errorf("--val-fraction must be in [0, 1], got %g", o->val_fraction);
    if (o->shard_rows < 1) return dsv3_errorf("--shard-rows must be >= 1");
    prep P = {.tok = tok, .o = o, .st = st};
    if (dsv3_data_special_ids_get(tok, &P.ids, o->fim_rate > 0)) return -1;
    if (o->add_bos && P.ids.bos < 0) return dsv3_errorf("tokenizer has no BOS token (use --no-bos)");
    P.L = (uint32_t)o->seq_len, P.C = P.L + 1ull;
    P.vocab = (uint32_t)dsv3_tokenizer_vocab_size(tok);
    P.pad_header = o->bestfit ? (uint32_t)P.ids.pad : 0xFFFFFFFFu;
    P.window_tokens = o->shard_rows > UINT64_MAX / P.C ? UINT64_MAX : o->shard_rows * P.C;
    if (P.window_tokens < DSV3_DATA_WINDOW_TOKENS) P.window_tokens = DSV3_DATA_WINDOW_TOKENS;
    P.shuffle_tokens = o->shuffle_tokens >= 0 ? (uint64_t)o->shuffle_tokens : P.window_tokens;
    for (int sp = 0; sp < 2; sp++) P.pipe[sp].P = &P, P.pipe[sp].sp = sp;
    s->batch_bytes = o->batch_bytes ? o->batch_bytes : BATCH_BYTES;
    char tok_sha[65], mem_sha[65] = "";
    if (dsv3_sha256_file(o->tokenizer_path, tok_sha)) return -1;

    // The run id: a hash of everything that determines the output, known before the first shard.
    sha256_ctx idc;
    sha256_init(&idc);
    {
        char b[512];
        int k = snprintf(b, sizeof b,
                         "dsv3-token-shards %u\ntokenizer %s\nseq_len %u\npacking %s\nbos %d\nfim_rate %.17g\n"
                         "val_fraction %.17g\nseed %llu\nshard_rows %llu\nshuffle_tokens %llu\nwindow_tokens %llu\n",
                         DSV3_SHARD_VERSION, tok_sha, P.L, o->bestfit ? "bestfit" : "concat", o->add_bos, o->fim_rate,
                         o->val_fraction, (unsigned long long)o->seed, (unsigned long long)o->shard_rows,
                         (unsigned long long)P.shuffle_tokens, (unsigned long long)P.window_tokens);
        sha256_update(&idc, (const unsigned char *)b, (size_t)k);
    }
    if (s->rec) {
        for (int i = 0; i < s->n; i++) {
            struct stat sb;
            char b[64];
            int k = snprintf(b, sizeof b, "\t%lld\n",
                             strcmp(s->rec[i].path, "-") && stat(s->rec[i].path, &sb) == 0 ? (long long)sb.st_size : -1LL);
            sha256_update(&idc, (const unsigned char *)"input ", 6);
            sha256_update(&idc, (const unsigned char *)s->rec[i].path, strlen(s->rec[i].path));
            sha256_update(&idc, (const unsigned char *)b, (size_t)k);
        }
    } else { // documents in memory: their content
        sha256_ctx c;
        sha256_init(&c);
        for (size_t i = 0; i < s->dl->n; i++) {
            unsigned char lb[8];
            put64(lb, s->dl->docs[i].len);
            sha256_update(&c, lb, 8);
            sha256_update(&c, (const unsigned char *)s->dl->docs[i].text, s->dl->docs[i].len);
        }
        unsigned char d[32];
        sha256_final(&c, d);
        hex_digest(d, mem_sha);
        sha256_update(&idc, (const unsigned char *)"documents ", 10);
        sha256_update(&idc, (const unsigned char *)mem_sha, 64);
    }
    {
        unsigned char d[32];
        sha256_final(&idc, d);
        for (int i = 0; i < 8; i++) P.run_id = P.run_id << 8 | d[i];
        snprintf(st->run_id, sizeof st->run_id, "%016llx", (unsigned long long)P.run_id);
    }

    // The output folder: created if missing, then locked for this run.
    struct stat osb;
    int created = 0;
    if (stat(o->out_dir, &osb) == 0) {
        if (!S_ISDIR(osb.st_mode))
            return dsv3_errorf("%s: exists and is not a directory (the output must be a folder)", o->out_dir);
    } else {
        if (mkdir_p(o->out_dir)) return -1;
        created = 1;
    }
    dsv3_dirlock lock;
    if (dsv3_dir_lock(&lock, o->out_dir)) {
        if (created) rmdir(o->out_dir);
        return -1;
    }
    dsv3_dir_clean_stale_temps(o->out_dir, accept_own_temp, NULL);
    P.gen = next_generation(o->out_dir);
    st->generation = P.gen;

    int rc = -1;
    batch b = {0};
    double last = now_s(), tok_s = 0;
    for (;;) {
        if (source_fill(s, &b)) goto fail;
        if (!b.n) break;
        double t1 = now_s();
        if (process_batch(&P, s, &b)) goto fail;
        tok_s += now_s() - t1;
        batch_clear(&b);
        s->buf_in_batch = 0;
        if (o->progress && isatty(2) && now_s() - last > 1.0) {
            last = now_s();
            fprintf(stderr, "\r\033[Kdata prepare: %.1f / %.1f MB, %llu documents, %llu shards (%.2f MB/s)",
                    s->read_bytes / 1e6, s->total_bytes / 1e6, (unsigned long long)P.next_doc,
                    (unsigned long long)(st->shards[0] + st->shards[1]), s->read_bytes / 1e6 / (last - t0));
        }
    }
    if (o->progress && isatty(2)) fputs("\r\033[K", stderr);
    for (int sp = 0; sp < 2; sp++)
        if (pipe_finish(&P.pipe[sp])) goto fail;
    st->seconds_tokenize = tok_s;
    st->file_bytes = s->read_bytes;
    if (!P.next_doc) {
        dsv3_errorf("no documents in the inputs (they are empty or hold only blank lines): nothing to prepare");
        goto fail;
    }
    if (!st->rows[0] && !st->rows[1]) {
        dsv3_errorf("the inputs give no rows: %llu tokens, fewer than one row of seq_len + 1 = %llu (concat packing)",
                    (unsigned long long)(st->doc_tokens[0] + st->doc_tokens[1]), (unsigned long long)P.C);
        goto fail;
    }
    {   // publish: the manifest, written last, replaces the previous one atomically
        cJSON *man = manifest_build(&P, tok_sha, s, mem_sha);
        char *text = cJSON_Print(man);
        cJSON_Delete(man);
        size_t tl = strlen(text);
        char *path = dsv3_path_join(o->out_dir, "manifest.json");
        dsv3_durable w;
        int wr = dsv3_durable_open(&w, path);
        if (!wr) {
            wr = dsv3_durable_write(&w, text, tl);
            if (!wr) wr = dsv3_durable_write(&w, "\n", 1);
            if (!wr) wr = dsv3_durable_commit(&w);
            else dsv3_durable_abort(&w);
        }
        free(path);
        cJSON_free(text);
        if (wr) goto fail;
    }
    for (int sp = 0; sp < 2; sp++)
        if (o->progress)
            fprintf(stderr, "data prepare: %s: %llu documents (%llu FIM), %llu tokens -> %llu rows of %llu, %llu shards\n",
                    k_split_name[sp], (unsigned long long)st->documents[sp], (unsigned long long)st->fim_documents[sp],
                    (unsigned long long)st->doc_tokens[sp], (unsigned long long)st->rows[sp],
                    (unsigned long long)P.C, (unsigned long long)st->shards[sp]);
    remove_unreferenced(o->out_dir, P.gen, st->shards);
    dsv3_fsync_dir(o->out_dir); // the removals (best effort: the new dataset is durable already)
    rc = 0;
    goto done;
fail:
    remove_run_files(&P); // the previous manifest and its shards were never touched
    if (created) {
        char *lk = dsv3_path_join(o->out_dir, ".lock");
        unlink(lk);
        free(lk);
    }
done:
    batch_clear(&b);
    free(b.v), free(b.owned);
    for (int sp = 0; sp < 2; sp++) pipe_free(&P.pipe[sp]);
    dsv3_dir_unlock(&lock);
    if (rc && created) rmdir(o->out_dir);
    st->seconds_total = now_s() - t0;
    return rc;
}

int dsv3_data_prepare(const dsv3_tokenizer *tok, const dsv3_doclist *docs, const dsv3_data_prepare_opts *o,
                      dsv3_data_prepare_stats *st) {
    source s = {.dl = docs, .total_bytes = docs->bytes};
    return prepare_run(tok, &s, o, st);
}

int dsv3_data_prepare_files(const dsv3_tokenizer *tok, const char *const *inputs, int n_inputs,
                            const dsv3_data_prepare_opts *o, dsv3_data_prepare_stats *st) {
    memset(st, 0, sizeof *st);
    if (n_inputs < 1) return dsv3_errorf("data prepare: no inputs");
    // Every input must be readable before anything is written.
    source s = {.n = n_inputs};
    s.rec = dsv3_calloc((size_t)n_inputs, sizeof *s.rec);
    for (int i = 0; i < n_inputs; i++) {
        const char *p = inputs[i];
        s.rec[i].path = p;
        s.rec[i].jsonl = ends_with(p, ".jsonl");
        if (strcmp(p, "-") == 0) continue;
        struct stat sb;
        int fd = -1;
        if (stat(p, &sb) != 0 || (!S_ISDIR(sb.st_mode) && (fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)) {
            int e = errno;
            free(s.rec);
            return dsv3_errorf("%s: cannot open: %s", p, strerror(e));
        }
        if (fd >= 0) close(fd);
        if (S_ISDIR(sb.st_mode)) {
            free(s.rec);
            return dsv3_errorf("%s: is a directory (inputs are .jsonl or text files: give the files inside it, "
                               "e.g. %s/*.jsonl)", p, p);
        }
        s.total_bytes += (uint64_t)sb.st_size;
    }
    int rc = prepare_run(tok, &s, o, st);
    if (s.f && s.f != stdin) fclose(s.f);
    free(s.buf);
    free(s.rec);
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
    char run_id[17];
    uint64_t generation, digest;
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

// A string field of exactly 16 hex digits.
static int jget_hex64(const cJSON *o, const char *key, const char *path, const char *ctx, uint64_t *out) {
    const cJSON *v = jget(o, key, 0, path, ctx);
    if (!v) return -1;
    const char *s = v->valuestring;
    uint64_t x = 0;
    int n = 0;
    for (; s[n]; n++) {
        int c = s[n], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0 || n >= 16) break;
        x = x << 4 | (uint64_t)d;
    }
    if (n != 16 || s[n]) return dsv3_errorf("%s: %s%s\"%s\" must be 16 lowercase hex digits", path, ctx, *ctx ? ": " : "", key);
    *out = x;
    return 0;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v) {
    unsigned char b[8];
    put64(b, v);
    return fnv_update(h, b, 8);
}

static dsv3_data *data_open_once(const char *manifest_path, const char *split, int verify) {
    size_t size;
    char *text = dsv3_read_file_max(manifest_path, DSV3_READ_MAX_JSON, "a data manifest", &size);
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
    uint64_t run_id;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "dsv3-token-shards") != 0) {
        dsv3_errorf("%s: not a dsv3 data manifest (\"format\" should be \"dsv3-token-shards\")", manifest_path);
        goto fail;
    }
    if (!(v = jget_range(man, "version", 1, 0, 1e9, manifest_path, ""))) goto fail;
    if (v->valuedouble != DSV3_MANIFEST_VERSION) {
        dsv3_errorf("%s: manifest version %.0f, expected %d%s", manifest_path, v->valuedouble, DSV3_MANIFEST_VERSION,
                    v->valuedouble < DSV3_MANIFEST_VERSION ? " (written by an older dsv3: run data prepare again)" : "");
        goto fail;
    }
    if (jget_hex64(man, "run_id", manifest_path, "", &run_id)) goto fail;
    snprintf(d->run_id, sizeof d->run_id, "%016llx", (unsigned long long)run_id);
    if (!(v = jget_range(man, "generation", 1, 1, 9007199254740992.0, manifest_path, ""))) goto fail;
    d->generation = (uint64_t)v->valuedouble;
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
    const cJSON *split_rows = jget_range(js, "rows", 1, 0, 9007199254740992.0, manifest_path, split);
    if (!split_rows) goto fail;
    const cJSON *packing = cJSON_GetObjectItemCaseSensitive(man, "packing");
    if (!cJSON_IsString(packing) || (strcmp(packing->valuestring, "bestfit") && strcmp(packing->valuestring, "concat"))) {
        dsv3_errorf("%s: \"packing\" must be \"bestfit\" or \"concat\"", manifest_path);
        goto fail;
    }
    int bestfit = strcmp(packing->valuestring, "bestfit") == 0;
    d->pad_id = -1;
    if (bestfit) {
        if (!(v = jget_range(tk, "pad_id", 1, 0, d->vocab - 1.0, manifest_path, "tokenizer"))) goto fail;
        d->pad_id = (int64_t)v->valuedouble;
    }
    const uint32_t want_pad = bestfit ? (uint32_t)d->pad_id : 0xFFFFFFFFu;
    d->nshards = cJSON_GetArraySize(shards);
    d->maps = dsv3_calloc((size_t)d->nshards + 1, sizeof *d->maps);
    d->first_row = dsv3_calloc((size_t)d->nshards + 1, sizeof *d->first_row);
    d->digest = fnv_u64(FNV_INIT, run_id);
    for (int i = 0; i < d->nshards; i++) {
        const cJSON *sh = cJSON_GetArrayItem(shards, i), *f, *rows;
        uint64_t ck, sample;
        if (!(f = jget(sh, "file", 0, manifest_path, split)) ||
            !(rows = jget_range(sh, "rows", 1, 0, 9007199254740992.0, manifest_path, split)) ||
            jget_hex64(sh, "fnv1a64", manifest_path, split, &ck) ||
            jget_hex64(sh, "sample_fnv1a64", manifest_path, split, &sample))
            goto fail;
        const char *fn = f->valuestring;
        if (!*fn || strchr(fn, '/') || fn[0] == '.') {
            dsv3_errorf("%s: %s: shard file name \"%s\" must be a plain file name in the manifest's folder",
                        manifest_path, split, fn);
            goto fail;
        }
        char *path = dsv3_path_join(*dir ? dir : ".", fn);
        int bad = dsv3_mmap_open(&d->maps[i], path);
        dsv3_shard_header h;
        if (!bad) bad = dsv3_shard_parse_header(d->maps[i].data, d->maps[i].size, path, &h);
        if (!bad && (h.seq_len != d->seq_len || h.vocab_size != d->vocab || h.rows != (uint64_t)rows->valuedouble ||
                     h.pad_id != want_pad))
            bad = dsv3_errorf("%s: header (seq_len %u, vocab %u, rows %llu, pad id %u) disagrees with %s (seq_len %u, "
                              "vocab %u, rows %.0f, pad id %u)", path, h.seq_len, h.vocab_size,
                              (unsigned long long)h.rows, h.pad_id, manifest_path, d->seq_len, d->vocab,
                              rows->valuedouble, want_pad);
        if (!bad && h.run_id != run_id)
            bad = dsv3_errorf("%s: shard of another run (run id %016llx, the manifest's is %s): the folder mixes files "
                              "of two runs", path, (unsigned long long)h.run_id, d->run_id);
        if (!bad && h.checksum != ck)
            bad = dsv3_errorf("%s: payload checksum %016llx in its header differs from the manifest's %016llx: not the "
                              "shard this manifest lists (replaced or mixed)", path, (unsigned long long)h.checksum,
                              (unsigned long long)ck);
        if (!bad && dsv3_shard_sample_checksum(d->maps[i].data, d->maps[i].data + DSV3_SHARD_HEADER_BYTES,
                                               (size_t)h.tokens * 4) != sample)
            bad = dsv3_errorf("%s: sampled checksum differs from the manifest's: the file is corrupted or was "
                              "replaced", path);
        if (!bad && verify &&
            dsv3_fnv1a64(d->maps[i].data + DSV3_SHARD_HEADER_BYTES, (size_t)h.tokens * 4) != ck)
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
        d->digest = fnv_u64(fnv_u64(d->digest, h.rows), ck);
    }
    if (d->first_row[d->nshards] != (uint64_t)split_rows->valuedouble) {
        dsv3_errorf("%s: %s: \"rows\" is %.0f but its shards hold %llu rows", manifest_path, split,
                    split_rows->valuedouble, (unsigned long long)d->first_row[d->nshards]);
        goto fail;
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

dsv3_data *dsv3_data_open(const char *path, const char *split, int verify) {
    const uint32_t one = 1;
    if (*(const unsigned char *)&one != 1) { // rows are handed out as pointers into little-endian shards
        dsv3_errorf("%s: the shard reader needs a little-endian host", path);
        return NULL;
    }
    struct stat sb;
    char *man = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? dsv3_path_join(path, "manifest.json") : dsv3_strdup(path);
    dsv3_data *d = NULL;
    // A writer may publish a new manifest (and remove the old shards) while we open the old one:
    // if the manifest changed meanwhile, open the new one.
    for (int attempt = 0; attempt < 3 && !d; attempt++) {
        struct stat a, b;
        int had = stat(man, &a) == 0;
        d = data_open_once(man, split, verify);
        if (d || !had || stat(man, &b) != 0 || (a.st_ino == b.st_ino && a.st_dev == b.st_dev)) break;
    }
    free(man);
    return d;
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
int dsv3_data_num_shards(const dsv3_data *d) { return d->nshards; }
const char *dsv3_data_run_id(const dsv3_data *d) { return d->run_id; }
uint64_t dsv3_data_generation(const dsv3_data *d) { return d->generation; }
uint64_t dsv3_data_digest(const dsv3_data *d) { return d->digest; }

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
