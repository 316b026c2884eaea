// Tokenizer tests: exact ids and decodes against HF `tokenizers` fixtures (tools/ref/make_tokenizer_cases.py),
// byte round-trips for invalid UTF-8, hostile tokenizer.json files, and API details.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "tokenizer/tokenizer.h"
#include <cjson/cJSON.h>
#include <stdint.h>
#include <time.h>

static const char *TOK_PATH = "models/deepseek-v3/tokenizer.json";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Runs every case of a JSONL fixture: {"text", "ids", optional "decoded" (HF decode, lossy)}.
// Returns the number of cases; counts mismatches in *bad.
typedef struct {
    const char *base;
    size_t ends[4096];
    size_t n;
} ends_acc;
static void acc_end(const char *p, size_t len, void *ctx) {
    ends_acc *a = ctx;
    if (a->n < 4096) a->ends[a->n] = (size_t)(p - a->base) + len;
    a->n++;
}

// has_decodes: 1 = the fixture records HF decodes ("decoded" / "decoded_skip" present only when they
// differ from the text); 0 = only decode(encode(text)) == text is checked; -1 = ids only (tokenizers
// whose decode is not the identity, e.g. add_prefix_space).
// ids_key: which field holds the expected ids for this tokenizer.
static int run_cases_key(const dsv3_tokenizer *t, const char *path, const char *ids_key, int has_decodes, int *bad) {
    size_t len;
    char *data = dsv3_read_file(path, &len);
    CHECK(data != NULL, "cannot read %s: %s", path, dsv3_error());
    if (!data) return 0;
    int ncase = 0;
    *bad = 0;
    char *line = data;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (*line) {
            cJSON *c = cJSON_Parse(line);
            const cJSON *text = cJSON_GetObjectItem(c, "text"), *ids = cJSON_GetObjectItem(c, ids_key);
            const cJSON *dec = cJSON_GetObjectItem(c, "decoded"), *decs = cJSON_GetObjectItem(c, "decoded_skip");
            if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) {
                CHECK(0, "%s: case %d is malformed", path, ncase);
                (*bad)++;
            } else {
                int32_t *got;
                size_t n;
                const char *tx = text->valuestring;
                size_t tl = strlen(tx);
                char *hexbuf = NULL;
                const cJSON *hex = cJSON_GetObjectItem(c, "text_hex");
                if (cJSON_IsString(hex)) { // text with U+0000: exact bytes
                    tl = strlen(hex->valuestring) / 2;
                    hexbuf = malloc(tl + 1);
                    for (size_t i = 0; i < tl; i++) {
                        unsigned v;
                        sscanf(hex->valuestring + 2 * i, "%2x", &v);
                        hexbuf[i] = (char)v;
                    }
                    tx = hexbuf;
                }
                const cJSON *pe = cJSON_GetObjectItem(c, "piece_ends");
                if (cJSON_IsArray(pe)) { // built-in DeepSeek-V3 pre-tokenizer vs HF pre_tokenize_str
                    static ends_acc ea;
                    ea.base = tx;
                    ea.n = 0;
                    int pok = dsv3_pretokenize_deepseek_v3(tx, tl, acc_end, &ea) == 0 &&
                              ea.n == (size_t)cJSON_GetArraySize(pe);
                    const cJSON *e = pe->child;
                    for (size_t i = 0; pok && i < ea.n; i++, e = e->next) pok = ea.ends[i] == (size_t)e->valuedouble;
                    if (!pok) {
                        (*bad)++;
                        fprintf(stderr, "pre-tokenizer pieces differ from HF: %s case %d\n", path, ncase);
                    }
                }
                int ok = dsv3_tokenizer_encode(t, tx, tl, 0, &got, &n) == 0;
                ok = ok && n == (size_t)cJSON_GetArraySize(ids);
                const cJSON *e = ids->child; // linked list: walk it (GetArrayItem is O(i))
                for (size_t i = 0; ok && i < n; i++, e = e->next) ok = got[i] == e->valueint;
                if (!ok) {
                    (*bad)++;
                    if (*bad <= 5) {
                        fprintf(stderr, "mismatch %s case %d text=\"%.80s\" (%zu bytes)\n got:", path, ncase, tx, tl);
                        for (size_t i = 0; i < n && i < 30; i++) fprintf(stderr, " %d", got[i]);
                        fprintf(stderr, "\n want:");
                        for (int i = 0; i < cJSON_GetArraySize(ids) && i < 30; i++)
                            fprintf(stderr, " %d", cJSON_GetArrayItem(ids, i)->valueint);
                        fprintf(stderr, "\n");
                    }
                } else if (has_decodes >= 0) {
                    // decode: raw decode gives back the text; lossy decode equals HF decode
                    size_t dl;
                    char *d = dsv3_tokenizer_decode(t, got, n, 0, &dl);
                    int dok = d && dl == tl && memcmp(d, tx, tl) == 0;
                    free(d);
                    // HF decode (lossy UTF-8) without and with skip_special_tokens; absent = equals text
                    for (int skip = 0; skip < 1 + has_decodes; skip++) {
                        const cJSON *want = skip ? decs : dec;
                        const char *w = cJSON_IsString(want) ? want->valuestring : tx;
                        size_t wl = cJSON_IsString(want) ? strlen(w) : tl;
                        d = dsv3_tokenizer_decode_lossy(t, got, n, skip, &dl);
                        dok = dok && d && dl == wl && memcmp(d, w, dl) == 0;
                        free(d);
                    }
                    if (!dok) {
                        (*bad)++;
                        fprintf(stderr, "decode mismatch %s case %d\n", path, ncase);
                    }
                }
                free(got);
                free(hexbuf);
            }
            cJSON_Delete(c);
            ncase++;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    return ncase;
}

