// y[M, rows] = x[M, cols] · Wᵀ, for a weight W [rows = out, cols = in] stored row-major as HF
// stores nn.Linear weights, in F32, BF16, F16 or F8_E4M3 with 2-D block dequantization scales
// (DeepSeek's `weight_scale_inv`: W[r, c] = fp8(Wq[r, c]) · scale[r / block_rows, c / block_cols]).
// Accumulation is always fp32.
#pragma once
#include "core/dtype.h"

typedef struct {
    dsv3_dtype dtype;
    const void *data;    // (rows, cols) row-major, elements of `dtype`
    const float *scale;  // F8 only: (ceil(rows/block_rows), ceil(cols/block_cols)); NULL otherwise
    int rows, cols;      // out features, in features
    int block_rows, block_cols; // scale block shape (128, 128 for DeepSeek-V3)
} dsv3_mat;

// Scalar reference: the definition every fast path is tested against.
void dsv3_matmul_ref(float *y, const float *x, const dsv3_mat *w, int M);
// The fast path (threads, SIMD); same result up to fp32 summation order.
void dsv3_matmul(float *y, const float *x, const dsv3_mat *w, int M);
// Dequantize row r of W into out[cols] as fp32 (used for embedding lookups).
void dsv3_mat_row_f32(const dsv3_mat *w, int r, float *out);

// Instruction-set paths of dsv3_matmul and the CPU backend, in increasing order (each level
// includes the ones below it). The default is the best one this CPU (and OS) supports, picked at the
// first call; the environment variable DSV3_NO_SIMD=1 forces the scalar path and DSV3_ISA=name caps
// the level (scalar, avx2, avx512, amx). Levels:
//   avx2    AVX2 + FMA + F16C: every fp32 kernel (GEMV, packed GEMM, SGEMM, attention, glue).
//   avx512  AVX-512 F/BW/DQ/VL + AVX512_BF16: adds the BF16 GEMM (vdpbf16ps, bgemm.h) for bf16
//           inputs: dsv3_matmul with BF16/FP8 weights at M > DSV3_MATMUL_GEMV_MAX_M, the
//           training bf16 GEMM forms. A CPU with AVX-512 but without BF16 runs the avx2 level.
//   amx     AMX-TILE + AMX-BF16 on top (Sapphire Rapids and later; Linux grants the tile state on
//           request): the same BF16 GEMM on tiles (TDPBF16PS).
// The scalar path can only run on a CPU without AVX2 if the build does not use -march=native (the
// Makefile default): `make OPT=-O2`.
typedef enum { DSV3_ISA_SCALAR = 0, DSV3_ISA_AVX2 = 1, DSV3_ISA_AVX512 = 2, DSV3_ISA_AMX = 3 } dsv3_isa;
// Force a path (tests, benchmarks). Returns 0, or -1 (message set) if this CPU lacks the ISA.
int dsv3_matmul_set_isa(dsv3_isa isa);
dsv3_isa dsv3_matmul_get_isa(void);
// The best level this CPU supports (ignores DSV3_NO_SIMD / DSV3_ISA and dsv3_matmul_set_isa).
dsv3_isa dsv3_cpu_max_isa(void);
const char *dsv3_isa_name(dsv3_isa isa);
// Activation precision of dsv3_matmul. Default fp32: x is used as given, so the model matches the
// fp32 reference (HF transformers on dequantized weights) to fp32 rounding. With bf16 activations on
// (dsv3_matmul_set_act_bf16(1), or the environment variable DSV3_MATMUL_ACT=bf16 read at the first
// call), BF16 and FP8 weights above the GEMV sizes run the BF16 GEMM (bgemm.h: AMX or AVX512_BF16)
// at the avx512 level and above: x and the weights (FP8: fp8 · scale) are rounded to bf16, the
// bf16 × bf16 → fp32 contract of torch/oneDNN bf16 matmul (about 2^-9 relative per input).
int dsv3_matmul_get_act_bf16(void);
void dsv3_matmul_set_act_bf16(int on);
// Whether dsv3_matmul(…, w, M) runs the BF16 GEMM under the current settings.
int dsv3_matmul_uses_bf16_gemm(const dsv3_mat *w, int M);
// Name of the kernel dsv3_matmul(…, w, M) runs under the current settings ("gemv-avx512",
// "gemv-avx2", "sgemm-avx512", "gemm-avx2", "bgemm-amx", "bgemm-avx512bf16", "scalar").
const char *dsv3_matmul_path(const dsv3_mat *w, int M);
// Largest M that takes the GEMV (no packing) path; above it the packed, blocked GEMM runs.
#define DSV3_MATMUL_GEMV_MAX_M 24
