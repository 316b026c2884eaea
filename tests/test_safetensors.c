// safetensors reader/writer: round trip, layout rules, sharded directories, and hostile files.
// Bad inputs are generated here byte by byte (tests/fixtures/bad/README.md lists them); each must fail
// with a message naming the file and the problem, never crash.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/safetensors.h"
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char g_dir[64];

static char *tmp_path(const char *name) { return dsv3_path_join(g_dir, name); }

// Writes an 8-byte LE header length `len`, the header text, then `ndata` data bytes (value i & 0xff).
static void write_raw_len(const char *path, uint64_t len, const char *hdr, size_t ndata) {
    FILE *f = fopen(path, "wb");
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(len >> (8 * i));
    fwrite(l8, 1, 8, f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}
static void write_raw(const char *path, const char *hdr, size_t ndata) { write_raw_len(path, strlen(hdr), hdr, ndata); }

// Opening `path` must fail with a message that names the file and contains `want`.
static void expect_bad_file(const char *path, const char *want, const char *what) {
    dsv3_st st;
    dsv3_error_clear();
    int rc = dsv3_st_open_file(&st, path);
    CHECK(rc == -1, "%s: open should fail", what);
    CHECK(strstr(dsv3_error(), path) != NULL, "%s: message names the file: %s", what, dsv3_error());
    CHECK(strstr(dsv3_error(), want) != NULL, "%s: message mentions '%s': %s", what, want, dsv3_error());
    if (rc == 0) dsv3_st_close(&st);
}

static void test_roundtrip(void) {
    float f32[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-3f};
    uint16_t bf16[3] = {0x3f80, 0xc000, 0x7f80};
    int64_t i64[2] = {-5, 1LL << 40};
    uint8_t f8[5] = {0x38, 0xb8, 0x00, 0x7e, 0x01};
    dsv3_st_writer *w = dsv3_st_writer_new();
    // added out of order; names with JSON-special characters are escaped
    dsv3_st_writer_add(w, "z.bf16", DSV3_BF16, 1, (int64_t[]){3}, bf16);
    dsv3_st_writer_add(w, "a.f32", DSV3_F32, 2, (int64_t[]){2, 3}, f32);
    dsv3_st_writer_add(w, "m.\"quoted\\name\"", DSV3_I64, 1, (int64_t[]){2}, i64);
    dsv3_st_writer_add(w, "b.f8", DSV3_F8_E4M3, 1, (int64_t[]){5}, f8);
    dsv3_st_writer_add(w, "c.empty", DSV3_F32, 2, (int64_t[]){0, 4}, NULL);
    dsv3_st_writer_add(w, "s.scalar", DSV3_F32, 0, NULL, &f32[2]);
    dsv3_st_writer_set_metadata(w, "note", "round trip");
    char *p = tmp_path("rt.safetensors");
    CHECK(dsv3_st_writer_save(w, p) == 0, "save: %s", dsv3_error());
    dsv3_st_writer_free(w);

    dsv3_mmap raw;
    CHECK(dsv3_mmap_open(&raw, p) == 0, "map");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | raw.data[i];
    CHECK(n % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)n);
    CHECK(memcmp(raw.data + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0, "header starts with format pt metadata");
    CHECK(raw.data[8 + n - 1] == ' ' || raw.data[8 + n - 1] == '}', "header padded with spaces");
    // 48 + 6 + 16 + 4 + 5 + 0 = data bytes
    CHECK(raw.size == 8 + n + 24 + 6 + 16 + 4 + 5, "file size %zu", raw.size);
    dsv3_mmap_close(&raw);

    dsv3_st st;
    CHECK(dsv3_st_open_file(&st, p) == 0, "open: %s", dsv3_error());
    CHECK(st.ntensors == 6 && st.nfiles == 1, "6 tensors, got %d", st.ntensors);
    for (int i = 1; i < st.ntensors; i++) CHECK(strcmp(st.tensors[i - 1].name, st.tensors[i].name) < 0, "sorted by name");
    const dsv3_st_tensor *t = dsv3_st_find(&st, "a.f32");
    CHECK(t && t->dtype == DSV3_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nbytes == 24 &&
              memcmp(t->data, f32, 24) == 0, "a.f32 round trip");
    CHECK(t && (uintptr_t)t->data % 4 == 0, "f32 aligned");
    t = dsv3_st_find(&st, "z.bf16");
    CHECK(t && t->dtype == DSV3_BF16 && dsv3_st_numel(t) == 3 && memcmp(t->data, bf16, 6) == 0, "bf16 round trip");
    CHECK(t && (uintptr_t)t->data % 2 == 0, "bf16 aligned");
    t = dsv3_st_find(&st, "m.\"quoted\\name\"");
    CHECK(t && t->dtype == DSV3_I64 && memcmp(t->data, i64, 16) == 0 && (uintptr_t)t->data % 8 == 0, "escaped name, i64");
    t = dsv3_st_find(&st, "b.f8");
    CHECK(t && t->dtype == DSV3_F8_E4M3 && memcmp(t->data, f8, 5) == 0, "f8 round trip");
    t = dsv3_st_find(&st, "c.empty");
    CHECK(t && t->nbytes == 0 && t->ndim == 2 && dsv3_st_numel(t) == 0, "empty tensor");
    t = dsv3_st_find(&st, "s.scalar");
    CHECK(t && t->ndim == 0 && dsv3_st_numel(t) == 1 && memcmp(t->data, &f32[2], 4) == 0, "scalar");
    CHECK(dsv3_st_find(&st, "nope") == NULL && dsv3_st_find(&st, "") == NULL, "absent names");
    dsv3_st_close(&st);
    unlink(p);
    free(p);

    // writer failures leave nothing behind
    w = dsv3_st_writer_new();
    dsv3_st_writer_add(w, "x", DSV3_F32, 1, (int64_t[]){1}, f32);
    dsv3_st_writer_add(w, "x", DSV3_F32, 1, (int64_t[]){1}, f32);
    p = tmp_path("dup.safetensors");
    CHECK(dsv3_st_writer_save(w, p) == -1 && strstr(dsv3_error(), "twice"), "duplicate name refused: %s", dsv3_error());
    CHECK(!dsv3_file_exists(p), "no file after failed save");
    dsv3_st_writer_free(w);
    free(p);
    w = dsv3_st_writer_new();
    dsv3_st_writer_add(w, "x", DSV3_F32, 1, (int64_t[]){1}, f32);
    CHECK(dsv3_st_writer_save(w, "/nonexistent-dir/x.safetensors") == -1, "unwritable path");
    dsv3_st_writer_free(w);
}

static void test_bad_files(void) {
    char *p = tmp_path("bad.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("\x10\x00\x00", 1, 3, f);
    fclose(f);
    expect_bad_file(p, "truncated", "3-byte file");
    f = fopen(p, "wb");
    fclose(f);
    expect_bad_file(p, "truncated", "empty file");

    write_raw_len(p, 1000, "{}", 0);
    expect_bad_file(p, "past the end", "header length past end");
    write_raw_len(p, 200000000ULL, "{}", 0);
    expect_bad_file(p, "100 MB", "header over limit");
    write_raw_len(p, UINT64_MAX, "{}", 0);
    expect_bad_file(p, "100 MB", "header length 2^64-1");
    write_raw(p, "not json at all", 0);
    expect_bad_file(p, "not a JSON object", "header not JSON");
    // A \u0000 escape would cut the name ("w\u0000x" read as "w"), so a tensor could pose as another.
    write_raw(p, "{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "u0000", "name with a \\u0000 escape");
    {   // a raw NUL byte inside the header (JSON forbids control characters in strings)
        static const char h[] = "{\"w\0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        FILE *g = fopen(p, "wb");
        unsigned char l8[8] = {(unsigned char)(sizeof h - 1)};
        fwrite(l8, 1, 8, g);
        fwrite(h, 1, sizeof h - 1, g);
        fwrite("\0\0\0\0", 1, 4, g);
        fclose(g);
        expect_bad_file(p, "NUL byte", "header with a NUL byte");
    }
    write_raw(p, "{\"a\": {\"dtype\": \"F32\",", 0);
    expect_bad_file(p, "not valid JSON", "truncated JSON header");
    write_raw(p, "[1, 2]", 0);
    expect_bad_file(p, "not a JSON object", "header is an array");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} xx", 4);
    expect_bad_file(p, "trailing", "garbage after header");

    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_bad_file(p, "overlap", "overlapping tensors");
    dsv3_error_clear();
    dsv3_st st;
    if (dsv3_st_open_file(&st, p) == 0) dsv3_st_close(&st);
    CHECK(strstr(dsv3_error(), "'a'") && strstr(dsv3_error(), "'b'"), "overlap names both tensors: %s", dsv3_error());

    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_bad_file(p, "outside the data section", "offsets past end");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8);
    expect_bad_file(p, "outside the data section", "begin > end");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_bad_file(p, "needs 12 bytes", "dtype x shape != bytes");
    write_raw(p, "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "unknown dtype 'Q4_K'", "unknown dtype");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "non-negative", "negative dim");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "non-negative integers", "fractional dim");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "overflows", "numel overflow");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_bad_file(p, "data_offsets", "missing data_offsets");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4);
    expect_bad_file(p, "data_offsets", "negative offset");
    write_raw(p, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "dtype", "missing dtype");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    expect_bad_file(p, "dimensions", "too many dims");
    write_raw(p, "{\"a\":\"F32\"}", 0);
    expect_bad_file(p, "not an object", "entry not an object");
    write_raw(p, "{\"__metadata__\":{\"format\":1}}", 0);
    expect_bad_file(p, "__metadata__", "metadata value not a string");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_bad_file(p, "twice", "duplicate key in one header");

    // accepted: metadata, zero-size tensors anywhere, space padding, header exactly filling the file
    write_raw(p, "{\"__metadata__\":{\"format\":\"pt\"},\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]},"
                 "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}    ", 4);
    CHECK(dsv3_st_open_file(&st, p) == 0, "valid hand-made file opens: %s", dsv3_error());
    if (st.ntensors) { CHECK(st.ntensors == 2, "two tensors"); dsv3_st_close(&st); }
    write_raw(p, "{}", 0);
    CHECK(dsv3_st_open_file(&st, p) == 0 && st.ntensors == 0, "empty header is a valid empty file");
    dsv3_st_close(&st);
    expect_bad_file("tests/fixtures/bad/does-not-exist.safetensors", "cannot open", "missing file");
    unlink(p);
    free(p);
}

static void write_shard(const char *name, const char *tensor, float value) {
    char *p = tmp_path(name);
    dsv3_st_writer *w = dsv3_st_writer_new();
    float v[2] = {value, value + 1};
    dsv3_st_writer_add(w, tensor, DSV3_F32, 1, (int64_t[]){2}, v);
    CHECK(dsv3_st_writer_save(w, p) == 0, "write shard %s", name);
    dsv3_st_writer_free(w);
    free(p);
}

static void write_text(const char *name, const char *text) {
    char *p = tmp_path(name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    free(p);
}

static void remove_tmp(const char *name) { char *p = tmp_path(name); unlink(p); free(p); }

static void test_dirs(void) {
    dsv3_st st;
    // no index: every *.safetensors in the directory
    write_shard("part-b.safetensors", "b", 3);
    write_shard("part-a.safetensors", "a", 1);
    CHECK(dsv3_st_open_dir(&st, g_dir) == 0, "dir of shards: %s", dsv3_error());
    CHECK(st.nfiles == 2 && st.ntensors == 2, "two files two tensors");
    const dsv3_st_tensor *t = dsv3_st_find(&st, "b");
    CHECK(t && ((const float *)t->data)[0] == 3 && strstr(st.files[t->file].path, "part-b"), "b from part-b");
    dsv3_st_close(&st);
    // duplicate names across shards
    write_shard("part-c.safetensors", "a", 5);
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "duplicate") && strstr(dsv3_error(), "'a'"),
          "duplicate across shards: %s", dsv3_error());
    remove_tmp("part-c.safetensors");
    // index: only listed files are read
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":16},\"weight_map\":{\"a\":\"part-a.safetensors\",\"b\":\"part-b.safetensors\"}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == 0, "index: %s", dsv3_error());
    CHECK(st.nfiles == 2 && dsv3_st_find(&st, "a") && dsv3_st_find(&st, "b"), "index tensors");
    dsv3_st_close(&st);
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"part-a.safetensors\",\"zz\":\"part-a.safetensors\"}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "'zz'") && strstr(dsv3_error(), "index.json"),
          "index names a tensor its file lacks: %s", dsv3_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"part-a.safetensors\",\"b\":\"part-a.safetensors\"}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "'b'"), "index names the wrong file: %s", dsv3_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"missing.safetensors\"}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "missing.safetensors"), "index names a missing file: %s",
          dsv3_error());
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../etc/passwd\"}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "unsafe"), "index path traversal: %s", dsv3_error());
    write_text("model.safetensors.index.json", "{\"weight_map\": [}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "index.json"), "malformed index: %s", dsv3_error());
    write_text("model.safetensors.index.json", "{\"metadata\":{}}");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), "weight_map"), "index without weight_map: %s", dsv3_error());
    remove_tmp("model.safetensors.index.json");
    {
        // A hostile index naming 10^5 distinct (missing) files is refused at once: the file list used to
        // be deduplicated pairwise (about 25 s); 5 s leaves room for sanitizers. The error names the
        // first missing file in sorted order.
        enum { N = 100000 };
        const size_t cap = (size_t)N * 48 + 64;
        char *big = malloc(cap);
        size_t k = (size_t)snprintf(big, cap, "{\"weight_map\":{");
        for (int i = N - 1; i >= 0; i--) k += (size_t)snprintf(big + k, cap - k, "%s\"t%d\":\"f%07d.safetensors\"", i == N - 1 ? "" : ",", i, i);
        snprintf(big + k, cap - k, "}}");
        write_text("model.safetensors.index.json", big);
        free(big);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = dsv3_st_open_dir(&st, g_dir);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        CHECK(rc == -1 && strstr(dsv3_error(), "f0000000.safetensors"), "index of many missing files: %s", dsv3_error());
        CHECK(sec < 5.0, "index with %d distinct files refused in %.2f s (expected well under 1 s)", N, sec);
        remove_tmp("model.safetensors.index.json");
    }
    // model.safetensors wins over other files when there is no index
    write_shard("model.safetensors", "m", 7);
    CHECK(dsv3_st_open_dir(&st, g_dir) == 0 && st.nfiles == 1 && dsv3_st_find(&st, "m"), "model.safetensors");
    dsv3_st_close(&st);
    remove_tmp("model.safetensors");
    remove_tmp("part-a.safetensors");
    remove_tmp("part-b.safetensors");
    CHECK(dsv3_st_open_dir(&st, g_dir) == -1 && strstr(dsv3_error(), g_dir), "empty dir: %s", dsv3_error());
    CHECK(dsv3_st_open_dir(&st, "/nonexistent-dir") == -1, "missing dir");
}