static int run_cases(const dsv3_tokenizer *t, const char *path, int has_decodes, int *bad) {
    return run_cases_key(t, path, "ids", has_decodes, bad);
}

// ---- pieces -------------------------------------------------------------------------------------
typedef struct {
    char buf[4096];
    size_t len, npieces;
    int ok;
} piece_acc;
static void acc_piece(const char *p, size_t len, void *ctx) {
    piece_acc *a = ctx;
    if (len == 0) a->ok = 0;
    if (a->len + len + 1 < sizeof a->buf) {
        memcpy(a->buf + a->len, p, len);
        a->len += len;
        a->buf[a->len++] = '|';
    }
    a->npieces++;
}

static void test_pretokenizer(const dsv3_tokenizer *t) {
    // The hard-coded DeepSeek-V3 patterns (used by the BPE trainer) are the ones in tokenizer.json.
    size_t len;
    char *json = dsv3_read_file(TOK_PATH, &len);
    cJSON *root = cJSON_Parse(json);
    const cJSON *steps = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "pre_tokenizer"), "pretokenizers");
    for (int i = 0; i < 3; i++) {
        const cJSON *re = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, i), "pattern"), "Regex");
        CHECK(cJSON_IsString(re) && strcmp(re->valuestring, dsv3_pretokenize_deepseek_v3_pattern(i)) == 0,
              "DeepSeek-V3 pattern %d differs from %s", i, TOK_PATH);
    }
    cJSON_Delete(root);
    free(json);
    // Pieces: expected splits from HF (Tokenizer.pre_tokenizer.pre_tokenize_str, mapped back from byte-level).
    struct { const char *in, *want; } cases[] = {
        {"Hello, world!", "Hello|,| world|!|"},
        {"12345 abc", "123|45| abc|"},
        {"中文abc日本語です", "中文|abc|日本語です|"},
        {"a  \n\n b", "a|  \n\n| b|"},
        {"x\xff\xfey", "x|\xff|\xfe|y|"},  // invalid bytes: own pieces
        {"", ""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        piece_acc a = {.ok = 1}, b = {.ok = 1};
        CHECK(dsv3_pretokenize_deepseek_v3(cases[k].in, strlen(cases[k].in), acc_piece, &a) == 0, "pretokenize");
        CHECK(dsv3_tokenizer_pretokenize(t, cases[k].in, strlen(cases[k].in), acc_piece, &b) == 0, "pretokenize");
        a.buf[a.len] = 0;
        b.buf[b.len] = 0;
        CHECK(a.ok && strcmp(a.buf, cases[k].want) == 0, "pieces of \"%s\": got \"%s\" want \"%s\"", cases[k].in, a.buf,
              cases[k].want);
        CHECK(strcmp(a.buf, b.buf) == 0, "built-in and loaded pre-tokenizers differ on \"%s\"", cases[k].in);
    }
}

