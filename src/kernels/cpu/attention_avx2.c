// AVX2/FMA block primitives of the flash attention (see attention_cpu.h).
#pragma GCC target("avx2,fma")
#include "kernels/cpu/attention_cpu.h"
#include <immintrin.h>

static inline __m256i tail_mask(int n) { // lanes < n set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void dsv3_attn_dots_avx2(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y, long ldy,
                         int d, float scale) {
    int d8 = d & ~7;
    __m256i m = tail_mask(d - d8);
    for (int i = 0; i < nx; i++) {
        const float *x = X + i * ldx;
        int j = 0;
        for (; j + 4 <= ny; j += 4) {
            const float *y0 = Y + j * ldy, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int e = 0;
            for (; e < d8; e += 8) {
                __m256 xv = _mm256_loadu_ps(x + e);
                a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y0 + e), a0);
                a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y1 + e), a1);
                a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y2 + e), a2);
                a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y3 + e), a3);
            }
            if (e < d) {
                __m256 xv = _mm256_maskload_ps(x + e, m);
                a0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(y0 + e, m), a0);
                a1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(y1 + e, m), a1);
                a2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(y2 + e, m), a2);
                a3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(y3 + e, m), a3);
            }
            // 4 horizontal sums at once
            __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
            __m256 h = _mm256_hadd_ps(h01, h23); // [s0 s1 s2 s3 | s0' s1' s2' s3'] halves
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(S + (long)i * lds + j, _mm_mul_ps(r, _mm_set1_ps(scale)));
        }
        for (; j < ny; j++) {
            const float *y = Y + j * ldy;
            __m256 acc = _mm256_setzero_ps();
            int e = 0;
            for (; e < d8; e += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + e), _mm256_loadu_ps(y + e), acc);
            if (e < d) acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + e, m), _mm256_maskload_ps(y + e, m), acc);
            S[(long)i * lds + j] = scale * hsum(acc);
        }
    }
}

void dsv3_attn_acc_avx2(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin, const float *X,
                        long ldx, int d, float alpha) {
    for (int r = 0; r < nout; r++) {
        float *o = Out + r * ldo;
        const float *p = P + r * prs;
        int e = 0;
        for (; e + 32 <= d; e += 32) {
            __m256 o0 = _mm256_loadu_ps(o + e), o1 = _mm256_loadu_ps(o + e + 8);
            __m256 o2 = _mm256_loadu_ps(o + e + 16), o3 = _mm256_loadu_ps(o + e + 24);
            for (int c = 0; c < nin; c++) {
                float pc = p[c * pcs];
                if (pc == 0.0f) continue;
                __m256 pv = _mm256_set1_ps(alpha * pc);
                const float *x = X + c * ldx + e;
                o0 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(x), o0);
                o1 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(x + 8), o1);
                o2 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(x + 16), o2);
                o3 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(x + 24), o3);
            }
            _mm256_storeu_ps(o + e, o0); _mm256_storeu_ps(o + e + 8, o1);
            _mm256_storeu_ps(o + e + 16, o2); _mm256_storeu_ps(o + e + 24, o3);
        }
        for (; e < d; e += 8) {
            int n = d - e < 8 ? d - e : 8;
            __m256i m = tail_mask(n);
            __m256 o0 = _mm256_maskload_ps(o + e, m);
            for (int c = 0; c < nin; c++) {
                float pc = p[c * pcs];
                if (pc == 0.0f) continue;
                o0 = _mm256_fmadd_ps(_mm256_set1_ps(alpha * pc), _mm256_maskload_ps(X + c * ldx + e, m), o0);
            }
            _mm256_maskstore_ps(o + e, m, o0);
        }
    }
}
