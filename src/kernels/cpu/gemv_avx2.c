// GEMV path of dsv3_matmul (small M, decode): stream each weight row once, widen weights to fp32
// in registers and FMA them against x. Four weight rows go together so each x vector feeds four
// independent accumulator chains; x rows go one or two at a time (the 4-row weight strip is
// re-read from L1/L2 for each further pair). No packing, no extra memory traffic.
//
// Widening tricks (the weights' in-memory order is kept; x is permuted to match, once per call):
//   BF16, 16 per 32-byte load: the 32-bit lane holding (w[2j], w[2j+1]) gives w[2j] by << 16 and
//     w[2j+1] by masking the low half: 2 integer ops per 16 weights, no conversion instruction.
//   E4M3, 32 per 32-byte load: byte j of each 32-bit lane is moved to the top (<< 8 (3 - j)), an
//     arithmetic >> 4 and a mask turn S.EEEE.MMM into the fp32 pattern S.0000EEEE.MMM0...0, whose
//     value is exactly e4m3 * 2^-120 (normals and subnormals alike: the exponent field lines up
//     with a bias difference of 120, and e4m3 subnormals become fp32 subnormals, exact; no
//     conversion instruction, about 18 uops per 32 weights; measured 46% faster in L1 than an
//     fp16 + F16C decode). The 2^120 is split: 2^k is folded, with the block
//     scale, into the permuted x copy (x * scale * 2^k per column, k chosen per x row so that the
//     largest |x * scale| * 2^k is in [2^125, 2^126): the copy cannot overflow, and tiny
//     activations do not flush through fp32 subnormals) and 2^(120 - k) multiplies each finished
//     row sum. A product x * scale * e4m3 can flush only if below 2^-131 * max |x * scale| (below
//     2^-133 when k is capped at 127), far below the fp32 rounding of the row sum.
//     NaN codes (S.1111.111) are tracked with a byte max and give NaN rows, as in the reference.
//     M = 1 takes 8 weight rows per strip (gemv8x1_e4m3), halving the x loads per weight, and
//     prefetches the next strip.
//   F16: F16C directly; F32: plain loads.
// Columns past the last full 32 (E4M3) / 16 (BF16) group use an 8-wide path on natural-order x.
#pragma GCC target("avx2,fma,f16c")
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/decode_avx2.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Width of the permuted main loop's column group per dtype (0: none, x used as is).
AI int group_width(dsv3_dtype t) { return t == DSV3_F8_E4M3 ? 32 : t == DSV3_BF16 ? 16 : 0; }

// xs[c] for c < cmain: x permuted to the in-register order of the group decode; c >= cmain: natural
// order. F8: times scale(c's block) * 2^k, k chosen here (returned: the factor 2^(120 - k) that
// finishes the row sums). tmp: cols floats of scratch.
static float prep_x(dsv3_dtype t, const float *x, int cols, int cmain, const float *srow, int bc, float *xs, float *tmp) {
    float finish = 1.0f;
    if (t == DSV3_F8_E4M3) {
        __m256 amax = _mm256_setzero_ps(), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        float amax1 = 0.0f;
        for (int b0 = 0, b = 0; b0 < cols; b0 += bc, b++) {
            int b1 = b0 + bc < cols ? b0 + bc : cols;
            __m256 f = _mm256_set1_ps(srow[b]);
            int c = b0;
            for (; c + 8 <= b1; c += 8) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + c), f);
                amax = _mm256_max_ps(amax, _mm256_and_ps(v, absmask));
                _mm256_storeu_ps(tmp + c, v);
            }
            for (; c < b1; c++) { tmp[c] = x[c] * srow[b]; if (fabsf(tmp[c]) > amax1) amax1 = fabsf(tmp[c]); }
        }
        float m[8];
        _mm256_storeu_ps(m, amax);
        for (int i = 0; i < 8; i++) if (m[i] > amax1) amax1 = m[i];
        // The largest |x * s| * 2^k lands in [2^125, 2^126): no overflow (products with the decoded
        // weights stay below 2^15), and small activations keep their bits instead of flushing
        // through fp32 subnormals. k <= 127 keeps 2^k finite; 2^(120 - k) >= 2^-7 is exact.
        int k = 64;
        if (amax1 > 0.0f && isfinite(amax1)) k = 125 - ilogbf(amax1) < 127 ? 125 - ilogbf(amax1) : 127;
        float up = ldexpf(1.0f, k);
        finish = ldexpf(1.0f, 120 - k);
        __m256 upv = _mm256_set1_ps(up);
        int c = 0;
        for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(tmp + c, _mm256_mul_ps(_mm256_loadu_ps(tmp + c), upv));
        for (; c < cols; c++) tmp[c] *= up;
        x = tmp;
        // group of 32: lane i of load dword j holds byte 4j + i (i = 0..3); decoded vector i = bytes 4j + i
        for (int g = 0; g < cmain; g += 32)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 8; j++) xs[g + 8 * i + j] = x[g + 4 * j + i];
    } else if (t == DSV3_BF16)
        for (int c = 0; c < cmain; c += 16)
            for (int j = 0; j < 8; j++) {
                xs[c + j] = x[c + 2 * j];
                xs[c + 8 + j] = x[c + 2 * j + 1];
            }
    for (int c = cmain; c < cols; c++) xs[c] = x[c];
    return finish;
}

