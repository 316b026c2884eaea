// FP8 GEMM (src/numerics/fp8_gemm.h):
//  * fp32 mode against an fp64 GEMM of the dequantized inputs, within the rigorous fp32 summation bound;
//    exact when every partial sum is representable; both scale layouts (row-major and cuBLASLt's M-major)
//    give identical bits; bf16 output is the RNE of the fp32 output;
//  * the limited-precision accumulator on hand-built inputs whose truncation is predictable exactly
//    (alignment to the largest exponent, truncation toward zero, group size, promotion, scales);
//  * limited modes with a wide accumulator agree with fp64 (checks the scale handling of both paths);
//  * argument errors;
//  * the fast path on the bf16 kernels (dsv3_fp8_bgemm: AMX and AVX512_BF16, when the CPU has them)
//    within the same fp32 summation bound of the fp64 GEMM, with beta 0 and 1 and a padded ldc
//    whose padding must stay untouched;
//  * the vector E4M3 -> bf16 decode of the fast path against the scalar table, every code, every tail.
#include "test.h"
#include "numerics/bf16.h"
#include "numerics/fp8_gemm.h"
#include "numerics/quant.h"
#include "core/error.h"
#include "kernels/cpu/bgemm.h"
#include <stdint.h>

static uint64_t rs = 12345;
static double urand(void) { rs ^= rs >> 12; rs ^= rs << 25; rs ^= rs >> 27; return ((rs * 2685821657736338717ull) >> 11) * 0x1p-53 + 0x1p-54; }
static float nrand(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }

static double gamma_n(int n) { double u = 0x1p-24; return n * u / (1 - n * u); }

