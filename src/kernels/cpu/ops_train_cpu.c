// Elementwise training ops of the fast CPU backend: rows threaded with OpenMP (serial below a size
// threshold or inside a parallel region), inner loops in AVX2 (ops_train_avx2.c) or portable C.
// Row sums are accumulated in double as in the reference, so rmsnorm's rstd and y match it to
// rounding; every reduction has a fixed order (deterministic results).
#include "kernels/cpu/ops_train_cpu.h"
#include "kernels/cpu/matmul.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define PAR_MIN 32768 // elements below which threads cost more than they save

static int simd(void) { return dsv3_matmul_get_isa() >= DSV3_ISA_AVX2; }
static int par(double elems) { return elems >= PAR_MIN && !omp_in_parallel() && omp_get_max_threads() > 1; }

void dsv3_rmsnorm_fwd_cpu(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
    int v = simd();
#pragma omp parallel for schedule(static) if (par((double)rows * n))
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double ss = 0.0;
        if (v) ss = dsv3_sumsq_avx2(xr, n);
        else for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / n);
        float rs = (float)(1.0 / sqrt((double)(var + eps)));
        if (w) {
#pragma omp simd
            for (int i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * rs);
        } else {
#pragma omp simd
            for (int i = 0; i < n; i++) yr[i] = xr[i] * rs;
        }
        if (rstd) rstd[r] = rs;
    }
}

void dsv3_rmsnorm_bwd_cpu(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                          int rows, int n) {
    int v = simd(), p = par((double)rows * n);
#pragma omp parallel if (p)
    {
#pragma omp for schedule(static) nowait
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * n, *gr = dy + (size_t)r * n;
            float *dr = dx + (size_t)r * n;
            double c = 0.0;
            if (v) c = dsv3_dot3_avx2(w, gr, xr, n);
            else for (int i = 0; i < n; i++) c += (double)(w ? w[i] : 1.0f) * gr[i] * xr[i];
            float rs = rstd[r], cf = (float)(c * rs * rs * rs / n);
            if (w) {
#pragma omp simd
                for (int i = 0; i < n; i++) dr[i] = rs * (w[i] * gr[i]) - cf * xr[i];
            } else {
#pragma omp simd
                for (int i = 0; i < n; i++) dr[i] = rs * gr[i] - cf * xr[i];
            }
        }
        if (dw) { // columns split over threads; each column sums its rows in order (deterministic)
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            int c0 = (int)((long)n * t / nt), c1 = (int)((long)n * (t + 1) / nt);
            for (int i0 = c0; i0 < c1; i0 += 256) {
                int i1 = i0 + 256 < c1 ? i0 + 256 : c1;
                float acc[256] = {0};
                for (int r = 0; r < rows; r++) {
                    const float *xr = x + (size_t)r * n, *gr = dy + (size_t)r * n;
                    float rs = rstd[r];
#pragma omp simd
                    for (int i = i0; i < i1; i++) acc[i - i0] += gr[i] * xr[i] * rs;
                }
                for (int i = i0; i < i1; i++) dw[i] += acc[i - i0];
            }
        }
    }
}

void dsv3_swiglu_fwd_cpu(float *a, const float *g, const float *u, long n) {
    int v = simd();
    long chunk = 4096, nch = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (par((double)n))
    for (long c = 0; c < nch; c++) {
        long i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk, i = v ? dsv3_swiglu_fwd_avx2(a + i0, g + i0, u + i0, m) : 0;
        for (; i < m; i++) a[i0 + i] = g[i0 + i] / (1.0f + expf(-g[i0 + i])) * u[i0 + i];
    }
}

void dsv3_swiglu_bwd_cpu(float *dg, float *du, const float *da, const float *g, const float *u, long n) {
    int v = simd();
    long chunk = 4096, nch = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (par((double)n))
    for (long c = 0; c < nch; c++) {
        long i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        long i = v ? dsv3_swiglu_bwd_avx2(dg + i0, du + i0, da + i0, g + i0, u + i0, m) : 0;
        for (; i < m; i++) {
            float z = g[i0 + i], d = da[i0 + i], uu = u[i0 + i], s = 1.0f / (1.0f + expf(-z));
            dg[i0 + i] = d * uu * (s * (1.0f + z * (1.0f - s)));
            du[i0 + i] = d * (z * s);
        }
    }
}

void dsv3_rope_cpu(float *x, int rows, long ld, int heads, long hstride, int off, const float *cos_t,
                   const float *sin_t, const int32_t *pos, int n_pairs, int interleave, int inverse) {
    float sg = inverse ? -1.0f : 1.0f; // the transpose rotates by −θ: sin → −sin
#pragma omp parallel for schedule(static) if (par((double)rows * heads * 2 * n_pairs))
    for (int r = 0; r < rows; r++) {
        const float *c = cos_t + (size_t)pos[r] * n_pairs, *s = sin_t + (size_t)pos[r] * n_pairs;
        for (int h = 0; h < heads; h++) {
            float *xs = x + (size_t)r * ld + (size_t)h * hstride + off;
            if (interleave) {
                for (int i = 0; i < n_pairs; i++) {
                    float x0 = xs[2 * i], x1 = xs[2 * i + 1], si = sg * s[i];
                    xs[2 * i] = x0 * c[i] - x1 * si;
                    xs[2 * i + 1] = x1 * c[i] + x0 * si;
                }
            } else {
                float *xa = xs, *xb = xs + n_pairs;
#pragma omp simd
                for (int i = 0; i < n_pairs; i++) {
                    float x0 = xa[i], x1 = xb[i], si = sg * s[i];
                    xa[i] = x0 * c[i] - x1 * si;
                    xb[i] = x1 * c[i] + x0 * si;
                }
            }
        }
    }
}

double dsv3_xent_cpu(const float *logits, const int32_t *target, int rows, int V, float scale, float *dlogits) {
    int v = simd(), v512 = v && dsv3_matmul_get_isa() >= DSV3_ISA_AVX512;
    int nt = par((double)rows * V) ? omp_get_max_threads() : 1;
    double part[256] = {0};
    if (nt > 256) nt = 256;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        double sum = 0.0;
        for (int r = (int)((long)rows * t / n); r < (int)((long)rows * (t + 1) / n); r++) {
            const float *l = logits + (size_t)r * V;
            float *d = dlogits ? dlogits + (size_t)r * V : NULL;
            int tg = target[r];
            if (tg < 0) {
                if (d) for (int i = 0; i < V; i++) d[i] = 0.0f;
                continue;
            }
            float mx = -INFINITY;
            if (v512) mx = dsv3_row_max_avx512(l, V);
            else if (v) mx = dsv3_row_max_avx2(l, V);
            else for (int i = 0; i < V; i++) if (l[i] > mx) mx = l[i];
            double se = 0.0;
            if (v512) se = dsv3_row_sumexp_avx512(l, V, mx);
            else if (v) se = dsv3_row_sumexp_avx2(l, V, mx);
            else for (int i = 0; i < V; i++) se += expf(l[i] - mx);
            double lse = (double)mx + log(se);
            float lt = l[tg];
            sum += lse - (double)lt;
            if (d) {
                float lf = (float)lse;
                int i = v512 ? dsv3_row_softmax_scaled_avx512(d, l, V, lf, scale) : v ? dsv3_row_softmax_scaled_avx2(d, l, V, lf, scale) : 0;
                for (; i < V; i++) d[i] = scale * expf(l[i] - lf);
                d[tg] -= scale;
            }
        }
        part[t] = sum;
    }
    double total = 0.0;
    for (int t = 0; t < nt; t++) total += part[t]; // fixed order
    return total;
}
