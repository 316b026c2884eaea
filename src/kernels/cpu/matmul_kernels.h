// Internal: the SIMD kernels behind dsv3_matmul (kernels/cpu/matmul.c dispatches to them).
// Call the *_avx2 functions only after a run-time check that the CPU has AVX2, FMA and F16C.
#pragma once
#include "kernels/cpu/matmul.h"

// Packed-GEMM blocking (fp32 elements): micro-tile MR x NR of y, KC-deep panels, NC rows of W
// per task. The packed B block (KC x NC fp32 = 128 KiB) stays in L2, a micro-panel
// (KC x NR = 16 KiB) in L1.
#define DSV3_GEMM_MR 6
#define DSV3_GEMM_NR 16
#define DSV3_GEMM_KC 256
#define DSV3_GEMM_NC 128

// GEMV path: y[m, r] for r in [r0, r1), all m < M (any M; meant for small M). Single thread.
void dsv3_gemv_avx2(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1);
// Same contract on AVX-512 F/BW/VL (gemv_avx512.c); call only at the avx512 level or above.
void dsv3_gemv_avx512(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1);

// Packed GEMM: y[m, n] for m in [m0, m1), n in [n0, n1). Single thread. `pack` is scratch of
// dsv3_gemm_pack_floats() floats, 32-byte aligned.
void dsv3_gemm_avx2(float *y, const float *x, const dsv3_mat *w, int m0, int m1, int n0, int n1, float *pack);
size_t dsv3_gemm_pack_floats(void);

// Weight rows [r0, r0 + nr) x cols [c0, c0 + n) dequantized to fp32 into out (row stride ld).
void dsv3_mat_block_f32_avx2(const dsv3_mat *w, int r0, int nr, int c0, int n, float *out, int ld);