// ---- invalid UTF-8, BOS, API ----------------------------------------------------------------------
static void test_bytes_roundtrip(const dsv3_tokenizer *t) {
    // Every byte value alone, and random byte strings (many invalid UTF-8), round-trip exactly.
    uint64_t rng = 88172645463325252ull;
    for (int k = 0; k < 2000; k++) {
        unsigned char buf[200];
        size_t len = k < 256 ? 1 : 1 + (size_t)(rng % 199);
        for (size_t i = 0; i < len; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            buf[i] = k < 256 ? (unsigned char)k : (unsigned char)(rng >> 24);
            if (k >= 1000 && (rng & 3)) buf[i] &= 0x7F; // mostly ASCII with stray high bytes
        }
        int32_t *ids;
        size_t n, dl;
        int ok = dsv3_tokenizer_encode(t, (const char *)buf, len, 0, &ids, &n) == 0;
        char *d = ok ? dsv3_tokenizer_decode(t, ids, n, 0, &dl) : NULL;
        ok = ok && d && dl == len && memcmp(d, buf, len) == 0;
        if (!ok) {
            CHECK(0, "byte round-trip failed for case %d (%zu bytes)", k, len);
            free(ids), free(d);
            return;
        }
        free(ids), free(d);
    }
    CHECK(1, "bytes round-trip");
    // An invalid byte gets its byte-level token; its neighbours are tokenized as if it were a boundary.
    int32_t *ids;
    size_t n;
    CHECK(dsv3_tokenizer_encode(t, "\xff", 1, 0, &ids, &n) == 0 && n == 1 &&
              ids[0] == dsv3_tokenizer_token_to_id(t, dsv3_byte_to_unicode(0xff)), "lone 0xff");
    free(ids);
    // Lossy decode of an incomplete sequence: one U+FFFD per maximal subpart (Rust from_utf8_lossy).
    int32_t e2 = dsv3_tokenizer_token_to_id(t, dsv3_byte_to_unicode(0xE2)),
            x82 = dsv3_tokenizer_token_to_id(t, dsv3_byte_to_unicode(0x82)),
            a = dsv3_tokenizer_token_to_id(t, "a");
    int32_t seq[] = {e2, x82, a, x82};
    size_t dl;
    char *d = dsv3_tokenizer_decode_lossy(t, seq, 4, 0, &dl);
    CHECK(d && strcmp(d, "\xef\xbf\xbd" "a" "\xef\xbf\xbd") == 0, "lossy decode: got \"%s\"", d ? d : "(null)");
    free(d);
}

