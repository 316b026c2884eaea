// AVX-512 GEMV path of dsv3_matmul (small M: decode, speculative verification, small batches).
// Each weight strip (R rows) is streamed once for a group of up to 4 x rows and widened to fp32
// in zmm registers, 16 weights per vector, in the weights' natural column order (no permuted x
// copy as on AVX2: the widening instructions take 16 bytes / 16 words straight from memory):
//   F32   plain loads;
//   BF16  vpmovzxwd + << 16 (exact);
//   F16   vcvtph2ps;
//   E4M3  to the fp32 pattern S.0000EEEE.MMM0..0, whose value is exactly e4m3 * 2^-120 (normals
//         and subnormals alike, see gemv_avx2.c), by shifts and masks, no table. Main loop, 64
//         codes per 64-byte load: 16-bit arithmetic shifts put each byte's pattern in the top of
//         its word, so t = v >>16 4 holds bytes 4j+3 (high word) and 4j+1 (low word) of dword j, u =
//         (v <<16 8) >>16 4 bytes 4j+2 and 4j; a mask 0x87F00000 keeps the high word's pattern, a
//         32-bit << 16 first brings up the low word's: 9 integer ops per 64 weights (vpmovsxbd +
//         shift + mask was 12, and 4 of them on the shuffle port), the x copy permuted to match
//         (vector q of a group holds bytes 4j + q). Columns past the last full 64: vpmovsxbd,
//         << 20, and. The block scale and a power of two 2^k (k per x row, so that the
//         largest |x * scale| * 2^k lies in [2^125, 2^126)) are folded into a copy of x prepared once
//         per 128-row scale block; 2^(120 - k) finishes each row sum. NaN codes (S.1111.111) are
//         tracked with a byte max over the raw codes (| 0x80, so that 0xFF means NaN) and give
//         NaN rows, as in the reference.
// Tiles: M = 1 takes 8 weight rows (8 accumulator chains; each x vector loaded feeds 8 FMAs). The
// next-strip software prefetch of gemv_avx2.c runs only for E4M3 rows of at most 4 KiB: there
// (7168 x 2048) it measured +15-25 % (the hardware prefetcher restarts on each short row of a new
// strip); for longer rows and for F32/BF16 it measured 15-30 % slower (Xeon, L2 streamer). Longer
// E4M3 rows prefetch 512 bytes ahead in each of the 8 rows instead (18432 x 7168: 22.0-23.0 ->
// 25.1-25.3 GB/s, 3 interleaved runs; 256 bytes ahead +2-11 %, 1024 and 2048 no better, into L2
// only no better): FP8 does more work per byte than BF16, so the out-of-order window covers half
// the bytes in flight, and the hardware prefetchers alone leave it short of the DRAM rate. M >= 2 takes 4 weight rows x up to 4 x rows (16 accumulators; each
// decoded weight vector feeds up to 4 FMAs). Columns: 64 per main-loop step, then 16, then a masked
// tail (masked loads never touch the bytes past the row).
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")
#include "kernels/cpu/matmul_kernels.h"
#include "core/error.h"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

AI size_t elem_size(dsv3_dtype t) { return t == DSV3_F32 ? 4 : t == DSV3_F8_E4M3 ? 1 : 2; }

// 16 weights of row p from column c (m: the columns present; full rows use m = 0xFFFF).
AI __m512 dec16(dsv3_dtype t, const uint8_t *p, int c, __mmask16 m, int full) {
    switch (t) {
    case DSV3_F8_E4M3: {
        __m128i b = full ? _mm_loadu_si128((const __m128i *)(p + c)) : _mm_maskz_loadu_epi8(m, p + c);
        __m512i v = _mm512_slli_epi32(_mm512_cvtepi8_epi32(b), 20);
        return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0x87F00000u)));
    }
    case DSV3_BF16: {
        const uint16_t *q = (const uint16_t *)p + c;
        __m256i h = full ? _mm256_loadu_si256((const __m256i *)q) : _mm256_maskz_loadu_epi16(m, q);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case DSV3_F16: {
        const uint16_t *q = (const uint16_t *)p + c;
        __m256i h = full ? _mm256_loadu_si256((const __m256i *)q) : _mm256_maskz_loadu_epi16(m, q);
        return _mm512_cvtph_ps(h);
    }
    default: {
        const float *q = (const float *)p + c;
        return full ? _mm512_loadu_ps(q) : _mm512_maskz_loadu_ps(m, q);
    }
    }
}

AI __m512 loadx(const float *x, int c, __mmask16 m, int full) {
    return full ? _mm512_loadu_ps(x + c) : _mm512_maskz_loadu_ps(m, x + c);
}

