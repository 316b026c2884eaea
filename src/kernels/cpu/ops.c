// Scalar fp32 ops for the forward pass (see ops.h).
#include "kernels/cpu/ops.h"
#include <math.h>

void dsv3_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float var = (float)(ss / n);
    float r = (float)(1.0 / sqrt((double)(var + eps)));
    for (int i = 0; i < n; i++) {
        float v = x[i] * r;
        y[i] = w ? w[i] * v : v;
    }
}

void dsv3_rmsnorm_rows(float *y, const float *x, const float *w, int rows, int n, float eps) {
    for (int r = 0; r < rows; r++) dsv3_rmsnorm(y + (long)r * n, x + (long)r * n, w, n, eps);
}

float dsv3_silu(float z) { return z / (1.0f + expf(-z)); }

void dsv3_swiglu(float *g, const float *u, long n) {
    for (long i = 0; i < n; i++) g[i] = dsv3_silu(g[i]) * u[i];
}

void dsv3_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) { // every entry masked: define as uniform zero (never happens with causal rows)
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    float fs = (float)sum;
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
