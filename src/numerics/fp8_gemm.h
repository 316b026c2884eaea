// FP8 GEMM with fine-grained scales, CPU reference and accumulation-precision emulation:
//
//     C[M, N] = Σ_k  A[m, k] · sa[m, k/128]  ·  B[n, k] · sb[n/bn, k/128]      (bn = 128 or 1)
//
// A and B hold E4M3 codes. The scale layouts are those of cuBLASLt's block-scaled FP8 modes, so a CUDA
// path can take the same buffers:
//   A (M, K) row-major (K contiguous, row stride lda >= K); scales sa: 1×128 along K ("VEC128_32F"),
//     logical shape (M, ceil(K/128)) fp32, element (m, kb) at sa[m·sa_stride_m + kb·sa_stride_k].
//     dsv3_quant_1x128_e4m3 writes it row-major: strides (ceil(K/128), 1). cuBLASLt wants it M-major
//     ("outer-dim-major", i.e. column-major (M, ceil(K/128))): strides (1, M). Both are accepted.
//   B (N, K) row-major = the nn.Linear weight [out, in] (cuBLASLt: column-major K×N used as op(B) = Bᵀ,
//     the "TN" layout); scales sb: 128×128 blocks ("BLK128x128_32F"), (ceil(N/128), ceil(K/128))
//     row-major, exactly the checkpoint's `weight_scale_inv`. With b_block_n = 1, sb is (N, ceil(K/128))
//     row-major: 1×128 tiles of B too (the Wgrad GEMM, where both operands are activations).
//   C (M, N) row-major, row stride ldc, fp32 or bf16 (RNE from fp32).
//
// Accumulation (docs/FP8.md has the full model and the study):
//   DSV3_FP8_ACC_FP32     exact E4M3×E4M3 products summed in fp32 in k order within each 128-wide K group;
//                         the group sum is then scaled and added to an fp32 accumulator:
//                         acc += (group_sum · sa) · sb. DeepSeek's promoted scheme (= kernel.py fp8_gemm).
//   DSV3_FP8_ACC_LIMITED  an emulated Hopper tensor-core accumulator: every `group` products (one WGMMA
//                         k-step: 32 for FP8) are added to the running accumulator after aligning all of
//                         them and the accumulator to the largest exponent present and truncating
//                         everything below `bits` bits from that exponent (rounding toward -inf, as a
//                         sign-filling right shift of two's complement values does, or toward zero). Every `nc` elements of K
//                         (nc = 0: never) the accumulator is promoted: converted to fp32, scaled, added to an
//                         fp32 accumulator, and reset. With nc <= 128 dividing 128 the tensor core sees raw
//                         products and the scales are applied at promotion (DeepSeek's scheme with
//                         N_C = nc); otherwise (nc = 0 or a promotion interval spanning several scale
//                         groups) each product enters already multiplied by its scales, as a per-tensor-
//                         scaled FP8 GEMM would see it.
#pragma once
#include <stdint.h>
#include "core/dtype.h"

typedef enum { DSV3_FP8_ACC_FP32 = 0, DSV3_FP8_ACC_LIMITED = 1 } dsv3_fp8_acc_mode;
// How the bits shifted out of the window are dropped: FLOOR = two's complement with sign-fill right shift
// (the paper's wording; toward -inf), TRUNC = sign-magnitude truncation (toward zero).
typedef enum { DSV3_FP8_ROUND_FLOOR = 0, DSV3_FP8_ROUND_TRUNC = 1 } dsv3_fp8_acc_round;

typedef struct {
    dsv3_fp8_acc_mode mode;
    int nc;      // LIMITED: promotion interval in K elements (a multiple of `group`), 0 = no promotion
    int bits;    // LIMITED: bits kept below and including the leading bit of the largest term (paper: ~14)
    int group;   // LIMITED: products aligned together per step (32 = one FP8 WGMMA k-step)
    dsv3_fp8_acc_round round; // LIMITED: FLOOR (default, 0) or TRUNC
} dsv3_fp8_acc;

#define DSV3_FP8_ACC_DEFAULT_BITS 14
#define DSV3_FP8_ACC_DEFAULT_GROUP 32

typedef struct {
    int M, N, K;
    const uint8_t *a; int lda;              // (M, K) E4M3 row-major
    const float *sa; long sa_stride_m, sa_stride_k; // (M, ceil(K/128)) scales, see above
    const uint8_t *b; int ldb;              // (N, K) E4M3 row-major
    const float *sb; int b_block_n;         // (ceil(N/b_block_n), ceil(K/128)) row-major; b_block_n = 128 or 1
} dsv3_fp8_gemm_args;

// Computes C. c_dtype is DSV3_F32 (float *C) or DSV3_BF16 (uint16_t *C). Returns 0, or -1 with a
// message (bad shape, stride, block size, dtype or accumulation settings). Threads over rows of C.
int dsv3_fp8_gemm(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, void *C, dsv3_dtype c_dtype, int ldc);

// One dot product with the limited-precision accumulator, exposed for tests and the study: terms[i]
// (exact products) are summed as described above, promoting every acc->nc terms (0 = once at the end).
// At promotion c (the c-th chunk) the fp32 accumulator does acc32 += ((float)partial · chunk_sa[c]) ·
// chunk_sb[c]; pass NULL for both to add the partial sum unscaled. acc->mode is ignored.
float dsv3_fp8_limited_dot(const double *terms, int n, const dsv3_fp8_acc *acc, const float *chunk_sa,
                           const float *chunk_sb);

// The accumulation-precision study (src/numerics/fp8_study.c, docs/FP8.md): C = A·Bᵀ with random
// A (M, K) and B (N, K) quantized to E4M3 (1×128 / 128×128 scales), for each promotion interval,
// compared elementwise with an fp64 GEMM of the dequantized inputs.
typedef struct {
    int K, nc;                        // nc = 0: no promotion; nc = -1: the fp32 mode (exact products)
    double max_rel, mean_rel;         // |C - C64| / |C64| over the M·N outputs
    double max_nrm, mean_nrm;         // |C - C64| / Σ_k |a_k b_k| (error relative to the sum of magnitudes)
} dsv3_fp8_study_row;

typedef struct {
    int M, N;
    int bits, group;                  // accumulator model (14, 32 by default)
    dsv3_fp8_acc_round round;         // FLOOR by default
    uint64_t seed;
    int dist;                         // 0: N(0,1) entries; 1: U(0,1) entries (all products positive)
    int ue8m0;                        // 1: power-of-two scales (default in the CLI); 0: amax/448 scales
} dsv3_fp8_study_cfg;

// Runs the study for one K and the n_nc promotion intervals in ncs[] (-1 = fp32 mode, 0 = none),
// writing rows[0..n_nc). Same data for every interval. Returns 0, or -1 with a message.
int dsv3_fp8_study_run(const dsv3_fp8_study_cfg *cfg, int K, const int *ncs, int n_nc, dsv3_fp8_study_row *rows);
// Working memory of one study cell: (M+N)·K·5 bytes of inputs and codes, scales, and M·N·20 bytes of
// reference and results. dsv3_fp8_study_check refuses a cell above DSV3_FP8_STUDY_MAX_BYTES (0, or -1
// with a message naming the sizes); dsv3_fp8_study_run checks it first.
#define DSV3_FP8_STUDY_MAX_BYTES ((uint64_t)2 << 30) // 2 GiB
uint64_t dsv3_fp8_study_bytes(int M, int N, int K);
int dsv3_fp8_study_check(const dsv3_fp8_study_cfg *cfg, int K);
