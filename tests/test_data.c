// Data pipeline: documents, FIM layout (exact ids with the real DeepSeek-V3 tokenizer), packing
// (concat and best-fit), determinism (threads, batch sizes), streaming from files, the shuffle
// buffer, shard validation (corruption, mixed sets, hostile manifests), reruns and failed runs in
// the same folder, the folder lock, reader slicing.
#include "test.h"
#include "core/durable.h"
#include "core/error.h"
#include "core/fileio.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKENIZER "models/deepseek-v3/tokenizer.json"
// Ids from the DeepSeek-V3 tokenizer.json (spec/training.md §5.2, §5.4).
enum { BOS = 0, EOS = 1, PAD = 2, FIM_HOLE = 128800, FIM_BEGIN = 128801, FIM_END = 128802 };

static dsv3_tokenizer *tok;
static dsv3_data_special_ids ids;

typedef struct { int32_t *v; size_t n; } toks;
static toks enc(const char *s, size_t n) {
    toks t = {0};
    if (n) CHECK(dsv3_tokenizer_encode(tok, s, n, 0, &t.v, &t.n) == 0, "encode: %s", dsv3_error());
    return t;
}

// Append `t` to (*out, *n) at position *at and check equality.
static int match_at(const int32_t *got, size_t ngot, size_t *at, const int32_t *want, size_t nwant) {
    if (*at + nwant > ngot || (nwant && memcmp(got + *at, want, nwant * 4) != 0)) return 0;
    *at += nwant;
    return 1;
}

static size_t count_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

// Byte offset of character k (valid UTF-8 input).
static size_t char_off(const char *s, size_t k) {
    size_t i = 0, c = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == k) return i;
            c++;
        }
    }
    return i;
}

static void test_fim(void) {
    CHECK(ids.bos == BOS && ids.eos == EOS && ids.pad == PAD, "BOS/EOS/PAD = 0/1/2 (got %d %d %d)", ids.bos, ids.eos,
          ids.pad);
    CHECK(ids.fim_hole == FIM_HOLE && ids.fim_begin == FIM_BEGIN && ids.fim_end == FIM_END, "FIM ids 128800..128802");
    const char *text = "Caf\xc3\xa9 na\xc3\xafve: \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text, with 12345 digits and \xf0\x9f\x98\x80!";
    size_t len = strlen(text), nch = count_chars(text);
    // Not FIM (u_fim >= rate): [BOS] text [EOS]
    int32_t *out;
    size_t n;
    int fim = -1;
    CHECK(dsv3_data_encode_document(tok, &ids, text, len, 1, 0.1, 0.5, 0.2, 0.7, &out, &n, &fim) == 0, "encode doc");
    toks whole = enc(text, len);
    size_t at = 0;
    int32_t b = BOS, e = EOS;
    CHECK(fim == 0 && match_at(out, n, &at, &b, 1) && match_at(out, n, &at, whole.v, whole.n) &&
              match_at(out, n, &at, &e, 1) && at == n, "plain document = BOS text EOS");
    free(out);
    // FIM at several cut draws, including cuts inside multi-byte characters' range and empty parts.
    const double cuts[][2] = {{0.2, 0.7}, {0.7, 0.2}, {0.0, 0.0}, {0.999, 0.999}, {0.0, 0.999}, {0.11, 0.12}};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        CHECK(dsv3_data_encode_document(tok, &ids, text, len, 1, 0.1, 0.05, cuts[k][0], cuts[k][1], &out, &n, &fim) == 0,
              "encode fim");
        size_t c1 = (size_t)(cuts[k][0] * (nch + 1)), c2 = (size_t)(cuts[k][1] * (nch + 1));
        if (c1 > c2) { size_t t = c1; c1 = c2; c2 = t; }
        size_t b1 = char_off(text, c1), b2 = char_off(text, c2);
        toks pre = enc(text, b1), mid = enc(text + b1, b2 - b1), suf = enc(text + b2, len - b2);
        int32_t fb = FIM_BEGIN, fh = FIM_HOLE, fe = FIM_END;
        at = 0;
        int ok = fim == 1 && match_at(out, n, &at, &b, 1) && match_at(out, n, &at, &fb, 1) &&
                 match_at(out, n, &at, pre.v, pre.n) && match_at(out, n, &at, &fh, 1) &&
                 match_at(out, n, &at, suf.v, suf.n) && match_at(out, n, &at, &fe, 1) &&
                 match_at(out, n, &at, mid.v, mid.n) && match_at(out, n, &at, &e, 1) && at == n;
        CHECK(ok, "FIM cut %zu: BOS fim_begin prefix fim_hole suffix fim_end middle EOS", k);
        // Decoding gives the PSM text, and prefix + middle + suffix is the document.
        size_t dl;
        char *dec = dsv3_tokenizer_decode(tok, out, n, 0, &dl);
        char want[512];
        snprintf(want, sizeof want,
                 "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><\xef\xbd\x9c" "fim\xe2\x96\x81"
                 "begin\xef\xbd\x9c>%.*s<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>%.*s<\xef\xbd\x9c" "fim\xe2\x96\x81"
                 "end\xef\xbd\x9c>%.*s<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                 (int)b1, text, (int)(len - b2), text + b2, (int)(b2 - b1), text + b1);
        CHECK(dec && dl == strlen(want) && memcmp(dec, want, dl) == 0, "FIM cut %zu decodes to PSM text", k);
        free(dec);
        free(out), free(pre.v), free(mid.v), free(suf.v);
    }
    // no BOS
    CHECK(dsv3_data_encode_document(tok, &ids, text, len, 0, 1.0, 0.5, 0.3, 0.6, &out, &n, &fim) == 0 && fim == 1 &&
              out[0] == FIM_BEGIN && out[n - 1] == EOS, "FIM without BOS starts with fim_begin");
    free(out);
    free(whole.v);
}

