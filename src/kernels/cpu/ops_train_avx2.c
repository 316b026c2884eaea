// AVX2/FMA loops of the fast CPU backend's elementwise training ops (see ops_train_cpu.c).
#pragma GCC target("avx2,fma")
#include "kernels/cpu/ops_train_cpu.h"
#include <immintrin.h>
#include <math.h>

// e^x for 8 lanes: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial (the classic
// minimax coefficients for expf), 2^n through the exponent bits. Relative error ≤ 2 ulp for
// x in [−87.3, 88.7]; x is clamped there (so e^x never overflows to inf: the callers below
// treat 1.7e38 like inf), and lanes below −87.3 return 0.
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.7f), lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n in [−126, 128]; split so that n = 128 (x near 88.7) does not overflow the exponent
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(under, y);
}

long dsv3_swiglu_fwd_avx2(float *a, const float *g, const float *u, long n) {
    long i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sgn = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_xor_ps(z, sgn));
        _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_div_ps(z, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    return i;
}

long dsv3_swiglu_bwd_avx2(float *dg, float *du, const float *da, const float *g, const float *u, long n) {
    long i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sgn = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_loadu_ps(g + i), d = _mm256_loadu_ps(da + i), uu = _mm256_loadu_ps(u + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_xor_ps(z, sgn)))); // σ(z)
        __m256 ds = _mm256_mul_ps(s, _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one));  // σ(1 + z(1 − σ))
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(d, uu), ds));
        _mm256_storeu_ps(du + i, _mm256_mul_ps(d, _mm256_mul_ps(z, s)));
    }
    return i;
}

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
static inline double hsum_d(__m256 v) {
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

float dsv3_row_max_avx2(const float *x, int n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r = hmax(m);
    for (; i < n; i++) if (x[i] > r) r = x[i];
    return r;
}

// Σ e^(x_i − m): 8-lane fp32 partial sums over chunks of 256, chunks added in double.
double dsv3_row_sumexp_avx2(const float *x, int n, float m) {
    __m256 vm = _mm256_set1_ps(m);
    double total = 0.0;
    int i = 0;
    while (i + 8 <= n) {
        __m256 acc = _mm256_setzero_ps();
        int end = i + 256 < n ? i + 256 : n;
        for (; i + 8 <= end; i += 8) acc = _mm256_add_ps(acc, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        total += hsum_d(acc);
    }
    for (; i < n; i++) total += expf(x[i] - m);
    return total;
}

// d_i = scale · e^(x_i − lse) (d may alias x).
int dsv3_row_softmax_scaled_avx2(float *d, const float *x, int n, float lse, float scale) {
    __m256 vl = _mm256_set1_ps(lse), vs = _mm256_set1_ps(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_mul_ps(vs, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vl))));
    return i;
}

// Σ x_i² in double (4-wide double FMAs).
double dsv3_sumsq_avx2(const float *x, int n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        a0 = _mm256_fmadd_pd(lo, lo, a0); a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    a0 = _mm256_add_pd(a0, a1);
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    double r = _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    for (; i < n; i++) r += (double)x[i] * x[i];
    return r;
}

// Σ w_i·dy_i·x_i in double (w NULL: 1).
double dsv3_dot3_avx2(const float *w, const float *dy, const float *x, int n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(x + i));
        if (w) p = _mm256_mul_ps(p, _mm256_loadu_ps(w + i));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
    }
    a0 = _mm256_add_pd(a0, a1);
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    double r = _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    for (; i < n; i++) r += (double)(w ? w[i] : 1.0f) * dy[i] * x[i];
    return r;
}

float dsv3_exp_sub_sum_avx2(float *s, int n, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    float sum = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    for (; j < n; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
    return sum;
}

void dsv3_exp_sub_avx2(float *d, const float *s, int n, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(d + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm)));
    for (; j < n; j++) d[j] = expf(s[j] - m);
}
