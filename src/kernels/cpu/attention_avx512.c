// AVX-512 block primitives of the flash attention (see attention_cpu.h), register-blocked like
// small GEMMs (the AVX2 pair does one row at a time and is load-bound):
//   dots  S = scale · X·Yᵀ: the key block Y transposed into [d][ny16] (ny16 = ny rounded up to 16,
//         zero padded; by the caller once per head, dots_t, or here per call), then 4 rows of X × 64 keys in 16 zmm accumulators, one
//         broadcast of X[i, e] per row and 4 loads of Yt[e] per 16 FMAs: no horizontal sums.
//   acc   Out += alpha · P·X: 4 output rows × up to 96 columns in up to 24 accumulators (the last
//         vector masked), one broadcast of alpha·P[r, c] per row and up to 6 loads of X[c] per 24
//         FMAs; a c whose 4 P values are all zero (masked keys) is skipped, as the AVX2 version skips
//         single zeros.
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,fma")
#include "kernels/cpu/attention_cpu.h"
#include "kernels/cpu/transpose_avx512.h"
#include "core/error.h"
#include <immintrin.h>
#include <stdlib.h>

static inline __mmask16 mask_n(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

void dsv3_attn_transpose_avx512(float *Yt, long ldt, const float *Y, long ldy, int ny, int d) {
    const int ny16 = (ny + 15) & ~15;
    for (int j0 = 0; j0 < ny16; j0 += 16)
        for (int e0 = 0; e0 < d; e0 += 16) {
            const __mmask16 me = mask_n(d - e0);
            __m512i r[16];
            for (int j = 0; j < 16; j++)
                r[j] = j0 + j < ny ? _mm512_maskz_loadu_epi32(me, Y + (long)(j0 + j) * ldy + e0) : _mm512_setzero_si512();
            dsv3_transpose16_epi32(r);
            const int ne = d - e0 < 16 ? d - e0 : 16;
            for (int e = 0; e < ne; e++) _mm512_storeu_si512(Yt + (long)(e0 + e) * ldt + j0, r[e]);
        }
}

void dsv3_attn_dots_t_avx512(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Yt, long ldt,
                             int d, float scale) {
    if (nx <= 0 || ny <= 0) return;
    const __m512 vs = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < ny; j0 += 64) {
        const int nj = ny - j0 < 64 ? ny - j0 : 64, nv = (nj + 15) / 16; // vectors of keys in this chunk
        for (int i0 = 0; i0 < nx; i0 += 4) {
            const int ni = nx - i0 < 4 ? nx - i0 : 4;
            const float *x[4];
            for (int r = 0; r < 4; r++) x[r] = X + (long)(i0 + (r < ni ? r : 0)) * ldx;
            __m512 a[4][4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) a[r][v] = _mm512_setzero_ps();
            const float *yp = Yt + j0;
            if (nv == 4) {
                for (int e = 0; e < d; e++, yp += ldt) {
                    __m512 y0 = _mm512_loadu_ps(yp), y1 = _mm512_loadu_ps(yp + 16), y2 = _mm512_loadu_ps(yp + 32),
                           y3 = _mm512_loadu_ps(yp + 48);
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++) {
                        __m512 xv = _mm512_set1_ps(x[r][e]);
                        a[r][0] = _mm512_fmadd_ps(xv, y0, a[r][0]);
                        a[r][1] = _mm512_fmadd_ps(xv, y1, a[r][1]);
                        a[r][2] = _mm512_fmadd_ps(xv, y2, a[r][2]);
                        a[r][3] = _mm512_fmadd_ps(xv, y3, a[r][3]);
                    }
                }
            } else {
                for (int e = 0; e < d; e++, yp += ldt)
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++) {
                        __m512 xv = _mm512_set1_ps(x[r][e]);
                        for (int v = 0; v < nv; v++) a[r][v] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(yp + 16 * v), a[r][v]);
                    }
            }
            for (int r = 0; r < ni; r++)
                for (int v = 0; v < nv; v++)
                    _mm512_mask_storeu_ps(S + (long)(i0 + r) * lds + j0 + 16 * v, mask_n(nj - 16 * v), _mm512_mul_ps(a[r][v], vs));
        }
    }
}

void dsv3_attn_dots_avx512(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y, long ldy,
                           int d, float scale) {
    if (nx <= 0 || ny <= 0) return;
    static _Thread_local float *yt;
    static _Thread_local size_t cap;
    const int ny16 = (ny + 15) & ~15;
    const size_t need = (size_t)d * ny16;
    if (need > cap) {
        free(yt);
        yt = dsv3_malloc(sizeof(float) * need);
        cap = need;
    }
    dsv3_attn_transpose_avx512(yt, ny16, Y, ldy, ny, d);
    dsv3_attn_dots_t_avx512(S, lds, nx, ny, X, ldx, yt, ny16, d, scale);
}

// Rows [r0, r0 + nr) (nr <= 4) x columns [e, e + 16·NV) (the last vector masked by mlast) of Out.
static inline __attribute__((always_inline)) void acc_rows(float *Out, long ldo, int r0, int nr, const float *P, long prs,
                                                             long pcs, int nin, const float *X, long ldx, int e, int NV,
                                                             __mmask16 mlast, float alpha) {
    __m512 o[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        const float *op = Out + (long)(r0 + (r < nr ? r : 0)) * ldo + e;
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++) o[r][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? mlast : 0xFFFF, op + 16 * v);
    }
    for (int c = 0; c < nin; c++) {
        float pc[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) pc[r] = r < nr ? P[(long)(r0 + r) * prs + (long)c * pcs] : 0.0f;
        if (pc[0] == 0.0f && pc[1] == 0.0f && pc[2] == 0.0f && pc[3] == 0.0f) continue;
        const float *xp = X + (long)c * ldx + e;
        __m512 x[6];
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++) x[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? mlast : 0xFFFF, xp + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 pv = _mm512_set1_ps(alpha * pc[r]);
#pragma GCC unroll 6
            for (int v = 0; v < NV; v++) o[r][v] = _mm512_fmadd_ps(pv, x[v], o[r][v]);
        }
    }
    for (int r = 0; r < nr; r++) {
        float *op = Out + (long)(r0 + r) * ldo + e;
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(op + 16 * v, v == NV - 1 ? mlast : 0xFFFF, o[r][v]);
    }
}

// Columns in chunks of up to 96 (6 vectors: 24 accumulators, 6 loads of X and 4 broadcasts per 24
// FMAs), so a head dim of 64 or 80 is one pass over P.
void dsv3_attn_acc_avx512(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin, const float *X,
                          long ldx, int d, float alpha) {
    for (int r0 = 0; r0 < nout; r0 += 4) {
        const int nr = nout - r0 < 4 ? nout - r0 : 4;
        for (int e = 0; e < d; e += 96) {
            const int ne = d - e < 96 ? d - e : 96, nv = (ne + 15) / 16;
            const __mmask16 ml = mask_n(ne - 16 * (nv - 1));
            switch (nv) {
            case 1: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 1, ml, alpha); break;
            case 2: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 2, ml, alpha); break;
            case 3: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 3, ml, alpha); break;
            case 4: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 4, ml, alpha); break;
            case 5: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 5, ml, alpha); break;
            default: acc_rows(Out, ldo, r0, nr, P, prs, pcs, nin, X, ldx, e, 6, ml, alpha); break;
            }
        }
    }
}