static void random_gemm_tests(int M, int N, int K, int bbn) {
    int nk = (K + 127) / 128, nbn = bbn == 128 ? (N + 127) / 128 : N;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
    for (int i = 0; i < M * K; i++) a[i] = nrand() * (i % 7 == 0 ? 20.0f : 1.0f);
    for (int i = 0; i < N * K; i++) b[i] = nrand() * 0.05f;
    uint8_t *qa = malloc((size_t)M * K), *qb = malloc((size_t)N * K);
    float *sa = malloc(sizeof(float) * M * nk), *sat = malloc(sizeof(float) * M * nk), *sb = malloc(sizeof(float) * nbn * nk);
    dsv3_quant_1x128_e4m3(qa, sa, a, M, K, DSV3_SCALE_AMAX);
    if (bbn == 128) dsv3_quant_128x128_e4m3(qb, sb, b, N, K, DSV3_SCALE_AMAX);
    else dsv3_quant_1x128_e4m3(qb, sb, b, N, K, DSV3_SCALE_AMAX);
    for (int m = 0; m < M; m++) for (int kb = 0; kb < nk; kb++) sat[kb * M + m] = sa[m * nk + kb]; // M-major copy
    float *c = malloc(sizeof(float) * M * N), *c2 = malloc(sizeof(float) * M * N);
    uint16_t *c16 = malloc(2 * (size_t)M * N);
    dsv3_fp8_gemm_args g = {.M = M, .N = N, .K = K, .a = qa, .lda = K, .sa = sa, .sa_stride_m = nk, .sa_stride_k = 1,
                            .b = qb, .ldb = K, .sb = sb, .b_block_n = bbn};
    dsv3_fp8_acc f32 = {.mode = DSV3_FP8_ACC_FP32};
    CHECK(dsv3_fp8_gemm(&g, &f32, c, DSV3_F32, N) == 0, "gemm fp32: %s", dsv3_error());
    dsv3_fp8_gemm_args gt = g;
    gt.sa = sat; gt.sa_stride_m = 1; gt.sa_stride_k = M;
    CHECK(dsv3_fp8_gemm(&gt, &f32, c2, DSV3_F32, N) == 0, "gemm M-major scales");
    CHECK(memcmp(c, c2, sizeof(float) * M * N) == 0, "row-major and M-major A scales give different results");
    CHECK(dsv3_fp8_gemm(&g, &f32, c16, DSV3_BF16, N) == 0, "gemm bf16");
    size_t b16 = 0;
    for (int i = 0; i < M * N; i++) b16 += c16[i] != dsv3_f32_to_bf16(c[i]);
    CHECK(b16 == 0, "bf16 output is not RNE of the fp32 output (%zu)", b16);

    // fp64 reference and the bound: a group of <= 128 exact products summed in fp32 (<= 127 roundings),
    // two scale multiplies, nk accumulations: |err| <= gamma(128 + nk + 2) · Σ|a b sa sb|
    dsv3_fp8_acc wide[3] = {{DSV3_FP8_ACC_LIMITED, 0, 40, 32, DSV3_FP8_ROUND_FLOOR}, {DSV3_FP8_ACC_LIMITED, 32, 40, 32, DSV3_FP8_ROUND_TRUNC},
                            {DSV3_FP8_ACC_LIMITED, 128, 40, 4, DSV3_FP8_ROUND_FLOOR}};
    float *cw[3];
    for (int w = 0; w < 3; w++) {
        cw[w] = malloc(sizeof(float) * M * N);
        CHECK(dsv3_fp8_gemm(&g, &wide[w], cw[w], DSV3_F32, N) == 0, "gemm wide limited");
    }
    size_t viol = 0, violw = 0;
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double x = (double)dsv3_e4m3_to_f32(qa[m * K + k]) * sa[m * nk + k / 128];
                double y = (double)dsv3_e4m3_to_f32(qb[n * K + k]) * sb[(n / (bbn == 128 ? 128 : 1)) * nk + k / 128];
                s += x * y;
                mag += fabs(x * y);
            }
            double err = fabs(c[m * N + n] - s), bound = gamma_n(128 + nk + 2) * mag * (1 + 1e-9) + 1e-30;
            viol += err > bound;
            worst = fmax(worst, err / bound);
            // 40-bit accumulator: truncation 2^-39 relative per step, then fp32 rounding of promotions:
            // |err| <= (steps · 33 · 2^-39 + gamma(nk + 2)) · Σ|ab| (a loose but rigorous bound)
            double bw = ((K / 4 + 2) * 33 * 0x1p-39 + gamma_n(nk + 3) * 4) * mag + 1e-30;
            for (int w = 0; w < 3; w++) violw += fabs(cw[w][m * N + n] - s) > bw;
        }
    // the fast path at each level this CPU has: same bound (the group sum is the same K-long fp32 sum
    // in another order); beta 1 adds to a prior C = 1 (one more rounding: bound + 1 ulp of the sum)
    for (int lvl = DSV3_ISA_AVX512; lvl <= DSV3_ISA_AMX; lvl++) {
        const char *name = lvl == DSV3_ISA_AMX ? "fp8-bgemm-amx" : "fp8-bgemm-avx512bf16";
        if (dsv3_matmul_set_isa((dsv3_isa)lvl) != 0) { printf("SKIP fp8 gemm: %s path (%s)\n", name, dsv3_error()); continue; }
        const int ldc = N + 5;
        float *cf = malloc(sizeof(float) * M * ldc);
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < M * ldc; i++) cf[i] = pass ? 1.0f : -7.0f; // -7: padding canary / garbage to overwrite
            dsv3_fp8_bgemm(&g, cf, ldc, pass ? 1.0f : 0.0f);
            size_t bad = 0, pad = 0;
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < N; n++) {
                    double s = pass, mag = 0;
                    for (int k = 0; k < K; k++) {
                        double x = (double)dsv3_e4m3_to_f32(qa[m * K + k]) * sa[m * nk + k / 128];
                        double y = (double)dsv3_e4m3_to_f32(qb[n * K + k]) * sb[(n / (bbn == 128 ? 128 : 1)) * nk + k / 128];
                        s += x * y;
                        mag += fabs(x * y);
                    }
                    double bound = gamma_n(128 + nk + 2) * (mag + pass) * (1 + 1e-9) + 1e-30;
                    bad += !(fabs(cf[m * ldc + n] - s) <= bound);
                }
                for (int n = N; n < ldc; n++) pad += cf[m * ldc + n] != (pass ? 1.0f : -7.0f);
            }
            CHECK(bad == 0, "%s beta %d (M %d N %d K %d bn %d): %zu outputs outside the fp32 summation bound", name, pass, M, N,
                  K, bbn, bad);
            CHECK(pad == 0, "%s wrote %zu values into the ldc padding", name, pad);
        }
        free(cf);
    }
    dsv3_matmul_set_isa(dsv3_cpu_max_isa());
    CHECK(viol == 0, "fp32 mode (M %d N %d K %d bn %d): %zu outputs exceed the fp32 summation bound (worst %.3f of it)", M, N, K, bbn, viol, worst);
    CHECK(violw == 0, "wide limited accumulators disagree with fp64 (%zu)", violw);
    for (int w = 0; w < 3; w++) free(cw[w]);
    free(a); free(b); free(qa); free(qb); free(sa); free(sat); free(sb); free(c); free(c2); free(c16);
}