static void test_api(const dsv3_tokenizer *t) {
    CHECK(dsv3_tokenizer_vocab_size(t) == 128815, "vocab size %d", dsv3_tokenizer_vocab_size(t));
    CHECK(dsv3_tokenizer_bos_id(t) == 0 && dsv3_tokenizer_eos_id(t) == 1, "bos %d eos %d", dsv3_tokenizer_bos_id(t),
          dsv3_tokenizer_eos_id(t));
    CHECK(dsv3_tokenizer_token_to_id(t, "<\xef\xbd\x9cUser\xef\xbd\x9c>") == 128803, "User id");
    CHECK(dsv3_tokenizer_token_to_id(t, "no such token here") == -1, "absent token");
    CHECK(dsv3_tokenizer_is_special(t, 0) && !dsv3_tokenizer_is_special(t, 128803), "special flags");
    int32_t *ids;
    size_t n;
    // BOS only when asked; ids from tests/fixtures/tokenizer/deepseek-v3-cases.jsonl ("Hello, world!")
    CHECK(dsv3_tokenizer_encode(t, "Hello, world!", 13, 1, &ids, &n) == 0 && n == 5 && ids[0] == 0 && ids[1] == 19923 &&
              ids[4] == 3, "encode with BOS");
    free(ids);
    CHECK(dsv3_tokenizer_encode(t, "", 0, 0, &ids, &n) == 0 && n == 0 && ids != NULL, "empty input");
    free(ids);
    CHECK(dsv3_tokenizer_encode(t, "", 0, 1, &ids, &n) == 0 && n == 1 && ids[0] == 0, "empty input + BOS");
    free(ids);
    int32_t bad[] = {5, 128815};
    size_t dl;
    CHECK(dsv3_tokenizer_decode(t, bad, 2, 0, &dl) == NULL && strstr(dsv3_error(), "128815"), "bad id: %s", dsv3_error());
    int32_t neg[] = {-1};
    CHECK(dsv3_tokenizer_decode(t, neg, 1, 0, &dl) == NULL, "negative id");
    // skip_special drops BOS/EOS but keeps <｜User｜> (special=false)
    int32_t sp[] = {0, 128803, 19923, 1};
    char *d = dsv3_tokenizer_decode(t, sp, 4, 1, &dl);
    CHECK(d && strcmp(d, "<\xef\xbd\x9cUser\xef\xbd\x9c>Hello") == 0, "skip_special: %s", d ? d : "(null)");
    free(d);
    // Long input: 1 MB of one letter and 300 KB of spaces (deep BPE / long whitespace runs).
    size_t big = 1 << 20;
    char *s = malloc(big);
    memset(s, 'a', big);
    CHECK(dsv3_tokenizer_encode(t, s, big, 0, &ids, &n) == 0 && n > 0, "1 MB of 'a'");
    d = dsv3_tokenizer_decode(t, ids, n, 0, &dl);
    CHECK(d && dl == big && memcmp(d, s, big) == 0, "1 MB round trip");
    free(d), free(ids);
    memset(s, ' ', 300000);
    CHECK(dsv3_tokenizer_encode(t, s, 300000, 0, &ids, &n) == 0 && n > 0, "300 KB of spaces: %s", dsv3_error());
    free(ids);
    free(s);
    // byte alphabet
    CHECK(strcmp(dsv3_byte_to_unicode(' '), "\xc4\xa0") == 0 && strcmp(dsv3_byte_to_unicode('A'), "A") == 0 &&
              strcmp(dsv3_byte_to_unicode(0), "\xc4\x80") == 0, "byte_to_unicode");
    int allok = 1;
    for (int b = 0; b < 256; b++) {
        size_t used;
        const char *u = dsv3_byte_to_unicode((unsigned char)b);
        allok &= dsv3_unicode_to_byte(u, strlen(u), &used) == b && used == strlen(u);
    }
    CHECK(allok, "unicode_to_byte inverts byte_to_unicode");
}