static void test_documents(void) {
    dsv3_doclist dl = {0};
    CHECK(dsv3_doclist_read(&dl, FIXTURE("data/devil-sample.jsonl")) == 0, "read jsonl: %s", dsv3_error());
    CHECK(dl.n == 63, "63 documents, got %zu", dl.n);
    CHECK(dl.n && strncmp(dl.docs[0].text, "ABASEMENT, n.", 13) == 0, "first document text");
    CHECK(dl.n == 63 && strcmp(dl.docs[62].text, "Short.") == 0, "last document text");
    CHECK(dsv3_doclist_read(&dl, FIXTURE("data/plain.txt")) == 0, "read txt");
    CHECK(dl.n == 64 && dl.docs[63].len == 97, "a plain file is one document (%zu bytes)", dl.n ? dl.docs[dl.n - 1].len : 0);
    dsv3_doclist_free(&dl);
    CHECK(dsv3_doclist_read(&dl, FIXTURE("data/bad-field.jsonl")) == -1 && strstr(dsv3_error(), "bad-field.jsonl:2"),
          "bad field names file:line (%s)", dsv3_error());
    CHECK(dsv3_doclist_read(&dl, FIXTURE("data/bad-json.jsonl")) == -1 && strstr(dsv3_error(), "bad-json.jsonl:3"),
          "bad JSON names file:line (%s)", dsv3_error());
    CHECK(dl.n == 0, "failed reads leave no documents");
    {   // a NUL character would silently cut the text: rejected
        char path[] = "/tmp/dsv3_test_nul_XXXXXX.jsonl";
        int fd = mkstemps(path, 6);
        const char *line = "{\"text\": \"ok\"}\n{\"text\": \"a\\u0000b\"}\n{\"text\": \"a\\\\u0000b\"}\n";
        CHECK(fd >= 0 && write(fd, line, strlen(line)) == (ssize_t)strlen(line), "write temp jsonl");
        close(fd);
        CHECK(dsv3_doclist_read(&dl, path) == -1 && strstr(dsv3_error(), ":2:") && strstr(dsv3_error(), "u0000"),
              "\\u0000 rejected with file:line (%s)", dsv3_error());
        // a raw NUL byte inside the string (cJSON accepts it, strlen would cut the text): rejected too
        const char raw[] = "{\"text\": \"ok\"}\n{\"text\": \"a\0b\"}\n";
        fd = open(path, O_WRONLY | O_TRUNC);
        CHECK(fd >= 0 && write(fd, raw, sizeof raw - 1) == (ssize_t)(sizeof raw - 1), "write temp jsonl");
        close(fd);
        CHECK(dsv3_doclist_read(&dl, path) == -1 && strstr(dsv3_error(), ":2:") && strstr(dsv3_error(), "NUL"),
              "raw NUL byte rejected with file:line (%s)", dsv3_error());
        unlink(path);
    }
    {   // a second object or stray bytes after the object would be silently dropped: rejected.
        // Whitespace-only lines (spaces, tabs, CRLF) are blank lines and skipped.
        char path[] = "/tmp/dsv3_test_trail_XXXXXX.jsonl";
        int fd = mkstemps(path, 6);
        const char *text = "{\"text\": \"a\"}\r\n \t\r\n{\"text\": \"b\"} \r\n{\"text\": \"c\"}{\"text\": \"d\"}\n";
        CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write temp jsonl");
        close(fd);
        CHECK(dsv3_doclist_read(&dl, path) == -1 && strstr(dsv3_error(), ":4:") && strstr(dsv3_error(), "after the JSON"),
              "two objects on one line rejected with file:line (%s)", dsv3_error());
        CHECK(dl.n == 0, "no documents from the failed file");
        fd = open(path, O_WRONLY | O_TRUNC);
        size_t keep = strlen(text) - strlen("{\"text\": \"c\"}{\"text\": \"d\"}\n");
        CHECK(fd >= 0 && write(fd, text, keep) == (ssize_t)keep, "rewrite temp jsonl");
        close(fd);
        CHECK(dsv3_doclist_read(&dl, path) == 0, "CRLF and blank lines: %s", dsv3_error());
        CHECK(dl.n == 2 && dl.docs[0].len == 1 && dl.docs[0].text[0] == 'a' && dl.docs[1].len == 1 &&
              dl.docs[1].text[0] == 'b', "CRLF lines give their texts, blank lines skipped (%zu docs)", dl.n);
        unlink(path);
    }
    dsv3_doclist_free(&dl);
}

static char *tmpdir(void) {
    char t[] = "/tmp/dsv3_test_data_XXXXXX";
    CHECK(mkdtemp(t) != NULL, "mkdtemp");
    return dsv3_strdup(t);
}

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = dsv3_read_file(a, &na), *y = dsv3_read_file(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return eq;
}

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "warning: could not remove %s\n", dir);
}

// Sorted names of the files in dir (hidden ones included, . and .. excluded), joined by '\n'.
static char *dir_listing(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    FILE *p = popen(cmd, "r");
    char *out = calloc(1, 65536);
    size_t n = p ? fread(out, 1, 65535, p) : 0;
    out[n] = 0;
    if (p) pclose(p);
    return out;
}

// Every file of a and b (same names) byte-identical; returns the number of files, -1 if they differ.
static int dirs_identical(const char *a, const char *b) {
    char *la = dir_listing(a), *lb = dir_listing(b);
    int n = strcmp(la, lb) == 0 ? 0 : -1;
    for (char *s = la, *e; n >= 0 && *s; s = e + 1) {
        e = strchr(s, '\n');
        if (!e) break;
        *e = 0;
        char *x = dsv3_path_join(a, s), *y = dsv3_path_join(b, s);
        if (files_equal(x, y)) n++;
        else n = -1;
        free(x), free(y);
    }
    free(la), free(lb);
    return n;
}