// E4M3 code of an exactly representable value.
static uint8_t e(float v) { uint8_t c = dsv3_f32_to_e4m3(v, DSV3_FP8_SATURATE); DSV3_ASSERT(dsv3_e4m3_to_f32(c) == v); return c; }

static float dot_limited(const double *t, int n, int nc, int bits, int group) {
    dsv3_fp8_acc acc = {DSV3_FP8_ACC_LIMITED, nc, bits, group, DSV3_FP8_ROUND_TRUNC};
    return dsv3_fp8_limited_dot(t, n, &acc, NULL, NULL);
}

static void handmade_limited_tests(void) {
    double t[64] = {0};
    // (a) one step: 1.0 sets the exponent, unit 2^-13 with 14 bits: 31 terms of 2^-14 vanish
    t[0] = 1.0;
    for (int i = 1; i < 32; i++) t[i] = 0x1p-14;
    CHECK(dot_limited(t, 32, 0, 14, 32) == 1.0f, "small terms aligned to 1.0 are truncated away");
    CHECK(dot_limited(t, 32, 0, 15, 32) == (float)(1.0 + 31 * 0x1p-14), "with 15 bits they survive");
    // (b) truncation is toward zero for negative terms: -(2^-13 + 2^-14) = -1.5 units -> -1 unit
    memset(t, 0, sizeof t);
    t[0] = 1.0; t[1] = -(0x1p-13 + 0x1p-14);
    CHECK(dot_limited(t, 32, 0, 14, 32) == (float)(1.0 - 0x1p-13), "negative terms truncate toward zero");
    t[1] = 0x1p-13 + 0x1p-14;
    CHECK(dot_limited(t, 32, 0, 14, 32) == (float)(1.0 + 0x1p-13), "positive terms truncate toward zero");
    // with FLOOR (two's complement sign-fill shift) -1.5 units -> -2 units; positive terms unchanged
    t[1] = -(0x1p-13 + 0x1p-14);
    dsv3_fp8_acc fl = {DSV3_FP8_ACC_LIMITED, 0, 14, 32, DSV3_FP8_ROUND_FLOOR};
    CHECK(dsv3_fp8_limited_dot(t, 32, &fl, NULL, NULL) == (float)(1.0 - 0x1p-12), "floor: negative terms round down");
    t[1] = -0x1p-14; // below the unit: toward zero it vanishes, floor makes it a whole unit
    CHECK(dsv3_fp8_limited_dot(t, 32, &fl, NULL, NULL) == (float)(1.0 - 0x1p-13), "floor: tiny negative -> -1 unit");
    CHECK(dot_limited(t, 32, 0, 14, 32) == 1.0f, "trunc: tiny negative -> 0");
    // (c) the accumulator is aligned too: 32 · 2^-14 = 2^-9 summed exactly in step 1 (max exponent -14),
    //     then a step with 1.0 keeps it (2^-9 is 16 units of 2^-13); 2^-9 + 2^-14 would lose the 2^-14
    memset(t, 0, sizeof t);
    for (int i = 0; i < 32; i++) t[i] = 0x1p-14;
    t[32] = 1.0;
    CHECK(dot_limited(t, 64, 0, 14, 32) == (float)(1.0 + 0x1p-9), "accumulator carried exactly");
    t[0] = 0x1p-14 + 0x1p-15; // step 1 sum = 2^-9 + 2^-15: exact there, truncated when aligned to 1.0
    CHECK(dot_limited(t, 64, 0, 14, 32) == (float)(1.0 + 0x1p-9), "accumulator truncated at the next alignment");
    // (d) group size decides when the exponent is taken: 4 small terms then 1.0
    memset(t, 0, sizeof t);
    for (int i = 0; i < 4; i++) t[i] = 0x1p-14;
    t[4] = 1.0;
    CHECK(dot_limited(t, 8, 0, 14, 4) == (float)(1.0 + 0x1p-12), "group 4: small terms summed before 1.0 arrives");
    CHECK(dot_limited(t, 8, 0, 14, 8) == 1.0f, "group 8: aligned with 1.0 and truncated");
    // (e) promotion: 64 in chunk 1, 1 + 2^-8 in chunk 2. Without promotion 2^-8 is below the unit 2^-7
    //     of the running sum 64; promoted every 32 it survives (65.00390625 is an fp32)
    memset(t, 0, sizeof t);
    t[0] = 64.0; t[32] = 1.0; t[33] = 0x1p-8;
    CHECK(dot_limited(t, 64, 0, 14, 32) == 65.0f, "no promotion: 2^-8 lost");
    CHECK(dot_limited(t, 64, 32, 14, 32) == 65.00390625f, "promotion every 32: 2^-8 kept");
    CHECK(dot_limited(t, 64, 64, 14, 32) == 65.0f, "promotion every 64: lost again");
    float ca[2] = {2.0f, 0.5f}, cb[2] = {3.0f, 1.0f};
    dsv3_fp8_acc acc = {DSV3_FP8_ACC_LIMITED, 32, 14, 32, DSV3_FP8_ROUND_TRUNC};
    CHECK(dsv3_fp8_limited_dot(t, 64, &acc, ca, cb) == 64.0f * 6 + 1.00390625f * 0.5f, "per-chunk scales at promotion");

    // (f) the same through the GEMM API: A row = [64, 0 x31, 1, 2^-8, 0 ...], B = ones, unit scales
    enum { K = 64 };
    uint8_t a[K] = {0}, b[K];
    a[0] = e(64.0f); a[32] = e(1.0f); a[33] = e(0x1p-8f);
    for (int k = 0; k < K; k++) b[k] = e(1.0f);
    float sa = 1.0f, sb = 1.0f, c;
    dsv3_fp8_gemm_args g = {.M = 1, .N = 1, .K = K, .a = a, .lda = K, .sa = &sa, .sa_stride_m = 1, .sa_stride_k = 1,
                            .b = b, .ldb = K, .sb = &sb, .b_block_n = 128};
    dsv3_fp8_acc none = {DSV3_FP8_ACC_LIMITED, 0, 14, 32, DSV3_FP8_ROUND_FLOOR}, p32 = {DSV3_FP8_ACC_LIMITED, 32, 14, 32, DSV3_FP8_ROUND_FLOOR},
                 f32 = {DSV3_FP8_ACC_FP32, 0, 0, 0, DSV3_FP8_ROUND_FLOOR};
    CHECK(dsv3_fp8_gemm(&g, &none, &c, DSV3_F32, 1) == 0 && c == 65.0f, "gemm limited, no promotion: %g", c);
    CHECK(dsv3_fp8_gemm(&g, &p32, &c, DSV3_F32, 1) == 0 && c == 65.00390625f, "gemm limited, N_C 32: %g", c);
    CHECK(dsv3_fp8_gemm(&g, &f32, &c, DSV3_F32, 1) == 0 && c == 65.00390625f, "gemm fp32: %g", c);
    sa = 0.75f; // scales: non-power-of-two sa makes scaled products (no-promotion path) differ from raw ones
    CHECK(dsv3_fp8_gemm(&g, &p32, &c, DSV3_F32, 1) == 0 && c == 65.00390625f * 0.75f, "gemm limited N_C 32 with scale: %g", c);
    CHECK(dsv3_fp8_gemm(&g, &none, &c, DSV3_F32, 1) == 0 && c == 48.75f, "gemm limited none with scale: %g", c);

    // (g) fp32 mode is exact when every partial sum is an integer below 2^24
    enum { M2 = 3, N2 = 5, K2 = 260 };
    uint8_t A[M2 * K2], B[N2 * K2];
    float SA[M2 * 3], SB[1 * 3];
    for (int i = 0; i < M2 * K2; i++) A[i] = e((float)(i % 15 + 1) * (i % 3 ? 1 : -1));
    for (int i = 0; i < N2 * K2; i++) B[i] = e((float)(i % 13 + 1));
    for (int i = 0; i < M2 * 3; i++) SA[i] = (float)(1 << (i % 3));
    for (int i = 0; i < 3; i++) SB[i] = 0.5f * (float)(i + 1);
    float C[M2 * N2];
    dsv3_fp8_gemm_args g2 = {.M = M2, .N = N2, .K = K2, .a = A, .lda = K2, .sa = SA, .sa_stride_m = 3, .sa_stride_k = 1,
                             .b = B, .ldb = K2, .sb = SB, .b_block_n = 128};
    CHECK(dsv3_fp8_gemm(&g2, &f32, C, DSV3_F32, N2) == 0, "gemm integer case");
    int bad = 0;
    for (int m = 0; m < M2; m++)
        for (int n = 0; n < N2; n++) {
            double s = 0;
            for (int k = 0; k < K2; k++) s += (double)dsv3_e4m3_to_f32(A[m * K2 + k]) * SA[m * 3 + k / 128] * dsv3_e4m3_to_f32(B[n * K2 + k]) * SB[k / 128];
            bad += C[m * N2 + n] != (float)s || (double)(float)s != s;
        }
    CHECK(bad == 0, "fp32 mode not exact on integer data (%d)", bad);

    // (h) argument errors
    g.b_block_n = 64;
    CHECK(dsv3_fp8_gemm(&g, &f32, &c, DSV3_F32, 1) == -1 && strstr(dsv3_error(), "block"), "bad B block: %s", dsv3_error());
    g.b_block_n = 128;
    dsv3_fp8_acc badnc = {DSV3_FP8_ACC_LIMITED, 48, 14, 32, DSV3_FP8_ROUND_FLOOR};
    CHECK(dsv3_fp8_gemm(&g, &badnc, &c, DSV3_F32, 1) == -1 && strstr(dsv3_error(), "multiple"), "nc not a multiple of group");
    CHECK(dsv3_fp8_gemm(&g, &f32, &c, DSV3_F16, 1) == -1, "f16 output rejected");
    g.lda = 10;
    CHECK(dsv3_fp8_gemm(&g, &f32, &c, DSV3_F32, 1) == -1, "lda < K rejected");
}

