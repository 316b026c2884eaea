// Fine-grained quantizers (src/numerics/quant.h):
//  * bit-exact against the torch re-implementation of DeepSeek's act_quant / weight quantization /
//    weight_dequant / backward re-tiling (tests/fixtures/fp8/quant.bin, tools/ref/make_fp8_fixtures.py),
//    both scale formats, with partial edge tiles (K = 300 -> tiles 128, 128, 44; N = 136 -> 128, 8);
//  * the re-tiling exactness property of power-of-two scales, checked element by element;
//  * the round-trip error bound that follows from the E4M3 format (exact math).
#include "test.h"
#include "fp8_fixture.h"
#include "numerics/bf16.h"
#include "numerics/quant.h"
#include <stdint.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { // xorshift64*, uniform in (0, 1)
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return ((rng_state * 2685821657736338717ull) >> 11) * 0x1p-53 + 0x1p-54;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }

static size_t count_diff_u8(const uint8_t *a, const uint8_t *b, size_t n) { size_t d = 0; for (size_t i = 0; i < n; i++) d += a[i] != b[i]; return d; }
static size_t count_diff_f32(const float *a, const float *b, size_t n) { size_t d = 0; for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0; return d; }

static void fixture_tests(void) {
    fx_file fx;
    if (fx_load(&fx, FIXTURE("fp8/quant.bin")) != 0) { CHECK(0, "fixture quant.bin"); return; }
    char nm[64];
    // activations 1x128
    const fx_array *ax = fx_get(&fx, "act_x", 0);
    CHECK(ax && ax->ndim == 2, "act_x");
    if (!ax) return;
    int M = ax->dims[0], K = ax->dims[1], nk = (K + 127) / 128;
    uint8_t *q = malloc((size_t)M * K);
    float *s = malloc(sizeof(float) * M * nk);
    for (int ue = 0; ue < 2; ue++) {
        snprintf(nm, sizeof nm, "act_q_%d", ue); const fx_array *rq = fx_get(&fx, nm, 1);
        snprintf(nm, sizeof nm, "act_s_%d", ue); const fx_array *rs = fx_get(&fx, nm, 0);
        if (!rq || !rs) { CHECK(0, "act fixture arrays"); continue; }
        dsv3_quant_1x128_e4m3(q, s, ax->data, M, K, (dsv3_scale_fmt)ue);
        CHECK(count_diff_f32(s, rs->data, (size_t)M * nk) == 0, "act_quant scales (ue8m0=%d) differ from torch", ue);
        size_t d = count_diff_u8(q, rq->data, (size_t)M * K);
        CHECK(d == 0, "act_quant codes (ue8m0=%d): %zu of %d differ from torch", ue, d, M * K);
        CHECK(s[3 * nk + 0] == (ue ? 0x1p-22f : 1e-4f / 448.0f), "all-zero tile gets the clamped scale (ue8m0=%d)", ue);
    }
    free(q); free(s);

    // weights 128x128
    const fx_array *wx = fx_get(&fx, "w_x", 0);
    if (!wx) { CHECK(0, "w_x"); return; }
    int N = wx->dims[0];
    K = wx->dims[1];
    int nn = (N + 127) / 128;
    nk = (K + 127) / 128;
    q = malloc((size_t)N * K);
    s = malloc(sizeof(float) * nn * nk);
    float *deq = malloc(sizeof(float) * N * K);
    uint16_t *deq16 = malloc(2 * (size_t)N * K);
    for (int ue = 0; ue < 2; ue++) {
        snprintf(nm, sizeof nm, "w_q_%d", ue); const fx_array *rq = fx_get(&fx, nm, 1);
        snprintf(nm, sizeof nm, "w_s_%d", ue); const fx_array *rs = fx_get(&fx, nm, 0);
        snprintf(nm, sizeof nm, "w_deq_bf16_%d", ue); const fx_array *rb = fx_get(&fx, nm, 3);
        if (!rq || !rs || !rb) { CHECK(0, "weight fixture arrays"); continue; }
        dsv3_quant_128x128_e4m3(q, s, wx->data, N, K, (dsv3_scale_fmt)ue);
        CHECK(count_diff_f32(s, rs->data, (size_t)nn * nk) == 0, "weight block scales (ue8m0=%d) differ from torch", ue);
        size_t d = count_diff_u8(q, rq->data, (size_t)N * K);
        CHECK(d == 0, "weight codes (ue8m0=%d): %zu of %d differ from torch", ue, d, N * K);
        // dequantize the torch codes with the torch scales
        dsv3_dequant_128x128_e4m3_bf16(deq16, rq->data, rs->data, N, K);
        size_t db = 0;
        for (size_t i = 0; i < (size_t)N * K; i++) db += deq16[i] != ((uint16_t *)rb->data)[i];
        CHECK(db == 0, "weight_dequant bf16 (ue8m0=%d): %zu differ from torch", ue, db);
        if (ue == 0) {
            const fx_array *rd = fx_get(&fx, "w_deq_0", 0);
            dsv3_dequant_128x128_e4m3(deq, rq->data, rs->data, N, K);
            CHECK(rd && count_diff_f32(deq, rd->data, (size_t)N * K) == 0, "weight_dequant fp32 differs from torch");
        }
    }
    free(q); free(s); free(deq); free(deq16);

    // backward re-tiling
    const fx_array *rx = fx_get(&fx, "rt_x", 0);
    if (!rx) { CHECK(0, "rt_x"); return; }
    M = rx->dims[0];
    K = rx->dims[1];
    nk = (K + 127) / 128;
    int nm_ = (M + 127) / 128;
    q = malloc((size_t)M * K);
    s = malloc(sizeof(float) * M * nk);
    uint8_t *qt = malloc((size_t)M * K);
    float *st = malloc(sizeof(float) * K * nm_);
    for (int ue = 0; ue < 2; ue++) {
        snprintf(nm, sizeof nm, "rt_qt_%d", ue); const fx_array *rq = fx_get(&fx, nm, 1);
        snprintf(nm, sizeof nm, "rt_st_%d", ue); const fx_array *rs = fx_get(&fx, nm, 0);
        snprintf(nm, sizeof nm, "rt_q_%d", ue); const fx_array *rq0 = fx_get(&fx, nm, 1);
        if (!rq || !rs || !rq0) { CHECK(0, "retile fixture arrays"); continue; }
        dsv3_quant_1x128_e4m3(q, s, rx->data, M, K, (dsv3_scale_fmt)ue);
        CHECK(count_diff_u8(q, rq0->data, (size_t)M * K) == 0, "retile input codes (ue8m0=%d)", ue);
        dsv3_quant_retile_1x128_t_e4m3(qt, st, q, s, M, K, (dsv3_scale_fmt)ue);
        CHECK(count_diff_f32(st, rs->data, (size_t)K * nm_) == 0, "retiled scales (ue8m0=%d) differ from torch", ue);
        size_t d = count_diff_u8(qt, rq->data, (size_t)M * K);
        CHECK(d == 0, "retiled codes (ue8m0=%d): %zu of %d differ from torch", ue, d, M * K);
    }
    free(q); free(s); free(qt); free(st);
    fx_free(&fx);
}

