// dsv3 bench gemm / gemv: time the matrix kernels the model uses, through the same dispatch.
#include "commands.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/wpack.h"
#include "kernels/cpu/peak.h"
#include "numerics/bf16.h"
#include "numerics/quant.h"
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 bench gemm --m M --n N --k K --weights f32|bf16|fp8 [--form fwd|dgrad|wgrad] [--act f32|bf16]\n"
            "                       [--pack per-call|cached] [--threads T] [--json]\n"
            "       dsv3 bench gemv --n N --k K --weights f32|bf16|fp8 [--threads T] [--json]\n"
            "       dsv3 bench peak [--threads T] [--json]\n"
            "\n"
            "gemm: times Y = X·Wᵀ (fwd; X fp32 [M, K], W [N, K] stored as --weights, through dsv3_matmul: the\n"
            "      inference and forward path), or a training form through the CPU backend's GEMM on fp32\n"
            "      tensors (dgrad dX = dY·W, wgrad dW += dYᵀ·X; --weights f32: the fp32 SGEMM, bf16: the\n"
            "      bf16-input GEMM of bf16 training, inputs rounded to bf16, fp32 accumulation). Prints {\"gflops\", \"seconds\" (median per call), \"path\", ...}.\n"
            "gemv: times y = W·x (M = 1), cycling through enough copies of W that every call reads it from\n"
            "      DRAM (>= 256 MiB in all). Prints {\"gbps\" (bytes of W per second), \"weights_per_s\", \"path\", ...}.\n"
            "--pack cached: W is a weight region of the packed-weight cache (kernels/cpu/wpack.h), as a loaded\n"
            "      model's weights are: the BF16 GEMM packs W once and reuses the pack (a trainer's weights are\n"
            "      cached only when used twice in a step). Default per-call: W packed in every call. The SGEMM\n"
            "      paths always pack per call. JSON \"pack\" says which ran.\n"
            "fp8 is E4M3 with 128x128 block scales (DeepSeek-V3's weight format). --act bf16 (fwd; default f32,\n"
            "or DSV3_MATMUL_ACT=bf16): bf16/fp8 weights above M = 24 run the BF16 GEMM (AMX or AVX512_BF16, x\n"
            "rounded to bf16) where the CPU has it. DSV3_ISA=avx2|avx512 caps the instruction set\n"
            "(DSV3_NO_SIMD=1: scalar).\n"
            "peak: the in-register limits of this CPU at the current level, on every thread at once: fp32 FMA\n"
            "      (ymm, zmm), vdpbf16ps (zmm) and AMX TDPBF16PS, in GFLOP/s (best of 7 short runs; -1: not\n"
            "      available). Prints {\"fp32_fma_ymm\", \"fp32_fma_zmm\", \"bf16_vdpbf16ps_zmm\", \"bf16_amx_tdpbf16ps\", \"isa\", \"threads\"}.\n"
            "Timing: one warm-up call, then calls until 0.5 s (at least 5); the median is reported.\n"
            "Exit status: 0 ok, 2 bad usage.\n");
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

typedef struct { dsv3_mat m; void *data; float *scale; } wbuf;