// Group decoders: the weights of one group as fp32 vectors, in the order prep_x permutes x to.
AI void dec_bf16x16(const uint8_t *p, __m256 *v0, __m256 *v1) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    *v0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *v1 = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
}
AI void dec_e4m3x32(const uint8_t *p, __m256 *v0, __m256 *v1, __m256 *v2, __m256 *v3, __m256i *mx) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p), k = _mm256_set1_epi32((int)0x87F00000u);
    *mx = _mm256_max_epu8(*mx, _mm256_and_si256(v, _mm256_set1_epi8(0x7F)));
    *v0 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 24), 4), k));
    *v1 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 16), 4), k));
    *v2 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(_mm256_slli_epi32(v, 8), 4), k));
    *v3 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(v, 4), k));
}
// 8 E4M3 bytes (natural order) as fp32 e4m3 * 2^-120, NaN codes not flagged (see e4m3_tail_nan).
AI __m256 dec_e4m3x8_bits(const uint8_t *p) {
    __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32((int)0x87F00000u)));
}
AI __m256 dec_e4m3_tail_bits(const uint8_t *p, int n) {
    _Alignas(16) uint8_t tmp[16] = {0};
    memcpy(tmp, p, (size_t)n);
    return dec_e4m3x8_bits(tmp);
}
AI __m256 load_w8(dsv3_dtype t, const uint8_t *p, int c) {
    return t == DSV3_F8_E4M3 ? dec_e4m3x8_bits(p + c) : dsv3_load8_f32(t, p, (size_t)c);
}
AI __m256 load_w_tail(dsv3_dtype t, const uint8_t *p, int c, int n) {
    return t == DSV3_F8_E4M3 ? dec_e4m3_tail_bits(p + c, n) : dsv3_load_tail_f32(t, p, (size_t)c, n);
}

#define FMA_ROW(i, w, off)                                                                       \
    a##i##0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + c + (off)), a##i##0);                     \
    if (MB == 2) a##i##1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + c + (off)), a##i##1);
#define FMA_ROW_X(i, w, xv0, xv1)                                                               \
    a##i##0 = _mm256_fmadd_ps(w, xv0, a##i##0);                                                  \
    if (MB == 2) a##i##1 = _mm256_fmadd_ps(w, xv1, a##i##1);

