// AVX-512 parts of the BF16 GEMM (bgemm.h): fp32 -> bf16 packing of both operands, the vdpbf16ps
// block kernel, and the merge of the fp32 scratch into C. Call only at the avx512 level or above.
//
// vdpbf16ps acc, a, b: for each of the 16 fp32 lanes, acc += a.lo·b.lo + a.hi·b.hi over the lane's
// two bf16 halves. A lane of a B panel row holds (op(B)[2p, n], op(B)[2p+1, n]) and a is one A row's
// pair (A[m, 2p], A[m, 2p+1]) broadcast, so each instruction adds two K steps of 16 columns of one
// row. The kernel keeps 8 rows x 32 columns in 16 accumulators: with two issue ports and a latency
// of about 5 cycles, 10 or more independent chains keep the unit busy.
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c")
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/matmul_kernels.h"
#include "numerics/bf16.h"
#include "kernels/cpu/transpose_avx512.h"
#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

// 16 fp32 -> 16 bf16 bit patterns: vcvtneps2bf16 (round to nearest even, NaN kept quiet). It
// flushes subnormal inputs to zero where dsv3_f32_to_bf16 keeps them as bf16 subnormals; both
// kernels that read these packs (TDPBF16PS, vdpbf16ps) treat bf16 subnormal inputs as zero, so the
// GEMM results are the same bit for bit. One instruction instead of the 8 integer ops of a software
// rounding (the packs were 20 % of a bf16 training step).
AI __m256i f32_to_bf16_16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

AI __mmask16 mask16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// 32 consecutive fp32 (the first n valid, rest zero) -> 32 bf16 = 16 dwords of K pairs.
AI __m512i pairs32(const float *p, int n) {
    __m512 lo = _mm512_maskz_loadu_ps(mask16(n), p), hi = _mm512_maskz_loadu_ps(mask16(n - 16), p + 16);
    return _mm512_inserti64x4(_mm512_castsi256_si512(f32_to_bf16_16(lo)), f32_to_bf16_16(hi), 1);
}

// op(A) rows [m0, m1) from A stored (K, M): 16 x 16 blocks of A (16 K rows x 16 M columns) are
// transposed so that each register holds 16 K values of one output row.
static void pack_a_t(const dsv3_bg_fsrc *a, int M, int K, int m0, int m1, int Kp, uint16_t *apack) {
    for (int mb = m0; mb < m1; mb += 16) {
        int mn = m1 - mb < 16 ? m1 - mb : 16;
        __mmask16 mm = mask16(mn);
        for (int kb = 0; kb < K; kb += 16) {
            int kn = K - kb < 16 ? K - kb : 16;
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < kn ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mm, a->p + (size_t)(kb + i) * a->ld + mb))
                              : _mm512_setzero_si512();
            dsv3_transpose16_epi32(r);
            __mmask16 km = mask16(kn);
            for (int j = 0; j < mn; j++)
                _mm256_mask_storeu_epi16(apack + (size_t)(mb + j) * Kp + kb, km, f32_to_bf16_16(_mm512_castsi512_ps(r[j])));
        }
    }
}

void dsv3_bg_pack_a_avx512(const dsv3_bg_fsrc *a, int M, int K, int Kp, int m0, int m1, uint16_t *apack) {
    for (int m = m0; m < m1; m++) {
        uint16_t *d = apack + (size_t)m * Kp;
        if (m >= M) { memset(d, 0, (size_t)Kp * 2); continue; }
        if (!a->trans) {
            const float *s = a->p + (size_t)m * a->ld;
            for (int k = 0; k < Kp; k += 32) _mm512_storeu_si512(d + k, pairs32(s + k, K - k));
        } else { // op(A)[m, k] = A[k, m]: the wgrad form's dYᵀ, packed by 16 x 16 transposes below
            memset(d, 0, (size_t)Kp * 2);
        }
    }
    if (a->trans) pack_a_t(a, M, K, m0, m1 < M ? m1 : M, Kp, apack);
}

