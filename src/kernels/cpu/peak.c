// In-register peaks (peak.h). Each kernel keeps enough independent chains to cover the latency of
// its instruction on two pipes (fp32 FMA: 4 cycles x 2 pipes -> 10 / 16 chains), runs a fixed
// number of iterations and folds the chains into a value the caller keeps, so nothing is elided.
#include "kernels/cpu/peak.h"
#include "kernels/cpu/matmul.h"
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define ITERS (1L << 21)

__attribute__((target("avx2,fma"))) static float fma_ymm(long n) {
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-8f), a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + 0.1f * (float)i);
    for (long it = 0; it < n; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    return _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f,fma"))) static float fma_zmm(long n) {
    __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-8f), a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(1.0f + 0.1f * (float)i);
    for (long it = 0; it < n; it++)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) static float dpbf16(long n) {
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i);
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3380); // 1.0, 2^-24
    for (long it = 0; it < n; it++)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

__attribute__((target("amx-tile,amx-bf16"))) static float amx_bf16(long n) {
    _Alignas(64) tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
    _tile_loadconfig(&cfg);
    _Alignas(64) uint16_t ab[16 * 32];
    for (int i = 0; i < 16 * 32; i++) ab[i] = 0x3380; // 2^-24: the sums stay small
    _Alignas(64) float out[16 * 16];
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
    _tile_loadd(6, ab, 64); _tile_loadd(7, ab, 64);
    for (long it = 0; it < n / 24; it++) { // one TDPBF16PS = 16 x 16 x 32 MACs (vs 16 x 2 for vdpbf16ps)
        _tile_dpbf16ps(0, 6, 7);
        _tile_dpbf16ps(1, 6, 7);
        _tile_dpbf16ps(2, 6, 7);
        _tile_dpbf16ps(3, 6, 7);
        _tile_dpbf16ps(4, 6, 7);
        _tile_dpbf16ps(5, 6, 7);
    }
    _tile_stored(0, out, 64);
    float s = out[0];
    _tile_stored(3, out, 64);
    s += out[255];
    _tile_release();
    return s;
}

static dsv3_isa needs(dsv3_peak_kind k) {
    return k == DSV3_PEAK_FMA_YMM ? DSV3_ISA_AVX2 : k == DSV3_PEAK_AMX_BF16 ? DSV3_ISA_AMX : DSV3_ISA_AVX512;
}

const char *dsv3_peak_name(dsv3_peak_kind k) {
    switch (k) {
    case DSV3_PEAK_FMA_YMM: return "fp32_fma_ymm";
    case DSV3_PEAK_FMA_ZMM: return "fp32_fma_zmm";
    case DSV3_PEAK_DPBF16: return "bf16_vdpbf16ps_zmm";
    default: return "bf16_amx_tdpbf16ps";
    }
}

double dsv3_peak_gflops(dsv3_peak_kind kind, int threads) {
    if (dsv3_matmul_get_isa() < needs(kind)) return -1.0;
    if (threads <= 0) threads = omp_get_max_threads();
    // flops per iteration of each kernel's loop, per thread
    const double per_iter = kind == DSV3_PEAK_FMA_YMM ? 12 * 8 * 2 : kind == DSV3_PEAK_FMA_ZMM ? 16 * 16 * 2
                          : kind == DSV3_PEAK_DPBF16 ? 16 * 32 * 2 : 6.0 * 16 * 16 * 32 * 2 / 24;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now_s();
#pragma omp parallel num_threads(threads)
        {
            float v = kind == DSV3_PEAK_FMA_YMM ? fma_ymm(ITERS) : kind == DSV3_PEAK_FMA_ZMM ? fma_zmm(ITERS)
                    : kind == DSV3_PEAK_DPBF16 ? dpbf16(ITERS) : amx_bf16(ITERS * 4);
#pragma omp atomic
            sink += v;
        }
        double dt = now_s() - t0;
        double iters = kind == DSV3_PEAK_AMX_BF16 ? (double)(ITERS * 4) : (double)ITERS;
        double g = per_iter * iters * threads / dt / 1e9;
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}
