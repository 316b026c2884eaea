// Data pipeline: documents, FIM layout (exact ids with the real DeepSeek-V3 tokenizer), packing
// (concat and best-fit), determinism, shard validation, reader slicing.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
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

// Synthetic documents of varied length (0.3x .. 3x the row length).
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
                                .threads = 1};
    dsv3_data_prepare_stats st, st2;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare: %s", dsv3_error());
    o.out_dir = d2, o.threads = 2;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st2) == 0, "prepare again: %s", dsv3_error());
    // Determinism: identical bytes whatever the thread count.
    const char *names[] = {"manifest.json", "train-00000.bin", "train-00001.bin", "val-00000.bin"};
    for (int i = 0; i < 4; i++) {
        char *a = dsv3_path_join(d1, names[i]), *b = dsv3_path_join(d2, names[i]);
        CHECK(files_equal(a, b), "%s identical across runs (1 vs 2 threads)", names[i]);
        free(a), free(b);
    }
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
    char *man = dsv3_path_join(d1, "manifest.json");
    for (int sp = 0; sp < 2; sp++) {
        dsv3_data *r = dsv3_data_open(man, sp ? "val" : "train", 1);
        CHECK(r != NULL, "open %s: %s", sp ? "val" : "train", dsv3_error());
        if (!r) continue;
        uint64_t rows = dsv3_data_num_rows(r);
        CHECK(rows == st.rows[sp], "rows %llu", (unsigned long long)rows);
        CHECK(dsv3_data_seq_len(r) == L && dsv3_data_vocab_size(r) == dsv3_tokenizer_vocab_size(tok), "header fields");
        CHECK(dsv3_data_pad_id(r) == (bestfit ? PAD : -1), "pad id");
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
            // Rows overlap by one token; the stream is the split's documents in some order, each
            // ending with EOS, the last one possibly cut.
            int overlap_bad = 0;
            for (uint64_t i = 0; i + 1 < rows; i++) overlap_bad += dsv3_data_row(r, i)[L] != dsv3_data_row(r, i + 1)[0];
            CHECK(overlap_bad == 0, "row i ends with the token row i+1 starts with");
            uint64_t slen = rows ? rows * L + 1 : 0;
            uint32_t *s = malloc((slen + 1) * 4);
            for (uint64_t i = 0; i < rows; i++) memcpy(s + i * L, dsv3_data_row(r, i), (size_t)C * 4);
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
            free(s);
        }
        free(used);
        dsv3_data_close(r);
    }
    for (size_t d = 0; d < nd; d++) free(doc[d].v);
    free(doc), free(split), free(man);
    rm_rf(d1), rm_rf(d2);
    free(d1), free(d2);
    dsv3_doclist_free(&dl);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, n, f) == n, "write %s", path);
    if (f) fclose(f);
}

static void test_corrupt(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    char *d = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = 32, .fim_rate = 0.1,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 1000};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare");
    char *man = dsv3_path_join(d, "manifest.json"), *sh = dsv3_path_join(d, "train-00000.bin");
    size_t n;
    char *orig = dsv3_read_file(sh, &n);
    CHECK(orig && n > 100, "shard read");
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
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "bad magic") && strstr(dsv3_error(), "train-00000.bin"),
          "bad magic -> error naming the shard (%s)", dsv3_error());
    // truncated
    write_bytes(sh, orig, n - 4);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "truncated"), "truncated (%s)", dsv3_error());
    write_bytes(sh, orig, 20);
    CHECK(dsv3_data_open(man, "train", 0) == NULL && strstr(dsv3_error(), "not a token shard"), "tiny file (%s)",
          dsv3_error());
    // flipped payload byte: only the checksum notices
    memcpy(bad, orig, n);
    bad[n - 3] ^= 0x01;
    write_bytes(sh, bad, n);
    r = dsv3_data_open(man, "train", 0);
    CHECK(r != NULL, "header-only validation passes a payload flip");
    dsv3_data_close(r);
    CHECK(dsv3_data_open(man, "train", 1) == NULL && strstr(dsv3_error(), "checksum"), "verify catches it (%s)",
          dsv3_error());
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
    // hostile numbers in the manifest: errors, never undefined float->int casts
    const char *hostile[] = {"\"seq_len\": -1", "\"seq_len\": 1e300", "\"seq_len\": 32.5", "\"vocab_size\": -5",
                             "\"rows\": -1", "\"rows\": 1e30", "\"pad_id\": 1e20"};
    for (int k = 0; k < 7; k++) {
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
        CHECK(h == NULL && strstr(dsv3_error(), "manifest.json") && strstr(dsv3_error(), "must be an integer"),
              "hostile manifest %s rejected (%s)", key, dsv3_error());
        dsv3_data_close(h);
        free(m), free(m2);
    }
    unlink(sh);
    CHECK(dsv3_data_open("/nonexistent/manifest.json", "train", 0) == NULL, "missing manifest");
    free(bad), free(orig), free(man), free(sh);
    rm_rf(d);
    free(d);
    dsv3_doclist_free(&dl);
}

// A second run into the same directory with fewer shards removes the first run's extra shards
// and any temp file left by an interrupted run; the manifest lists exactly the files present.
static void test_rerun_same_dir(void) {
    dsv3_doclist dl = {0};
    make_docs(&dl);
    char *d = tmpdir();
    dsv3_data_prepare_opts o = {.tokenizer_path = TOKENIZER, .out_dir = d, .seq_len = 32, .fim_rate = 0,
                                .val_fraction = 0, .seed = 1, .add_bos = 1, .bestfit = 1, .shard_rows = 5};
    dsv3_data_prepare_stats st;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare with small shards: %s", dsv3_error());
    CHECK(st.shards[0] >= 3, "several shards (%llu)", (unsigned long long)st.shards[0]);
    char *s1 = dsv3_path_join(d, "train-00001.bin"), *s2 = dsv3_path_join(d, "train-00002.bin");
    char *tmp = dsv3_path_join(d, "train-00000.bin.tmp.99999"), *other = dsv3_path_join(d, "notes.txt");
    write_bytes(tmp, "partial", 7);
    write_bytes(other, "mine", 4);
    struct stat sb;
    CHECK(stat(s1, &sb) == 0 && stat(s2, &sb) == 0, "first run wrote train-00001/00002");
    o.shard_rows = 100000;
    CHECK(dsv3_data_prepare(tok, &dl, &o, &st) == 0, "prepare again into the same dir: %s", dsv3_error());
    CHECK(st.shards[0] == 1, "one shard now");
    CHECK(stat(s1, &sb) != 0 && stat(s2, &sb) != 0, "stale shards of the first run removed");
    CHECK(stat(tmp, &sb) != 0, "temp file of an interrupted run removed");
    CHECK(stat(other, &sb) == 0, "unrelated files kept");
    char *man = dsv3_path_join(d, "manifest.json");
    dsv3_data *r = dsv3_data_open(man, "train", 1);
    CHECK(r && dsv3_data_num_rows(r) == st.rows[0], "second run's manifest opens (%s)", dsv3_error());
    dsv3_data_close(r);
    free(s1), free(s2), free(tmp), free(other), free(man);
    rm_rf(d);
    free(d);
    dsv3_doclist_free(&dl);
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
    test_corrupt();
    test_rerun_same_dir();
    test_slicing();
    dsv3_tokenizer_free(tok);
    return test_report("test_data");
}
