// Fine-grained quantizers: see quant.h for the semantics and layouts.
// The E4M3 and E5M6 variants share one implementation: a format is its largest finite value, a
// vectorizable tile encoder and a decoder (fmt_ops below).
#include "numerics/quant.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T DSV3_QUANT_TILE
static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

float dsv3_quant_scale(float amax, float fmt_max, dsv3_scale_fmt sf) {
    if (!(amax >= DSV3_QUANT_AMAX_MIN)) amax = DSV3_QUANT_AMAX_MIN; // also catches NaN
    float s = amax / fmt_max;
    if (sf == DSV3_SCALE_UE8M0) s = dsv3_ue8m0_to_f32(dsv3_f32_to_ue8m0_ceil(s));
    return s;
}

// max |x| over a tile, skipping NaN elements (an inf element gives inf). On the bit patterns: for
// non-NaN floats |x| orders like (bits & 0x7fffffff) as unsigned integers, so this is an integer max
// reduction, which vectorizes exactly (a float max reduction would not, for its NaN rules).
static inline float tile_amax(const float *x, int n) {
    uint32_t m = 0;
    #pragma omp simd reduction(max : m)
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        u &= 0x7fffffffu;
        u = u > 0x7f800000u ? 0u : u;
        m = u > m ? u : m;
    }
    float a;
    memcpy(&a, &m, 4);
    return a;
}

// q[off + i] = fmt(x[i] / sc) for i < n, saturating.
static void enc_tile_e4m3(void *q, size_t off, const float *x, int n, float sc) {
    uint8_t *o = (uint8_t *)q + off;
    #pragma omp simd
    for (int i = 0; i < n; i++) o[i] = dsv3_f32_to_e4m3(x[i] / sc, DSV3_FP8_SATURATE);
}
static void enc_tile_e5m6(void *q, size_t off, const float *x, int n, float sc) {
    uint16_t *o = (uint16_t *)q + off;
    #pragma omp simd
    for (int i = 0; i < n; i++) o[i] = dsv3_f32_to_e5m6(x[i] / sc, DSV3_FP8_SATURATE);
}

typedef struct {
    float fmax;                                               // largest finite value (448, 65024)
    size_t size;                                              // bytes per code (1, 2)
    void (*enc_tile)(void *q, size_t off, const float *x, int n, float sc);
} fmt_ops;
static const fmt_ops k_e4m3 = {DSV3_E4M3_MAX, 1, enc_tile_e4m3}, k_e5m6 = {DSV3_E5M6_MAX, 2, enc_tile_e5m6};

// The value of code i of q (the branch is loop-invariant and predictable).
static inline float decode_at(const fmt_ops *f, const void *q, size_t i) {
    return f->size == 1 ? dsv3_e4m3_to_f32(((const uint8_t *)q)[i]) : dsv3_e5m6_to_f32(((const uint16_t *)q)[i]);
}

static void quant_1x128(const fmt_ops *f, void *q, float *s, const float *x, int M, int K, dsv3_scale_fmt sf) {
    int nk = ceil_div(K, T);
    #pragma omp parallel for schedule(static) if ((long)M * K >= (1 << 16))
    for (int m = 0; m < M; m++)
        for (int kb = 0; kb < nk; kb++) {
            size_t off = (size_t)m * K + (size_t)kb * T;
            int n = K - kb * T < T ? K - kb * T : T;
            float sc = dsv3_quant_scale(tile_amax(x + off, n), f->fmax, sf);
            s[(size_t)m * nk + kb] = sc;
            f->enc_tile(q, off, x + off, n, sc);
        }
}

static void dequant_1x128(const fmt_ops *f, float *x, const void *q, const float *s, int M, int K) {
    int nk = ceil_div(K, T);
    #pragma omp parallel for schedule(static) if ((long)M * K >= (1 << 16))
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) x[(size_t)m * K + k] = decode_at(f, q, (size_t)m * K + k) * s[(size_t)m * nk + k / T];
}