static int exists(const char *dir, const char *name) {
    char *p = dsv3_path_join(dir, name);
    struct stat sb;
    int r = stat(p, &sb) == 0;
    free(p);
    return r;
}

// Rows of a split in the order they were written (shard files g<gen>-<split>-00000.bin, -00001, ...;
// the manifest lists them in a shuffled order). *n gets the number of rows.
static uint32_t *rows_in_write_order(const char *dir, uint64_t gen, const char *split, int L, uint64_t *n) {
    uint32_t *all = NULL;
    *n = 0;
    for (int s = 0;; s++) {
        char name[64];
        snprintf(name, sizeof name, "g%llu-%s-%05d.bin", (unsigned long long)gen, split, s);
        char *p = dsv3_path_join(dir, name);
        dsv3_mmap m;
        int bad = dsv3_mmap_open(&m, p);
        free(p);
        if (bad) break;
        dsv3_shard_header h;
        CHECK(dsv3_shard_parse_header(m.data, m.size, name, &h) == 0, "shard %s: %s", name, dsv3_error());
        all = realloc(all, (*n + h.rows) * (L + 1) * 4 + 4);
        memcpy(all + *n * (L + 1), m.data + DSV3_SHARD_HEADER_BYTES, h.rows * (L + 1) * 4);
        *n += h.rows;
        dsv3_mmap_close(&m);
    }
    return all;
}

// The fixture's documents.
static void make_docs(dsv3_doclist *dl) {
    CHECK(dsv3_doclist_read(dl, FIXTURE("data/devil-sample.jsonl")) == 0, "read docs");
}

static void test_prepare(int bestfit) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    const int L = 64;
    char *d1 = tmpdir(), *d2 = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d1, .seq_len = L, .fim_rate = 0.3,
                                .val_fraction = 0.2, .seed = 7, .add_bos = 1, .bestfit = bestfit, .shard_rows = 10,
                                .shuffle_tokens = -1, .threads = 1};
    dsv3_data_prepare_stats st, st2;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare: %s", dsv3_error());
    o.out_dir = d2, o.threads = 2;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st2) == 0, "prepare again: %s", dsv3_error());
    // Determinism: identical bytes whatever the thread count.
    int nf = dirs_identical(d1, d2);
    CHECK(nf >= 4, "every file identical across runs (1 vs 2 threads): %d", nf);
    CHECK(exists(d1, "g1-train-00000.bin") && exists(d1, "g1-train-00001.bin") && exists(d1, "g1-val-00000.bin") &&
              exists(d1, "manifest.json"), "generation-1 shard names and manifest");
    CHECK(strlen(st.run_id) == 16 && strcmp(st.run_id, st2.run_id) == 0 && st.generation == 1, "run id %s, gen %llu",
          st.run_id, (unsigned long long)st.generation);
    CHECK(st.documents[0] + st.documents[1] == dl.n, "every document in one split");
    CHECK(st.documents[1] > 0 && st.documents[0] > st.documents[1], "val has some documents (%llu)",
          (unsigned long long)st.documents[1]);
    CHECK(st.fim_documents[0] + st.fim_documents[1] > 0, "some documents FIM'd");

    // Re-encode every document the same way to know the expected token sequences.
    size_t nd = dl.n;
    toks *doc = calloc(nd, sizeof *doc);
    int *split = calloc(nd, sizeof *split);
    for (size_t d = 0; d < nd; d++) {
        split[d] = dsv3_data_uniform(7, d, 0) < 0.2;
        CHECK(dsv3_data_encode_document(tok, &ids, dl.docs[d].text, dl.docs[d].len, 1, 0.3,
                                        dsv3_data_uniform(7, d, 1), dsv3_data_uniform(7, d, 2),
                                        dsv3_data_uniform(7, d, 3), &doc[d].v, &doc[d].n, NULL) == 0, "re-encode");
    }
    for (int sp = 0; sp < 2; sp++) {
        dsv3_data *r = dsv3_data_open(d1, sp ? "val" : "train", 1); // the folder works as well as its manifest
        CHECK(r != NULL, "open %s: %s", sp ? "val" : "train", dsv3_error());
        if (!r) continue;
        uint64_t rows = dsv3_data_num_rows(r);
        CHECK(rows == st.rows[sp], "rows %llu", (unsigned long long)rows);
        CHECK(dsv3_data_seq_len(r) == L && dsv3_data_vocab_size(r) == dsv3_tokenizer_vocab_size(tok), "header fields");
        CHECK(dsv3_data_pad_id(r) == (bestfit ? PAD : -1), "pad id");
        CHECK(strcmp(dsv3_data_run_id(r), st.run_id) == 0 && dsv3_data_generation(r) == 1, "run id and generation");
        uint64_t expect_tokens = 0;
        for (size_t d = 0; d < nd; d++)
            if (split[d] == sp) expect_tokens += doc[d].n;
        CHECK(expect_tokens == st.doc_tokens[sp], "document tokens");
        const int C = L + 1;
        int *used = calloc(nd, sizeof *used);
        if (bestfit) {
            // Each row: whole chunks then PAD. Documents <= C tokens must appear whole in one row.
            uint64_t real = 0, pads = 0;
            int bad_tail = 0;
            for (uint64_t i = 0; i < rows; i++) {
                const uint32_t *row = dsv3_data_row(r, i);
                int j = C;
                while (j > 0 && row[j - 1] == PAD) j--;
                for (int k = 0; k < j; k++) bad_tail += row[k] == PAD; // PAD only at the end of a row
                real += j, pads += C - j;
            }
            CHECK(bad_tail == 0, "PAD only fills the end of rows");
            CHECK(real == expect_tokens && pads == st.pad_tokens[sp], "non-pad tokens = document tokens");
            CHECK(rows == 0 || (real + C - 1) / C <= rows, "rows >= lower bound");
            int missing = 0;
            for (size_t d = 0; d < nd; d++) {
                if (split[d] != sp || doc[d].n > (size_t)C) continue;
                int found = 0;
                for (uint64_t i = 0; i < rows && !found; i++) {
                    const uint32_t *row = dsv3_data_row(r, i);
                    for (int k = 0; k + (int)doc[d].n <= C && !found; k++) {
                        int eq = 1;
                        for (size_t q = 0; q < doc[d].n && eq; q++) eq = row[k + q] == (uint32_t)doc[d].v[q];
                        found = eq;
                    }
                }
                missing += !found;
            }
            CHECK(missing == 0, "%d short documents not found whole inside one row", missing);
        } else {
            // In write order, rows overlap by one token; the stream is the split's documents in some
            // order, each ending with EOS, the last one possibly cut.
            uint64_t wrows;
            uint32_t *w = rows_in_write_order(d1, 1, sp ? "val" : "train", L, &wrows);
            CHECK(wrows == rows, "write-order rows = manifest rows");
            int overlap_bad = 0;
            for (uint64_t i = 0; i + 1 < wrows; i++) overlap_bad += w[i * C + L] != w[(i + 1) * C];
            CHECK(overlap_bad == 0, "row i ends with the token row i+1 starts with");
            uint64_t slen = rows ? rows * L + 1 : 0;
            uint32_t *s = malloc((slen + 1) * 4);
            for (uint64_t i = 0; i < rows; i++) memcpy(s + i * L, w + i * C, (size_t)C * 4);
            CHECK(rows == (expect_tokens - 1) / L && expect_tokens - slen == st.pad_tokens[sp], "rows from stream length");
            uint64_t p = 0;
            int unmatched = 0;
            while (p < slen) {
                uint64_t q = p;
                while (q < slen && s[q] != EOS) q++;
                if (q == slen) break; // the cut tail
                int found = 0;
                for (size_t d = 0; d < nd && !found; d++)
                    if (split[d] == sp && !used[d] && doc[d].n == q - p + 1) {
                        int eq = 1;
                        for (size_t k = 0; k < doc[d].n && eq; k++) eq = s[p + k] == (uint32_t)doc[d].v[k];
                        if (eq) used[d] = found = 1;
                    }
                unmatched += !found;
                p = q + 1;
            }
            CHECK(unmatched == 0, "stream = whole documents (%d unmatched)", unmatched);
            free(s), free(w);
        }
        free(used);
        dsv3_data_close(r);
    }
    for (size_t d = 0; d < nd; d++) free(doc[d].v);
    free(doc), free(split);
    rm_rf(d1), rm_rf(d2);
    free(d1), free(d2);
    dsv3_doclist_free(&dl);
}

