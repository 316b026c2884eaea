// Benchmark of dsv3_matmul (see docs/PERF.md, section matmul). Built and run by bench/matmul_bench.sh.
// Prints markdown table rows. Measures, in the same run:
//   - the core clock (a chain of dependent integer adds, 1 cycle each on this x86 core) -> fp32 peak
//     = threads x 2 FMA pipes x 8 lanes x 2 flops x clock (AVX2: two 256-bit FMA units per core);
//   - DRAM read bandwidth: 2-thread AVX2 sum over a 256 MiB buffer (8x L3; stream-like "read" kernel);
//   - GEMV (M = 1) on expert / dense-MLP sized weights: GB/s of weight bytes; several copies of each
//     matrix are cycled through so the working set is >= 4x the 32 MiB L3 (each call reads from DRAM,
//     as when a token visits different experts);
//   - GEMM (M = 64, 256, 1024): GFLOP/s and fraction of fp32 peak.
// Timing: the development machine is shared (other sessions keep the load average well above its
// 2 cores, and the kernel's autogroup scheduling gives each session an equal share, so neither
// wall time nor nice helps). Every time here is therefore the CRITICAL-PATH CPU TIME: for a batch
// of calls, the on-CPU time of each thread of the process (per-thread CPU clocks, ns resolution,
// read for every task in /proc/self/task), with OMP_WAIT_POLICY=PASSIVE so a thread waiting at the
// join sleeps instead of spinning; time per call = max over threads / calls, best of several
// batches. On an idle machine that is the wall time (threads run concurrently). Memory stalls
// count as CPU time; a caveat for the DRAM-bound rows: when the scheduler time-slices the two
// threads they may not overlap, and one thread alone sees more of the bandwidth. The DRAM read
// bandwidth and bench/matmul_torch.py are measured the same way, so ratios are like for like.
// Usage: matmul_bench [quick]
#include "kernels/cpu/matmul.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double thread_cpu_now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static double measure_ghz(void) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t v = 1, iters = 20000000;
        double t0 = thread_cpu_now();
        for (uint64_t i = 0; i < iters; i++)
            __asm__ volatile("add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t"
                             "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t" : "+r"(v));
        double ghz = 10.0 * iters / (thread_cpu_now() - t0) / 1e9;
        if (ghz > best) best = ghz;
    }
    return best;
}

// Per-thread CPU clocks of every thread of this process (Linux: clockid from the TID).
#define MAXT 64
typedef struct { int n; long tid[MAXT]; double t[MAXT]; } tsnap;
static void snap(tsnap *s) {
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) && s->n < MAXT) {
        long tid = atol(e->d_name);
        if (tid <= 0) continue;
        struct timespec ts;
        if (clock_gettime((clockid_t)((~(unsigned long)tid << 3) | 6), &ts) == 0) {
            s->tid[s->n] = tid; s->t[s->n] = ts.tv_sec + 1e-9 * ts.tv_nsec; s->n++;
        }
    }
    if (d) closedir(d);
}
// max over threads of on-CPU seconds between a and b
static double crit(const tsnap *a, const tsnap *b) {
    double m = 0;
    for (int i = 0; i < b->n; i++) {
        double t0 = 0;
        for (int j = 0; j < a->n; j++) if (a->tid[j] == b->tid[i]) t0 = a->t[j];
        if (b->t[i] - t0 > m) m = b->t[i] - t0;
    }
    return m;
}

// Each thread sums its half of the buffer as 4 interleaved streams (like the GEMV's 4 weight rows;
// a single stream per core leaves bandwidth unused on this machine).
__attribute__((target("avx2"))) static double read_once(const float *a, size_t n) {
    double total = 0;
    #pragma omp parallel reduction(+ : total)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        size_t per = n / nt / 4 / 32 * 32;
        const float *p0 = a + (size_t)id * per * 4, *p1 = p0 + per, *p2 = p1 + per, *p3 = p2 + per;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = 0; i < per; i += 16) {
            s0 = _mm256_add_ps(s0, _mm256_add_ps(_mm256_load_ps(p0 + i), _mm256_load_ps(p0 + i + 8)));
            s1 = _mm256_add_ps(s1, _mm256_add_ps(_mm256_load_ps(p1 + i), _mm256_load_ps(p1 + i + 8)));
            s2 = _mm256_add_ps(s2, _mm256_add_ps(_mm256_load_ps(p2 + i), _mm256_load_ps(p2 + i + 8)));
            s3 = _mm256_add_ps(s3, _mm256_add_ps(_mm256_load_ps(p3 + i), _mm256_load_ps(p3 + i + 8)));
        }
        float t[8];
        _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (int k = 0; k < 8; k++) total += t[k];
    }
    return total;
}