// y[m, i] for i < nr (<= 4) weight rows w0..w3 (rows past nr alias w0: computed, not stored) and
// MB (1 or 2) rows of prepared x (x0, x1). Returns nonzero if an E4M3 NaN code was seen.
AI int gemv4(dsv3_dtype t, const int MB, float *y, size_t ldy, const float *x0, const float *x1,
             const uint8_t *w0, const uint8_t *w1, const uint8_t *w2, const uint8_t *w3, int nr, int cols, int cmain,
             float f0, float f1) {
    size_t es = t == DSV3_F32 ? 4 : t == DSV3_F8_E4M3 ? 1 : 2;
    __m256 a00 = _mm256_setzero_ps(), a10 = a00, a20 = a00, a30 = a00;
    __m256 a01 = a00, a11 = a00, a21 = a00, a31 = a00;
    __m256i mx = _mm256_setzero_si256();
    int c = 0;
    if (t == DSV3_F8_E4M3) {
        for (; c < cmain; c += 32) {
            __m256 v0, v1, v2, v3;
#define ROW8(i, wp) dec_e4m3x32(wp + c, &v0, &v1, &v2, &v3, &mx); \
            FMA_ROW(i, v0, 0) FMA_ROW(i, v1, 8) FMA_ROW(i, v2, 16) FMA_ROW(i, v3, 24)
            ROW8(0, w0) ROW8(1, w1) ROW8(2, w2) ROW8(3, w3)
#undef ROW8
        }
    } else if (t == DSV3_BF16) {
        for (; c < cmain; c += 16) {
            __m256 v0, v1;
#define ROWB(i, wp) dec_bf16x16(wp + 2 * (size_t)c, &v0, &v1); FMA_ROW(i, v0, 0) FMA_ROW(i, v1, 8)
            ROWB(0, w0) ROWB(1, w1) ROWB(2, w2) ROWB(3, w3)
#undef ROWB
        }
    }
    // 8-wide path on natural-order x (all columns for F32 / F16)
    for (; c + 8 <= cols; c += 8) {
        __m256 xv0 = _mm256_loadu_ps(x0 + c), xv1 = MB == 2 ? _mm256_loadu_ps(x1 + c) : xv0;
        __m256 w;
        w = load_w8(t, w0, c); FMA_ROW_X(0, w, xv0, xv1)
        w = load_w8(t, w1, c); FMA_ROW_X(1, w, xv0, xv1)
        w = load_w8(t, w2, c); FMA_ROW_X(2, w, xv0, xv1)
        w = load_w8(t, w3, c); FMA_ROW_X(3, w, xv0, xv1)
    }
    if (c < cols) {
        int n = cols - c;
        __m256i mask = dsv3_tail_mask_avx2(n);
        __m256 xv0 = _mm256_maskload_ps(x0 + c, mask), xv1 = MB == 2 ? _mm256_maskload_ps(x1 + c, mask) : xv0;
        __m256 w;
        w = load_w_tail(t, w0, c, n); FMA_ROW_X(0, w, xv0, xv1)
        w = load_w_tail(t, w1, c, n); FMA_ROW_X(1, w, xv0, xv1)
        w = load_w_tail(t, w2, c, n); FMA_ROW_X(2, w, xv0, xv1)
        w = load_w_tail(t, w3, c, n); FMA_ROW_X(3, w, xv0, xv1)
    }
    (void)es;
    y[0] = hsum8(a00) * f0;
    if (nr > 1) y[1] = hsum8(a10) * f0;
    if (nr > 2) y[2] = hsum8(a20) * f0;
    if (nr > 3) y[3] = hsum8(a30) * f0;
    if (MB == 2) {
        y[ldy] = hsum8(a01) * f1;
        if (nr > 1) y[ldy + 1] = hsum8(a11) * f1;
        if (nr > 2) y[ldy + 2] = hsum8(a21) * f1;
        if (nr > 3) y[ldy + 3] = hsum8(a31) * f1;
    }
    if (t != DSV3_F8_E4M3) return 0;
    int nan = _mm256_movemask_epi8(_mm256_cmpeq_epi8(mx, _mm256_set1_epi8(0x7F))) != 0;
    for (int cc = cmain; cc < cols && !nan; cc++) // columns decoded without the byte-max check
        nan = (w0[cc] & 0x7F) == 0x7F || (w1[cc] & 0x7F) == 0x7F || (w2[cc] & 0x7F) == 0x7F || (w3[cc] & 0x7F) == 0x7F;
    return nan;
}

// Same for 2 weight rows (w0, w1; w1 may alias w0 when nr == 1) and 4 x rows (xr[0..3]): each
// decoded weight vector feeds 4 FMAs, halving the decode work per flop for M >= 4.
#define FMA4(i, w, off)                                                                          \
    b##i##0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + c + (off)), b##i##0);                     \
    b##i##1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + c + (off)), b##i##1);                     \
    b##i##2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x2 + c + (off)), b##i##2);                     \
    b##i##3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x3 + c + (off)), b##i##3);
#define FMA4_X(i, w, v0, v1, v2, v3)                                                            \
    b##i##0 = _mm256_fmadd_ps(w, v0, b##i##0); b##i##1 = _mm256_fmadd_ps(w, v1, b##i##1);       \
    b##i##2 = _mm256_fmadd_ps(w, v2, b##i##2); b##i##3 = _mm256_fmadd_ps(w, v3, b##i##3);