// The document shuffle buffer: with 0 tokens the stream keeps the input order exactly; with the
// default it is a different order of the same documents. The manifest lists shards in a seeded
// order that is not the write order.
static void test_shuffle(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    const int L = 16, C = L + 1;
    char *d = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = L, .fim_rate = 0,
                                .val_fraction = 0, .seed = 3, .add_bos = 1, .bestfit = 0, .shard_rows = 8,
                                .shuffle_tokens = 0};
    dsv3_data_prepare_stats st;
    // the expected stream: every document in input order
    uint32_t *want = NULL;
    uint64_t nwant = 0;
    for (size_t i = 0; i < dl.n; i++) {
        int32_t *t;
        size_t n;
        CHECK(dsv3_data_encode_document(tok, &ids, dl.docs[i].text, dl.docs[i].len, 1, 0, 0.5, 0, 0, &t, &n, NULL) == 0,
              "encode");
        want = realloc(want, (nwant + n) * 4);
        memcpy(want + nwant, t, n * 4);
        nwant += n;
        free(t);
    }
    for (int pass = 0; pass < 2; pass++) {
        o.shuffle_tokens = pass ? -1 : 0;
        CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare: %s", dsv3_error());
        uint64_t rows;
        uint32_t *w = rows_in_write_order(d, st.generation, "train", L, &rows);
        CHECK(rows == (nwant - 1) / L, "rows of the stream");
        int same = 1;
        for (uint64_t i = 0; i < rows && same; i++) same = memcmp(w + i * C, want + i * L, (size_t)C * 4) == 0;
        if (pass == 0) CHECK(same, "shuffle buffer 0: the stream is the documents in input order");
        else CHECK(!same, "default shuffle buffer: documents in another order");
        // the reader's order (manifest) is a permutation of the shards
        dsv3_data *r = dsv3_data_open(d, "train", 1);
        CHECK(r && dsv3_data_num_shards(r) >= 3, "several shards");
        int in_write_order = 1;
        for (uint64_t i = 0; r && i < rows && in_write_order; i++)
            in_write_order = memcmp(dsv3_data_row(r, i), w + i * C, (size_t)C * 4) == 0;
        CHECK(!in_write_order, "the manifest lists shards in a shuffled order");
        dsv3_data_close(r);
        free(w);
    }
    free(want);
    rm_rf(d);
    free(d);
    dsv3_doclist_free(&dl);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, n, f) == n, "write %s", path);
    if (f) fclose(f);
}

