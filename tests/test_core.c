// Core utilities: error messages, atomic writer, capped whole-file reads, checked stdout, the .npy
// header parser, token id lists, dtype table, bf16/f16 conversions.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/dtype.h"
#include "core/ids.h"
#include "core/npy.h"
#include "numerics/bf16.h"
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int has(const char *needle) { return strstr(dsv3_error(), needle) != NULL; }

// Size caps: a regular file over the cap is refused from its size, an endless device after cap + 1
// bytes, a directory by name; each message names the file and the limit.
static void test_read_caps(void) {
    const char *p = "build/test_core_cap.txt";
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 1000; i++) fputc('x', f);
    fclose(f);
    size_t n = 0;
    char *s = dsv3_read_file_max(p, 1000, "a test file", &n);
    CHECK(s && n == 1000 && s[1000] == 0, "file at the cap is read");
    free(s);
    dsv3_error_clear();
    CHECK(dsv3_read_file_max(p, 999, "a test file", &n) == NULL && has(p) && has("999 bytes limit for a test file"),
          "file over the cap refused: %s", dsv3_error());
    CHECK(dsv3_read_file_max("/dev/zero", (size_t)1 << 20, "a config.json", &n) == NULL && has("/dev/zero") &&
              has("more than the 1 MiB limit for a config.json"), "endless device refused: %s", dsv3_error());
    s = dsv3_read_file_max("/dev/null", 10, NULL, &n);
    CHECK(s != NULL && n == 0, "empty device reads as empty");
    free(s);
    CHECK(dsv3_read_file("build", &n) == NULL && has("build: is a directory"), "directory named: %s", dsv3_error());
    CHECK(dsv3_read_file("build/none/x", &n) == NULL && has("cannot open") && has("build/none/x"), "missing file: %s", dsv3_error());
    unlink(p);
    char b[32];
    CHECK(strcmp(dsv3_fmt_bytes(b, sizeof b, (size_t)64 << 20), "64 MiB") == 0 && strcmp(dsv3_fmt_bytes(b, sizeof b, 1000), "1000 bytes") == 0,
          "byte counts for messages");
}

// stdout that cannot be written (/dev/full): dsv3_stdout_flush reports it with the OS reason.
static void test_stdout_flush(void) {
    if (access("/dev/full", W_OK) != 0) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/full", "w", stdout)) _exit(3);
        printf("some output\n");
        int rc = dsv3_stdout_flush();
        _exit(rc == -1 && strstr(dsv3_error(), "stdout: write failed: No space left on device") ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stdout on /dev/full reported (child status %d)", st);
}

static int npy_buf(unsigned char *out, const char *dict, size_t data_bytes) { // version 1.0, header padded to 64
    size_t dl = strlen(dict), pad = (64 - (10 + dl + 1) % 64) % 64, hl = dl + pad + 1;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hl & 255), out[9] = (unsigned char)(hl >> 8);
    memcpy(out + 10, dict, dl);
    memset(out + 10 + dl, ' ', pad);
    out[10 + dl + pad] = '\n';
    memset(out + 10 + hl, 0, data_bytes);
    return (int)(10 + hl + data_bytes);
}

