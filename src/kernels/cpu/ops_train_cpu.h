// Internal: the elementwise training ops of the fast CPU backend (kernels/backend.h semantics) and
// their AVX2/FMA inner loops (ops_train_avx2.c; call only when dsv3_matmul_get_isa() is AVX2).
// The *_avx2 loops that return a count handle the first (count) elements; the caller does the rest.
#pragma once
#include <stdint.h>

void dsv3_rmsnorm_fwd_cpu(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
void dsv3_rmsnorm_bwd_cpu(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                          int rows, int n);
void dsv3_swiglu_fwd_cpu(float *a, const float *g, const float *u, long n);
void dsv3_swiglu_bwd_cpu(float *dg, float *du, const float *da, const float *g, const float *u, long n);
void dsv3_rope_cpu(float *x, int rows, long ld, int heads, long hstride, int off, const float *cos_t,
                   const float *sin_t, const int32_t *pos, int n_pairs, int interleave, int inverse);
double dsv3_xent_cpu(const float *logits, const int32_t *target, int rows, int V, float scale, float *dlogits);

long dsv3_swiglu_fwd_avx2(float *a, const float *g, const float *u, long n);
long dsv3_swiglu_bwd_avx2(float *dg, float *du, const float *da, const float *g, const float *u, long n);
float dsv3_row_max_avx2(const float *x, int n);
double dsv3_row_sumexp_avx2(const float *x, int n, float m);
int dsv3_row_softmax_scaled_avx2(float *d, const float *x, int n, float lse, float scale);
double dsv3_sumsq_avx2(const float *x, int n);
double dsv3_dot3_avx2(const float *w, const float *dy, const float *x, int n);
// Attention softmax pieces (attention_cpu.c): s[j] = e^(s[j] − m) for j < n, returning Σ s[j]; and
// d[j] = e^(s[j] − m). The vector exp of ops_train_avx2.c (≤ 2 ulp), expf for the tail.
float dsv3_exp_sub_sum_avx2(float *s, int n, float m);
void dsv3_exp_sub_avx2(float *d, const float *s, int n, float m);
// AVX-512 twins of the cross-entropy loops (ops_train_avx512.c; the avx512 level and above).
float dsv3_row_max_avx512(const float *x, int n);
double dsv3_row_sumexp_avx512(const float *x, int n, float m);
int dsv3_row_softmax_scaled_avx512(float *d, const float *x, int n, float lse, float scale);