// Random single- and multi-byte corruptions of a valid file: each must either fail with a message or
// open with every tensor inside the mapped data section (the invariant the loader relies on).
static void test_mutations(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {1, 2, 3, 4};
    dsv3_st_writer *w = dsv3_st_writer_new();
    dsv3_st_writer_add(w, "alpha", DSV3_F32, 2, (int64_t[]){2, 3}, a);
    dsv3_st_writer_add(w, "beta", DSV3_BF16, 1, (int64_t[]){4}, b);
    char *p = tmp_path("mut.safetensors");
    CHECK(dsv3_st_writer_save(w, p) == 0, "save");
    dsv3_st_writer_free(w);
    size_t n = 0;
    char *orig = dsv3_read_file(p, &n);
    const char subst[] = "{}[],:\"0123456789-e. aF";
    uint64_t rng = 12345;
    int opened = 0, failed = 0, bad_bounds = 0, silent = 0;
    for (int it = 0; it < 1000; it++) {
        char *buf = malloc(n);
        memcpy(buf, orig, n);
        int k = 1 + (int)((rng = rng * 6364136223846793005ULL + 1442695040888963407ULL) >> 62);
        for (int j = 0; j < k; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (size_t)((rng >> 33) % (n - 24 > 8 ? n - 24 : n)); // mostly the length + header
            buf[pos] = (rng >> 20) & 1 ? subst[(rng >> 8) % (sizeof subst - 1)] : (char)(rng >> 40);
        }
        size_t len = n - ((rng >> 50) % 3 == 0 ? (rng >> 10) % 8 : 0); // sometimes truncated
        FILE *f = fopen(p, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        free(buf);
        dsv3_st st;
        dsv3_error_clear();
        if (dsv3_st_open_file(&st, p) == 0) {
            opened++;
            const unsigned char *lo = st.files[0].data, *hi = lo + st.files[0].size;
            for (int i = 0; i < st.ntensors; i++) {
                const unsigned char *d = st.tensors[i].data;
                if (d < lo + 8 || d + st.tensors[i].nbytes > hi) bad_bounds++;
            }
            dsv3_st_close(&st);
        } else {
            failed++;
            if (!strstr(dsv3_error(), p)) silent++;
        }
    }
    CHECK(bad_bounds == 0, "mutated files: %d tensors outside the file", bad_bounds);
    CHECK(silent == 0, "mutated files: %d failures without a message naming the file", silent);
    CHECK(failed > 300, "most mutations are refused (%d refused, %d opened)", failed, opened);
    free(orig);
    unlink(p);
    free(p);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dsv3_test_st_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_roundtrip();
    test_bad_files();
    test_dirs();
    test_mutations();
    rmdir(g_dir);
    return test_report("test_safetensors");
}