// Read bandwidth over passes of the buffer (all threads, static split), best of several.
static double read_bw(const float *a, size_t n) {
    double best = 0;
    for (int rep = 0; rep < 10; rep++) {
        tsnap s0, s1;
        snap(&s0);
        double total = read_once(a, n);
        snap(&s1);
        if (total == 12345.678) printf("#");
        double gbs = (double)(n / omp_get_max_threads() / 4 / 32 * 32) * omp_get_max_threads() * 4 * 4.0 / crit(&s0, &s1) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }
static float rndf(void) { return (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0); }

static dsv3_mat make(dsv3_dtype t, int rows, int cols) {
    size_t n = (size_t)rows * cols, es = dsv3_dtype_size(t);
    void *d = aligned_alloc(64, (n * es + 63) / 64 * 64);
    #pragma omp parallel
    {
        uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(omp_get_thread_num() + 1);
        #pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            float v = (float)((s >> 40) / 8388608.0 - 1.0);
            if (t == DSV3_F32) ((float *)d)[i] = v;
            else if (t == DSV3_BF16) ((uint16_t *)d)[i] = dsv3_f32_to_bf16(v);
            else { uint8_t b = (uint8_t)(s >> 20); if ((b & 0x7f) == 0x7f) b ^= 1; ((uint8_t *)d)[i] = b; }
        }
    }
    dsv3_mat w = {.dtype = t, .data = d, .rows = rows, .cols = cols, .block_rows = 128, .block_cols = 128};
    if (t == DSV3_F8_E4M3) {
        size_t ns = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
        float *s = malloc(ns * sizeof(float));
        for (size_t i = 0; i < ns; i++) s[i] = 0.001f + 0.001f * rndf();
        w.scale = s;
    }
    return w;
}
static void unmake(dsv3_mat *w) { free((void *)w->data); free((void *)w->scale); }

