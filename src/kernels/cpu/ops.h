// fp32 elementwise / row ops used by the forward pass. All take and return fp32. rmsnorm, swiglu and
// softmax run AVX2 / AVX-512 loops (rows or chunks threaded outside parallel regions) at those
// levels and the scalar definitions at DSV3_ISA=scalar; a row's or element's result never depends on
// how many share the call (tests/test_ops.c checks both against the scalar level).
#pragma once

// y[n] = w ⊙ x / sqrt(mean(x²) + eps). The mean of squares is accumulated in double and
// rounded to float (HF: fp32 pow/mean/rsqrt, then weight * normed). y may alias x.
void dsv3_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
// Same, applied to each of `rows` contiguous rows of length n.
void dsv3_rmsnorm_rows(float *y, const float *x, const float *w, int rows, int n, float eps);

// silu(z) = z·sigmoid(z)
float dsv3_silu(float z);
// g[i] = silu(g[i]) · u[i] for i < n (SwiGLU inner activation, in place on g).
void dsv3_swiglu(float *g, const float *u, long n);

// In-place numerically stable softmax over x[n] (max subtracted, exp in fp32, sum in double).
void dsv3_softmax(float *x, int n);

// Rotary tables for positions pos0..pos0+T-1: cos/sin[T, n_pairs], each entry
// (float)(cos((double)((float)pos * inv_freq[i]))) · attention_factor (the angle is rounded to
// float as HF's fp32 product is; cos/sin are taken in double and rounded once).
void dsv3_rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int n_pairs, int pos0, int T,
                      float attention_factor);
// Rotate x[2·n_pairs] by one position's cos/sin rows. interleave=1: pairs (x[2i], x[2i+1])
// (the DeepSeek checkpoint layout); interleave=0: pairs (x[i], x[i + n_pairs]) (rotate_half).
// The result keeps the input layout.
void dsv3_rope_apply(float *x, const float *cos_row, const float *sin_row, int n_pairs, int interleave);