// Re-tiling exactness. With power-of-two scales, a dequantized value v = c · 2^a (c an E4M3 value) is
// requantized as v / 2^b = c · 2^(a-b): only the exponent moves, so it is exact unless the result drops
// below the smallest normal 2^-6 and loses mantissa bits (overflow cannot happen: 2^b >= column amax/448).
// We check: every mismatch is such an underflow, and with E5M6 (smallest normal 2^-14 vs max 65024)
// nothing underflows on this data, so re-tiling is exact everywhere. With amax/448 scales it is not.
static void retile_exactness(void) {
    const int M = 384, K = 256;
    float *x = malloc(sizeof(float) * M * K);
    for (int i = 0; i < M * K; i++) x[i] = nrand();
    for (int m = 0; m < M; m += 37) for (int k = 0; k < K; k++) x[(size_t)m * K + k] *= 30.0f; // outlier tokens
    for (int k = 5; k < K; k += 64) for (int m = 0; m < M; m++) x[(size_t)m * K + k] *= 0.01f; // quiet channels
    int nk = K / 128, nmb = M / 128;
    uint8_t *q = malloc((size_t)M * K), *qt = malloc((size_t)M * K);
    uint16_t *q6 = malloc(2 * (size_t)M * K), *qt6 = malloc(2 * (size_t)M * K);
    float *s = malloc(sizeof(float) * M * nk), *st = malloc(sizeof(float) * K * nmb);
    float *d0 = malloc(sizeof(float) * M * K), *d1 = malloc(sizeof(float) * M * K);

    for (int ue = 1; ue >= 0; ue--) {
        dsv3_quant_1x128_e4m3(q, s, x, M, K, (dsv3_scale_fmt)ue);
        dsv3_quant_retile_1x128_t_e4m3(qt, st, q, s, M, K, (dsv3_scale_fmt)ue);
        dsv3_dequant_1x128_e4m3(d0, q, s, M, K);
        dsv3_dequant_1x128_e4m3(d1, qt, st, K, M);
        size_t mism = 0, unexplained = 0, underflow = 0, rescaled = 0;
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                float a = d0[(size_t)m * K + k], b = d1[(size_t)k * M + m];
                float sc = st[(size_t)k * nmb + m / 128];
                int uf = a != 0.0f && fabsf(a) / sc < 0x1p-6f;   // requantized value below the smallest normal
                underflow += uf;
                rescaled += sc != s[(size_t)m * nk + k / 128];
                if (a != b) { mism++; unexplained += !uf; }
            }
        if (ue) {
            CHECK(rescaled > (size_t)M * K / 2, "the data must actually change scales when re-tiled (%zu)", rescaled);
            CHECK(unexplained == 0, "ue8m0 e4m3 re-tiling: %zu mismatches not explained by underflow", unexplained);
            CHECK(mism <= underflow && underflow < (size_t)M * K / 100, "ue8m0 e4m3: %zu mismatches, %zu underflows", mism, underflow);
        } else {
            CHECK(mism > (size_t)M * K / 10, "amax/448 scales: re-tiling should change many values (%zu)", mism);
        }
    }
    // E5M6 with power-of-two scales: exact for every element
    dsv3_quant_1x128_e5m6(q6, s, x, M, K, DSV3_SCALE_UE8M0);
    dsv3_quant_retile_1x128_t_e5m6(qt6, st, q6, s, M, K, DSV3_SCALE_UE8M0);
    dsv3_dequant_1x128_e5m6(d0, q6, s, M, K);
    dsv3_dequant_1x128_e5m6(d1, qt6, st, K, M);
    size_t mism = 0;
    for (int m = 0; m < M; m++) for (int k = 0; k < K; k++) mism += d0[(size_t)m * K + k] != d1[(size_t)k * M + m];
    CHECK(mism == 0, "ue8m0 e5m6 re-tiling: %zu of %d values changed (must be exact)", mism, M * K);
    // and with amax scales E5M6 re-tiling is not exact
    dsv3_quant_1x128_e5m6(q6, s, x, M, K, DSV3_SCALE_AMAX);
    dsv3_quant_retile_1x128_t_e5m6(qt6, st, q6, s, M, K, DSV3_SCALE_AMAX);
    dsv3_dequant_1x128_e5m6(d0, q6, s, M, K);
    dsv3_dequant_1x128_e5m6(d1, qt6, st, K, M);
    mism = 0;
    for (int m = 0; m < M; m++) for (int k = 0; k < K; k++) mism += d0[(size_t)m * K + k] != d1[(size_t)k * M + m];
    CHECK(mism > 0, "amax e5m6 re-tiling should not be exact");

    // Round-trip bound (exact math): E4M3 RNE has relative error <= 2^-4 for normal results and absolute
    // error <= 2^-10 · s in the subnormal range; x / s is rounded once more in fp32 (relative 2^-24).
    dsv3_quant_1x128_e4m3(q, s, x, M, K, DSV3_SCALE_AMAX);
    dsv3_dequant_1x128_e4m3(d0, q, s, M, K);
    size_t viol = 0;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double xv = x[(size_t)m * K + k], sc = s[(size_t)m * nk + k / 128];
            double bound = fmax(fabs(xv) * 0x1p-4, sc * 0x1p-10) * (1 + 0x1p-20);
            viol += fabs(d0[(size_t)m * K + k] - xv) > bound;
        }
    CHECK(viol == 0, "round-trip error bound violated %zu times", viol);
    free(x); free(q); free(qt); free(q6); free(qt6); free(s); free(st); free(d0); free(d1);
}