// ---- hostile tokenizer.json ------------------------------------------------------------------------
static void test_hostile(void) {
#define PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
#define VOC "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"
    struct { const char *json, *err; } cases[] = {
        {"", "not valid JSON"},
        {"{", "not valid JSON"},
        {"[1,2]", "top level"},
        {"{}", "\"model\""},
        {"{\"model\":7}", "\"model\""},
        {"{\"model\":{\"type\":\"WordPiece\"}}", "unsupported model type \"WordPiece\""},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}}", "no pre_tokenizer"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}," PRE ",\"normalizer\":{\"type\":\"NFC\"}}",
         "unsupported normalizer type \"NFC\""},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
         "unsupported pre_tokenizer type \"Whitespace\""},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}," PRE ",\"decoder\":{\"type\":\"WordPiece\"}}",
         "unsupported decoder"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}," PRE "}", "model.vocab must be an object"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}," PRE "}", "integer id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}," PRE "}", "out-of-range"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}," PRE "}", "integer id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}," PRE "}", "integer id"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":\"x\"}," PRE "}", "model.merges must be an array"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[\"a c\"]}," PRE "}", "not in the vocab"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[\"b a\"]}," PRE "}", "merged token"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[\"ab\"]}," PRE "}", "separated by one space"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[[\"a\"]]}," PRE "}", "pair"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
         "{\"Regex\":\"(\"},\"behavior\":\"Isolated\",\"invert\":false}}", "cannot compile"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
         "{\"Regex\":\"a\"},\"behavior\":\"Removed\",\"invert\":false}}", "behavior"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}," PRE ",\"added_tokens\":[{\"id\":99999999999,"
         "\"content\":\"x\"}]}", "added_tokens[0]"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}," PRE ",\"added_tokens\":[{\"id\":3,\"content\":\"x\","
         "\"lstrip\":true}]}", "not supported"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[],\"dropout\":0.1}," PRE "}", "dropout"},
        {"{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[]}," PRE ",\"truncation\":{\"max_length\":5}}", "truncation"},
        // a NUL would silently cut the token "b\0c" to "b" (cJSON strings are NUL-terminated)
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\\u0000c\":1},\"merges\":[]}," PRE "}", "u0000"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}," PRE "}", "empty vocabulary"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4194304},\"merges\":[]}," PRE "}", "out-of-range"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dsv3_error_clear();
        dsv3_tokenizer *t = dsv3_tokenizer_load_json(cases[k].json, strlen(cases[k].json), "hostile.json");
        CHECK(t == NULL && strstr(dsv3_error(), "hostile.json") && strstr(dsv3_error(), cases[k].err),
              "hostile case %zu: want error with \"%s\", got %s \"%s\"", k, cases[k].err, t ? "a tokenizer" : "error",
              dsv3_error());
        dsv3_tokenizer_free(t);
    }
    {   // a raw NUL byte inside a JSON string: cJSON keeps it and strlen() would cut "b\0c" to "b"
        const char raw[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\0c\":1},\"merges\":[]}," PRE "}";
        dsv3_tokenizer *t = dsv3_tokenizer_load_json(raw, sizeof raw - 1, "rawnul.json");
        CHECK(t == NULL && strstr(dsv3_error(), "rawnul.json") && strstr(dsv3_error(), "NUL"),
              "raw NUL byte in tokenizer.json rejected (%s)", t ? "loaded" : dsv3_error());
        dsv3_tokenizer_free(t);
    }
    // A minimal valid one works (merges in both forms), and ids outside the vocab are rejected in decode.
    const char *ok = "{\"model\":{\"type\":\"BPE\"," VOC ",\"merges\":[[\"a\",\"b\"]]}," PRE "}";
    dsv3_tokenizer *t = dsv3_tokenizer_load_json(ok, strlen(ok), "ok.json");
    CHECK(t != NULL, "minimal tokenizer: %s", dsv3_error());
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK(dsv3_tokenizer_encode(t, "abz", 3, 0, &ids, &n) == 0 && n == 1 && ids[0] == 2,
              "bytes without a vocab entry are dropped (as HF without unk)");
        free(ids);
        CHECK(dsv3_tokenizer_encode(t, "ab", 2, 1, &ids, &n) == -1 && strstr(dsv3_error(), "BOS"), "no BOS token");
        dsv3_tokenizer_free(t);
    }
    CHECK(dsv3_tokenizer_load("tests/fixtures/tokenizer/no-such-file.json") == NULL && strstr(dsv3_error(), "no-such-file"),
          "missing file");
    {   // ignore_merges=true: a piece that is in the vocab is one token at any length. HF tokenizers 0.23.3
        // gives [1] for 300 x "a" with this file (vocab a:0, a*300:1, b:2, no merges); before the fix
        // pieces over 256 bytes skipped the vocab lookup and gave 300 x [0].
        char *j = malloc(1024);
        int off = snprintf(j, 1024, "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"a\":0,\"b\":2,\"");
        memset(j + off, 'a', 300);
        snprintf(j + off + 300, 1024 - (size_t)off - 300, "\":1},\"merges\":[]}," PRE "}");
        dsv3_tokenizer *im = dsv3_tokenizer_load_json(j, strlen(j), "ignore-merges.json");
        CHECK(im != NULL, "ignore_merges tokenizer: %s", dsv3_error());
        if (im) {
            char text[301];
            memset(text, 'a', 300);
            int32_t *ids;
            size_t n;
            CHECK(dsv3_tokenizer_encode(im, text, 300, 0, &ids, &n) == 0 && n == 1 && ids[0] == 1,
                  "ignore_merges: 300-byte piece in the vocab -> one token (got %zu ids)", n);
            free(ids);
            CHECK(dsv3_tokenizer_encode(im, text, 299, 0, &ids, &n) == 0 && n == 299 && ids[0] == 0,
                  "ignore_merges: piece not in the vocab -> BPE (no merges: bytes)");
            free(ids);
            dsv3_tokenizer_free(im);
        }
        free(j);
    }