// y[j * ldy + i] for weight rows i < nr (<= R; rows past nr alias row 0: computed, not stored) of the
// strip p (row stride ldw bytes) and x rows j < MB (x + j * ldx). fin[j]: factor finishing row j's
// sums. Returns nonzero if an E4M3 NaN code was seen.
AI int tile(dsv3_dtype t, const int R, const int MB, float *y, size_t ldy, const float *x, size_t ldx, const uint8_t *p,
            size_t ldw, int nr, int cols, const float *fin, int pf) {
    const int fp8 = t == DSV3_F8_E4M3;
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *wr[8];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) wr[i] = p + (size_t)(i < nr ? i : 0) * ldw;
    __m512i mx = _mm512_setzero_si512();
    const __m512i hi = _mm512_set1_epi8((char)0x80);
    int c = 0;
    const uint8_t *next = p + (size_t)R * ldw;
    const size_t es = elem_size(t);
    for (; c + 64 <= cols; c += 64) {
        if (pf == 1) // as many lines of the next strip as this step decodes (R * 64 * es bytes)
            for (size_t l = 0; l < (size_t)R * es; l++) _mm_prefetch((const char *)(next + (size_t)R * es * c + 64 * l), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            if (fp8) {
                if (pf == 2) _mm_prefetch((const char *)(wr[i] + c + 512), _MM_HINT_T0); // 8 lines ahead in the row
                __m512i v = _mm512_loadu_si512(wr[i] + c), K = _mm512_set1_epi32((int)0x87F00000u);
                mx = _mm512_max_epu8(mx, _mm512_or_si512(v, hi));
                __m512i tt = _mm512_srai_epi16(v, 4), uu = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 4);
                __m512 d[4];
                d[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(uu, 16), K)); // bytes 4j
                d[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(tt, 16), K)); // 4j + 1
                d[2] = _mm512_castsi512_ps(_mm512_and_si512(uu, K));                        // 4j + 2
                d[3] = _mm512_castsi512_ps(_mm512_and_si512(tt, K));                        // 4j + 3
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
#pragma GCC unroll 4
                    for (int j = 0; j < MB; j++) acc[i][j] = _mm512_fmadd_ps(d[q], loadx(x + j * ldx, c + 16 * q, 0xFFFF, 1), acc[i][j]);
                continue;
            }
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                __m512 wv = dec16(t, wr[i], c + 16 * q, 0xFFFF, 1);
#pragma GCC unroll 4
                for (int j = 0; j < MB; j++) acc[i][j] = _mm512_fmadd_ps(wv, loadx(x + j * ldx, c + 16 * q, 0xFFFF, 1), acc[i][j]);
            }
        }
    }
    __m128i mx16 = _mm_setzero_si128();
    for (; c < cols; c += 16) {
        int n = cols - c < 16 ? cols - c : 16;
        __mmask16 m = (__mmask16)((1u << n) - 1u);
        int full = n == 16;
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            if (fp8) mx16 = _mm_max_epu8(mx16, _mm_or_si128(_mm_maskz_loadu_epi8(m, wr[i] + c), _mm_set1_epi8((char)0x80)));
            __m512 wv = dec16(t, wr[i], c, m, full);
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) acc[i][j] = _mm512_fmadd_ps(wv, loadx(x + j * ldx, c, m, full), acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++)
#pragma GCC unroll 8
        for (int i = 0; i < R; i++)
            if (i < nr) y[(size_t)j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]) * fin[j];
    if (!fp8) return 0;
    __mmask64 k1 = _mm512_cmpeq_epi8_mask(mx, _mm512_set1_epi8((char)0xFF));
    __mmask16 k2 = _mm_cmpeq_epi8_mask(mx16, _mm_set1_epi8((char)0xFF));
    return k1 != 0 || k2 != 0;
}

// FP8: x rows times the block scales of scale row srow and 2^k (k per x row, returned through fin
// as the factor 2^(120 - k) that finishes the row sums), into xs [M][cols].
static void prep_x_e4m3(const float *x, int M, int cols, const float *srow, int bc, float *xs, float *fin) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * cols;
        float *o = xs + (size_t)m * cols;
        __m512 amax = _mm512_setzero_ps();
        for (int b0 = 0, b = 0; b0 < cols; b0 += bc, b++) {
            int b1 = b0 + bc < cols ? b0 + bc : cols;
            __m512 f = _mm512_set1_ps(srow[b]);
            for (int c = b0; c < b1; c += 16) {
                int n = b1 - c < 16 ? b1 - c : 16;
                __mmask16 k = (__mmask16)((1u << n) - 1u);
                __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xm + c), f);
                amax = _mm512_max_ps(amax, _mm512_and_ps(v, absmask));
                _mm512_mask_storeu_ps(o + c, k, v);
            }
        }
        float a = _mm512_reduce_max_ps(amax);
        // As gemv_avx2.c: the largest |x * s| * 2^k in [2^125, 2^126) (no overflow; small activations
        // keep their bits); k <= 127 keeps 2^k finite.
        int e = 64;
        if (a > 0.0f && isfinite(a)) e = 125 - ilogbf(a) < 127 ? 125 - ilogbf(a) : 127;
        __m512 up = _mm512_set1_ps(ldexpf(1.0f, e));
        fin[m] = ldexpf(1.0f, 120 - e);
        for (int c = 0; c < cols; c += 16) {
            int n = cols - c < 16 ? cols - c : 16;
            __mmask16 k = (__mmask16)((1u << n) - 1u);
            _mm512_mask_storeu_ps(o + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, o + c), up));
        }
        // full 64-column groups in the main loop's order: vector q of a group holds columns 4j + q
        for (int g = 0; g + 64 <= cols; g += 64) {
            float t[64];
            memcpy(t, o + g, sizeof t);
            for (int q = 0; q < 4; q++)
                for (int j = 0; j < 16; j++) o[g + 16 * q + j] = t[4 * j + q];
        }
    }
}

