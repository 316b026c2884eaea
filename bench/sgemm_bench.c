// Training GEMM benchmark: GFLOP/s of dsv3_backend_cpu()->gemm for the three training forms
// (fprop Y = X·Wᵀ, dgrad dX = dY·W, wgrad dW += dYᵀ·X) against the measured FP32 FMA peak of this
// machine (a register-only FMA loop on every thread). Not part of `make test`.
// Usage: sgemm_bench [quick]
#pragma GCC target("avx2,fma")
#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// 10 independent FMA chains (enough to cover 2 FMA pipes x 4-5 cycles latency), 8 lanes each.
static double fma_peak(int threads, double secs) {
    long iters = 1L << 22;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
            __m256 a0 = _mm256_set1_ps(1), a1 = _mm256_set1_ps(2), a2 = _mm256_set1_ps(3), a3 = _mm256_set1_ps(4);
            __m256 a4 = _mm256_set1_ps(5), a5 = _mm256_set1_ps(6), a6 = _mm256_set1_ps(7), a7 = _mm256_set1_ps(8);
            __m256 a8 = _mm256_set1_ps(9), a9 = _mm256_set1_ps(10);
            for (long it = 0; it < iters; it++) {
                a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
                a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
                a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
                a9 = _mm256_fmadd_ps(a9, m, c);
                __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                                 "+x"(a8), "+x"(a9));
            }
            __m256 a[10] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9};
            float t[8];
            __m256 s = a[0];
            for (int i = 1; i < 10; i++) s = _mm256_add_ps(s, a[i]);
            _mm256_storeu_ps(t, s);
            sink += t[0];
        }
        double dt = now() - t0;
        double gf = 2.0 * 8 * 10 * iters * threads / dt / 1e9;
        if (gf > best) best = gf;
        if (sink == 12345.0f) printf(" ");
        (void)secs;
    }
    return best;
}

static void fill(float *x, size_t n) {
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; x[i] = (float)((s >> 8) & 0xFFFF) / 65536.0f - 0.5f; }
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    const dsv3_backend *be = dsv3_backend_cpu();
    int nth = omp_get_max_threads();
    double p1 = fma_peak(1, 0), pn = fma_peak(nth, 0);
    printf("isa %s, %d threads; measured FMA peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (%d threads)\n\n",
           dsv3_isa_name(dsv3_matmul_get_isa()), nth, p1, pn, nth);
    int shapes[][3] = {{2048, 256, 256}, {2048, 512, 512}, {2048, 1024, 1024}, {2048, 1024, 256}, {2048, 256, 1024},
                       {2048, 2048, 512}};
    printf("| M | out | in | fprop Y=X·Wᵀ GFLOP/s | dgrad dX=dY·W GFLOP/s | wgrad dW+=dYᵀ·X GFLOP/s | %% of peak (fprop/dgrad/wgrad) |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], out = shapes[s][1], in = shapes[s][2];
        float *X = aligned_alloc(64, sizeof(float) * M * in), *W = aligned_alloc(64, sizeof(float) * out * in);
        float *Y = aligned_alloc(64, sizeof(float) * M * out), *dX = aligned_alloc(64, sizeof(float) * M * in);
        float *dW = aligned_alloc(64, sizeof(float) * out * in);
        fill(X, (size_t)M * in); fill(W, (size_t)out * in); fill(Y, (size_t)M * out);
        memset(dW, 0, sizeof(float) * out * in);
        double gf[3];
        for (int form = 0; form < 3; form++) {
            double flops = 2.0 * M * out * in, best = 1e30;
            int reps = quick ? 3 : 10;
            for (int r = 0; r < reps + 1; r++) {
                double t0 = now();
                if (form == 0) be->gemm(0, 1, M, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
                else if (form == 1) be->gemm(0, 0, M, in, out, 1.0f, Y, out, W, in, 0.0f, dX, in);
                else be->gemm(1, 0, out, in, M, 1.0f, Y, out, X, in, 1.0f, dW, in);
                double dt = now() - t0;
                if (r > 0 && dt < best) best = dt; // first call warms the packing buffers and threads
            }
            gf[form] = flops / best / 1e9;
        }
        printf("| %d | %d | %d | %.1f | %.1f | %.1f | %.0f%% / %.0f%% / %.0f%% |\n", M, out, in, gf[0], gf[1], gf[2],
               100 * gf[0] / pn, 100 * gf[1] / pn, 100 * gf[2] / pn);
        free(X); free(W); free(Y); free(dX); free(dW);
    }
    return 0;
}
