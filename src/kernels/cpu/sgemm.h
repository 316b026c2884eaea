// Internal: the packed fp32 SGEMM behind dsv3_backend_cpu()->gemm (semantics in kernels/backend.h).
// BLIS-style: op(B) is packed into KC x NR column panels, op(A) into MC x KC blocks of MR-row
// panels, so all four transpose combinations run through one MR x NR micro-kernel.
#pragma once
#include "kernels/cpu/matmul.h"

#define DSV3_SG_MR 6       // AVX2 / scalar micro-tile
#define DSV3_SG_NR 16
#define DSV3_SG_MR_512 12  // AVX-512 micro-tile
#define DSV3_SG_NR_512 32
#define DSV3_SG_KC 256   // panel depth: an A micro-panel (6 KiB) + a B micro-panel (16 KiB) in L1
#define DSV3_SG_MC 120   // A block MC x KC = 120 KiB, resident in the (512 KiB) L2
#define DSV3_SG_NC 2048  // B block KC x NC = 2 MiB, shared by the threads, in L3

void dsv3_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
// y[M, w->rows] = x[M, w->cols] · Wᵀ (dsv3_matmul's contract, fp32 activations) for a weight of any
// dsv3_mat dtype: the same loop nest, the B panels dequantized to fp32 while they are packed (once
// per KC x NC block, shared by the threads). Needs the avx2 level.
void dsv3_sgemm_mat(float *y, const float *x, const dsv3_mat *w, int M);

// Micro-kernels: C[mr, nr] = alpha · Σ_k a[k][MR] ⊗ b[k][NR] + beta · C (beta = 0: C not read), for
// packed panels a (kc x MR) and b (kc x NR); mr ≤ MR, nr ≤ NR select the part of the tile stored.
typedef void (*dsv3_sg_ukernel)(int kc, const float *a, const float *b, float *c, long ldc, float alpha,
                                float beta, int mr, int nr);
void dsv3_sg_ukernel_avx2(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta,
                          int mr, int nr);
void dsv3_sg_ukernel_avx512(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta,
                            int mr, int nr);
// Transposing pack (AVX-512), 16 lanes: out[k·ostride + r] = src[r·ld + k] for r < rows (≤ 16), zero to 16.
void dsv3_sg_pack_t16_avx512(const float *src, long ld, int rows, int kc, float *out, int ostride);
// Transposing pack (AVX2): out[k·ostride + r] = src[r·ld + k] for r < rows (≤ 8), zero up to width.
void dsv3_sg_pack_t_avx2(const float *src, long ld, int rows, int kc, float *out, int ostride, int width);