// Streaming from files: the same bytes whatever the batch size (tiny batches cross lines, inputs and
// buffer refills; lines longer than the buffer grow it) and the thread count; the same rows as the
// in-memory path.
static void test_stream_files(void) {
    const char *in[] = {FIXTURE("data/devil-sample.jsonl"), FIXTURE("data/plain.txt"), FIXTURE("data/devil-sample.jsonl")};
    char *d1 = tmpdir(), *d2 = tmpdir(), *d3 = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d1, .seq_len = 48, .fim_rate = 0.2,
                                .val_fraction = 0.1, .seed = 11, .add_bos = 1, .bestfit = 1, .shard_rows = 7,
                                .shuffle_tokens = 500, .threads = 2};
    dsv3_data_prepare_stats st1, st2, st3;
    CHECK(dsv3_data_prepare_files(tok, in, 3, &o, &st1) == 0, "prepare files: %s", dsv3_error());
    o.out_dir = d2, o.batch_bytes = 300, o.threads = 1;
    CHECK(dsv3_data_prepare_files(tok, in, 3, &o, &st2) == 0, "prepare files, tiny batches: %s", dsv3_error());
    int nf = dirs_identical(d1, d2);
    CHECK(nf >= 4, "identical bytes with 4 MiB / 300-byte batches and 2 / 1 threads (%d files)", nf);
    CHECK(st1.documents[0] + st1.documents[1] == 127, "63 + 1 + 63 documents (%llu)",
          (unsigned long long)(st1.documents[0] + st1.documents[1]));
    // in memory: same documents, same rows (the run id differs: it names the inputs)
    dsv3_doclist dl = {0};
    for (int i = 0; i < 3; i++) CHECK(dsv3_doclist_read(&dl, in[i]) == 0, "read");
    o.out_dir = d3, o.batch_bytes = 0;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st3) == 0, "prepare docs: %s", dsv3_error());
    for (int sp = 0; sp < 2; sp++) {
        const char *spn = sp ? "val" : "train";
        dsv3_data *a = dsv3_data_open(d1, spn, 1), *b = dsv3_data_open(d3, spn, 1);
        CHECK(a && b && dsv3_data_num_rows(a) == dsv3_data_num_rows(b) && dsv3_data_num_rows(a) > 0, "%s rows", spn);
        int same = a && b;
        for (uint64_t i = 0; same && i < dsv3_data_num_rows(a); i++)
            same = memcmp(dsv3_data_row(a, i), dsv3_data_row(b, i), 49 * 4) == 0;
        CHECK(same, "%s: files and in-memory documents give the same rows", spn);
        CHECK(a && b && strcmp(dsv3_data_run_id(a), dsv3_data_run_id(b)) != 0, "different run ids");
        dsv3_data_close(a), dsv3_data_close(b);
    }
    // The manifest records each input with its SHA-256 (checked against an independent hash: the
    // in-memory SHA-256 of the same bytes is not the same code path, so compare with sha256_file).
    char sha[65];
    CHECK(dsv3_sha256_file(in[0], sha) == 0, "sha256");
    char *man = dsv3_path_join(d1, "manifest.json");
    size_t ml;
    char *m = dsv3_read_file(man, &ml);
    CHECK(m && strstr(m, sha) && strstr(m, "\"run_id\"") && strstr(m, st1.run_id), "manifest names inputs and run");
    free(m), free(man);
    dsv3_doclist_free(&dl);
    rm_rf(d1), rm_rf(d2), rm_rf(d3);
    free(d1), free(d2), free(d3);
}

// Bad runs: empty input, no rows, a directory as input, --out naming a file.
static void test_bad_runs(void) {
    char *d = tmpdir();
    char *out = dsv3_path_join(d, "out");
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = out, .seq_len = 32, .fim_rate = 0,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 10,
                                .shuffle_tokens = -1};
    dsv3_data_prepare_stats st;
    dsv3_doclist empty = {0};
    CHECK(dsv3_data_prepare(tok, &empty, &o, &st) == -1 && strstr(dsv3_error(), "no documents"),
          "no documents is an error (%s)", dsv3_error());
    CHECK(!exists(d, "out"), "nothing written (the output folder it created is gone)");
    char *blank = dsv3_path_join(d, "blank.jsonl");
    write_bytes(blank, "\n  \n{\"text\": \"\"}\n", 17);
    const char *in1[] = {blank};
    CHECK(dsv3_data_prepare_files(tok, in1, 1, &o, &st) == -1 && strstr(dsv3_error(), "no documents"),
          "blank lines and empty texts only: error (%s)", dsv3_error());
    const char *in2[] = {FIXTURE("data/plain.txt")};
    o.bestfit = 0, o.seq_len = 4096;
    CHECK(dsv3_data_prepare_files(tok, in2, 1, &o, &st) == -1 && strstr(dsv3_error(), "no rows"),
          "fewer tokens than a row with concat: error (%s)", dsv3_error());
    o.bestfit = 1, o.seq_len = 32;
    const char *in3[] = {FIXTURE("data")};
    CHECK(dsv3_data_prepare_files(tok, in3, 1, &o, &st) == -1 && strstr(dsv3_error(), "is a directory") &&
              strstr(dsv3_error(), "tests/fixtures/data"), "a directory as input (%s)", dsv3_error());
    o.out_dir = blank;
    CHECK(dsv3_data_prepare_files(tok, in2, 1, &o, &st) == -1 && strstr(dsv3_error(), "not a directory") &&
              strstr(dsv3_error(), "blank.jsonl"), "--out naming a file (%s)", dsv3_error());
    CHECK(!exists(d, "out"), "still nothing written");
    free(blank), free(out);
    rm_rf(d);
    free(d);
}

// A copy of `src` with a shard copied over another's name.
static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = dsv3_read_file(from, &n);
    CHECK(b != NULL, "read %s", from);
    if (b) write_bytes(to, b, n);
    free(b);
}

