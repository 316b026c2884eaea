// Internal: AVX2 / F16C loads that widen 8 weights of any supported dtype to 8 fp32 lanes.
// Include only from files compiled for avx2,fma,f16c (e.g. under #pragma GCC target).
#pragma once
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "core/dtype.h"

// 8 fp32 lanes, the last 8 - n of them zero (n in 0..8).
static inline __m256i dsv3_tail_mask_avx2(int n) {
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}

// E4M3 -> fp16 bit pattern by shifts: sign-extend the byte to 16 bits, shift left 7 (exponent and
// mantissa land in fp16's fields, the sign in bit 15), clear bit 14. The fp16 value is then exactly
// e4m3 / 256 (normals and subnormals alike: both formats' exponent fields line up with a bias
// difference of 8), so callers multiply by 256 * scale. The NaN codes S.1111.111 would come out as
// ±1.875 (±480 after scaling); they are mapped to fp16 NaN so that a NaN weight propagates as in
// the scalar reference (cost: 3 integer ops per 8 weights).
static inline __m128i dsv3_e4m3x8_to_f16bits(__m128i bytes_lo64) {
    __m128i h = _mm_cvtepi8_epi16(bytes_lo64);
    h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16((short)0xBFFF));
    __m128i mag = _mm_set1_epi16(0x3F80);
    __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(h, mag), mag);
    return _mm_or_si128(h, _mm_and_si128(nan, _mm_set1_epi16(0x7C00)));
}

// 8 consecutive weights starting at element i of `base`, widened to fp32 (E4M3: value / 256, unscaled).
static inline __attribute__((always_inline)) __m256 dsv3_load8_f32(dsv3_dtype t, const void *base, size_t i) {
    switch (t) {
    case DSV3_BF16: {
        __m128i v = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
    }
    case DSV3_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    case DSV3_F8_E4M3:
        return _mm256_cvtph_ps(dsv3_e4m3x8_to_f16bits(_mm_loadl_epi64((const __m128i *)((const uint8_t *)base + i))));
    default:
        return _mm256_loadu_ps((const float *)base + i);
    }
}

// The last n (< 8) weights from element i, zero padded, without reading past them.
static inline __attribute__((always_inline)) __m256 dsv3_load_tail_f32(dsv3_dtype t, const void *base, size_t i, int n) {
    size_t es = t == DSV3_F32 ? 4 : t == DSV3_F8_E4M3 ? 1 : 2;
    _Alignas(32) uint8_t tmp[32] = {0};
    memcpy(tmp, (const uint8_t *)base + i * es, (size_t)n * es);
    return dsv3_load8_f32(t, tmp, 0);
}