// Edge cases with exact expectations: NaN / inf in a tile (the policy documented in quant.h),
// K not a multiple of 128 with a 1-element last tile, and empty shapes (nothing written).
static void edge_cases(void) {
    enum { K = 257 }; // tiles 128, 128, 1
    float x[2 * K], back[2 * K], s[6], s5[6];
    uint8_t q[2 * K];
    uint16_t q6[2 * K];
    for (int i = 0; i < 2 * K; i++) x[i] = (float)(i % 50) - 20.0f; // |x| <= 29, amax 29 in every full tile
    x[3] = NAN;          // row 0, tile 0
    x[K + 130] = INFINITY; // row 1, tile 1
    x[2 * K - 1] = -2.0f;  // row 1, tile 2: a single element
    for (int ue = 0; ue < 2; ue++) {
        dsv3_quant_1x128_e4m3(q, s, x, 2, K, (dsv3_scale_fmt)ue);
        dsv3_quant_1x128_e5m6(q6, s5, x, 2, K, (dsv3_scale_fmt)ue);
        float s29 = dsv3_quant_scale(29.0f, 448.0f, (dsv3_scale_fmt)ue);
        CHECK(s[0] == s29 && s[1] == s29, "NaN skipped by amax (ue8m0=%d): scale %g, want %g", ue, s[0], s29);
        CHECK(q[3] == 0x7f && (q6[3] & 0x7ff) > 0x7c0, "NaN element -> NaN code (ue8m0=%d)", ue);
        CHECK(q[4] == dsv3_f32_to_e4m3(x[4] / s29, DSV3_FP8_SATURATE), "rest of a NaN tile quantized normally");
        CHECK(ue ? isnan(s[4]) : isinf(s[4]), "inf element: scale inf (amax) / NaN (ue8m0), got %g", s[4]);
        CHECK(s[5] == dsv3_quant_scale(2.0f, 448.0f, (dsv3_scale_fmt)ue) && q[2 * K - 1] == (ue ? 0xf8 : 0xfe),
              "1-element last tile (ue8m0=%d): scale %g code 0x%02x", ue, s[5], q[2 * K - 1]);
        dsv3_dequant_1x128_e4m3(back, q, s, 2, K);
        int nan_tile = 1, other_ok = 1;
        for (int k = 128; k < 256; k++) nan_tile &= isnan(back[K + k]);
        for (int k = 0; k < K; k++) other_ok &= k == 3 ? isnan(back[k]) : isfinite(back[k]);
        CHECK(nan_tile, "a tile holding inf dequantizes to NaN (ue8m0=%d)", ue);
        CHECK(other_ok && back[2 * K - 1] == -2.0f, "NaN stays local to its element (ue8m0=%d)", ue);
    }
    // empty shapes: nothing read or written (the sentinels survive)
    float sent = 12345.0f;
    uint8_t qs = 0xAB;
    dsv3_quant_1x128_e4m3(&qs, &sent, x, 0, K, DSV3_SCALE_AMAX);
    dsv3_quant_1x128_e4m3(&qs, &sent, x, 3, 0, DSV3_SCALE_AMAX);
    dsv3_quant_128x128_e4m3(&qs, &sent, x, 0, K, DSV3_SCALE_UE8M0);
    dsv3_quant_retile_1x128_t_e4m3(&qs, &sent, q, s, 0, K, DSV3_SCALE_UE8M0);
    dsv3_quant_retile_1x128_t_e4m3(&qs, &sent, q, s, 2, 0, DSV3_SCALE_UE8M0);
    CHECK(sent == 12345.0f && qs == 0xAB, "empty shapes write nothing");
}