static void test_corrupt(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    // ten copies of the fixture: one shard of more than 64 KiB, so that the sampled checksum skips bytes
    dsv3_doclist big = {0};
    for (int k = 0; k < 10; k++)
        for (size_t i = 0; i < dl.n; i++) {
            if (big.n == big.cap) big.cap = big.cap ? 2 * big.cap : 1024, big.docs = realloc(big.docs, big.cap * sizeof *big.docs);
            big.docs[big.n++] = dl.docs[i];
        }
    char *d = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = 32, .fim_rate = 0.1,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 100000,
                                .shuffle_tokens = -1};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare(tok, &big, &o, &st) == 0, "prepare");
    char *man = dsv3_path_join(d, "manifest.json"), *sh = dsv3_path_join(d, "g1-train-00000.bin");
    size_t n;
    char *orig = dsv3_read_file(sh, &n);
    CHECK(orig && n > 65536 + 64 + 4096, "shard larger than the sampled bytes (%zu)", n);
    if (!orig || n <= 65536 + 64 + 4096) { // the checks below need a bigger shard
        free(orig), free(man), free(sh), free(big.docs);
        rm_rf(d);
        free(d);
        dsv3_doclist_free(&dl);
        return;
    }
    dsv3_data *r = dsv3_data_open(man, "train", 1);
    CHECK(r != NULL, "clean shard opens");
    dsv3_data_close(r);
    r = dsv3_data_open(man, "val", 0);
    CHECK(r && dsv3_data_num_rows(r) == 0, "empty val split opens with 0 rows");
    dsv3_data_close(r);
    CHECK(dsv3_data_open(man, "test", 0) == NULL && strstr(dsv3_error(), "\"test\""), "unknown split named");
    // bad magic
    char *bad = malloc(n);
    memcpy(bad, orig, n);
    bad[0] = 'X';
    write_bytes(sh, bad, n);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "bad magic") &&
              strstr(dsv3_error(), "g1-train-00000.bin"), "bad magic -> error naming the shard (%s)", dsv3_error());
    // truncated
    write_bytes(sh, orig, n - 4);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "truncated"), "truncated (%s)", dsv3_error());
    write_bytes(sh, orig, 20);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "not a token shard"), "tiny file (%s)",
          dsv3_error());
    // A flipped payload byte inside a sampled block: the cheap check sees it. Outside the sampled
    // blocks: only the full verify does. (Which bytes are sampled is found by trying.)
    const unsigned char *hdr = (const unsigned char *)orig;
    size_t plen = n - 64, in_sample = (size_t)-1, off_sample = (size_t)-1;
    uint64_t s0 = dsv3_shard_sample_checksum(hdr, hdr + 64, plen);
    memcpy(bad, orig, n);
    for (size_t k = 0; k < plen && (in_sample == (size_t)-1 || off_sample == (size_t)-1); k += 997) {
        bad[64 + k] ^= 0x01;
        int seen = dsv3_shard_sample_checksum((unsigned char *)bad, (unsigned char *)bad + 64, plen) != s0;
        bad[64 + k] ^= 0x01;
        if (seen && in_sample == (size_t)-1) in_sample = k;
        if (!seen && off_sample == (size_t)-1) off_sample = k;
    }
    CHECK(in_sample != (size_t)-1 && off_sample != (size_t)-1, "found sampled and unsampled bytes");
    if (in_sample != (size_t)-1) {
        bad[64 + in_sample] ^= 0x01;
        write_bytes(sh, bad, n);
        CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "sampled checksum"),
              "cheap check: flip in a sampled block (%s)", dsv3_error());
        bad[64 + in_sample] ^= 0x01;
    }
    if (off_sample != (size_t)-1) {
        bad[64 + off_sample] ^= 0x01;
        write_bytes(sh, bad, n);
        r = dsv3_data_open(man, "train", 0);
        CHECK(r != NULL, "cheap check passes a flip outside the sampled blocks");
        dsv3_data_close(r);
        CHECK(dsv3_data_open(man, "train", 1) == NULL && strstr(dsv3_error(), "checksum mismatch"),
              "verify catches it (%s)", dsv3_error());
    }
    // header disagreeing with the manifest: seq_len field
    memcpy(bad, orig, n);
    bad[20] = 33;
    write_bytes(sh, bad, n);
    CHECK(dsv3_data_open(man, "train", 0) == NULL, "seq_len disagreement (%s)", dsv3_error());
    // manifest problems
    write_bytes(sh, orig, n);
    write_bytes(man, "{\"format\": \"dsv3-token-shards\"", 30);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "manifest.json"), "broken manifest (%s)",
          dsv3_error());
    // hostile or stale fields in the manifest: errors, never undefined float->int casts
    const char *hostile[] = {"\"seq_len\": -1", "\"seq_len\": 1e300", "\"seq_len\": 32.5", "\"vocab_size\": -5",
                             "\"rows\": -1", "\"rows\": 1e30", "\"pad_id\": 1e20", "\"generation\": -2",
                             "\"version\": 1", "\"run_id\": \"12\"", "\"file\": \"../x.bin\"",
                             "\"fnv1a64\": \"0000000000000000\""};
    const char *want[] = {"must be an integer", "must be an integer", "must be an integer", "must be an integer",
                          "must be an integer", "must be an integer", "must be an integer", "must be an integer",
                          "older dsv3", "hex digits", "plain file name", "differs from the manifest"};
    for (int k = 0; k < (int)(sizeof hostile / sizeof *hostile); k++) {
        // rebuild a valid manifest, then overwrite one field
        dsv3_data_prepare_stats st2;
        CHECK(dsv3_data_prepare(tok, &dl, &o, &st2) == 0, "re-prepare");
        size_t ml;
        char *m = dsv3_read_file(man, &ml);
        const char *key = hostile[k];
        const char *colon = strchr(key, ':');
        char kq[32];
        snprintf(kq, sizeof kq, "%.*s", (int)(colon - key), key);
        // "rows": the shard's field (the split-level "rows" is informational)
        char *base = m && strcmp(kq, "\"rows\"") == 0 ? strstr(m, "\"shards\"") : m;
        char *at = base ? strstr(base, kq) : NULL;
        CHECK(at != NULL, "manifest has %s", kq);
        if (!at) { free(m); continue; }
        char *vend = at + strlen(kq);
        while (*vend && *vend != ',' && *vend != '\n' && *vend != '}') vend++;
        size_t nl = (size_t)(at - m) + strlen(key) + strlen(vend) + 1;
        char *m2 = malloc(nl);
        snprintf(m2, nl, "%.*s%s%s", (int)(at - m), m, key, vend);
        write_bytes(man, m2, strlen(m2));
        dsv3_data *h = dsv3_data_open(man, "train", 0);
        CHECK(h == NULL && strstr(dsv3_error(), want[k]), "manifest with %s rejected (%s)", key, dsv3_error());
        dsv3_data_close(h);
        free(m), free(m2);
    }
    CHECK(dsv3_data_open("/nonexistent/manifest.json", "train", 0) == NULL, "missing manifest");
    free(bad), free(orig), free(man), free(sh);
    rm_rf(d);
    free(d);
    free(big.docs);
    dsv3_doclist_free(&dl);
}

