// FP8 codecs. See docs/FP8.md for the formats (E4M3 "fn", E5M2, E5M6, UE8M0) and their special values.
// fp32 -> fp8 rounds to nearest, ties to even. The overflow policy is selectable:
//   DSV3_FP8_SATURATE  clamp to the largest finite value (what quantizers do)
//   DSV3_FP8_NONSAT    overflow to the format's inf / NaN, as torch's casts do
#pragma once
#include <stdint.h>

typedef enum { DSV3_FP8_NONSAT = 0, DSV3_FP8_SATURATE = 1 } dsv3_fp8_policy;

float dsv3_e4m3_to_f32(uint8_t b);
uint8_t dsv3_f32_to_e4m3(float f, dsv3_fp8_policy p);
float dsv3_e5m2_to_f32(uint8_t b);
uint8_t dsv3_f32_to_e5m2(float f, dsv3_fp8_policy p);