static void study_smoke(void) {
    // The study's qualitative claims, on a small case: promotion every 128 beats no promotion by >10x and
    // the fp32 mode is at fp32 rounding level (mean |err|/Σ|ab| well below 2^-20).
    dsv3_fp8_study_cfg cfg = {.M = 16, .N = 16, .bits = 14, .group = 32, .seed = 7, .dist = 1, .ue8m0 = 1};
    int ncs[3] = {-1, 128, 0};
    dsv3_fp8_study_row r[3];
    CHECK(dsv3_fp8_study_run(&cfg, 2048, ncs, 3, r) == 0, "study run");
    CHECK(r[0].mean_nrm < 0x1p-20, "fp32 mode error %.3g", r[0].mean_nrm);
    CHECK(r[1].max_rel * 10 < r[2].max_rel, "promotion N_C=128 (%.3g) vs none (%.3g)", r[1].max_rel, r[2].max_rel);
}

// dsv3_bg_decode_e4m3_avx512 (the fast path's operand decode) == the table it is given, for all 256
// codes in every position of a 32-code vector and every tail length 0..70; no write past n.
static void decode_tests(void) {
    if (dsv3_matmul_get_isa() < DSV3_ISA_AVX512) { printf("decode: no AVX-512 on this CPU, skipped\n"); return; }
    uint16_t lut[256];
    for (int c = 0; c < 256; c++) lut[c] = dsv3_f32_to_bf16(dsv3_e4m3_to_f32((uint8_t)c));
    int sym = 1;
    for (int c = 0; c < 128; c++) sym &= lut[c | 0x80] == (uint16_t)(lut[c] | 0x8000);
    CHECK(sym, "the E4M3 -> bf16 table lacks the sign symmetry the vector decode relies on");
    uint8_t a[320];
    uint16_t d[320];
    int bad = 0;
    for (int off = 0; off < 32; off++) { // every code at every lane
        for (int i = 0; i < 288; i++) a[i] = (uint8_t)(i + off * 7);
        dsv3_bg_decode_e4m3_avx512(d, a, 288, lut);
        for (int i = 0; i < 288; i++) bad += d[i] != lut[a[i]];
    }
    for (int n = 0; n <= 70; n++) { // tails: exactly n written
        for (int i = 0; i < 80; i++) { a[i] = (uint8_t)(255 - 3 * i); d[i] = 0xdead; }
        dsv3_bg_decode_e4m3_avx512(d, a, n, lut);
        for (int i = 0; i < 80; i++) bad += i < n ? d[i] != lut[a[i]] : d[i] != 0xdead;
    }
    CHECK(bad == 0, "vector E4M3 decode: %d values wrong or written past the end", bad);
    printf("decode: vector E4M3 -> bf16 == table (256 codes x 32 lanes, tails 0..70)\n");
}

int main(void) {
    decode_tests();
    random_gemm_tests(33, 130, 300, 128);
    random_gemm_tests(7, 9, 256, 1);
    random_gemm_tests(300, 290, 700, 128); // several MC / NC blocks, a partial K group, odd tails
    random_gemm_tests(130, 33, 129, 1);
    handmade_limited_tests();
    study_smoke();
    return test_report("test_fp8_gemm");
}
