// dsv3_matmul: picks the instruction set (at run time), the algorithm (GEMV for M <=
// DSV3_MATMUL_GEMV_MAX_M, packed blocked GEMM above) and splits the work over OpenMP threads: GEMV
// by contiguous ranges of output rows, GEMM by (NC rows of W) x (M range) tasks. Kernels by level:
//   avx512, amx: gemv_avx512.c; above the GEMV sizes the SGEMM of sgemm.c with its 12 x 32
//                AVX-512 micro-kernel (weights dequantized while packed), or with bf16 activations
//                the BF16 GEMM (bgemm.c: AMX / vdpbf16ps);
//   avx2:        gemv_avx2.c, gemm_avx2.c;
//   scalar:      matmul_scalar below.
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/sgemm.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include "core/error.h"
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>

// ---- instruction-set selection --------------------------------------------------------------

static int g_isa = -1; // dsv3_isa once chosen; read and written atomically
static int g_max_isa = -1;

#if defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
// Linux keeps the AMX tile data state off until a process asks (ARCH_REQ_XCOMP_PERM, kernel 5.16+).
static int amx_permitted(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 24) & 1) || !((d >> 22) & 1)) return 0; // AMX-TILE, AMX-BF16
    unsigned lo, hi; // XCR0 bits 17-18 (XTILECFG, XTILEDATA) must be OS-enabled
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}
#endif

static dsv3_isa detect_max_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    unsigned a, b, c = 0, d;
    __get_cpuid(1, &a, &b, &c, &d); // F16C is CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports lacks "f16c")
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && ((c >> 29) & 1))) return DSV3_ISA_SCALAR;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71 = 0, c71 = 0, d71 = 0;
    __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
    __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
    // AVX512F (b7 bit 16), DQ (17), BW (30), VL (31); AVX512_BF16 is CPUID.(7,1):EAX bit 5; the OS
    // must save the zmm state (XCR0 bits 5-7 and the ymm/xmm bits 1-2).
    int avx512 = ((b7 >> 16) & 1) && ((b7 >> 17) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1) && ((a71 >> 5) & 1);
    if (avx512) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        avx512 = (lo & 0xe6) == 0xe6;
    }
    if (!avx512) return DSV3_ISA_AVX2;
#if defined(__x86_64__)
    if (amx_permitted()) return DSV3_ISA_AMX;
#endif
    return DSV3_ISA_AVX512;
#else
    return DSV3_ISA_SCALAR;
#endif
}

dsv3_isa dsv3_cpu_max_isa(void) {
    int m = __atomic_load_n(&g_max_isa, __ATOMIC_ACQUIRE);
    if (m < 0) {
        #pragma omp critical(dsv3_isa_detect)
        {
            if (g_max_isa < 0) __atomic_store_n(&g_max_isa, (int)detect_max_isa(), __ATOMIC_RELEASE);
        }
        m = __atomic_load_n(&g_max_isa, __ATOMIC_ACQUIRE);
    }
    return (dsv3_isa)m;
}

dsv3_isa dsv3_matmul_get_isa(void) {
    int isa = __atomic_load_n(&g_isa, __ATOMIC_RELAXED);
    if (isa < 0) {
        const char *e = getenv("DSV3_NO_SIMD");
        int no_simd = e && *e && strcmp(e, "0") != 0;
        isa = no_simd ? DSV3_ISA_SCALAR : (int)dsv3_cpu_max_isa();
        const char *cap = getenv("DSV3_ISA");
        if (cap && *cap) {
            int c = !strcmp(cap, "scalar") ? 0 : !strcmp(cap, "avx2") ? 1 : !strcmp(cap, "avx512") ? 2 : !strcmp(cap, "amx") ? 3 : 3;
            if (c < isa) isa = c;
        }
        __atomic_store_n(&g_isa, isa, __ATOMIC_RELAXED);
    }
    return (dsv3_isa)isa;
}

int dsv3_matmul_set_isa(dsv3_isa isa) {
    if ((int)isa < DSV3_ISA_SCALAR || (int)isa > DSV3_ISA_AMX)
        return dsv3_errorf("matmul: unknown instruction-set path %d", (int)isa);
    if (isa > dsv3_cpu_max_isa())
        return dsv3_errorf("matmul: this CPU lacks the %s path (it supports up to %s)", dsv3_isa_name(isa),
                           dsv3_isa_name(dsv3_cpu_max_isa()));
    __atomic_store_n(&g_isa, (int)isa, __ATOMIC_RELAXED);
    return 0;
}