void dsv3_bg_pack_b_kn_avx512(const dsv3_bg_fsrc *b, int N, int K, int Kp, int n0, int npan, int p0, int p1,
                              uint16_t *bpack) {
    for (int p = p0; p < p1; p++) {
        const int k = 2 * p;
        const float *r0 = k < K ? b->p + (size_t)k * b->ld : NULL, *r1 = k + 1 < K ? b->p + (size_t)(k + 1) * b->ld : NULL;
        for (int q = 0; q < npan; q++) {
            const int n = n0 + 16 * q;
            const __mmask16 m = mask16(N - n);
            __m512 a0 = r0 ? _mm512_maskz_loadu_ps(m, r0 + n) : _mm512_setzero_ps();
            __m512 a1 = r1 ? _mm512_maskz_loadu_ps(m, r1 + n) : _mm512_setzero_ps();
            __m512i lo = _mm512_cvtepu16_epi32(f32_to_bf16_16(a0)), hi = _mm512_cvtepu16_epi32(f32_to_bf16_16(a1));
            _mm512_storeu_si512((uint32_t *)(bpack + (size_t)q * Kp * 16) + (size_t)p * 16, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

void dsv3_bg_pack_b_avx512(const dsv3_bg_fsrc *b, const dsv3_mat *w, int N, int K, int Kp, int n0,
                           uint16_t *panel, float *tmp) {
    int nn = N - n0 < 16 ? N - n0 : 16; // valid columns
    uint32_t *out = (uint32_t *)panel;  // [Kp/2][16]
    if (nn <= 0) { memset(panel, 0, (size_t)Kp * 32); return; }
    if (b && !b->trans) { // B stored (K, N): rows 2p and 2p + 1 interleaved by 16-bit halves
        __mmask16 m = mask16(nn);
        for (int p = 0; p < Kp / 2; p++) {
            int k = 2 * p;
            __m512 r0 = k < K ? _mm512_maskz_loadu_ps(m, b->p + (size_t)k * b->ld + n0) : _mm512_setzero_ps();
            __m512 r1 = k + 1 < K ? _mm512_maskz_loadu_ps(m, b->p + (size_t)(k + 1) * b->ld + n0) : _mm512_setzero_ps();
            __m512i lo = _mm512_cvtepu16_epi32(f32_to_bf16_16(r0)), hi = _mm512_cvtepu16_epi32(f32_to_bf16_16(r1));
            _mm512_storeu_si512(out + (size_t)p * 16, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
        return;
    }
    // Column n of op(B) is a contiguous row (fp32 B stored (N, K), or row n of the weight): convert
    // 32 K values of each of the 16 rows to 16 pair-dwords, then transpose 16 x 16.
    for (int k0 = 0; k0 < Kp; k0 += 32) {
        int kn = K - k0 < 32 ? K - k0 : 32;
        const float *rows;
        long ld;
        if (b) { rows = b->p + (size_t)n0 * b->ld + k0; ld = b->ld; }
        else {
            if (kn > 0 && w->dtype != DSV3_BF16) dsv3_mat_block_f32_avx2(w, n0, nn, k0, kn, tmp, 32);
            rows = tmp; ld = 32;
        }
        __m512i r[16];
        if (!b && w->dtype == DSV3_BF16) { // BF16 weights: 32 stored values of a row are already its 16 pair-dwords
            const __mmask32 km = kn >= 32 ? 0xFFFFFFFFu : kn <= 0 ? 0 : (__mmask32)((1u << kn) - 1u);
            const uint16_t *wr = (const uint16_t *)w->data + (size_t)n0 * w->cols + k0;
            for (int i = 0; i < 16; i++) r[i] = i < nn ? _mm512_maskz_loadu_epi16(km, wr + (size_t)i * w->cols) : _mm512_setzero_si512();
            dsv3_transpose16_epi32(r);
            for (int j = 0; j < 16; j++) _mm512_storeu_si512(out + (size_t)(k0 / 2 + j) * 16, r[j]);
            continue;
        }
        for (int i = 0; i < 16; i++) r[i] = i < nn && kn > 0 ? pairs32(rows + (size_t)i * ld, kn) : _mm512_setzero_si512();
        dsv3_transpose16_epi32(r);
        for (int j = 0; j < 16; j++) _mm512_storeu_si512(out + (size_t)(k0 / 2 + j) * 16, r[j]);
    }
}

// 8 rows x 32 columns, kc K values. Rows come from a (row stride lda); panel pair b0, b1.
#define DECL(i) __m512 c##i##0, c##i##1;
#define INIT(i) if (first) { c##i##0 = _mm512_setzero_ps(); c##i##1 = _mm512_setzero_ps(); } \
                else { c##i##0 = _mm512_loadu_ps(S + (size_t)(i) * lds); c##i##1 = _mm512_loadu_ps(S + (size_t)(i) * lds + 16); }
#define STEP(i) { __m512bh av = (__m512bh)_mm512_set1_epi32(*(const int32_t *)(a + (size_t)(i) * lda + 2 * p)); \
                  c##i##0 = _mm512_dpbf16_ps(c##i##0, av, (__m512bh)b0); c##i##1 = _mm512_dpbf16_ps(c##i##1, av, (__m512bh)b1); }
#define SAVE(i) _mm512_storeu_ps(S + (size_t)(i) * lds, c##i##0); _mm512_storeu_ps(S + (size_t)(i) * lds + 16, c##i##1);

static void tile8x32(const uint16_t *a, long lda, const uint16_t *pb0, const uint16_t *pb1, int kc, float *S, long lds,
                     int first) {
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5) DECL(6) DECL(7)
    INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5) INIT(6) INIT(7)
    const uint32_t *q0 = (const uint32_t *)pb0, *q1 = (const uint32_t *)pb1;
#pragma GCC unroll 2
    for (int p = 0; p < kc / 2; p++) {
        __m512i b0 = _mm512_loadu_si512(q0 + (size_t)p * 16), b1 = _mm512_loadu_si512(q1 + (size_t)p * 16);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
    }
    SAVE(0) SAVE(1) SAVE(2) SAVE(3) SAVE(4) SAVE(5) SAVE(6) SAVE(7)
}

void dsv3_bg_block_avx512(const uint16_t *a, long lda, int mt, const uint16_t *b, long pstride, int nt, int kc,
                          float *S, long lds, int first) {
    for (int j = 0; j < nt; j++) {
        const uint16_t *p0 = b + (size_t)(2 * j) * pstride, *p1 = p0 + pstride;
        for (int r = 0; r < 4 * mt; r++)
            tile8x32(a + (size_t)r * 8 * lda, lda, p0, p1, kc, S + (size_t)r * 8 * lds + 32 * j, lds, first);
    }
}

void dsv3_bg_merge_avx512(float *C, long ldc, const float *S, long lds, int rows, int cols, float alpha, float beta) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        const float *s = S + (size_t)i * lds;
        for (int j = 0; j < cols; j += 16) {
            __mmask16 m = mask16(cols - j);
            __m512 v = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, s + j));
            if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + j), v);
            _mm512_mask_storeu_ps(c + j, m, v);
        }
    }
}