// Critical-path CPU seconds per call: batches of calls (cycling over ncopy matrices) for >= min_s
// seconds of wall time, best batch.
static double time_calls(float *y, const float *x, dsv3_mat *ws, int ncopy, int M, double min_s) {
    dsv3_matmul(y, x, &ws[0], M); // warm-up (thread pool)
    double best = 1e30, t_end = now() + min_s;
    int i = 0, batches = 0, n = ncopy < 3 ? 3 : ncopy;
    while (now() < t_end || batches < 2) {
        tsnap s0, s1;
        snap(&s0);
        for (int k = 0; k < n; k++) { dsv3_matmul(y, x, &ws[i], M); i = (i + 1) % ncopy; }
        snap(&s1);
        double t = crit(&s0, &s1) / n;
        if (t < best) best = t;
        batches++;
    }
    return best;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    int nt = omp_get_max_threads();
    double ghz = measure_ghz();
    double peak = nt * 2 * 8 * 2 * ghz;
    size_t nbw = (size_t)1 << 26; // 256 MiB of floats (8x L3)
    float *buf = aligned_alloc(64, nbw * 4);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nbw; i++) buf[i] = 1.0f;
    double bw = read_bw(buf, nbw);
    free(buf);
    double la[1] = {0};
    getloadavg(la, 1); // shown: the machine is shared (see the timing note)
    printf("machine: %d threads, clock %.2f GHz (measured), fp32 FMA peak %.1f GFLOP/s, DRAM read %.1f GB/s (measured), isa %s, load average %.1f\n\n",
           nt, ghz, peak, bw, dsv3_isa_name(dsv3_matmul_get_isa()), la[0]);

    static const int gemv_shapes[][2] = {{2048, 7168}, {7168, 2048}, {18432, 7168}};
    static const dsv3_dtype types[] = {DSV3_F8_E4M3, DSV3_BF16, DSV3_F32};
    printf("GEMV (M = 1), weights read from DRAM:\n\n");
    printf("| W (out x in) | dtype | weight MB | ms / call | GB/s | %% of DRAM read BW | G weights/s |\n|---|---|---|---|---|---|---|\n");
    double gw[3][3];
    for (int si = 0; si < 3; si++) {
        int N = gemv_shapes[si][0], K = gemv_shapes[si][1];
        float *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * N);
        for (int i = 0; i < K; i++) x[i] = rndf();
        for (int ti = 0; ti < 3; ti++) {
            double mb = (double)N * K * dsv3_dtype_size(types[ti]) / 1e6;
            int ncopy = (int)(128.0 / mb + 0.999);
            if (ncopy < 1) ncopy = 1;
            dsv3_mat ws[64];
            for (int c = 0; c < ncopy; c++) ws[c] = make(types[ti], N, K);
            double t = time_calls(y, x, ws, ncopy, 1, quick ? 0.2 : 1.0);
            double gbs = mb / 1e3 / t;
            gw[si][ti] = (double)N * K / t / 1e9;
            printf("| %d x %d | %s | %.1f | %.3f | %.1f | %.0f%% | %.2f |\n", N, K, dsv3_dtype_name(types[ti]), mb, t * 1e3, gbs,
                   100 * gbs / bw, (double)N * K / t / 1e9);
            fflush(stdout);
            for (int c = 0; c < ncopy; c++) unmake(&ws[c]);
        }
        free(x); free(y);
    }
    printf("\nFP8 / BF16 GEMV weight throughput: %.2fx, %.2fx, %.2fx (ideal when memory-bound: 2x).\n",
           gw[0][0] / gw[0][1], gw[1][0] / gw[1][1], gw[2][0] / gw[2][1]);

    printf("\nSmall M (GEMV path up to M = %d, packed GEMM above), W 2048 x 7168 in L3-or-DRAM (one copy):\n\n", DSV3_MATMUL_GEMV_MAX_M);
    printf("| M | dtype | ms / call | GFLOP/s |\n|---|---|---|---|\n");
    {
        int N = 2048, K = 7168;
        static const int Ms[] = {1, 2, 4, 8, 16, 24, 25, 32};
        float *x = malloc(sizeof(float) * 32 * K), *y = malloc(sizeof(float) * 32 * N);
        for (int i = 0; i < 32 * K; i++) x[i] = rndf();
        for (int ti = 0; ti < 2; ti++) {
            dsv3_mat w = make(types[ti], N, K);
            for (int mi = 0; mi < 8; mi++) {
                double t = time_calls(y, x, &w, 1, Ms[mi], quick ? 0.1 : 0.4);
                printf("| %d | %s | %.3f | %.1f |\n", Ms[mi], dsv3_dtype_name(types[ti]), t * 1e3, 2.0 * Ms[mi] * N * K / t / 1e9);
            }
            unmake(&w);
        }
        free(x); free(y);
    }

    printf("\nGEMM, W 2048 x 7168 (out x in), x M x 7168, fp32 peak %.1f GFLOP/s:\n\n", peak);
    printf("| M | dtype | ms / call | GFLOP/s | %% of fp32 peak |\n|---|---|---|---|---|\n");
    {
        int N = 2048, K = 7168;
        static const int Ms[] = {64, 256, 1024};
        float *x = malloc(sizeof(float) * 1024 * K), *y = malloc(sizeof(float) * 1024 * N);
        for (size_t i = 0; i < (size_t)1024 * K; i++) x[i] = rndf();
        for (int ti = 0; ti < 3; ti++) {
            dsv3_mat w = make(types[ti], N, K);
            for (int mi = 0; mi < 3; mi++) {
                double t = time_calls(y, x, &w, 1, Ms[mi], quick ? 0.2 : 1.0);
                double gf = 2.0 * Ms[mi] * N * K / t / 1e9;
                printf("| %d | %s | %.2f | %.1f | %.0f%% |\n", Ms[mi], dsv3_dtype_name(types[ti]), t * 1e3, gf, 100 * gf / peak);
                fflush(stdout);
            }
            unmake(&w);
        }
        free(x); free(y);
    }
    return 0;
}
