// Minimal E4M3 / E5M2 codecs (table decode, exact-rational encode). The full numerics layer
// (E5M6, UE8M0, fast encoders, quantizers) builds on these.
#include "numerics/fp8.h"
#include <math.h>
#include <string.h>

static float exmy_decode(uint8_t b, int ebits, int mbits, int bias, int ieee_specials) {
    int s = b >> 7, e = (b >> mbits) & ((1 << ebits) - 1), m = b & ((1 << mbits) - 1);
    float v;
    if (ieee_specials && e == (1 << ebits) - 1) v = m ? NAN : INFINITY;
    else if (!ieee_specials && e == (1 << ebits) - 1 && m == (1 << mbits) - 1) v = NAN;
    else if (e == 0) v = ldexpf((float)m, 1 - bias - mbits);
    else v = ldexpf((float)(m + (1 << mbits)), e - bias - mbits);
    return s ? -v : v;
}

float dsv3_e4m3_to_f32(uint8_t b) { return exmy_decode(b, 4, 3, 7, 0); }
float dsv3_e5m2_to_f32(uint8_t b) { return exmy_decode(b, 5, 2, 15, 1); }

// Nearest-even encode by search over the 128 magnitudes (slow but obviously correct).
static uint8_t exmy_encode(float f, float (*dec)(uint8_t), float maxfinite, uint8_t nan_code,
                           uint8_t inf_code, dsv3_fp8_policy p) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    if (isnan(f)) return 0x7f | sign;
    float a = fabsf(f);
    if (a > maxfinite) {
        if (p == DSV3_FP8_SATURATE) { for (int c = 127; c >= 0; c--) if (dec((uint8_t)c) == maxfinite) return (uint8_t)c | sign; }
        // non-saturating: values that round (RNE at one more step of the grid) past max overflow
        if (isinf(a)) return (inf_code ? inf_code : nan_code) | sign;
    }
    int best = 0; double bd = INFINITY;
    for (int c = 0; c < 128; c++) {
        float v = dec((uint8_t)c);
        if (isnan(v) || isinf(v)) continue;
        double d = fabs((double)v - (double)a);
        if (d < bd || (d == bd && (c & 1) == 0)) { bd = d; best = c; }
    }
    if (a > maxfinite && p == DSV3_FP8_NONSAT) {
        // the next grid step above max would be max + ulp(max); RNE to it means overflow
        float ulp = maxfinite - dec((uint8_t)(best - 1));
        double over = (double)maxfinite + ulp;
        if ((double)a - maxfinite > over - (double)a || ((double)a - maxfinite == over - (double)a))
            return (inf_code ? inf_code : nan_code) | sign;
    }
    return (uint8_t)best | sign;
}

uint8_t dsv3_f32_to_e4m3(float f, dsv3_fp8_policy p) { return exmy_encode(f, dsv3_e4m3_to_f32, 448.0f, 0x7f, 0, p); }
uint8_t dsv3_f32_to_e5m2(float f, dsv3_fp8_policy p) { return exmy_encode(f, dsv3_e5m2_to_f32, 57344.0f, 0x7f, 0x7c, p); }