AI int gemv2x4(dsv3_dtype t, float *y, size_t ldy, const float *x0, size_t ldx, const uint8_t *w0,
               const uint8_t *w1, int nr, int cols, int cmain, const float *f) {
    const float *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m256 b00 = _mm256_setzero_ps(), b01 = b00, b02 = b00, b03 = b00;
    __m256 b10 = b00, b11 = b00, b12 = b00, b13 = b00;
    __m256i mx = _mm256_setzero_si256();
    int c = 0;
    if (t == DSV3_F8_E4M3) {
        for (; c < cmain; c += 32) {
            __m256 v0, v1, v2, v3;
            dec_e4m3x32(w0 + c, &v0, &v1, &v2, &v3, &mx);
            FMA4(0, v0, 0) FMA4(0, v1, 8) FMA4(0, v2, 16) FMA4(0, v3, 24)
            dec_e4m3x32(w1 + c, &v0, &v1, &v2, &v3, &mx);
            FMA4(1, v0, 0) FMA4(1, v1, 8) FMA4(1, v2, 16) FMA4(1, v3, 24)
        }
    } else if (t == DSV3_BF16) {
        for (; c < cmain; c += 16) {
            __m256 v0, v1;
            dec_bf16x16(w0 + 2 * (size_t)c, &v0, &v1);
            FMA4(0, v0, 0) FMA4(0, v1, 8)
            dec_bf16x16(w1 + 2 * (size_t)c, &v0, &v1);
            FMA4(1, v0, 0) FMA4(1, v1, 8)
        }
    }
    for (; c + 8 <= cols; c += 8) {
        __m256 xv0 = _mm256_loadu_ps(x0 + c), xv1 = _mm256_loadu_ps(x1 + c);
        __m256 xv2 = _mm256_loadu_ps(x2 + c), xv3 = _mm256_loadu_ps(x3 + c);
        __m256 w;
        w = load_w8(t, w0, c); FMA4_X(0, w, xv0, xv1, xv2, xv3)
        w = load_w8(t, w1, c); FMA4_X(1, w, xv0, xv1, xv2, xv3)
    }
    if (c < cols) {
        int n = cols - c;
        __m256i mask = dsv3_tail_mask_avx2(n);
        __m256 xv0 = _mm256_maskload_ps(x0 + c, mask), xv1 = _mm256_maskload_ps(x1 + c, mask);
        __m256 xv2 = _mm256_maskload_ps(x2 + c, mask), xv3 = _mm256_maskload_ps(x3 + c, mask);
        __m256 w;
        w = load_w_tail(t, w0, c, n); FMA4_X(0, w, xv0, xv1, xv2, xv3)
        w = load_w_tail(t, w1, c, n); FMA4_X(1, w, xv0, xv1, xv2, xv3)
    }
    y[0] = hsum8(b00) * f[0]; y[ldy] = hsum8(b01) * f[1]; y[2 * ldy] = hsum8(b02) * f[2]; y[3 * ldy] = hsum8(b03) * f[3];
    if (nr > 1) {
        y[1] = hsum8(b10) * f[0]; y[ldy + 1] = hsum8(b11) * f[1];
        y[2 * ldy + 1] = hsum8(b12) * f[2]; y[3 * ldy + 1] = hsum8(b13) * f[3];
    }
    if (t != DSV3_F8_E4M3) return 0;
    int nan = _mm256_movemask_epi8(_mm256_cmpeq_epi8(mx, _mm256_set1_epi8(0x7F))) != 0;
    for (int cc = cmain; cc < cols && !nan; cc++)
        nan = (w0[cc] & 0x7F) == 0x7F || (w1[cc] & 0x7F) == 0x7F;
    return nan;
}

