// The AVX-512 12 x 32 SGEMM micro-kernel (see sgemm.h): 24 zmm accumulators; per k, two 16-wide
// loads of the B panel and twelve broadcasts of the A panel feed 24 FMAs (2 loads + 12 broadcast
// loads per 24 FMAs, so the two FMA pipes, not the load ports, bound it). Edge tiles store through
// masks (rows < mr, columns < nr): no temporary tile.
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,fma")
#include "kernels/cpu/sgemm.h"
#include <immintrin.h>
#include "kernels/cpu/transpose_avx512.h"

#define MR DSV3_SG_MR_512
#define NR DSV3_SG_NR_512

void dsv3_sg_ukernel_avx512(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta,
                            int mr, int nr) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    // The C tile is read after the loop (from L3 once C outgrows L2): start fetching it now
    // (measured +2-5 % in 3 of 4 interleaved pairs at 1024x2048x2048 and 512x129280x1024: near the noise).
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
        a += MR;
        b += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

// Transposing pack (AVX-512): out[k·ostride + r] = src[r·ld + k] for r < rows (≤ 16), zero for
// rows ≤ r < 16; 16 x 16 register transposes (the B panels of the fwd form, W stored (N, K)).
void dsv3_sg_pack_t16_avx512(const float *src, long ld, int rows, int kc, float *out, int ostride) {
    int k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_castps_si512(_mm512_loadu_ps(src + i * ld + k)) : _mm512_setzero_si512();
        dsv3_transpose16_epi32(r);
        for (int j = 0; j < 16; j++) _mm512_storeu_si512(out + (size_t)(k + j) * ostride, r[j]);
    }
    for (; k < kc; k++)
        for (int i = 0; i < 16; i++) out[(size_t)k * ostride + i] = i < rows ? src[i * ld + k] : 0.0f;
}
