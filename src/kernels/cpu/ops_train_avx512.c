// AVX-512 loops of the cross-entropy over the vocabulary (ops_train_cpu.c: dsv3_xent_cpu), the same
// contracts as the *_avx2 ones: e^x by the polynomial of ops_train_avx2.c on 16 lanes (the same
// operations lane for lane, so each e^x is bit-identical to the AVX2 one), partial sums in fp32 lanes
// over chunks of 256 added in double. Call only at the avx512 level or above.
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,fma")
#include "kernels/cpu/ops_train_cpu.h"
#include <immintrin.h>
#include <math.h>

static inline __m512 exp16(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.7f), lo = _mm512_set1_ps(-87.3f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i ni = _mm512_cvtps_epi32(n);
    __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, _mm512_set1_epi32(127)), 23));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

float dsv3_row_max_avx512(const float *x, int n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    float r = _mm512_reduce_max_ps(m);
    for (; i < n; i++) if (x[i] > r) r = x[i];
    return r;
}

double dsv3_row_sumexp_avx512(const float *x, int n, float m) {
    __m512 vm = _mm512_set1_ps(m);
    double total = 0.0;
    int i = 0;
    while (i + 16 <= n) {
        __m512 acc = _mm512_setzero_ps();
        int end = i + 256 < n ? i + 256 : n;
        for (; i + 16 <= end; i += 16) acc = _mm512_add_ps(acc, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
        total += _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    }
    for (; i < n; i++) total += expf(x[i] - m);
    return total;
}

int dsv3_row_softmax_scaled_avx512(float *d, const float *x, int n, float lse, float scale) {
    __m512 vl = _mm512_set1_ps(lse), vs = _mm512_set1_ps(scale);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_mul_ps(vs, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vl))));
    return i;
}