// A mixed set is refused, naming the shard: a shard of another run (other seed) copied over one of
// this run's files; a shard of the same run copied over another position.
static void test_mixed(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    char *a = tmpdir(), *b = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = a, .seq_len = 16, .fim_rate = 0.1,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 0, .shard_rows = 20,
                                .shuffle_tokens = -1};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0 && st.shards[0] >= 3, "run A (%llu shards)",
          (unsigned long long)st.shards[0]);
    o.out_dir = b, o.seed = 7;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "run B");
    char *a0 = dsv3_path_join(a, "g1-train-00000.bin"), *a1 = dsv3_path_join(a, "g1-train-00001.bin");
    char *b0 = dsv3_path_join(b, "g1-train-00000.bin");
    size_t n;
    char *keep = dsv3_read_file(a0, &n);
    copy_file(b0, a0);
    for (int verify = 0; verify <= 1; verify++)
        CHECK(dsv3_data_open(a, "train", verify) == NULL && strstr(dsv3_error(), "g1-train-00000.bin") &&
                  strstr(dsv3_error(), "another run"), "verify=%d: another run's shard refused (%s)", verify, dsv3_error());
    copy_file(a1, a0); // same run, same size (both shards are full), another position
    for (int verify = 0; verify <= 1; verify++)
        CHECK(dsv3_data_open(a, "train", verify) == NULL && strstr(dsv3_error(), "g1-train-00000.bin") &&
                  strstr(dsv3_error(), "differs from the manifest"), "verify=%d: shard at the wrong place (%s)", verify,
              dsv3_error());
    if (keep) write_bytes(a0, keep, n);
    dsv3_data *r = dsv3_data_open(a, "train", 1);
    CHECK(r != NULL, "restored set opens: %s", dsv3_error());
    dsv3_data_close(r);
    free(keep), free(a0), free(a1), free(b0);
    rm_rf(a), rm_rf(b);
    free(a), free(b);
    dsv3_doclist_free(&dl);
}

static pid_t dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    int status;
    waitpid(p, &status, 0);
    return p;
}

// A second run into the same folder: new generation; the first run's shards, legacy names and temps
// of dead writers are removed; a live writer's temp and unrelated files are kept.
static void test_rerun_same_dir(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    char *d = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = 32, .fim_rate = 0,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 5,
                                .shuffle_tokens = -1};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare with small shards: %s", dsv3_error());
    CHECK(st.shards[0] >= 3 && st.generation == 1, "several shards (%llu)", (unsigned long long)st.shards[0]);
    pid_t dead = dead_pid();
    char n_dead[64], n_dead_man[64], n_live[64], n_legacy_tmp[64];
    snprintf(n_dead, sizeof n_dead, "g2-train-00000.bin.tmp.%d", (int)dead);
    snprintf(n_dead_man, sizeof n_dead_man, "manifest.json.tmp.%d", (int)dead);
    snprintf(n_live, sizeof n_live, "g1-val-00009.bin.tmp.%d", (int)getpid());
    snprintf(n_legacy_tmp, sizeof n_legacy_tmp, "train-00000.bin.tmp.%d", (int)dead);
    const char *made[] = {n_dead, n_dead_man, n_live, n_legacy_tmp, "train-00000.bin", "notes.txt", "g1-train.bin"};
    for (int i = 0; i < 7; i++) {
        char *p = dsv3_path_join(d, made[i]);
        write_bytes(p, "partial", 7);
        free(p);
    }
    o.shard_rows = 100000;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare again into the same dir: %s", dsv3_error());
    CHECK(st.shards[0] == 1 && st.generation == 2, "one shard, generation 2 (the dead run's g2 temp was removed first): %llu",
          (unsigned long long)st.generation);
    CHECK(!exists(d, "g1-train-00000.bin") && !exists(d, "g1-train-00001.bin") && !exists(d, "g1-train-00002.bin"),
          "the first run's shards removed");
    CHECK(exists(d, "g2-train-00000.bin"), "new shard");
    CHECK(!exists(d, n_dead) && !exists(d, n_dead_man) && !exists(d, n_legacy_tmp),
          "temps of a dead writer removed (shard and manifest temps)");
    CHECK(exists(d, n_live), "a live writer's temp kept");
    CHECK(!exists(d, "train-00000.bin"), "version-1 shard name removed");
    CHECK(exists(d, "notes.txt") && exists(d, "g1-train.bin"), "unrelated files kept");
    dsv3_data *r = dsv3_data_open(d, "train", 1);
    CHECK(r && dsv3_data_num_rows(r) == st.rows[0] && dsv3_data_generation(r) == 2, "second run's manifest opens (%s)",
          dsv3_error());
    dsv3_data_close(r);
    rm_rf(d);
    free(d);
    dsv3_doclist_free(&dl);
}

