#include "infer/attn_kernels.h"
#include "kernels/cpu/matmul.h"
#include "numerics/bf16.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define RG 4  // rows per tile
#define CW 16 // columns per tile

static inline float cval(const void *cache, int is_bf16, size_t i) {
    return is_bf16 ? dsv3_bf16_to_f32(((const uint16_t *)cache)[i]) : ((const float *)cache)[i];
}

static void tile_scalar(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl,
                        int r0, int c0) {
    const int nr = R - r0 < RG ? R - r0 : RG, nc = kvl - c0 < CW ? kvl - c0 : CW;
    float acc[RG][CW];
    memset(acc, 0, sizeof acc);
    for (int j = 0; j < L; j++) {
        float cj[CW];
        for (int c = 0; c < nc; c++) cj[c] = cval(cache, is_bf16, (size_t)j * row + c0 + c);
        for (int r = 0; r < nr; r++) {
            const float p = P[(size_t)(r0 + r) * L + j];
            for (int c = 0; c < nc; c++) acc[r][c] += p * cj[c];
        }
    }
    for (int r = 0; r < nr; r++) memcpy(lat + (size_t)(r0 + r) * kvl + c0, acc[r], sizeof(float) * nc);
}

__attribute__((target("avx2,fma"))) static void tile_avx2(float *lat, const float *P, int R, int L, const void *cache,
                                                           int is_bf16, int row, int kvl, int r0, int c0) {
    const int nr = R - r0 < RG ? R - r0 : RG;
    __m256 a[RG][2];
    for (int r = 0; r < RG; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
    const float *p[RG];
    for (int r = 0; r < RG; r++) p[r] = P + (size_t)(r0 + (r < nr ? r : 0)) * L;
    for (int j = 0; j < L; j++) {
        __m256 c0v, c1v;
        if (is_bf16) {
            const uint16_t *q = (const uint16_t *)cache + (size_t)j * row + c0;
            __m256i w0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)q));
            __m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(q + 8)));
            c0v = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
            c1v = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
        } else {
            const float *q = (const float *)cache + (size_t)j * row + c0;
            c0v = _mm256_loadu_ps(q);
            c1v = _mm256_loadu_ps(q + 8);
        }
        for (int r = 0; r < RG; r++) {
            const __m256 pv = _mm256_broadcast_ss(p[r] + j);
            a[r][0] = _mm256_fmadd_ps(pv, c0v, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(pv, c1v, a[r][1]);
        }
    }
    for (int r = 0; r < nr; r++) {
        _mm256_storeu_ps(lat + (size_t)(r0 + r) * kvl + c0, a[r][0]);
        _mm256_storeu_ps(lat + (size_t)(r0 + r) * kvl + c0 + 8, a[r][1]);
    }
}

static void run(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl, int simd) {
    const int ng = (R + RG - 1) / RG, nc = (kvl + CW - 1) / CW, nt = ng * nc;
    #pragma omp parallel for schedule(static) if ((double)R * L * kvl >= 65536.0)
    for (int t = 0; t < nt; t++) {
        const int r0 = (t / nc) * RG, c0 = (t % nc) * CW;
        if (simd && c0 + CW <= kvl) tile_avx2(lat, P, R, L, cache, is_bf16, row, kvl, r0, c0);
        else tile_scalar(lat, P, R, L, cache, is_bf16, row, kvl, r0, c0);
    }
}

void dsv3_attn_pc(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl) {
    run(lat, P, R, L, cache, is_bf16, row, kvl, dsv3_matmul_get_isa() >= DSV3_ISA_AVX2);
}

void dsv3_attn_pc_ref(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl) {
    run(lat, P, R, L, cache, is_bf16, row, kvl, 0);
}