// Re-tiling: column k of x (all M tokens) becomes row k of xᵀ, quantized in 1×128 tiles along M.
// Each thread dequantizes one column at a time into a scratch row (M floats) and requantizes it.
static void retile_1x128_t(const fmt_ops *f, void *qt, float *st, const void *q, const float *s, int M, int K,
                           dsv3_scale_fmt sf) {
    int nk = ceil_div(K, T), nmt = ceil_div(M, T);
    #pragma omp parallel if ((long)M * K >= (1 << 16))
    {
        float *col = dsv3_malloc(sizeof(float) * (size_t)(M > 0 ? M : 1));
        #pragma omp for schedule(static)
        for (int k = 0; k < K; k++) {
            for (int m = 0; m < M; m++) col[m] = decode_at(f, q, (size_t)m * K + k) * s[(size_t)m * nk + k / T];
            quant_1x128(f, (char *)qt + (size_t)k * M * f->size, st + (size_t)k * nmt, col, 1, M, sf);
        }
        free(col);
    }
}

// xᵀ (K, M) in 1×128 tiles along M, read from x (M, K) directly: per block of 128 rows and a chunk of
// columns, the column amaxes (vectorized across columns), then the codes into an L1-resident
// (columns × 128) tile copied out column by column; the same values and arithmetic as transposing
// first, so the result is bit-identical. With q != NULL the values are x's 1×128 E4M3 codes q
// times their scales s (the re-tiling of dsv3_quant_retile_1x128_t_e4m3, fused).
#define QT_COLS 64 // divides 128: a chunk of columns lies in one 1×128 tile of the source codes
// Row r, columns j0..j0+nj-1 of the source as fp32 into v.
static inline void qt_row(float *v, const float *x, const uint8_t *q, const float *s, int K, int nk, int r, int j0, int nj) {
    if (q) {
        const uint8_t *qr = q + (size_t)r * K + j0;
        const float sr = s[(size_t)r * nk + j0 / T];
        #pragma omp simd
        for (int j = 0; j < nj; j++) v[j] = dsv3_e4m3_to_f32(qr[j]) * sr;
    } else {
        memcpy(v, x + (size_t)r * K + j0, sizeof(float) * (size_t)nj);
    }
}
static void quant_t(uint8_t *qt, float *st, const float *x, const uint8_t *q, const float *s, int M, int K, dsv3_scale_fmt sf) {
    const int nmt = ceil_div(M, T), ncc = ceil_div(K, QT_COLS), nk = ceil_div(K, T);
    #pragma omp parallel for collapse(2) schedule(static) if ((long)M * K >= (1 << 16))
    for (int mb = 0; mb < nmt; mb++)
        for (int cc = 0; cc < ncc; cc++) {
            const int r0 = mb * T, nr = M - r0 < T ? M - r0 : T, j0 = cc * QT_COLS, nj = K - j0 < QT_COLS ? K - j0 : QT_COLS;
            uint32_t m[QT_COLS] = {0};
            float sc[QT_COLS], v[QT_COLS];
            uint8_t tile[QT_COLS * T];
            for (int r = r0; r < r0 + nr; r++) {
                qt_row(v, x, q, s, K, nk, r, j0, nj);
                #pragma omp simd
                for (int j = 0; j < nj; j++) {
                    uint32_t u;
                    memcpy(&u, v + j, 4);
                    u &= 0x7fffffffu;
                    u = u > 0x7f800000u ? 0u : u;
                    m[j] = u > m[j] ? u : m[j];
                }
            }
            for (int j = 0; j < nj; j++) {
                float a;
                memcpy(&a, &m[j], 4);
                sc[j] = dsv3_quant_scale(a, DSV3_E4M3_MAX, sf);
                st[(size_t)(j0 + j) * nmt + mb] = sc[j];
            }
            for (int r = 0; r < nr; r++) {
                uint8_t c[QT_COLS];
                qt_row(v, x, q, s, K, nk, r0 + r, j0, nj);
                #pragma omp simd
                for (int j = 0; j < nj; j++) c[j] = dsv3_f32_to_e4m3(v[j] / sc[j], DSV3_FP8_SATURATE);
                for (int j = 0; j < nj; j++) tile[j * T + r] = c[j];
            }
            for (int j = 0; j < nj; j++) memcpy(qt + (size_t)(j0 + j) * M + r0, tile + j * T, (size_t)nr);
        }
}
void dsv3_quant_1x128_t_e4m3(uint8_t *qt, float *st, const float *x, int M, int K, dsv3_scale_fmt sf) {
    quant_t(qt, st, x, NULL, NULL, M, K, sf);
}
void dsv3_quant_retile_fused_1x128_t_e4m3(uint8_t *qt, float *st, const uint8_t *q, const float *s, int M, int K,
                                          dsv3_scale_fmt sf) {
    quant_t(qt, st, NULL, q, s, M, K, sf);
}

