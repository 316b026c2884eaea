// Internal: flash-style causal attention of the fast CPU backend (kernels/backend.h attn_fwd /
// attn_bwd) and its two block primitives, in AVX-512 (attention_avx512.c), AVX2/FMA (attention_avx2.c)
// and portable (attention_cpu.c) versions, chosen at run time by dsv3_matmul_get_isa().
#pragma once
#include "kernels/backend.h"

void dsv3_attn_fwd_cpu(const dsv3_attn_args *a);
void dsv3_attn_bwd_cpu(const dsv3_attn_args *a, const float *dout, float *dq, float *dk, float *dv);

// S[i·lds + j] = scale · Σ_e X[i·ldx + e] · Y[j·ldy + e] for i < nx, j < ny (e < d).
typedef void (*dsv3_attn_dots_fn)(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y,
                                  long ldy, int d, float scale);
// Out[r·ldo + e] += alpha · Σ_c P[r·prs + c·pcs] · X[c·ldx + e] for r < nout, c < nin, e < d
// (terms with P = 0 skipped: masked keys).
typedef void (*dsv3_attn_acc_fn)(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin,
                                 const float *X, long ldx, int d, float alpha);

void dsv3_attn_dots_avx2(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y, long ldy,
                         int d, float scale);
void dsv3_attn_acc_avx2(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin, const float *X,
                        long ldx, int d, float alpha);
// The same contracts on AVX-512 (attention_avx512.c; the avx512 level and above).
void dsv3_attn_dots_avx512(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y, long ldy,
                           int d, float scale);
void dsv3_attn_acc_avx512(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin, const float *X,
                          long ldx, int d, float alpha);
// Y (ny rows of d floats, row stride ldy) transposed into Yt [d][ldt], columns ny..ny16 zero (ny16 = ny
// rounded up to 16 <= ldt), with 16 x 16 register transposes; and dots with Y given that way: reads
// Yt columns [j0, j0 + 16·ceil(nj/16)) of each 64-key chunk (so up to ny16), d rows ldt apart.
void dsv3_attn_transpose_avx512(float *Yt, long ldt, const float *Y, long ldy, int ny, int d);
void dsv3_attn_dots_t_avx512(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Yt, long ldt,
                             int d, float scale);
