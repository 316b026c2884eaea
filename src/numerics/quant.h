// Fine-grained FP8 quantization as in DeepSeek-V3 (docs/FP8.md): activations in 1×128 tiles (per token,
// per 128 channels), weights in 128×128 blocks, and the backward pass's re-tiling of 1×128 tiles into
// 128×1 tiles (dequantize -> transpose -> requantize).
//
// Scale of a tile: amax = max |x| over the tile (fp32), amax = max(amax, 1e-4), s = amax / fmt_max
// (fmt_max = 448 for E4M3, 65024 for E5M6), or with DSV3_SCALE_UE8M0 s = 2^ceil(log2 s) (exact). The
// stored value is q = fmt(x / s) (fp32 division, RNE, saturating); dequantization is float(q) · s (one
// fp32 multiply). This is DeepSeek's act_quant / weight_dequant (inference/kernel.py). Partial edge
// tiles use only their real elements (same as zero padding to 128, which the checkpoint README states).
// Non-finite input: amax skips NaN elements (fmaxf), so a NaN stays a NaN code in a tile that is
// otherwise quantized normally; an inf element makes amax inf, so the scale is inf (UE8M0: NaN) and
// the whole tile dequantizes to NaN (0 · inf), as a torch amax/448 reference does. K need not be a
// multiple of 128; M, N or K = 0 writes nothing.
//
// Layouts (all row-major, no padding; "ceil" is ceil(n / 128)):
//   1×128:    x (M, K)  ->  q (M, K), s (M, ceil(K))           s[m][kb] scales x[m][kb*128 .. +128)
//   128×128:  w (N, K)  ->  q (N, K), s (ceil(N), ceil(K))     s[nb][kb] scales the block at (nb, kb)
//                           (this is the checkpoint's `weight_scale_inv` layout)
//   re-tile:  q, s of x (M, K) in 1×128 tiles  ->  qt (K, M), st (K, ceil(M)) = xᵀ in 1×128 tiles, i.e.
//             x in 128×1 tiles, stored transposed so the token dim is contiguous: ready to be the A
//             operand of the Wgrad GEMM (src/numerics/fp8_gemm.h).
// All functions parallelize over rows with OpenMP.
#pragma once
#include <stdint.h>
#include "numerics/fp8.h"

#define DSV3_QUANT_TILE 128
#define DSV3_QUANT_AMAX_MIN 1e-4f

typedef enum { DSV3_SCALE_AMAX = 0, DSV3_SCALE_UE8M0 = 1 } dsv3_scale_fmt;

// The scale for a tile with this amax (clamp, divide, optional power-of-two rounding up).
float dsv3_quant_scale(float amax, float fmt_max, dsv3_scale_fmt sf);

// Activations, 1×128 tiles along K.
void dsv3_quant_1x128_e4m3(uint8_t *q, float *s, const float *x, int M, int K, dsv3_scale_fmt sf);
void dsv3_dequant_1x128_e4m3(float *x, const uint8_t *q, const float *s, int M, int K);
// xᵀ quantized without materializing it: qt (K, M) and st (K, ceil(M/128)) are exactly what
// dsv3_quant_1x128_e4m3 gives for the transpose of x (M, K) (the Wgrad operands along the tokens).
void dsv3_quant_1x128_t_e4m3(uint8_t *qt, float *st, const float *x, int M, int K, dsv3_scale_fmt sf);
// dsv3_quant_retile_1x128_t_e4m3 computed the same way (bit-identical results, blocked and vectorized).
void dsv3_quant_retile_fused_1x128_t_e4m3(uint8_t *qt, float *st, const uint8_t *q, const float *s, int M, int K,
                                          dsv3_scale_fmt sf);
void dsv3_quant_1x128_e5m6(uint16_t *q, float *s, const float *x, int M, int K, dsv3_scale_fmt sf);
void dsv3_dequant_1x128_e5m6(float *x, const uint16_t *q, const float *s, int M, int K);

// Weights, 128×128 blocks.
void dsv3_quant_128x128_e4m3(uint8_t *q, float *s, const float *w, int N, int K, dsv3_scale_fmt sf);
void dsv3_dequant_128x128_e4m3(float *w, const uint8_t *q, const float *s, int N, int K);
// Same, written as bf16 (RNE of the fp32 product), like weight_dequant with a bf16 default dtype.
void dsv3_dequant_128x128_e4m3_bf16(uint16_t *w, const uint8_t *q, const float *s, int N, int K);

// Backward re-tiling (see the layout note above). With DSV3_SCALE_UE8M0 on both sides the result is
// exact (dequantize(qt) == dequantize(q)ᵀ bit for bit) whenever no requantized value falls below the
// format's smallest normal; docs/FP8.md has the argument and test_quant.c checks it.
void dsv3_quant_retile_1x128_t_e4m3(uint8_t *qt, float *st, const uint8_t *q, const float *s, int M, int K,
                                    dsv3_scale_fmt sf);
void dsv3_quant_retile_1x128_t_e5m6(uint16_t *qt, float *st, const uint16_t *q, const float *s, int M, int K,
                                    dsv3_scale_fmt sf);