static void make_weight(wbuf *w, int N, int K, dsv3_dtype dt, uint64_t seed) {
    float *f = dsv3_malloc(sizeof(float) * (size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) f[i] = 0.05f * urand(&seed);
    memset(w, 0, sizeof *w);
    w->m = (dsv3_mat){.dtype = dt, .rows = N, .cols = K, .block_rows = 128, .block_cols = 128};
    if (dt == DSV3_F32) {
        w->data = f;
    } else if (dt == DSV3_BF16) {
        uint16_t *b = dsv3_malloc(2 * (size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = dsv3_f32_to_bf16(f[i]);
        w->data = b;
        free(f);
    } else {
        uint8_t *q = dsv3_malloc((size_t)N * K);
        w->scale = dsv3_malloc(sizeof(float) * (size_t)((N + 127) / 128) * ((K + 127) / 128));
        dsv3_quant_128x128_e4m3(q, w->scale, f, N, K, DSV3_SCALE_AMAX);
        w->data = q;
        free(f);
    }
    w->m.data = w->data;
    w->m.scale = w->scale;
}

static const char *bgemm_path(void) { return dsv3_matmul_get_isa() >= DSV3_ISA_AMX ? "bgemm-amx" : dsv3_matmul_get_isa() >= DSV3_ISA_AVX512 ? "bgemm-avx512bf16" : "bgemm-scalar-ref"; }

static int parse_pos(const char *v, const char *name, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < 1 || x > (1L << 20)) return cli_usage_error("bench", "%s: '%s' is not an integer in 1..1048576", name, v);
    *out = (int)x;
    return 0;
}

static int bench_peak(int argc, char **argv) {
    int threads = 0, json = 0;
    for (int i = 2; i < argc; i++) {
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--json")) { json = 1; continue; }
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) { if (parse_pos(argv[++i], "--threads", &threads)) return 2; continue; }
        return cli_usage_error("bench", "unknown option '%s' for bench peak", argv[i]);
    }
    if (threads) omp_set_num_threads(threads);
    const dsv3_peak_kind kinds[] = {DSV3_PEAK_FMA_YMM, DSV3_PEAK_FMA_ZMM, DSV3_PEAK_DPBF16, DSV3_PEAK_AMX_BF16};
    double g[4];
    for (int k = 0; k < 4; k++) g[k] = dsv3_peak_gflops(kinds[k], 0);
    const int nth = omp_get_max_threads();
    if (json) {
        printf("{");
        for (int k = 0; k < 4; k++) printf("\"%s\":%.1f,", dsv3_peak_name(kinds[k]), g[k]);
        printf("\"isa\":\"%s\",\"threads\":%d}\n", dsv3_isa_name(dsv3_matmul_get_isa()), nth);
    } else {
        for (int k = 0; k < 4; k++)
            if (g[k] < 0) printf("%-20s not available at the %s level\n", dsv3_peak_name(kinds[k]), dsv3_isa_name(dsv3_matmul_get_isa()));
            else printf("%-20s %8.1f GFLOP/s (%d threads)\n", dsv3_peak_name(kinds[k]), g[k], nth);
    }
    return cli_stdout_done("bench", 0);
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) { usage(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    const char *what = argv[1];
    const int gemm = !strcmp(what, "gemm");
    if (!strcmp(what, "peak")) return bench_peak(argc, argv);
    if (!gemm && strcmp(what, "gemv")) return cli_usage_error("bench", "unknown benchmark '%s' (gemm, gemv or peak)", what);
    int M = gemm ? 0 : 1, N = 0, K = 0, threads = 0, json = 0;
    const char *weights = NULL, *form = "fwd";
    int cached = 0;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (cli_is_help(k)) { usage(stdout); return 0; }
        if (!strcmp(k, "--json")) { json = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", k);
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(k, "--m") && gemm) bad = parse_pos(v, k, &M);
        else if (!strcmp(k, "--n")) bad = parse_pos(v, k, &N);
        else if (!strcmp(k, "--k")) bad = parse_pos(v, k, &K);
        else if (!strcmp(k, "--threads")) bad = parse_pos(v, k, &threads);
        else if (!strcmp(k, "--weights")) weights = v;
        else if (!strcmp(k, "--form") && gemm) form = v;
        else if (!strcmp(k, "--pack") && gemm) {
            if (!strcmp(v, "cached")) cached = 1;
            else if (!strcmp(v, "per-call")) cached = 0;
            else return cli_usage_error("bench", "--pack: '%s' is not per-call or cached", v);
        }
        else if (!strcmp(k, "--act") && gemm) {
            if (!strcmp(v, "bf16")) dsv3_matmul_set_act_bf16(1);
            else if (!strcmp(v, "f32")) dsv3_matmul_set_act_bf16(0);
            else return cli_usage_error("bench", "--act: '%s' is not f32 or bf16", v);
        }
        else return cli_usage_error("bench", "unknown option '%s' for bench %s", k, what);
        if (bad) return 2;
    }
    if (!M || !N || !K) return cli_usage_error("bench", gemm ? "--m, --n and --k are required" : "--n and --k are required");
    if (!weights) return cli_usage_error("bench", "--weights f32|bf16|fp8 is required");
    dsv3_dtype dt;
    if (!strcmp(weights, "f32")) dt = DSV3_F32;
    else if (!strcmp(weights, "bf16")) dt = DSV3_BF16;
    else if (!strcmp(weights, "fp8")) dt = DSV3_F8_E4M3;
    else return cli_usage_error("bench", "--weights: '%s' is not f32, bf16 or fp8", weights);
    const int fwd = !strcmp(form, "fwd"), dgrad = !strcmp(form, "dgrad"), wgrad = !strcmp(form, "wgrad");
    if (!fwd && !dgrad && !wgrad) return cli_usage_error("bench", "--form: '%s' is not fwd, dgrad or wgrad", form);
    if (!fwd && dt == DSV3_F8_E4M3)
        return cli_usage_error("bench", "--form %s: use --weights f32 (the fp32 SGEMM) or bf16 (the bf16-input GEMM of bf16 training)", form);
    const int bf16_train = !fwd && dt == DSV3_BF16; // dgrad/wgrad on fp32 tensors rounded to bf16 (dsv3_bgemm)
    if (bf16_train) dt = DSV3_F32;
    if ((double)M * K > 1 << 28 || (double)N * K > 1 << 30 || (double)M * N > 1 << 28)
        return cli_usage_error("bench", "shape %d x %d x %d is too large for this benchmark", M, N, K);
    if (threads) omp_set_num_threads(threads);

    // gemv: enough copies of W that the cycle is >= 256 MiB (each call streams W from DRAM)
    const size_t wbytes = (size_t)N * K * dsv3_dtype_size(dt);
    int copies = 1;
    if (!gemm) { copies = (int)(((size_t)256 << 20) / (wbytes ? wbytes : 1)) + 1; if (copies > 4096) copies = 4096; }
    wbuf *W = dsv3_calloc((size_t)copies, sizeof(wbuf));
    for (int c = 0; c < copies; c++) make_weight(&W[c], N, K, dt, 1234 + (uint64_t)c);
    uint64_t seed = 99;
    const int rowsA = wgrad ? M : M, colsA = dgrad || wgrad ? N : K; // X (M, K) or dY (M, N)
    float *A = dsv3_malloc(sizeof(float) * (size_t)rowsA * colsA);
    for (size_t i = 0; i < (size_t)rowsA * colsA; i++) A[i] = urand(&seed);
    float *X2 = wgrad ? dsv3_malloc(sizeof(float) * (size_t)M * K) : NULL; // wgrad's X
    if (X2) for (size_t i = 0; i < (size_t)M * K; i++) X2[i] = urand(&seed);
    const size_t out_n = wgrad ? (size_t)N * K : dgrad ? (size_t)M * K : (size_t)M * N;
    float *Y = dsv3_calloc(out_n, sizeof(float));
    const dsv3_backend *be = dsv3_backend_cpu();
    if (cached)
        for (int c = 0; c < copies; c++) dsv3_wpack_region(W[c].data, wbytes);
    dsv3_wpack_reset_stats();

    double t[4096];
    int reps = 0, c = 0;
    double t_end = 0;
    for (int it = -1; it < 4096; it++) {
        const dsv3_mat *w = &W[c].m;
        const float *wf = (const float *)W[c].data;
        double t0 = now_s();
        if (fwd) dsv3_matmul(Y, A, w, M);
        else if (dgrad) (bf16_train ? dsv3_bgemm : be->gemm)(0, 0, M, K, N, 1.0f, A, N, wf, K, 0.0f, Y, K);
        else (bf16_train ? dsv3_bgemm : be->gemm)(1, 0, N, K, M, 1.0f, A, N, X2, K, 1.0f, Y, K);
        double dt_s = now_s() - t0;
        c = (c + 1) % copies;
        if (it < 0) { t_end = now_s() + 0.5; continue; }
        t[reps++] = dt_s;
        if (reps >= 5 && now_s() > t_end) break;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    const double sec = t[reps / 2];
    const char *path = fwd ? dsv3_matmul_path(&W[0].m, M) : bf16_train ? bgemm_path() : be->name;
    char pathbuf[64];
    if (!fwd && !bf16_train) { // the SGEMM micro-kernel of the level: 12 x 32 AVX-512 at avx512 and amx
        dsv3_isa lv = dsv3_matmul_get_isa();
        snprintf(pathbuf, sizeof pathbuf, "backend-%s-sgemm-%s", path, lv >= DSV3_ISA_AVX512 ? "avx512" : dsv3_isa_name(lv));
        path = pathbuf;
    }
    const int nth = omp_get_max_threads();
    const int pack_hits = dsv3_wpack_get_stats().hits > 0;
    if (cached)
        for (int c = 0; c < copies; c++) dsv3_wpack_forget(W[c].data);
    if (gemm) {
        const double gflops = 2.0 * M * N * K / sec / 1e9;
        if (json)
            printf("{\"gflops\":%.3f,\"seconds\":%.6g,\"path\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,\"weights\":\"%s\",\"form\":\"%s\",\"act\":\"%s\",\"threads\":%d,\"reps\":%d,\"isa\":\"%s\",\"pack\":\"%s\"}\n",
                   gflops, sec, path, M, N, K, weights, form, bf16_train || dsv3_matmul_uses_bf16_gemm(&W[0].m, M) ? "bf16" : "f32", nth, reps,
                   dsv3_isa_name(dsv3_matmul_get_isa()), pack_hits ? "cached" : "per-call");
        else
            printf("gemm %s %dx%dx%d %s: %.2f GFLOP/s, %.3f ms per call (median of %d), path %s, W packed %s, %d threads\n", form,
                   M, N, K, weights, gflops, sec * 1e3, reps, path, pack_hits ? "once (cached)" : "per call", nth);
    } else {
        const double gbps = (double)wbytes / sec / 1e9, wps = (double)N * K / sec;
        if (json)
            printf("{\"gbps\":%.3f,\"weights_per_s\":%.6g,\"seconds\":%.6g,\"path\":\"%s\",\"n\":%d,\"k\":%d,\"weights\":\"%s\",\"threads\":%d,\"copies\":%d,\"reps\":%d,\"isa\":\"%s\"}\n",
                   gbps, wps, sec, path, N, K, weights, nth, copies, reps, dsv3_isa_name(dsv3_matmul_get_isa()));
        else
            printf("gemv %dx%d %s: %.2f GB/s of weights (%.3g weights/s), %.3f ms per call (median of %d, %d copies cycled), path %s, %d threads\n",
                   N, K, weights, gbps, wps, sec * 1e3, reps, copies, path, nth);
    }
    for (int i = 0; i < copies; i++) { free(W[i].data); free(W[i].scale); }
    free(W);
    free(A);
    free(X2);
    free(Y);
    return cli_stdout_done("bench", 0);
}