void dsv3_quant_1x128_e4m3(uint8_t *q, float *s, const float *x, int M, int K, dsv3_scale_fmt sf) {
    quant_1x128(&k_e4m3, q, s, x, M, K, sf);
}
void dsv3_dequant_1x128_e4m3(float *x, const uint8_t *q, const float *s, int M, int K) {
    dequant_1x128(&k_e4m3, x, q, s, M, K);
}
void dsv3_quant_1x128_e5m6(uint16_t *q, float *s, const float *x, int M, int K, dsv3_scale_fmt sf) {
    quant_1x128(&k_e5m6, q, s, x, M, K, sf);
}
void dsv3_dequant_1x128_e5m6(float *x, const uint16_t *q, const float *s, int M, int K) {
    dequant_1x128(&k_e5m6, x, q, s, M, K);
}
void dsv3_quant_retile_1x128_t_e4m3(uint8_t *qt, float *st, const uint8_t *q, const float *s, int M, int K,
                                    dsv3_scale_fmt sf) {
    retile_1x128_t(&k_e4m3, qt, st, q, s, M, K, sf);
}
void dsv3_quant_retile_1x128_t_e5m6(uint16_t *qt, float *st, const uint16_t *q, const float *s, int M, int K,
                                    dsv3_scale_fmt sf) {
    retile_1x128_t(&k_e5m6, qt, st, q, s, M, K, sf);
}

void dsv3_quant_128x128_e4m3(uint8_t *q, float *s, const float *w, int N, int K, dsv3_scale_fmt sf) {
    int nn = ceil_div(N, T), nk = ceil_div(K, T);
    #pragma omp parallel for collapse(2) schedule(static) if ((long)N * K >= (1 << 16))
    for (int nb = 0; nb < nn; nb++)
        for (int kb = 0; kb < nk; kb++) {
            int r0 = nb * T, r1 = r0 + T < N ? r0 + T : N, c0 = kb * T, cn = K - c0 < T ? K - c0 : T;
            float amax = 0.0f;
            for (int r = r0; r < r1; r++) amax = fmaxf(amax, tile_amax(w + (size_t)r * K + c0, cn));
            float sc = dsv3_quant_scale(amax, DSV3_E4M3_MAX, sf);
            s[(size_t)nb * nk + kb] = sc;
            for (int r = r0; r < r1; r++) enc_tile_e4m3(q, (size_t)r * K + c0, w + (size_t)r * K + c0, cn, sc);
        }
}

void dsv3_dequant_128x128_e4m3(float *w, const uint8_t *q, const float *s, int N, int K) {
    int nk = ceil_div(K, T);
    #pragma omp parallel for schedule(static) if ((long)N * K >= (1 << 16))
    for (int r = 0; r < N; r++) {
        const float *sr = s + (size_t)(r / T) * nk;
        for (int k = 0; k < K; k++) w[(size_t)r * K + k] = dsv3_e4m3_to_f32(q[(size_t)r * K + k]) * sr[k / T];
    }
}

void dsv3_dequant_128x128_e4m3_bf16(uint16_t *w, const uint8_t *q, const float *s, int N, int K) {
    int nk = ceil_div(K, T);
    #pragma omp parallel for schedule(static) if ((long)N * K >= (1 << 16))
    for (int r = 0; r < N; r++) {
        const float *sr = s + (size_t)(r / T) * nk;
        for (int k = 0; k < K; k++)
            w[(size_t)r * K + k] = dsv3_f32_to_bf16(dsv3_e4m3_to_f32(q[(size_t)r * K + k]) * sr[k / T]);
    }
}
