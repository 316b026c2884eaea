// Packed GEMM path of dsv3_matmul (large M: prefill, training). For each NC x KC block of W the
// weights are dequantized to fp32 once (any dtype, F8 block scales applied) and packed into
// NR = 16-wide column panels [k][16]; a 6 x 16 register-blocked FMA micro-kernel (12 accumulators)
// then runs over every 6-row strip of x against each panel. The fp32 conversion is paid once per
// weight per call and amortized over all M rows.
#pragma GCC target("avx2,fma,f16c")
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/decode_avx2.h"
#include "core/error.h"

#define AI static inline __attribute__((always_inline))
#define MR DSV3_GEMM_MR
#define NR DSV3_GEMM_NR
#define KC DSV3_GEMM_KC
#define NC DSV3_GEMM_NC
#define MC 96 // rows of x per block: MC x KC fp32 (96 KiB) stays in L2 across the NC / NR panels

size_t dsv3_gemm_pack_floats(void) { return (size_t)NC * KC + (size_t)NR * KC; }

AI void block_f32(dsv3_dtype t, const dsv3_mat *w, int r0, int nr, int c0, int n, float *out, int ld) {
    size_t es = t == DSV3_F32 ? 4 : t == DSV3_F8_E4M3 ? 1 : 2;
    int cols = w->cols, fp8 = t == DSV3_F8_E4M3;
    int bc = fp8 ? w->block_cols : cols, nbc = fp8 ? (cols + bc - 1) / bc : 0;
    for (int i = 0; i < nr; i++) {
        int r = r0 + i;
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * cols * es;
        float *o = out + (size_t)i * ld; // o[c - c0] is column c
        const float *srow = fp8 ? w->scale + (size_t)(r / w->block_rows) * nbc : NULL;
        for (int b0 = c0; b0 < c0 + n;) { // one scale block (or the whole range) at a time
            int b1 = fp8 ? (b0 / bc + 1) * bc : c0 + n;
            if (b1 > c0 + n) b1 = c0 + n;
            __m256 s = _mm256_set1_ps(fp8 ? srow[b0 / bc] * 256.0f : 1.0f);
            int c = b0;
            for (; c + 8 <= b1; c += 8) {
                __m256 v = dsv3_load8_f32(t, row, (size_t)c);
                _mm256_storeu_ps(o + (c - c0), fp8 ? _mm256_mul_ps(v, s) : v);
            }
            if (c < b1) {
                __m256 v = dsv3_load_tail_f32(t, row, (size_t)c, b1 - c);
                _mm256_maskstore_ps(o + (c - c0), dsv3_tail_mask_avx2(b1 - c), fp8 ? _mm256_mul_ps(v, s) : v);
            }
            b0 = b1;
        }
    }
}

static void block_f32_bf16(const dsv3_mat *w, int r0, int nr, int c0, int n, float *o, int ld) { block_f32(DSV3_BF16, w, r0, nr, c0, n, o, ld); }
static void block_f32_f16(const dsv3_mat *w, int r0, int nr, int c0, int n, float *o, int ld) { block_f32(DSV3_F16, w, r0, nr, c0, n, o, ld); }
static void block_f32_e4m3(const dsv3_mat *w, int r0, int nr, int c0, int n, float *o, int ld) { block_f32(DSV3_F8_E4M3, w, r0, nr, c0, n, o, ld); }
static void block_f32_f32(const dsv3_mat *w, int r0, int nr, int c0, int n, float *o, int ld) { block_f32(DSV3_F32, w, r0, nr, c0, n, o, ld); }

void dsv3_mat_block_f32_avx2(const dsv3_mat *w, int r0, int nr, int c0, int n, float *out, int ld) {
    switch (w->dtype) {
    case DSV3_F32: block_f32_f32(w, r0, nr, c0, n, out, ld); break;
    case DSV3_BF16: block_f32_bf16(w, r0, nr, c0, n, out, ld); break;
    case DSV3_F16: block_f32_f16(w, r0, nr, c0, n, out, ld); break;
    case DSV3_F8_E4M3: block_f32_e4m3(w, r0, nr, c0, n, out, ld); break;
    default: dsv3_panic(__FILE__, __LINE__, "matmul: unsupported weight dtype %s", dsv3_dtype_name(w->dtype));
    }
}

