// Core utilities: error messages, atomic writer, dtype table, bf16/f16 conversions.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/dtype.h"
#include "numerics/bf16.h"
#include <unistd.h>

int main(void) {
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
