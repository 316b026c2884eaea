// Internal: a 16 x 16 dword transpose in zmm registers, shared by the AVX-512 packers (bgemm_avx512.c,
// sgemm_avx512.c). Include only from files compiled for avx512f.
#pragma once
#include <immintrin.h>

// 16 x 16 transpose of dwords: r[i] lane j -> r[j] lane i.
static inline __attribute__((always_inline)) void dsv3_transpose16_epi32(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // r[4q + s] now holds, in 128-bit lane L, elements (rows 4q..4q+3) x column 4L + s' with
    // s' = (0, 1, 2, 3) for s = (0, 1, 2, 3): combine lanes across the four groups q.
    for (int s = 0; s < 4; s++) {
        __m512i a0 = _mm512_shuffle_i32x4(r[s], r[4 + s], 0x88), a1 = _mm512_shuffle_i32x4(r[s], r[4 + s], 0xdd);
        __m512i b0 = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0x88), b1 = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0xdd);
        t[s] = _mm512_shuffle_i32x4(a0, b0, 0x88);      // column s
        t[8 + s] = _mm512_shuffle_i32x4(a0, b0, 0xdd);  // column 8 + s
        t[4 + s] = _mm512_shuffle_i32x4(a1, b1, 0x88);  // column 4 + s
        t[12 + s] = _mm512_shuffle_i32x4(a1, b1, 0xdd); // column 12 + s
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}