// A run that fails (bad line deep in an input, after shards were written; or empty input) leaves
// the previous dataset exactly as it was. A locked folder is refused with the holder's pid.
static void test_failed_run_keeps_old(void) {
    char *d = tmpdir(), *t = tmpdir();
    const char *good[] = {FIXTURE("data/devil-sample.jsonl")};
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = 16, .fim_rate = 0.1,
                                .val_fraction = 0.1, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 8,
                                .shuffle_tokens = -1};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare_files(tok, good, 1, &o, &st) == 0, "old dataset: %s", dsv3_error());
    dsv3_data *r = dsv3_data_open(d, "train", 1);
    uint64_t digest = r ? dsv3_data_digest(r) : 0;
    dsv3_data_close(r);
    char *snap = dsv3_path_join(t, "snap");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", d, snap);
    CHECK(system(cmd) == 0, "snapshot");
    // three copies of the fixture then a bad line; concat + no shuffle writes shards early
    char *bad = dsv3_path_join(t, "late-bad.jsonl");
    {
        size_t n;
        char *g = dsv3_read_file(good[0], &n);
        FILE *f = fopen(bad, "wb");
        for (int k = 0; k < 3 && g; k++) fwrite(g, 1, n, f);
        fputs("{\"text\": 5}\n", f);
        fclose(f);
        free(g);
    }
    const char *in[] = {bad};
    dsv3_data_prepare_opts o2 = o;
    o2.bestfit = 0, o2.shuffle_tokens = 0, o2.shard_rows = 2, o2.batch_bytes = 2000, o2.seed = 2;
    CHECK(dsv3_data_prepare_files(tok, in, 1, &o2, &st) == -1 && strstr(dsv3_error(), "late-bad.jsonl:190"),
          "bad line 190 named (%s)", dsv3_error());
    CHECK(st.shards[0] > 3, "the failed run had written shards (%llu)", (unsigned long long)st.shards[0]);
    CHECK(dirs_identical(d, snap) >= 4, "the folder is exactly as before: the failed run's shards removed");
    r = dsv3_data_open(d, "train", 1);
    CHECK(r && dsv3_data_digest(r) == digest, "previous dataset still opens, same rows");
    dsv3_data_close(r);
    dsv3_doclist empty = {0};
    CHECK(dsv3_data_prepare(tok, &empty, &o, &st) == -1, "empty input fails");
    CHECK(dirs_identical(d, snap) >= 4, "... and leaves the folder as it was");
    // a held lock: refused, naming the holder
    dsv3_dirlock lk;
    CHECK(dsv3_dir_lock(&lk, d) == 0, "lock: %s", dsv3_error());
    char want[64];
    snprintf(want, sizeof want, "in use by pid %d", (int)getpid());
    CHECK(dsv3_data_prepare_files(tok, good, 1, &o, &st) == -1 && strstr(dsv3_error(), want), "locked folder (%s)",
          dsv3_error());
    dsv3_dir_unlock(&lk);
    CHECK(dirs_identical(d, snap) >= 4, "refused run wrote nothing");
    o.seed = 5;
    CHECK(dsv3_data_prepare_files(tok, good, 1, &o, &st) == 0 && st.generation == 2, "unlocked: runs (%s)",
          dsv3_error());
    r = dsv3_data_open(d, "train", 1);
    CHECK(r && dsv3_data_digest(r) != digest, "new dataset in place");
    dsv3_data_close(r);
    free(snap), free(bad);
    rm_rf(d), rm_rf(t);
    free(d), free(t);
}

static void test_slicing(void) {
    const uint64_t N = 103;
    for (int drop = 0; drop <= 1; drop++)
        for (int world = 1; world <= 5; world++) {
            int *seen = calloc(N, sizeof *seen);
            uint64_t total = 0, minn = N, maxn = 0;
            for (int rank = 0; rank < world; rank++) {
                uint64_t *rows, n;
                CHECK(dsv3_data_epoch_rows(N, 42, 3, rank, world, drop, &rows, &n) == 0, "epoch rows");
                for (uint64_t i = 0; i < n; i++)
                    if (rows[i] < N) seen[rows[i]]++;
                total += n;
                if (n < minn) minn = n;
                if (n > maxn) maxn = n;
                free(rows);
            }
            int dup = 0, cover = 0;
            for (uint64_t i = 0; i < N; i++) dup += seen[i] > 1, cover += seen[i] == 1;
            CHECK(dup == 0, "world %d: slices disjoint", world);
            if (drop) CHECK(minn == maxn && minn == N / world && total == N / world * world, "world %d drop: equal", world);
            else CHECK(cover == (int)N && maxn - minn <= 1, "world %d: slices cover all rows", world);
            free(seen);
        }
    uint64_t *a, *b, *c, na, nb, nc;
    dsv3_data_epoch_rows(N, 42, 0, 0, 1, 0, &a, &na);
    dsv3_data_epoch_rows(N, 42, 0, 0, 1, 0, &b, &nb);
    dsv3_data_epoch_rows(N, 42, 1, 0, 1, 0, &c, &nc);
    CHECK(na == N && memcmp(a, b, N * 8) == 0, "same seed+epoch -> same order");
    CHECK(memcmp(a, c, N * 8) != 0, "next epoch -> different order");
    int identity = 1;
    for (uint64_t i = 0; i < N; i++) identity &= a[i] == i;
    CHECK(!identity, "the order is shuffled");
    free(a), free(b), free(c);
    CHECK(dsv3_data_epoch_rows(N, 1, 0, 3, 3, 0, &a, &na) == -1, "rank >= world rejected");
}

int main(void) {
    tok = dsv3_tokenizer_load(TOKENIZER);
    CHECK(tok != NULL, "load %s: %s", TOKENIZER, dsv3_error());
    if (!tok) return test_report("test_data");
    CHECK(dsv3_data_special_ids_get(tok, &ids, 1) == 0, "special ids");
    test_fim();
    test_documents();
    test_prepare(1);
    test_prepare(0);
    test_shuffle();
    test_stream_files();
    test_bad_runs();
    test_corrupt();
    test_mixed();
    test_rerun_same_dir();
    test_failed_run_keeps_old();
    test_slicing();
    dsv3_tokenizer_free(tok);
    return test_report("test_data");
}
