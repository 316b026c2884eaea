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

// Instruction-set paths of dsv3_matmul. The default is the best one this CPU supports, picked at
// the first call (AVX2+FMA+F16C if present, else portable scalar C); the environment variable
// DSV3_NO_SIMD=1 forces the scalar path. There is no AVX-512 path. The scalar path can only run on
// a CPU without AVX2 if the build does not use -march=native (the Makefile default): `make OPT=-O2`.
typedef enum { DSV3_ISA_SCALAR = 0, DSV3_ISA_AVX2 = 1 } dsv3_isa;
// Force a path (tests, benchmarks). Returns 0, or -1 (message set) if this CPU lacks the ISA.
int dsv3_matmul_set_isa(dsv3_isa isa);
dsv3_isa dsv3_matmul_get_isa(void);
const char *dsv3_isa_name(dsv3_isa isa);
// Largest M that takes the GEMV (no packing) path; above it the packed, blocked GEMM runs.
#define DSV3_MATMUL_GEMV_MAX_M 24