AI void gemv_rows(dsv3_dtype t, float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) {
    const size_t ldw = (size_t)w->cols * elem_size(t);
    const int cols = w->cols, N = w->rows, fp8 = t == DSV3_F8_E4M3;
    const int br = fp8 ? w->block_rows : N + 1, bc = fp8 ? w->block_cols : cols, nbc = fp8 ? (cols + bc - 1) / bc : 0;
    const float *xp = fp8 ? xs : x;
    float ones[4] = {1.0f, 1.0f, 1.0f, 1.0f}, *fin = fp8 ? xs + (size_t)M * cols : ones;
    int prepared_for = -1;
    for (int r = r0; r < r1;) {
        const int R = M == 1 ? 8 : 4;
        int blk_end = fp8 ? (r / br + 1) * br : r1; // a strip shares one scale row
        int lim = blk_end < r1 ? blk_end : r1;
        int nr = lim - r < R ? lim - r : R;
        if (fp8 && r / br != prepared_for) {
            prepared_for = r / br;
            prep_x_e4m3(x, M, cols, w->scale + (size_t)prepared_for * nbc, bc, xs, fin);
        }
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * ldw;
        int nan = 0;
        if (M == 1) {
            // E4M3 rows of at most 4 KiB: prefetch the next strip; longer E4M3 rows: 8 lines ahead
            // in each row (see the header)
            const int pf = !fp8 ? 0 : ldw <= 4096 ? (nr == 8 && r + 16 <= r1 ? 1 : 0) : 2;
            nan = tile(t, 8, 1, y + r, N, xp, cols, p, ldw, nr, cols, fin, pf);
        } else {
            int m = 0;
            for (; m + 4 <= M; m += 4) nan |= tile(t, 4, 4, y + (size_t)m * N + r, N, xp + (size_t)m * cols, cols, p, ldw, nr, cols, fin + (fp8 ? m : 0), 0);
            if (M - m == 3) nan |= tile(t, 4, 3, y + (size_t)m * N + r, N, xp + (size_t)m * cols, cols, p, ldw, nr, cols, fin + (fp8 ? m : 0), 0);
            else if (M - m == 2) nan |= tile(t, 4, 2, y + (size_t)m * N + r, N, xp + (size_t)m * cols, cols, p, ldw, nr, cols, fin + (fp8 ? m : 0), 0);
            else if (M - m == 1) nan |= tile(t, 4, 1, y + (size_t)m * N + r, N, xp + (size_t)m * cols, cols, p, ldw, nr, cols, fin + (fp8 ? m : 0), 0);
        }
        if (nan) // rare: the rows holding a NaN code give NaN outputs (as in the reference)
            for (int i = 0; i < nr; i++)
                for (int c = 0; c < cols; c++)
                    if ((p[(size_t)i * ldw + c] & 0x7F) == 0x7F) {
                        for (int mm = 0; mm < M; mm++) y[(size_t)mm * N + r + i] = NAN;
                        break;
                    }
        r += nr;
    }
}

static void gemv_f32(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1) { gemv_rows(DSV3_F32, y, x, w, M, r0, r1, NULL); }
static void gemv_bf16(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1) { gemv_rows(DSV3_BF16, y, x, w, M, r0, r1, NULL); }
static void gemv_f16(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1) { gemv_rows(DSV3_F16, y, x, w, M, r0, r1, NULL); }
static void gemv_e4m3(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1, float *xs) { gemv_rows(DSV3_F8_E4M3, y, x, w, M, r0, r1, xs); }

void dsv3_gemv_avx512(float *y, const float *x, const dsv3_mat *w, int M, int r0, int r1) {
    if (r0 >= r1) return;
    switch (w->dtype) {
    case DSV3_F32: gemv_f32(y, x, w, M, r0, r1); break;
    case DSV3_BF16: gemv_bf16(y, x, w, M, r0, r1); break;
    case DSV3_F16: gemv_f16(y, x, w, M, r0, r1); break;
    case DSV3_F8_E4M3: {
        // per-thread grow-only scratch for the prepared x rows + their finishing factors
        static _Thread_local float *tl_xs;
        static _Thread_local size_t tl_cap;
        size_t need = (size_t)M * w->cols + (size_t)M;
        if (need > tl_cap) {
            free(tl_xs);
            tl_xs = dsv3_malloc(sizeof(float) * need);
            tl_cap = need;
        }
        gemv_e4m3(y, x, w, M, r0, r1, tl_xs);
        break;
    }
    default: dsv3_panic(__FILE__, __LINE__, "matmul: unsupported weight dtype %s", dsv3_dtype_name(w->dtype));
    }
}
