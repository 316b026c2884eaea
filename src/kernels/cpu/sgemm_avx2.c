// The AVX2/FMA 6 x 16 SGEMM micro-kernel (see sgemm.h): 12 ymm accumulators, per k two 8-wide
// loads of the B panel and six broadcasts of the A panel feed 12 FMAs.
#pragma GCC target("avx2,fma")
#include "kernels/cpu/sgemm.h"
#include <immintrin.h>

void dsv3_sg_ukernel_avx2(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta,
                          int mr, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
        a += DSV3_SG_MR; b += DSV3_SG_NR;
    }
    __m256 acc[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (mr == DSV3_SG_MR && nr == DSV3_SG_NR) {
        for (int i = 0; i < DSV3_SG_MR; i++) {
            float *ci = c + i * ldc;
            __m256 r0 = _mm256_mul_ps(va, acc[2 * i]), r1 = _mm256_mul_ps(va, acc[2 * i + 1]);
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
            }
            _mm256_storeu_ps(ci, r0); _mm256_storeu_ps(ci + 8, r1);
        }
        return;
    }
    float t[DSV3_SG_MR][DSV3_SG_NR] __attribute__((aligned(32)));
    for (int i = 0; i < DSV3_SG_MR; i++) {
        _mm256_store_ps(t[i], _mm256_mul_ps(va, acc[2 * i]));
        _mm256_store_ps(t[i] + 8, _mm256_mul_ps(va, acc[2 * i + 1]));
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            c[i * ldc + j] = beta != 0.0f ? __builtin_fmaf(beta, c[i * ldc + j], t[i][j]) : t[i][j];
}

static inline void transpose8(__m256 r[8]) {
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

// Transposing packers for the strided cases (see sgemm.c pack_a / pack_b_panel): `rows` (≤ 8)
// source rows src + r·ld, k = 0 .. kc−1, written as out[k·ostride + r] for r < rows, zeros up to
// `width` (6 or 8 lanes; for width 6 each 8-float store spills 2 lanes into the next k, which the
// next store overwrites; out must have 2 spare floats at its end).
void dsv3_sg_pack_t_avx2(const float *src, long ld, int rows, int kc, float *out, int ostride, int width) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = i < rows ? _mm256_loadu_ps(src + i * ld + k) : _mm256_setzero_ps();
        transpose8(r);
        if (width == 8)
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + (size_t)(k + j) * ostride, r[j]);
        else
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + (size_t)(k + j) * ostride, r[j]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < width; i++) out[(size_t)k * ostride + i] = i < rows ? src[i * ld + k] : 0.0f;
}