const char *dsv3_isa_name(dsv3_isa isa) {
    switch (isa) {
    case DSV3_ISA_AVX2: return "avx2";
    case DSV3_ISA_AVX512: return "avx512";
    case DSV3_ISA_AMX: return "amx";
    default: return "scalar";
    }
}

// ---- portable scalar path -------------------------------------------------------------------

static float g_e4m3_lut[256];
static int g_e4m3_lut_ready;

static void e4m3_lut_init(void) {
    if (__atomic_load_n(&g_e4m3_lut_ready, __ATOMIC_ACQUIRE)) return;
    #pragma omp critical(dsv3_e4m3_lut)
    if (!g_e4m3_lut_ready) {
        for (int b = 0; b < 256; b++) g_e4m3_lut[b] = dsv3_e4m3_to_f32((uint8_t)b);
        __atomic_store_n(&g_e4m3_lut_ready, 1, __ATOMIC_RELEASE);
    }
}

// Row r of W as fp32 (same values as dsv3_mat_row_f32, with a table for E4M3).
static void row_f32_scalar(const dsv3_mat *w, int r, float *out) {
    if (w->dtype != DSV3_F8_E4M3) { dsv3_mat_row_f32(w, r, out); return; }
    const uint8_t *p = (const uint8_t *)w->data + (size_t)r * w->cols;
    int bc = w->block_cols, nbc = (w->cols + bc - 1) / bc;
    const float *s = w->scale + (size_t)(r / w->block_rows) * nbc;
    for (int c = 0; c < w->cols; c++) out[c] = g_e4m3_lut[p[c]] * s[c / bc];
}

// Per-thread grow-only scratch (64-byte aligned): a steady-state matmul allocates nothing.
typedef struct { float *p; size_t cap; } tl_buf;
static _Thread_local tl_buf tl_row_buf, tl_pack_buf;
static float *tl_scratch(tl_buf *b, size_t n) {
    if (b->cap < n) {
        free(b->p);
        b->p = aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64);
        if (!b->p) dsv3_panic(__FILE__, __LINE__, "matmul: out of memory for a %zu-float scratch buffer", n);
        b->cap = n;
    }
    return b->p;
}

// Four weight rows at a time are widened to fp32 and dotted with every x row (4 accumulators per x
// row, each summed in column order like the reference).
static void matmul_scalar(float *y, const float *x, const dsv3_mat *w, int M, int parallel) {
    int N = w->rows, K = w->cols, ng = (N + 3) / 4;
    if (w->dtype == DSV3_F8_E4M3) e4m3_lut_init();
    #pragma omp parallel if (parallel)
    {
        float *buf = tl_scratch(&tl_row_buf, 4 * (size_t)K);
        #pragma omp for schedule(static)
        for (int g = 0; g < ng; g++) {
            int r0 = 4 * g, nr = N - r0 < 4 ? N - r0 : 4;
            for (int i = 0; i < nr; i++) row_f32_scalar(w, r0 + i, buf + (size_t)i * K);
            for (int m = 0; m < M; m++) {
                const float *xm = x + (size_t)m * K;
                float acc[4] = {0, 0, 0, 0};
                for (int i = 0; i < nr; i++) {
                    const float *wr = buf + (size_t)i * K;
                    float a = 0.0f;
                    for (int c = 0; c < K; c++) a += xm[c] * wr[c];
                    acc[i] = a;
                }
                for (int i = 0; i < nr; i++) y[(size_t)m * N + r0 + i] = acc[i];
            }
        }
    }
}

// ---- AVX2 paths -----------------------------------------------------------------------------

static void matmul_avx2_gemv(float *y, const float *x, const dsv3_mat *w, int M, int parallel) {
    // One contiguous range of output rows per thread (each streams its own part of W), cut at
    // multiples of 16 rows (4-row strips; 128-row F8 scale blocks stay whole where possible).
    int N = w->rows, avx512 = dsv3_matmul_get_isa() >= DSV3_ISA_AVX512;
    #pragma omp parallel if (parallel)
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        int per = ((N + 15) / 16 + nt - 1) / nt * 16;
        int r0 = tid * per < N ? tid * per : N, r1 = r0 + per < N ? r0 + per : N;
        if (avx512) dsv3_gemv_avx512(y, x, w, M, r0, r1);
        else dsv3_gemv_avx2(y, x, w, M, r0, r1);
    }
}

