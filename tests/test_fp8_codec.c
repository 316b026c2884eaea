// FP8 codecs (src/numerics/fp8.h) against torch (tests/fixtures/fp8/codec.bin, written by
// tools/ref/make_fp8_fixtures.py) and against hand-checkable values from the format definitions.
// Everything here is bit-exact: no tolerances.
#include "test.h"
#include "fp8_fixture.h"
#include "numerics/fp8.h"
#include <stdint.h>

static int same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y; // distinguishes -0 from +0
}

static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

int main(void) {
    fx_file fx;
    if (fx_load(&fx, FIXTURE("fp8/codec.bin")) != 0) { CHECK(0, "fixture"); return test_report("test_fp8_codec"); }
    const fx_array *d4 = fx_get(&fx, "e4m3_decode", 0), *d5 = fx_get(&fx, "e5m2_decode", 0);
    const fx_array *in = fx_get(&fx, "enc_in", 0);
    const fx_array *t4 = fx_get(&fx, "torch_e4m3", 1), *t4c = fx_get(&fx, "torch_e4m3_clamped", 1);
    const fx_array *t5 = fx_get(&fx, "torch_e5m2", 1), *t5c = fx_get(&fx, "torch_e5m2_clamped", 1);
    const fx_array *m4 = fx_get(&fx, "mld_e4m3", 1), *m5 = fx_get(&fx, "mld_e5m2", 1);
    const fx_array *tsat = fx_get(&fx, "torch_e4m3_saturates", 1);
    int have = d4 && d5 && in && t4 && t4c && t5 && t5c && m4 && m5 && tsat;
    CHECK(have, "fixture arrays present");
    if (!have) return test_report("test_fp8_codec");

    // 1. all 256 decodes of each format, bit for bit (sign of zero included), vs torch
    int bad4 = 0, bad5 = 0;
    for (int c = 0; c < 256; c++) {
        bad4 += !same_float(dsv3_e4m3_to_f32((uint8_t)c), ((float *)d4->data)[c]);
        bad5 += !same_float(dsv3_e5m2_to_f32((uint8_t)c), ((float *)d5->data)[c]);
    }
    CHECK(bad4 == 0, "e4m3 decode: %d of 256 differ from torch", bad4);
    CHECK(bad5 == 0, "e5m2 decode: %d of 256 differ from torch", bad5);

    // 2. the decodes against the definitions (independent of torch): E4M3 (-1)^s 2^(e-7)(1+m/8), subnormal
    //    2^-6 m/8, NaN only at S.1111.111; E5M2 IEEE with bias 15
    int badd = 0;
    for (int c = 0; c < 256; c++) {
        int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
        double v = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);
        if (s) v = -v;
        float got = dsv3_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7f) == 0x7f) badd += !isnan(got); else badd += !same_float(got, (float)v);
        e = (c >> 2) & 31, m = c & 3;
        v = e ? ldexp(4 + m, e - 17) : ldexp(m, -16);
        if (s) v = -v;
        got = dsv3_e5m2_to_f32((uint8_t)c);
        if (e == 31) badd += m ? !isnan(got) : !(isinf(got) && (got < 0) == s);
        else badd += !same_float(got, (float)v);
    }
    CHECK(badd == 0, "decode tables vs the format definitions: %d differ", badd);

    // 3. edge encodes vs torch and ml_dtypes. torch 2.15's e4m3 cast saturates (inf -> 448), so its column
    //    is compared with the policy the fixture recorded; ml_dtypes overflows to NaN / inf (our NONSAT);
    //    clamp-then-cast is the saturating reference for both formats. ml_dtypes writes its own NaN code
    //    for E5M2 (0x7E), so NaN inputs are compared by NaN-ness there.
    const float *x = in->data;
    size_t n = in->count, bt4 = 0, bt4c = 0, bt5 = 0, bt5c = 0, bm4 = 0, bm5 = 0;
    dsv3_fp8_policy tpol = ((uint8_t *)tsat->data)[0] ? DSV3_FP8_SATURATE : DSV3_FP8_NONSAT;
    for (size_t i = 0; i < n; i++) {
        uint8_t n4 = dsv3_f32_to_e4m3(x[i], DSV3_FP8_NONSAT), n5 = dsv3_f32_to_e5m2(x[i], DSV3_FP8_NONSAT);
        bt4 += dsv3_f32_to_e4m3(x[i], tpol) != ((uint8_t *)t4->data)[i];
        bt4c += dsv3_f32_to_e4m3(x[i], DSV3_FP8_SATURATE) != ((uint8_t *)t4c->data)[i];
        bt5 += n5 != ((uint8_t *)t5->data)[i];
        bt5c += dsv3_f32_to_e5m2(x[i], DSV3_FP8_SATURATE) != ((uint8_t *)t5c->data)[i];
        bm4 += n4 != ((uint8_t *)m4->data)[i];
        uint8_t r5 = ((uint8_t *)m5->data)[i];
        bm5 += isnan(x[i]) ? !isnan(dsv3_e5m2_to_f32(r5)) || !isnan(dsv3_e5m2_to_f32(n5)) : n5 != r5;
    }
    CHECK(n > 2000, "edge inputs: %zu", n);
    CHECK(bt4 == 0, "e4m3 encode (%s): %zu of %zu differ from torch's cast", tpol ? "saturate" : "nonsat", bt4, n);
    CHECK(bt4c == 0, "e4m3 saturating encode: %zu of %zu differ from torch clamp+cast", bt4c, n);
    CHECK(bt5 == 0, "e5m2 nonsat encode: %zu of %zu differ from torch's cast", bt5, n);
    CHECK(bt5c == 0, "e5m2 saturating encode: %zu of %zu differ from torch clamp+cast", bt5c, n);
    CHECK(bm4 == 0, "e4m3 nonsat encode: %zu of %zu differ from ml_dtypes", bm4, n);
    CHECK(bm5 == 0, "e5m2 nonsat encode: %zu of %zu differ from ml_dtypes", bm5, n);

    // 4. hand-checked encodes (the spec's table of overflow and tie rules)
    CHECK(dsv3_f32_to_e4m3(448.0f, 0) == 0x7e && dsv3_f32_to_e4m3(-448.0f, 0) == 0xfe, "448");
    CHECK(dsv3_f32_to_e4m3(464.0f, 0) == 0x7e, "464 ties to 448 (even)");
    CHECK(dsv3_f32_to_e4m3(464.0001f, 0) == 0x7f, "just above 464 -> NaN code (nonsat)");
    CHECK(dsv3_f32_to_e4m3(480.0f, 0) == 0x7f && dsv3_f32_to_e4m3(1e30f, 1) == 0x7e, "480 NaN / saturate");
    CHECK(dsv3_f32_to_e4m3(INFINITY, 0) == 0x7f && dsv3_f32_to_e4m3(-INFINITY, 1) == 0xfe, "inf");
    CHECK(dsv3_f32_to_e4m3(NAN, 1) == 0x7f && dsv3_f32_to_e4m3(-NAN, 0) == 0xff, "NaN");
    CHECK(dsv3_f32_to_e4m3(-0.0f, 0) == 0x80 && dsv3_f32_to_e4m3(0.0f, 0) == 0x00, "signed zero");
    CHECK(dsv3_f32_to_e4m3(0x1p-10f, 0) == 0x00 && dsv3_f32_to_e4m3(0x1.000002p-10f, 0) == 0x01, "2^-10 tie -> 0");
    CHECK(dsv3_f32_to_e4m3(0x1.8p-9f, 0) == 0x02, "1.5·2^-9 ties to 2·2^-9 (even)");
    CHECK(dsv3_f32_to_e4m3(0x1.ep-7f, 0) == 0x08, "subnormal rounding carries into the smallest normal");
    CHECK(dsv3_f32_to_e4m3(bits_f(1), 0) == 0x00, "fp32 subnormal -> 0");
    CHECK(dsv3_f32_to_e4m3(1.0625f, 0) == 0x38 && dsv3_f32_to_e4m3(1.1875f, 0) == 0x3a, "ties in the normal range");
    CHECK(dsv3_f32_to_e5m2(57344.0f, 0) == 0x7b && dsv3_f32_to_e5m2(61439.996f, 0) == 0x7b, "e5m2 max");
    CHECK(dsv3_f32_to_e5m2(61440.0f, 0) == 0x7c && dsv3_f32_to_e5m2(61440.0f, 1) == 0x7b, "e5m2 61440 -> inf / max");
    CHECK(dsv3_f32_to_e5m2(-INFINITY, 0) == 0xfc && dsv3_f32_to_e5m2(NAN, 0) == 0x7f, "e5m2 inf, NaN");
    CHECK(dsv3_f32_to_e5m2(0x1p-17f, 0) == 0x00 && dsv3_f32_to_e5m2(0x1.8p-16f, 0) == 0x02, "e5m2 subnormal ties");

    // 5. E5M6 (no torch oracle): by the definition and by agreement with IEEE binary16 (E5M6 = top 12 bits)
    int b56 = 0;
    for (uint32_t c = 0; c < 4096; c++) {
        int s = c >> 11, e = (c >> 6) & 31, m = c & 63;
        float got = dsv3_e5m6_to_f32((uint16_t)c);
        if (e == 31) { b56 += m ? !isnan(got) : !(isinf(got) && (got < 0) == s); continue; }
        double v = e ? ldexp(64 + m, e - 21) : ldexp(m, -20);
        b56 += !same_float(got, (float)(s ? -v : v));
        b56 += dsv3_f32_to_e5m6(got, DSV3_FP8_NONSAT) != c; // every finite value round-trips
    }
    CHECK(b56 == 0, "e5m6: %d of 4096 codes differ from the definition or do not round-trip", b56);
    CHECK(dsv3_e5m6_to_f32(0x7bf) == 65024.0f && dsv3_e5m6_to_f32(0x001) == 0x1p-20f, "e5m6 max, min subnormal");
    CHECK(dsv3_f32_to_e5m6(65279.99f, 0) == 0x7bf && dsv3_f32_to_e5m6(65280.0f, 0) == 0x7c0, "e5m6 overflow tie -> inf");
    CHECK(dsv3_f32_to_e5m6(1e9f, 1) == 0x7bf && dsv3_f32_to_e5m6(-1e9f, 1) == 0xfbf, "e5m6 saturate");
    CHECK(dsv3_f32_to_e5m6(NAN, 0) == 0x7ff && dsv3_f32_to_e5m6(-0.0f, 0) == 0x800, "e5m6 NaN, -0");
    CHECK(dsv3_f32_to_e5m6(1.0f + 0x1p-7f, 0) == 0x3c0 && dsv3_f32_to_e5m6(1.0f + 0x3p-7f, 0) == 0x3c2, "e5m6 ties");

    // 6. UE8M0: 2^(e-127), ceil to powers of two computed exactly
    CHECK(dsv3_ue8m0_to_f32(127) == 1.0f && dsv3_ue8m0_to_f32(0) == 0x1p-127f && dsv3_ue8m0_to_f32(254) == 0x1p127f, "ue8m0 decode");
    CHECK(isnan(dsv3_ue8m0_to_f32(255)), "ue8m0 0xFF is NaN");
    CHECK(dsv3_f32_to_ue8m0_ceil(1.0f) == 127 && dsv3_f32_to_ue8m0_ceil(1.0000001f) == 128, "ceil at 1");
    CHECK(dsv3_f32_to_ue8m0_ceil(0.75f) == 127 && dsv3_f32_to_ue8m0_ceil(0x1p-20f) == 107, "ceil below 1");
    CHECK(dsv3_f32_to_ue8m0_ceil(1e-4f / 448.0f) == 127 - 22, "ceil of the clamp scale 1e-4/448 = 2^-22");
    CHECK(dsv3_f32_to_ue8m0_ceil(0.0f) == 255 && dsv3_f32_to_ue8m0_ceil(-1.0f) == 255 && dsv3_f32_to_ue8m0_ceil(NAN) == 255, "invalid");
    CHECK(dsv3_f32_to_ue8m0_ceil(0x1p-127f) == 0 && dsv3_f32_to_ue8m0_ceil(0x1.8p-127f) == 1 && dsv3_f32_to_ue8m0_ceil(0x1.8p127f) == 255, "range ends");
    int bue = 0;
    for (int e = -126; e <= 126; e++) { // every power of two maps to itself, and a hair above to the next one
        float p = ldexpf(1.0f, e), pu = nextafterf(p, INFINITY);
        bue += dsv3_ue8m0_to_f32(dsv3_f32_to_ue8m0_ceil(p)) != p;
        bue += dsv3_ue8m0_to_f32(dsv3_f32_to_ue8m0_ceil(pu)) != 2 * p;
    }
    CHECK(bue == 0, "ue8m0 ceil over the exponent range: %d wrong", bue);

    // 7. bulk helpers agree with the scalar ones
    float buf[1000], back[1000];
    uint8_t q[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (float)(i - 500) * 1.37f;
    dsv3_e4m3_encode_n(q, buf, 1000, DSV3_FP8_SATURATE);
    dsv3_e4m3_decode_n(back, q, 1000);
    int bb = 0;
    for (int i = 0; i < 1000; i++) bb += q[i] != dsv3_f32_to_e4m3(buf[i], 1) || back[i] != dsv3_e4m3_to_f32(q[i]);
    CHECK(bb == 0, "bulk e4m3: %d differ", bb);
    dsv3_fp8_format ff;
    CHECK(dsv3_fp8_format_parse("e5m6", &ff) == 0 && ff == DSV3_FMT_E5M6 && dsv3_fp8_format_parse("e4m4", &ff) == -1, "format names");
    fx_free(&fx);
    return test_report("test_fp8_codec");
}