#undef PRE
#undef VOC
}

static void test_gpt2_style(void) {
    const char *dir = FIXTURE("tokenizer/gpt2-style/");
    const char *files[] = {"tokenizer.json", "tokenizer-legacy-merges.json", "tokenizer-prefix-space.json",
                           "tokenizer-ignore-merges.json", "tokenizer-odd-added-ids.json"};
    const char *keys[] = {"ids", "ids", "ids_prefix", "ids_ignore_merges", "ids_odd_added"};
    char cases[512];
    snprintf(cases, sizeof cases, "%scases.jsonl", dir);
    for (int v = 0; v < 5; v++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", dir, files[v]);
        dsv3_tokenizer *t = dsv3_tokenizer_load(path);
        CHECK(t != NULL, "load %s: %s", path, dsv3_error());
        if (!t) continue;
        int bad = 0;
        // decodes are checked for the base tokenizer only (prefix space changes the text)
        int n = run_cases_key(t, cases, keys[v], v == 0 ? 1 : v == 2 ? -1 : 0, &bad);
        printf("%s: %d/%d cases exact\n", path, n - bad, n);
        CHECK(n > 0 && bad == 0, "%s: %d of %d cases differ", path, bad, n);
        dsv3_tokenizer_free(t);
    }
}

// Concurrent encodes (OpenMP threads share one tokenizer; each thread has its own BPE cache) give
// the same ids as serial ones.
static void test_threads(const dsv3_tokenizer *t) {
    size_t len;
    char *data = dsv3_read_file(FIXTURE("tokenizer/deepseek-v3-cases.jsonl"), &len);
    if (!data) return;
    enum { N = 64 };
    uint64_t serial[N], par[N];
    size_t chunk = len / N;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t *h = pass ? par : serial;
        #pragma omp parallel for num_threads(2) schedule(dynamic, 1) if (pass)
        for (int i = 0; i < N; i++) {
            int32_t *ids;
            size_t n;
            uint64_t x = 1469598103934665603ull;
            if (dsv3_tokenizer_encode(t, data + (size_t)i * chunk, chunk, 0, &ids, &n) == 0) {
                for (size_t k = 0; k < n; k++) x = (x ^ (uint32_t)ids[k]) * 1099511628211ull;
                free(ids);
            }
            h[i] = x;
        }
    }
    CHECK(memcmp(serial, par, sizeof serial) == 0, "parallel encode differs from serial");
    free(data);
}

int main(void) {
    double t0 = now_s();
    dsv3_tokenizer *t = dsv3_tokenizer_load(TOK_PATH);
    double load_s = now_s() - t0;
    CHECK(t != NULL, "load %s: %s", TOK_PATH, dsv3_error());
    if (!t) return test_report("test_tokenizer");
    printf("load %s: %.3f s\n", TOK_PATH, load_s);
    CHECK(load_s < 2.0, "loading took %.2f s", load_s);

    const char *sets[] = {FIXTURE("tokenizer/deepseek-v3-cases.jsonl"), FIXTURE("tokenizer/deepseek-v3-hf-cases.jsonl")};
    for (int s = 0; s < 2; s++) {
        if (s == 1 && !dsv3_file_exists(sets[s])) continue;
        int bad = 0;
        double t1 = now_s();
        int n = run_cases(t, sets[s], s == 1, &bad);
        printf("%s: %d/%d cases exact (%.2f s)\n", sets[s], n - bad, n, now_s() - t1);
        CHECK(n > 0 && bad == 0, "%s: %d of %d cases differ", sets[s], bad, n);
    }
    test_pretokenizer(t);
    test_bytes_roundtrip(t);
    test_api(t);
    test_threads(t);
    dsv3_tokenizer_free(t);
    test_hostile();
    test_gpt2_style();
    return test_report("test_tokenizer");
}