static void matmul_avx2_gemm(float *y, const float *x, const dsv3_mat *w, int M, int parallel) {
    int N = w->rows, nthreads = parallel ? omp_get_max_threads() : 1;
    int ntn = (N + DSV3_GEMM_NC - 1) / DSV3_GEMM_NC, msplit = 1;
    // Few W blocks for the threads: also split M (each part re-packs its W blocks).
    while (ntn * msplit < 4 * nthreads && M / (2 * msplit) >= 4 * DSV3_GEMM_MR) msplit *= 2;
    int ntask = ntn * msplit;
    #pragma omp parallel if (parallel && ntask > 1)
    {
        float *pack = tl_scratch(&tl_pack_buf, dsv3_gemm_pack_floats());
        #pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntask; t++) {
            int tn = t / msplit, tm = t % msplit;
            int n0 = tn * DSV3_GEMM_NC, n1 = n0 + DSV3_GEMM_NC < N ? n0 + DSV3_GEMM_NC : N;
            int m0 = (int)((long long)M * tm / msplit), m1 = (int)((long long)M * (tm + 1) / msplit);
            dsv3_gemm_avx2(y, x, w, m0, m1, n0, n1, pack);
        }
    }
}

static int g_act_bf16 = -1; // -1: not read yet from DSV3_MATMUL_ACT

int dsv3_matmul_get_act_bf16(void) {
    int v = __atomic_load_n(&g_act_bf16, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("DSV3_MATMUL_ACT");
        v = e && !strcmp(e, "bf16");
        __atomic_store_n(&g_act_bf16, v, __ATOMIC_RELAXED);
    }
    return v;
}

void dsv3_matmul_set_act_bf16(int on) { __atomic_store_n(&g_act_bf16, !!on, __ATOMIC_RELAXED); }

int dsv3_matmul_uses_bf16_gemm(const dsv3_mat *w, int M) {
    return M > DSV3_MATMUL_GEMV_MAX_M && dsv3_matmul_get_act_bf16() && dsv3_matmul_get_isa() >= DSV3_ISA_AVX512 &&
           (w->dtype == DSV3_BF16 || w->dtype == DSV3_F8_E4M3);
}

// ---- dispatcher -----------------------------------------------------------------------------

void dsv3_matmul(float *y, const float *x, const dsv3_mat *w, int M) {
    dsv3_dtype t = w->dtype;
    if (t != DSV3_F32 && t != DSV3_BF16 && t != DSV3_F16 && t != DSV3_F8_E4M3)
        dsv3_panic(__FILE__, __LINE__, "matmul: unsupported weight dtype %s", dsv3_dtype_name(t));
    if (t == DSV3_F8_E4M3) DSV3_ASSERT(w->scale && w->block_rows > 0 && w->block_cols > 0);
    DSV3_ASSERT(M >= 0 && w->rows >= 0 && w->cols >= 0);
    if (M == 0 || w->rows == 0) return;
    if (w->cols == 0) { memset(y, 0, sizeof(float) * (size_t)M * w->rows); return; }
    // Threads only pay off past ~100k multiply-adds (fork/join costs a few microseconds).
    int parallel = (double)M * w->rows * w->cols >= 131072.0;
    if (dsv3_matmul_get_isa() == DSV3_ISA_SCALAR) matmul_scalar(y, x, w, M, parallel);
    else if (M <= DSV3_MATMUL_GEMV_MAX_M) matmul_avx2_gemv(y, x, w, M, parallel);
    else if (dsv3_matmul_uses_bf16_gemm(w, M)) dsv3_bgemm_mat(y, x, w, M);
    else if (dsv3_matmul_get_isa() >= DSV3_ISA_AVX512) dsv3_sgemm_mat(y, x, w, M);
    else matmul_avx2_gemm(y, x, w, M, parallel);
}

const char *dsv3_matmul_path(const dsv3_mat *w, int M) {
    dsv3_isa isa = dsv3_matmul_get_isa();
    if (isa == DSV3_ISA_SCALAR) return "scalar";
    if (M <= DSV3_MATMUL_GEMV_MAX_M) return isa >= DSV3_ISA_AVX512 ? "gemv-avx512" : "gemv-avx2";
    if (dsv3_matmul_uses_bf16_gemm(w, M)) return isa >= DSV3_ISA_AMX ? "bgemm-amx" : "bgemm-avx512bf16";
    return isa >= DSV3_ISA_AVX512 ? "sgemm-avx512" : "gemm-avx2";
}