// M = 1, E4M3: 8 weight rows (p + i * ldw, one scale row) against one prepared x row, so that each
// x vector loaded (from L2 once x outgrows L1) feeds 8 FMAs instead of 4. Returns nonzero if a NaN
// code was seen.
AI int gemv8x1_e4m3(float *y, const float *x0, const uint8_t *p, size_t ldw, int cols, int cmain, float f0, int pf) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m256i mx = _mm256_setzero_si256();
    int c = 0;
    // Software prefetch (into L2) of the next strip, which is contiguous in memory: 8 * 32 bytes
    // ahead for every 8 * 32 bytes decoded. The hardware prefetchers alone restart on each row of a
    // new strip (8 streams of 2 to 7 KiB); this measured +15-25% (7168-wide rows) to +50-70% (2048-wide
    // rows) per core from DRAM. pf: a next strip of 8 rows exists in this call's row range.
    const uint8_t *next = pf ? p + 8 * ldw : p;
    for (; c < cmain; c += 32) {
        __m256 v0, v1, v2, v3;
        if (pf)
            for (int i = 0; i < 4; i++) _mm_prefetch((const char *)(next + 8 * (size_t)c + 64 * i), _MM_HINT_T2);
#define ROW8X(i) dec_e4m3x32(p + (size_t)(i) * ldw + c, &v0, &v1, &v2, &v3, &mx);             \
        a##i = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x0 + c), a##i);                             \
        a##i = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x0 + c + 8), a##i);                         \
        a##i = _mm256_fmadd_ps(v2, _mm256_loadu_ps(x0 + c + 16), a##i);                        \
        a##i = _mm256_fmadd_ps(v3, _mm256_loadu_ps(x0 + c + 24), a##i);
        ROW8X(0) ROW8X(1) ROW8X(2) ROW8X(3) ROW8X(4) ROW8X(5) ROW8X(6) ROW8X(7)
#undef ROW8X
    }
    for (; c < cols; c += 8) { // natural-order x; the last group zero padded
        int n = cols - c < 8 ? cols - c : 8;
        __m256 xv = _mm256_maskload_ps(x0 + c, dsv3_tail_mask_avx2(n));
#define TAILX(i) a##i = _mm256_fmadd_ps(n == 8 ? dec_e4m3x8_bits(p + (size_t)(i) * ldw + c)            \
                                               : dec_e4m3_tail_bits(p + (size_t)(i) * ldw + c, n), xv, a##i);
        TAILX(0) TAILX(1) TAILX(2) TAILX(3) TAILX(4) TAILX(5) TAILX(6) TAILX(7)
#undef TAILX
    }
    y[0] = hsum8(a0) * f0; y[1] = hsum8(a1) * f0; y[2] = hsum8(a2) * f0; y[3] = hsum8(a3) * f0;
    y[4] = hsum8(a4) * f0; y[5] = hsum8(a5) * f0; y[6] = hsum8(a6) * f0; y[7] = hsum8(a7) * f0;
    int nan = _mm256_movemask_epi8(_mm256_cmpeq_epi8(mx, _mm256_set1_epi8(0x7F))) != 0;
    for (int i = 0; i < 8 && !nan; i++)
        for (int cc = cmain; cc < cols; cc++) nan |= (p[(size_t)i * ldw + cc] & 0x7F) == 0x7F;
    return nan;
}