// dsv3_quant_1x128_t_e4m3 (xᵀ quantized without a transpose) against transposing and running
// dsv3_quant_1x128_e4m3: bit-identical codes and scales, on shapes with partial tiles and column
// chunks, both scale formats, with outliers, zeros, a NaN and an inf in some tiles.
static void transposed_quant(void) {
    const int shapes[][2] = {{150, 136}, {128, 64}, {1, 200}, {300, 7}, {257, 129}};
    uint64_t r = 12345;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int M = shapes[si][0], K = shapes[si][1], nmt = (M + 127) / 128;
        float *x = malloc(sizeof(float) * (size_t)M * K), *xt = malloc(sizeof(float) * (size_t)M * K);
        for (size_t i = 0; i < (size_t)M * K; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            x[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5) * (i % 61 == 0 ? 1e3f : 1.0f);
        }
        if (M * K > 1000) { x[17] = NAN; x[(size_t)M * K - 1] = INFINITY; x[5 * K + 3] = 0.0f; }
        for (int i = 0; i < M; i++)
            for (int j = 0; j < K; j++) xt[(size_t)j * M + i] = x[(size_t)i * K + j];
        for (int ue = 0; ue < 2; ue++) {
            uint8_t *q1 = malloc((size_t)M * K), *q2 = malloc((size_t)M * K);
            float *s1 = malloc(sizeof(float) * (size_t)K * nmt), *s2 = malloc(sizeof(float) * (size_t)K * nmt);
            dsv3_quant_1x128_e4m3(q1, s1, xt, K, M, (dsv3_scale_fmt)ue);
            dsv3_quant_1x128_t_e4m3(q2, s2, x, M, K, (dsv3_scale_fmt)ue);
            CHECK(!memcmp(q1, q2, (size_t)M * K), "quant_1x128_t %dx%d ue8m0=%d: codes differ from transpose + quant", M, K, ue);
            CHECK(!memcmp(s1, s2, sizeof(float) * (size_t)K * nmt), "quant_1x128_t %dx%d ue8m0=%d: scales differ", M, K, ue);
            // the fused re-tiling equals the reference one
            uint8_t *qa = malloc((size_t)M * K), *r1 = malloc((size_t)M * K), *r2 = malloc((size_t)M * K);
            float *sa = malloc(sizeof(float) * (size_t)M * ((K + 127) / 128)), *t1 = malloc(sizeof(float) * (size_t)K * nmt),
                  *t2 = malloc(sizeof(float) * (size_t)K * nmt);
            dsv3_quant_1x128_e4m3(qa, sa, x, M, K, (dsv3_scale_fmt)ue);
            dsv3_quant_retile_1x128_t_e4m3(r1, t1, qa, sa, M, K, (dsv3_scale_fmt)ue);
            dsv3_quant_retile_fused_1x128_t_e4m3(r2, t2, qa, sa, M, K, (dsv3_scale_fmt)ue);
            CHECK(!memcmp(r1, r2, (size_t)M * K) && !memcmp(t1, t2, sizeof(float) * (size_t)K * nmt),
                  "fused retile %dx%d ue8m0=%d differs from the reference retile", M, K, ue);
            free(qa); free(r1); free(r2); free(sa); free(t1); free(t2);
            free(q1); free(q2); free(s1); free(s2);
        }
        free(x); free(xt);
    }
}

int main(void) {
    CHECK(dsv3_quant_scale(0.0f, 448.0f, DSV3_SCALE_AMAX) == 1e-4f / 448.0f, "clamp");
    CHECK(dsv3_quant_scale(448.0f, 448.0f, DSV3_SCALE_AMAX) == 1.0f && dsv3_quant_scale(448.0f, 448.0f, DSV3_SCALE_UE8M0) == 1.0f, "exact powers");
    CHECK(dsv3_quant_scale(449.0f, 448.0f, DSV3_SCALE_UE8M0) == 2.0f && dsv3_quant_scale(300.0f, 448.0f, DSV3_SCALE_UE8M0) == 1.0f, "ue8m0 rounds up");
    fixture_tests();
    retile_exactness();
    edge_cases();
    transposed_quant();
    return test_report("test_quant");
}
