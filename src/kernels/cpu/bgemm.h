// BF16 GEMM: C = alpha · bf16(op(A)) · bf16(op(B)) + beta · C with fp32 accumulation. The inputs
// are rounded to bf16 (round to nearest even, as dsv3_f32_to_bf16 and torch's .to(bfloat16)); the
// products are exact in fp32 and are summed in fp32. This is the GEMM of bf16 training (BF16 GEMM
// inputs, FP32 accumulation) and of dsv3_matmul with BF16/FP8 weights on CPUs with AVX512_BF16.
//
// Paths (dsv3_matmul_get_isa()):
//   amx     32 x 32 tiles of C on AMX (TDPBF16PS: four accumulator tiles, two A and two B tiles).
//   avx512  8 x 32 register tiles with vdpbf16ps (16 zmm accumulators).
//   below   the inputs are rounded into bf16-valued fp32 copies and the fp32 SGEMM runs on them
//           (same contract, fp32 speed).
// Both hardware paths treat bf16 subnormal inputs as zero and flush subnormal results (the
// instructions' fixed DAZ/FTZ behaviour); the reference keeps subnormals. Accumulation order
// differs between paths: agreement is to fp32 rounding of a K-long sum, not bit-exact.
//
// Layout (both paths): op(A) is converted to bf16 rows [Mp][Kp] (Mp = M rounded up to 32, Kp = K
// rounded up to 32, zero padded), op(B) to "VNNI" panels of 16 columns, [Kp/2][16][2] bf16 (the two
// K-consecutive values of a column share a 32-bit lane), NC = 256 columns at a time, shared by the
// threads. C is accumulated in a per-thread fp32 scratch block (MC x NC) over KC-deep slices and
// merged into C (alpha, beta) once.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "kernels/cpu/matmul.h"
#include "numerics/fp8_gemm.h"

// Scalar reference: C[M, N] = alpha · Σ_k bf16(opA[m, k]) · bf16(opB[k, n]) + beta · C, fp32 sums
// in k order (beta = 0: C not read). Semantics of trans/ld as dsv3_backend.gemm (kernels/backend.h).
void dsv3_bgemm_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

// The fast path (threads, AVX-512 BF16 or AMX; below the avx512 level, rounded copies + SGEMM).
void dsv3_bgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);

// y[M, w->rows] = bf16(x[M, w->cols]) · bf16(W)ᵀ for a weight of any dsv3_mat dtype (FP8: the value
// fp8 · scale rounded to bf16). Needs the avx512 level (the caller checks).
void dsv3_bgemm_mat(float *y, const float *x, const dsv3_mat *w, int M);

// The FP8 GEMM of numerics/fp8_gemm.h (E4M3 codes, 1x128 / 128x128 or 1x128 scales) in its
// DSV3_FP8_ACC_FP32 model on the bf16 kernels: E4M3 values are exact in bf16 and their products exact
// in fp32, so the AMX / AVX512_BF16 kernel sums each 128-wide K group of raw products in fp32 and the
// merge does C += (group · sa) · sb, group by group, as the reference does. Only the order of the sum
// inside a group differs (and subnormal products, which the hardware flushes: none occur, as
// the smallest E4M3 product 2^-18 is a normal fp32). beta 0: C written; beta 1: C accumulated (the
// groups are added to C one by one). Needs the avx512 level (the caller checks). Packs the codes
// straight into bf16 (no fp32 copy).
void dsv3_fp8_bgemm(const dsv3_fp8_gemm_args *g, float *C, int ldc, float beta);

// ---- internal: kernels shared by bgemm.c, bgemm_avx512.c and bgemm_amx.c ----------------------
#define DSV3_BG_MC 128  // rows of the A block per task (MC x KC bf16 = 128 KiB: L2)
#define DSV3_BG_NC 256  // columns of a packed B block (Kp x NC bf16, shared)
#define DSV3_BG_KC 512  // depth of one pass over the scratch block (a 32-column B strip: 32 KiB, L1)

// A source: fp32 op(A) (transA, lda).
typedef struct { int trans; const float *p; long ld; } dsv3_bg_fsrc;

// Rows [m0, m1) of op(A) (m1 ≤ Mp; rows ≥ M are zero) into apack rows m0.. of [Mp][Kp].
void dsv3_bg_pack_a_avx512(const dsv3_bg_fsrc *a, int M, int K, int Kp, int m0, int m1, uint16_t *apack);
// One 16-column panel of op(B): columns [n0, n0 + 16) (those ≥ N zero), all Kp rows, into panel
// [Kp/2][16] dwords. B is either fp32 (b != NULL) or a weight matrix (w: op(B)[k, n] = W[n, k]).
// tmp: 16 x 32 floats of scratch.
void dsv3_bg_pack_b_avx512(const dsv3_bg_fsrc *b, const dsv3_mat *w, int N, int K, int Kp, int n0,
                           uint16_t *panel, float *tmp);
// The same panels for an fp32 op(B) stored (K, N) (b->trans == 0), by K pairs: pairs [p0, p1) of the
// npan panels of columns n0.. (panel q at bpack + q · Kp · 16), each pass reading a contiguous run of
// two B rows (the panel-at-a-time order read 64 bytes of every row per panel: measured 41 % of a
// 256 x 1024 x 2816 dgrad).
void dsv3_bg_pack_b_kn_avx512(const dsv3_bg_fsrc *b, int N, int K, int Kp, int n0, int npan, int p0, int p1,
                              uint16_t *bpack);
// S[mt·32, nt·32] (row stride lds) (+)= A rows (apack, row stride lda elements; mt·32 rows) ·
// panels (2·nt panels, panel stride pstride elements, starting at K pair kp0) over kc (multiple of
// 32) K values. first: S is overwritten, else accumulated.
void dsv3_bg_block_avx512(const uint16_t *a, long lda, int mt, const uint16_t *b, long pstride, int nt, int kc,
                          float *S, long lds, int first);
void dsv3_bg_block_amx(const uint16_t *a, long lda, int mt, const uint16_t *b, long pstride, int nt, int kc,
                       float *S, long lds, int first);
// C[i, j] = (overwrite ? 0 : C[i, j]) + (S[i, j] · ra[i]) · cb[j] (the scaled group merge of dsv3_fp8_bgemm).
void dsv3_bg_merge_scaled_avx512(float *C, long ldc, const float *S, long lds, int rows, int cols, const float *ra,
                                 const float *cb, int overwrite);
// d[i] = lut[a[i]] for i < n, for a lut whose upper half is the lower half with the sign bit set
// (lut[c | 0x80] == lut[c] | 0x8000: the E4M3 -> bf16 table of dsv3_fp8_bgemm).
void dsv3_bg_decode_e4m3_avx512(uint16_t *d, const uint8_t *a, int n, const uint16_t *lut);
// C[i, j] = alpha · S[i, j] + beta · C[i, j] for i < rows, j < cols (beta = 0: C not read).
void dsv3_bg_merge_avx512(float *C, long ldc, const float *S, long lds, int rows, int cols, float alpha, float beta);