AI void gemv_rows(dsv3_dtype t, float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) {
    size_t es = t == DSV3_F32 ? 4 : t == DSV3_F8_E4M3 ? 1 : 2, ldw = (size_t)w->cols * es;
    int cols = w->cols, fp8 = t == DSV3_F8_E4M3, bc = fp8 ? w->block_cols : cols;
    int nbc = fp8 ? (cols + bc - 1) / bc : 0, gw = group_width(t);
    int cmain = gw ? cols / gw * gw : 0;
    const float *xp = gw ? xs : x; // prepared x (F8, BF16) or x itself
    float *finish = xs ? xs + (size_t)(M + 1) * cols : NULL; // per x row: factor finishing the sums (F8)
    int prepared_for = -1;         // scale row xs was prepared for (F8)
    if (t == DSV3_BF16)
        for (int m = 0; m < M; m++) prep_x(t, x + (size_t)m * cols, cols, cmain, NULL, 1, xs + (size_t)m * cols, NULL);
    for (int r = r0; r < r1;) {
        int nr = r1 - r < 4 ? r1 - r : 4;
        if (fp8 && M == 1 && r1 - r >= 8 && r / w->block_rows == (r + 7) / w->block_rows) nr = 8;
        // F8: the strip must share one scale row, else take one weight row at a time
        if (fp8 && r / w->block_rows != (r + nr - 1) / w->block_rows) nr = 1;
        if (fp8 && r / w->block_rows != prepared_for) {
            prepared_for = r / w->block_rows;
            const float *srow = w->scale + (size_t)prepared_for * nbc;
            for (int m = 0; m < M; m++)
                finish[m] = prep_x(t, x + (size_t)m * cols, cols, cmain, srow, bc, xs + (size_t)m * cols, xs + (size_t)M * cols);
        }
        const uint8_t *p0 = (const uint8_t *)w->data + (size_t)r * ldw;
        const uint8_t *p1 = nr > 1 ? p0 + ldw : p0, *p2 = nr > 2 ? p0 + 2 * ldw : p0, *p3 = nr > 3 ? p0 + 3 * ldw : p0;
        int nan_seen = 0, m = 0;
        if (nr == 8) {
            nan_seen = gemv8x1_e4m3(y + r, xp, p0, ldw, cols, cmain, finish[0], r1 - r >= 16);
            m = M;
        }
        static const float ones[4] = {1.0f, 1.0f, 1.0f, 1.0f};
        for (; m + 4 <= M; m += 4) {
            const float *f = fp8 ? finish + m : ones;
            float *yp = y + (size_t)m * w->rows + r;
            const float *xq = xp + (size_t)m * cols;
            nan_seen |= gemv2x4(t, yp, w->rows, xq, cols, p0, p1, nr < 2 ? nr : 2, cols, cmain, f);
            if (nr > 2) nan_seen |= gemv2x4(t, yp + 2, w->rows, xq, cols, p2, nr > 3 ? p3 : p2, nr - 2, cols, cmain, f);
        }
        for (; m + 2 <= M; m += 2)
            nan_seen |= gemv4(t, 2, y + (size_t)m * w->rows + r, w->rows, xp + (size_t)m * cols,
                              xp + (size_t)(m + 1) * cols, p0, p1, p2, p3, nr, cols, cmain,
                              fp8 ? finish[m] : 1.0f, fp8 ? finish[m + 1] : 1.0f);
        if (m < M)
            nan_seen |= gemv4(t, 1, y + (size_t)m * w->rows + r, w->rows, xp + (size_t)m * cols,
                              xp + (size_t)m * cols, p0, p1, p2, p3, nr, cols, cmain,
                              fp8 ? finish[m] : 1.0f, fp8 ? finish[m] : 1.0f);
        if (nan_seen) // rare: find the rows holding a NaN code; their outputs are NaN (as in the reference)
            for (int i = 0; i < nr; i++)
                for (int c = 0; c < cols; c++)
                    if ((p0[(size_t)i * ldw + c] & 0x7F) == 0x7F) {
                        for (int mm = 0; mm < M; mm++) y[(size_t)mm * w->rows + r + i] = NAN;
                        break;
                    }
        r += nr;
    }
}

static void gemv_f32(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) { gemv_rows(DSV3_F32, y, x, w, M, r0, r1, xs); }
static void gemv_bf16(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) { gemv_rows(DSV3_BF16, y, x, w, M, r0, r1, xs); }
static void gemv_f16(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) { gemv_rows(DSV3_F16, y, x, w, M, r0, r1, xs); }
static void gemv_e4m3(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) { gemv_rows(DSV3_F8_E4M3, y, x, w, M, r0, r1, xs); }

void dsv3_gemv_avx2(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1) {
    if (r0 >= r1) return;
    // per-thread grow-only scratch for the grouped activations: no allocation in steady state
    static _Thread_local float *tl_xs;
    static _Thread_local size_t tl_cap;
    float *xs = NULL;
    if (group_width(w->dtype)) {
        size_t need = (size_t)(M + 1) * w->cols + (size_t)M;
        if (need > tl_cap) {
            free(tl_xs);
            tl_xs = dsv3_malloc(sizeof(float) * need);
            tl_cap = need;
        }
        xs = tl_xs;
    }
    switch (w->dtype) {
    case DSV3_F32: gemv_f32(y, x, w, M, r0, r1, xs); break;
    case DSV3_BF16: gemv_bf16(y, x, w, M, r0, r1, xs); break;
    case DSV3_F16: gemv_f16(y, x, w, M, r0, r1, xs); break;
    case DSV3_F8_E4M3: gemv_e4m3(y, x, w, M, r0, r1, xs); break;
    default: dsv3_panic(__FILE__, __LINE__, "matmul: unsupported weight dtype %s", dsv3_dtype_name(w->dtype));
    }
}
