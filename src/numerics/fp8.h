// FP8 (and friends) codecs. docs/FP8.md describes every format bit by bit; in short:
//
//   format  container        sign  exp  man  bias  max finite   specials
//   E4M3    uint8_t          b7    4    3    7     448          no inf; NaN = S.1111.111 (0x7F / 0xFF)
//   E5M2    uint8_t          b7    5    2    15    57344        IEEE: inf = S.11111.00, NaN = S.11111.{01,10,11}
//   E5M6    uint16_t, low 12 b11   5    6    15    65024        IEEE: inf = S.11111.000000, NaN = mantissa != 0
//           bits (top 4 = 0)                                      (= the top 12 bits of an IEEE binary16)
//   UE8M0   uint8_t          none  8    0    127   2^127        0xFF = NaN; no zero; value 2^(e - 127)
//
// E4M3 and E5M2 are OCP FP8 / torch.float8_e4m3fn / torch.float8_e5m2. E5M6 is the format the
// DeepSeek-V3 paper names (without details) for the cached inputs of the attention output projection;
// our definition is binary16 with the 4 low mantissa bits dropped. UE8M0 is the power-of-two scale format.
//
// fp32 -> format: round to nearest, ties to even (RNE), subnormals kept. NaN in -> NaN code (sign kept,
// all mantissa bits set). The overflow policy is selectable:
//   DSV3_FP8_SATURATE  anything beyond the largest finite value (inf included) becomes ±max finite
//                      (CUDA's "satfinite"; what quantizers use)
//   DSV3_FP8_NONSAT    values that RNE-round past the largest finite value become ±inf (E5M2, E5M6) or
//                      NaN (E4M3, which has no inf), as torch's .to(float8_*) casts do: for E4M3 that is
//                      |x| > 464 (464 itself ties to 448); for E5M2 |x| >= 61440; for E5M6 |x| >= 65280.
// format -> fp32 is exact (every value of these formats is an fp32).
//
// The encoders are static inline bit manipulation (no tables, no branches on the data besides the
// range split) so that kernels can call them per element; the E4M3/E5M2 decoders are 256-entry tables.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { DSV3_FP8_NONSAT = 0, DSV3_FP8_SATURATE = 1 } dsv3_fp8_policy;

typedef enum { DSV3_FMT_E4M3 = 0, DSV3_FMT_E5M2 = 1, DSV3_FMT_E5M6 = 2 } dsv3_fp8_format;

// Format constants.
#define DSV3_E4M3_MAX 448.0f
#define DSV3_E5M2_MAX 57344.0f
#define DSV3_E5M6_MAX 65024.0f
#define DSV3_E5M6_INF 0x7C0u  // +inf code; -inf = 0xFC0
#define DSV3_E5M6_NAN 0x7FFu  // canonical NaN the encoder writes (sign kept)

extern const float dsv3_e4m3_table[256]; // decode tables: value of each code (NaN codes hold NaN)
extern const float dsv3_e5m2_table[256];

static inline float dsv3_e4m3_to_f32(uint8_t b) { return dsv3_e4m3_table[b]; }
static inline float dsv3_e5m2_to_f32(uint8_t b) { return dsv3_e5m2_table[b]; }

