// fp32 ops for the forward pass (see ops.h): the scalar definitions, and AVX2 / AVX-512 loops (with
// threads over rows or chunks) chosen at run time by dsv3_matmul_get_isa(). Each vector loop gives
// every element (row) the same result whatever n (the number of rows) is: a row's sum of squares,
// an element's silu, a row's softmax do not depend on how many rows or elements share the call, so
// the prefill of T tokens and the decode of one agree token by token (tails go through the same
// vector code, padded).
#include "kernels/cpu/ops.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops_train_cpu.h"
#include <math.h>
#include <omp.h>
#include <string.h>

static int simd(void) { return dsv3_matmul_get_isa() >= DSV3_ISA_AVX2; }
static int par(double elems) { return elems >= 32768 && !omp_in_parallel() && omp_get_max_threads() > 1; }

void dsv3_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    if (simd()) ss = dsv3_sumsq_avx2(x, n); // fixed order for a given n (4-wide double FMAs)
    else
        for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float var = (float)(ss / n);
    float r = (float)(1.0 / sqrt((double)(var + eps)));
    for (int i = 0; i < n; i++) {
        float v = x[i] * r;
        y[i] = w ? w[i] * v : v;
    }
}

void dsv3_rmsnorm_rows(float *y, const float *x, const float *w, int rows, int n, float eps) {
#pragma omp parallel for schedule(static) if (par((double)rows * n))
    for (int r = 0; r < rows; r++) dsv3_rmsnorm(y + (long)r * n, x + (long)r * n, w, n, eps);
}

float dsv3_silu(float z) { return z / (1.0f + expf(-z)); }

// Vector SwiGLU over [i0, i1): whole groups of 8 in place, the last partial group through an 8-wide
// padded copy (the same vector exp, so an element's value does not depend on where it sits).
static void swiglu_vec(float *g, const float *u, long i0, long i1) {
    long i = i0 + dsv3_swiglu_fwd_avx2(g + i0, g + i0, u + i0, i1 - i0);
    if (i < i1) {
        float gt[8] = {0}, ut[8] = {0};
        memcpy(gt, g + i, sizeof(float) * (size_t)(i1 - i));
        memcpy(ut, u + i, sizeof(float) * (size_t)(i1 - i));
        dsv3_swiglu_fwd_avx2(gt, gt, ut, 8);
        memcpy(g + i, gt, sizeof(float) * (size_t)(i1 - i));
    }
}

void dsv3_swiglu(float *g, const float *u, long n) {
    if (!simd()) {
        for (long i = 0; i < n; i++) g[i] = dsv3_silu(g[i]) * u[i];
        return;
    }
    const long chunk = 8192; // a multiple of 8
    const long nch = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (par((double)n))
    for (long c = 0; c < nch; c++) swiglu_vec(g, u, c * chunk, c * chunk + chunk < n ? c * chunk + chunk : n);
}

void dsv3_softmax(float *x, int n) {
    const int v = simd();
    float mx = -INFINITY;
    if (v) mx = dsv3_matmul_get_isa() >= DSV3_ISA_AVX512 ? dsv3_row_max_avx512(x, n) : dsv3_row_max_avx2(x, n);
    else
        for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) { // every entry masked: define as uniform zero (never happens with causal rows)
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    double sum = 0.0;
    if (v) sum = dsv3_exp_sub_sum_avx2(x, n, mx); // vector exp (<= 2 ulp), fp32 partial sums, expf tail
    else
        for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    float fs = (float)sum;
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] /= fs;
}

void dsv3_rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int n_pairs, int pos0, int T,
                      float attention_factor) {
    for (int t = 0; t < T; t++) {
        float p = (float)(pos0 + t);
        for (int i = 0; i < n_pairs; i++) {
            float ang = p * inv_freq[i];
            cos_t[(long)t * n_pairs + i] = (float)cos((double)ang) * attention_factor;
            sin_t[(long)t * n_pairs + i] = (float)sin((double)ang) * attention_factor;
        }
    }
}

void dsv3_rope_apply(float *x, const float *c, const float *s, int n_pairs, int interleave) {
    for (int i = 0; i < n_pairs; i++) {
        float *a = interleave ? &x[2 * i] : &x[i];
        float *b = interleave ? &x[2 * i + 1] : &x[i + n_pairs];
        float x0 = *a, x1 = *b;
        *a = x0 * c[i] - x1 * s[i];
        *b = x1 * c[i] + x0 * s[i];
    }
}