AI void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Pack W rows [n0, n0 + nb) x cols [k0, k0 + kc) as ceil(nb / NR) panels of [kc8][NR] fp32
// (kc8 = kc rounded up to 8; rows past nb and cols past kc are zero). tmp: NR x KC scratch.
static void pack_b(const dsv3_mat *w, int n0, int nb, int k0, int kc, float *pack, float *tmp) {
    int kc8 = (kc + 7) & ~7;
    for (int p = 0; p * NR < nb; p++) {
        int nr = nb - p * NR < NR ? nb - p * NR : NR;
        dsv3_mat_block_f32_avx2(w, n0 + p * NR, nr, k0, kc, tmp, KC);
        for (int i = 0; i < NR; i++) {
            int from = i < nr ? kc : 0;
            for (int c = from; c < kc8; c++) tmp[(size_t)i * KC + c] = 0.0f;
        }
        float *dst = pack + (size_t)p * kc8 * NR;
        for (int k = 0; k < kc8; k += 8)
            for (int h = 0; h < NR; h += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(tmp + (size_t)(h + i) * KC + k);
                transpose8(r);
                for (int j = 0; j < 8; j++) _mm256_store_ps(dst + (size_t)(k + j) * NR + h, r[j]);
            }
    }
}

// C[0..mr) x [0..nr) (+)= A[0..mr) x [0..kc) . B[kc][16]; a rows lda apart, c rows ldc apart.
// The 12 accumulators are named variables (arrays of __m256 get spilled to the stack by GCC).
// Rows of a past mr alias row 0: they are computed and discarded, so edge strips run the same code.
#define ZERO2(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define FMA2(i) { __m256 av = _mm256_broadcast_ss(a##i + k); \
                  c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0); c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1); }
#define STORE2(i) if (i < mr) { float *ci = c + (size_t)i * ldc; \
        if (accumulate) { c##i##0 = _mm256_add_ps(c##i##0, _mm256_loadu_ps(ci)); \
                          c##i##1 = _mm256_add_ps(c##i##1, _mm256_loadu_ps(ci + 8)); } \
        _mm256_storeu_ps(ci, c##i##0); _mm256_storeu_ps(ci + 8, c##i##1); }
#define SPILL2(i) _mm256_store_ps(t[i], c##i##0); _mm256_store_ps(t[i] + 8, c##i##1);

static void ukernel(int mr, int kc, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                    int nr, int accumulate) {
    const float *a0 = a, *a1 = mr > 1 ? a + lda : a, *a2 = mr > 2 ? a + 2 * lda : a;
    const float *a3 = mr > 3 ? a + 3 * lda : a, *a4 = mr > 4 ? a + 4 * lda : a, *a5 = mr > 5 ? a + 5 * lda : a;
    ZERO2(0) ZERO2(1) ZERO2(2) ZERO2(3) ZERO2(4) ZERO2(5)
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b + (size_t)k * NR), b1 = _mm256_load_ps(b + (size_t)k * NR + 8);
        FMA2(0) FMA2(1) FMA2(2) FMA2(3) FMA2(4) FMA2(5)
    }
    if (nr == NR) {
        STORE2(0) STORE2(1) STORE2(2) STORE2(3) STORE2(4) STORE2(5)
    } else {
        _Alignas(32) float t[MR][NR];
        SPILL2(0) SPILL2(1) SPILL2(2) SPILL2(3) SPILL2(4) SPILL2(5)
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc;
            for (int j = 0; j < nr; j++) ci[j] = accumulate ? ci[j] + t[i][j] : t[i][j];
        }
    }
}

void dsv3_gemm_avx2(float *y, const float *x, const dsv3_mat *w, int m0, int m1, int n0, int n1, float *pack) {
    int K = w->cols, N = w->rows;
    float *tmp = pack + (size_t)NC * KC;
    for (int nb0 = n0; nb0 < n1; nb0 += NC) {
        int nb = n1 - nb0 < NC ? n1 - nb0 : NC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC, kc8 = (kc + 7) & ~7;
            pack_b(w, nb0, nb, k0, kc, pack, tmp);
            for (int mc0 = m0; mc0 < m1; mc0 += MC) {
                int mc1 = mc0 + MC < m1 ? mc0 + MC : m1;
                for (int jr = 0; jr < nb; jr += NR) {
                    const float *bp = pack + (size_t)(jr / NR) * kc8 * NR;
                    int nr = nb - jr < NR ? nb - jr : NR;
                    for (int ir = mc0; ir < mc1; ir += MR) {
                        int mr = mc1 - ir < MR ? mc1 - ir : MR;
                        ukernel(mr, kc, x + (size_t)ir * K + k0, (size_t)K, bp,
                                    y + (size_t)ir * N + nb0 + jr, (size_t)N, nr, k0 > 0);
                    }
                }
            }
        }
    }
}