// E5M6 -> fp32: the code is the top 12 bits of a binary16, so widen the binary16 (exact).
static inline float dsv3_e5m6_to_f32(uint16_t c) {
    uint32_t s = (uint32_t)(c & 0x800u) << 20, e = (c >> 6) & 0x1fu, m = c & 0x3fu, u;
    if (e == 0x1f) u = s | 0x7f800000u | (m << 17);               // inf / NaN (payload kept)
    else if (e != 0) u = s | ((e + 112u) << 23) | (m << 17);       // normal: 2^(e-15) (1 + m/64)
    else {                                                         // subnormal: m · 2^-20
        float f = (float)m * 0x1p-20f;                             // exact (m < 64)
        memcpy(&u, &f, 4);
        u |= s;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Generic RNE encoder for a format with `mbits` mantissa bits and exponent bias `bias` whose codes are
// laid out as [sign | exponent | mantissa] with the sign at bit `signbit`. maxcode is the largest finite
// magnitude code; ovfcode is what NONSAT overflow gives (inf, or NaN for E4M3); nancode is NaN's
// magnitude code. Integer-only. Internal: use the named wrappers below.
static inline uint32_t dsv3__exmy_encode(float f, int mbits, int bias, uint32_t maxcode, uint32_t ovfcode,
                                         uint32_t nancode, int signbit, dsv3_fp8_policy p) {
    // Both range paths are computed and the result selected, so loops over this vectorize.
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 31) << signbit, a = u & 0x7fffffffu;
    // Normal range, |f| >= the format's smallest normal 2^(1-bias): drop 23-mbits mantissa bits with RNE
    // (a carry out of the mantissa bumps the exponent, as it should), then re-bias the exponent field.
    int sh = 23 - mbits;
    uint32_t r = a + ((1u << (sh - 1)) - 1u) + ((a >> sh) & 1u);
    uint32_t cnorm = (r >> sh) - ((uint32_t)(127 - bias) << mbits);
    // Subnormal range, |f| < 2^(1-bias): code = |f| / 2^(1-bias-mbits) rounded to an integer with RNE.
    // |f| = sig · 2^(e-150) (e = max(exponent field, 1); the implicit bit only for normal fp32), so the
    // code is sig shifted right by 151-bias-mbits-e with RNE on the dropped bits. Shifts past 25 give 0
    // like 25 does (sig < 2^24); the clamp also keeps the unused lanes of the normal range defined.
    // A carry to 2^mbits lands on the smallest normal code, which is right. Integer-only, so a loop over
    // this if-converts and vectorizes (float ops could trap and would not be speculated).
    uint32_t ef = a >> 23;
    uint32_t sig = (a & 0x7fffffu) | (ef ? 0x800000u : 0u);
    int sh2 = 151 - bias - mbits - (int)(ef ? ef : 1u);
    sh2 = sh2 < 1 ? 1 : sh2 > 25 ? 25 : sh2;
    uint32_t csub = (sig + ((1u << (sh2 - 1)) - 1u) + ((sig >> sh2) & 1u)) >> sh2;
    uint32_t code = a >= ((uint32_t)(128 - bias) << 23) ? cnorm : csub;
    uint32_t ovf = p == DSV3_FP8_SATURATE ? maxcode : ovfcode;
    code = code > maxcode ? ovf : code;                                  // inf input lands here too
    code = a > 0x7f800000u ? nancode : code;
    return sign | code;
}

static inline uint8_t dsv3_f32_to_e4m3(float f, dsv3_fp8_policy p) {
    return (uint8_t)dsv3__exmy_encode(f, 3, 7, 0x7e, 0x7f, 0x7f, 7, p);
}
static inline uint8_t dsv3_f32_to_e5m2(float f, dsv3_fp8_policy p) {
    return (uint8_t)dsv3__exmy_encode(f, 2, 15, 0x7b, 0x7c, 0x7f, 7, p);
}
static inline uint16_t dsv3_f32_to_e5m6(float f, dsv3_fp8_policy p) {
    return (uint16_t)dsv3__exmy_encode(f, 6, 15, 0x7bf, DSV3_E5M6_INF, DSV3_E5M6_NAN, 11, p);
}

// UE8M0 (power-of-two scales). Decode: 2^(e-127) (e = 0 gives the fp32 subnormal 2^-127), 0xFF = NaN.
static inline float dsv3_ue8m0_to_f32(uint8_t e) {
    uint32_t u = e == 0xff ? 0x7fc00000u : e == 0 ? 0x00400000u : (uint32_t)e << 23;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// Encode a positive scale rounding UP to a power of two (DeepSeek's "ue8m0" scales: 2^ceil(log2 s)),
// computed exactly from the bits (no log2f rounding). s must be finite and > 0; s > 2^127 or anything
// else (0, negative, inf, NaN) gives 0xFF (NaN). s <= 2^-127 gives 0 (= 2^-127).
static inline uint8_t dsv3_f32_to_ue8m0_ceil(float s) {
    uint32_t u;
    memcpy(&u, &s, 4);
    if (u == 0 || u >= 0x7f800000u) return 0xff; // 0, negative (sign bit set), inf, NaN
    if (u <= 0x00400000u) return 0;               // <= 2^-127
    uint32_t e = u >> 23, m = u & 0x7fffffu;
    if (e == 0) return 1;                          // fp32 subnormal in (2^-127, 2^-126): ceil is 2^-126
    uint32_t c = e + (m != 0);                     // exponent of 2^ceil(log2 s), biased
    return c > 254 ? 0xff : (uint8_t)c;
}

// Generic helpers by format (the E4M3 / E5M2 codes travel in the low byte). Used by the CLI and tests.
uint32_t dsv3_fp8_encode(dsv3_fp8_format fmt, float f, dsv3_fp8_policy p);
float dsv3_fp8_decode(dsv3_fp8_format fmt, uint32_t code);
int dsv3_fp8_format_bits(dsv3_fp8_format fmt);           // 8, 8, 12
float dsv3_fp8_format_max(dsv3_fp8_format fmt);           // largest finite value
const char *dsv3_fp8_format_name(dsv3_fp8_format fmt);    // "e4m3", "e5m2", "e5m6"
int dsv3_fp8_format_parse(const char *s, dsv3_fp8_format *out); // 0, or -1 (no message set)

// Bulk conversions (threads for large n): dst[i] = encode(src[i]) / src[i] = decode(...).
void dsv3_e4m3_encode_n(uint8_t *dst, const float *src, size_t n, dsv3_fp8_policy p);
void dsv3_e4m3_decode_n(float *dst, const uint8_t *src, size_t n);
void dsv3_e5m6_encode_n(uint16_t *dst, const float *src, size_t n, dsv3_fp8_policy p);
void dsv3_e5m6_decode_n(float *dst, const uint16_t *src, size_t n);