void dsv3_bg_merge_scaled_avx512(float *C, long ldc, const float *S, long lds, int rows, int cols, const float *ra,
                                 const float *cb, int overwrite) {
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        const float *s = S + (size_t)i * lds;
        __m512 r = _mm512_set1_ps(ra[i]);
        for (int j = 0; j < cols; j += 16) {
            __mmask16 m = mask16(cols - j);
            // (group sum · sa) · sb, then added: the order of the fp8_gemm reference
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), r), _mm512_maskz_loadu_ps(m, cb + j));
            if (!overwrite) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c + j), v);
            _mm512_mask_storeu_ps(c + j, m, v);
        }
    }
}

// E4M3 codes -> bf16 bits through lut (see bgemm.h: lut[c | 0x80] == lut[c] | 0x8000). The 128
// magnitudes sit in four registers of 32 words; two two-source permutes pick among 64 entries
// each, bit 6 chooses between them, bit 7 becomes the sign.
void dsv3_bg_decode_e4m3_avx512(uint16_t *d, const uint8_t *a, int n, const uint16_t *lut) {
    const __m512i t0 = _mm512_loadu_si512(lut), t1 = _mm512_loadu_si512(lut + 32);
    const __m512i t2 = _mm512_loadu_si512(lut + 64), t3 = _mm512_loadu_si512(lut + 96);
    int i = 0;
    for (; i < n; i += 32) {
        const int r = n - i < 32 ? n - i : 32;
        const __mmask32 m = r == 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << r) - 1);
        __m512i x = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, a + i));
        __m512i lo = _mm512_permutex2var_epi16(t0, x, t1), hi = _mm512_permutex2var_epi16(t2, x, t3);
        __m512i v = _mm512_mask_mov_epi16(lo, _mm512_test_epi16_mask(x, _mm512_set1_epi16(0x40)), hi);
        v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(x, _mm512_set1_epi16(0x80)), 8));
        _mm512_mask_storeu_epi16(d + i, m, v);
    }
}