static void test_npy_parse(void) {
    unsigned char buf[4096];
    dsv3_npy_info in;
    int n = npy_buf(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    CHECK(dsv3_npy_parse(buf, n, "x.npy", &in) == 0 && in.dtype == DSV3_NPY_F32 && in.ndim == 2 && in.shape[1] == 3 &&
              in.count == 6 && in.data_offset == 128, "f4 (2, 3): %s", dsv3_error());
    n = npy_buf(buf, "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", 40);
    CHECK(dsv3_npy_parse(buf, n, "x.npy", &in) == 0 && in.dtype == DSV3_NPY_I64 && in.ndim == 1 && in.count == 5, "i8 (5,)");
    n = npy_buf(buf, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }", 4);
    CHECK(dsv3_npy_parse(buf, n, "x.npy", &in) == 0 && in.ndim == 0 && in.count == 1, "scalar ()");
    n = npy_buf(buf, "{\"shape\":(0,4),'fortran_order':False,'descr':'<f4'}", 0);
    CHECK(dsv3_npy_parse(buf, n, "x.npy", &in) == 0 && in.count == 0, "any key order and spacing, empty array");
    static const struct { const char *dict; size_t data; const char *want; } bad[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12, "trailing comma"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24, "'<f8' is not supported"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12, "not supported"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", 12, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'descr': '<f4'}", 12, "unknown or repeated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", 12, "unknown or repeated"},
        {"{'descr': '<f4', 'shape': (3,), }", 12, "lacks"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 16, "expected 12"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 0, "bad .npy shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999,), }", 0, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536, 65537), }", 0, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "rank above 8"},
        {"['descr', '<f4']", 0, "not a dict"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = npy_buf(buf, bad[i].dict, bad[i].data);
        dsv3_error_clear();
        CHECK(dsv3_npy_parse(buf, n, "bad.npy", &in) == -1 && has("bad.npy") && has(bad[i].want), "%s refused (%s): %s",
              bad[i].dict, bad[i].want, dsv3_error());
    }
    n = npy_buf(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
    buf[n - 13] = 'x'; // the header's final newline
    CHECK(dsv3_npy_parse(buf, n, "bad.npy", &in) == -1 && has("newline"), "header without its newline");
    CHECK(dsv3_npy_parse((const unsigned char *)"\x93NUMPY\x01\x00\xff\xff{", 11, "t.npy", &in) == -1 && has("truncated"), "header past the end");
    CHECK(dsv3_npy_parse((const unsigned char *)"\x93NUMPY\x07\x00\x00\x00", 10, "t.npy", &in) == -1 && has("version 7"), "unknown version");
    CHECK(dsv3_npy_parse((const unsigned char *)"PK\x03\x04", 4, "t.npy", &in) == -1 && has("bad magic"), "not npy");
}

static void test_ids(void) {
    int32_t *ids;
    size_t n;
    const char *t = " 5,17 ,300\n\n42\t7 \r\n";
    CHECK(dsv3_ids_parse(t, strlen(t), "f", 100, &ids, &n) == 0 && n == 5 && ids[0] == 5 && ids[2] == 300 && ids[4] == 7,
          "text ids, commas and whitespace: %s", dsv3_error());
    free(ids);
    CHECK(dsv3_ids_parse("2147483647", 10, "f", 10, &ids, &n) == 0 && n == 1 && ids[0] == 2147483647, "2^31 - 1");
    free(ids);
    static const struct { const char *s; const char *want; } bad[] = {
        {"", "no token ids"}, {" \n", "no token ids"}, {"1,,2", "found a comma"}, {",1", "found a comma"},
        {"1,", "trailing comma"}, {"1 -2", "negative"}, {"1 x", "unexpected character"}, {"1\x01", "unexpected byte"},
        {"2147483648", "above 2^31 - 1"}, {"00000000001234", "above 2^31 - 1"}, {"1 2 3 4", "more than 3 token ids"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsv3_error_clear();
        CHECK(dsv3_ids_parse(bad[i].s, strlen(bad[i].s), "ids.txt", 3, &ids, &n) == -1 && has("ids.txt") && has(bad[i].want),
              "'%s' refused (%s): %s", bad[i].s, bad[i].want, dsv3_error());
    }
    unsigned char buf[256];
    int m = npy_buf(buf, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", 8);
    buf[m - 8] = 9, buf[m - 4] = 1, buf[m - 3] = 1; // ids 9 and 257
    CHECK(dsv3_ids_parse((const char *)buf, m, "i.npy", 10, &ids, &n) == 0 && n == 2 && ids[0] == 9 && ids[1] == 257,
          ".npy int32 (1, 2): %s", dsv3_error());
    free(ids);
    m = npy_buf(buf, "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", 8);
    buf[m - 4] = 1; // 2^32
    CHECK(dsv3_ids_parse((const char *)buf, m, "i.npy", 10, &ids, &n) == -1 && has("not in [0, 2^31)"), ".npy int64 id past int32");
    m = npy_buf(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
    CHECK(dsv3_ids_parse((const char *)buf, m, "i.npy", 10, &ids, &n) == -1 && has("int32 or int64"), ".npy float32 ids refused");
    m = npy_buf(buf, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }", 8);
    CHECK(dsv3_ids_parse((const char *)buf, m, "i.npy", 10, &ids, &n) == -1 && has("(1, T)"), ".npy (2, 1) refused");
    CHECK(dsv3_ids_read_file("/dev/zero", 10, &ids, &n) == -1 && has("64 MiB limit"), "endless ids file refused: %s", dsv3_error());
}

int main(void) {
    test_read_caps();
    test_stdout_flush();
    test_npy_parse();
    test_ids();
    // errors carry context
    CHECK(dsv3_errorf("bad %s", "thing") == -1, "errorf returns -1");
    dsv3_error_context("file.json");
    CHECK(strcmp(dsv3_error(), "file.json: bad thing") == 0, "context prefix: %s", dsv3_error());

    // atomic writer: abort leaves nothing, commit leaves the file
    const char *p = "build/test_core_out.bin";
    unlink(p);
    dsv3_writer w;
    CHECK(dsv3_writer_open(&w, p) == 0, "writer open");
    dsv3_writer_write(&w, "abc", 3);
    dsv3_writer_abort(&w);
    CHECK(!dsv3_file_exists(p), "aborted write leaves no file");
    CHECK(dsv3_writer_open(&w, p) == 0, "writer open 2");
    dsv3_writer_write(&w, "abc", 3);
    CHECK(dsv3_writer_commit(&w) == 0, "commit");
    size_t n = 0;
    char *s = dsv3_read_file(p, &n);
    CHECK(s && n == 3 && memcmp(s, "abc", 3) == 0, "read back");
    free(s);
    unlink(p);
    CHECK(dsv3_writer_open(&w, "/nonexistent-dir/x") == -1, "unwritable path is an error");

    // dtype table
    dsv3_dtype t;
    CHECK(dsv3_dtype_parse("F8_E4M3", &t) == 0 && t == DSV3_F8_E4M3 && dsv3_dtype_size(t) == 1, "F8_E4M3");
    CHECK(dsv3_dtype_parse("BF16", &t) == 0 && dsv3_dtype_size(t) == 2, "BF16");
    CHECK(dsv3_dtype_parse("Q4_K", &t) == -1, "unknown dtype");

    // bf16: exact values, RNE ties (exact math: 1 + 2^-8 is a tie between 1 and 1 + 2^-7)
    CHECK(dsv3_bf16_to_f32(dsv3_f32_to_bf16(1.5f)) == 1.5f, "bf16 exact");
    CHECK(dsv3_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(dsv3_f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(isnan(dsv3_bf16_to_f32(dsv3_f32_to_bf16(NAN))), "bf16 NaN");
    // f16: 1.0, smallest subnormal 2^-24, max 65504, inf
    CHECK(dsv3_f16_to_f32(0x3c00) == 1.0f && dsv3_f16_to_f32(0x0001) == 0x1p-24f, "f16 1.0 and subnormal");
    CHECK(dsv3_f16_to_f32(0x7bff) == 65504.0f && isinf(dsv3_f16_to_f32(0x7c00)), "f16 max and inf");
    CHECK(dsv3_f16_to_f32(0x0200) == 0x1p-15f, "f16 subnormal 0x200");
    return test_report("test_core");
}
