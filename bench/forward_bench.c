// Forward-pass benchmark (docs/PERF.md, section forward). Built and run by bench/forward_bench.sh.
// Usage: forward_bench MODEL_DIR T REPS [absorb|naive]   |   forward_bench --ghz (core clock)
// Runs dsv3_forward over T random token ids (positions 0..T-1, logits for every position), one
// warm-up then REPS timed runs; prints one line "T=<T> min_s=<s> median_s=<s> tok_s=<t/s> gflops=<GF/s>"
// (tok/s and GFLOP/s from the fastest run: the machine is shared, the minimum is the least disturbed).
// FLOPs counted: 2 x active matmul params per token (dsv3_config_counts) + attention
// 2·L·H·(qk+v) per (query, key) pair with causal T(T+1)/2 pairs.
#include "model/forward.h"
#include "model/config.h"
#include "core/error.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// Core clock from a chain of dependent integer adds (1 cycle each): best of 5 runs.
static double measure_ghz(void) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t v = 1, iters = 20000000;
        double t0 = now();
        for (uint64_t i = 0; i < iters; i++)
            __asm__ volatile("add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\t"
                             "add %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0\n\tadd %0, %0" : "+r"(v));
        double ghz = iters * 10.0 / (now() - t0) / 1e9;
        if (ghz > best) best = ghz;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--ghz")) { printf("%.3f\n", measure_ghz()); return 0; }
    if (argc < 4) { fprintf(stderr, "usage: forward_bench MODEL_DIR T REPS [absorb|naive]\n"); return 2; }
    const int T = atoi(argv[2]), reps = atoi(argv[3]);
    dsv3_attn_mode mode = (argc > 4 && !strcmp(argv[4], "naive")) ? DSV3_ATTN_NAIVE : DSV3_ATTN_ABSORB;
    dsv3_model m;
    if (dsv3_model_load(&m, argv[1]) != 0) { fprintf(stderr, "%s\n", dsv3_error()); return 2; }
    const dsv3_config *c = &m.cfg;
    int32_t *ids = malloc(sizeof(int32_t) * T);
    unsigned s = 12345;
    for (int t = 0; t < T; t++) { s = s * 1103515245u + 12345u; ids[t] = 3 + (int)((s >> 8) % (unsigned)(c->vocab_size - 3)); }
    float *logits = malloc(sizeof(float) * (size_t)T * c->vocab_size);
    dsv3_fwd f;
    dsv3_fwd_init(&f, &m);
    dsv3_forward_opts o = {.attn = mode, .logits = logits};
    double *ts = malloc(sizeof(double) * (reps + 1));
    if (dsv3_forward(&f, ids, T, &o) != 0) { fprintf(stderr, "%s\n", dsv3_error()); return 1; } // warm-up (page-in)
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        dsv3_forward(&f, ids, T, &o);
        ts[r] = now() - t0;
    }
    qsort(ts, reps, sizeof(double), cmpd);
    double med = ts[reps / 2], best = ts[0];
    dsv3_counts k;
    dsv3_config_counts(c, &k);
    double flops = k.flops_per_token * T + k.attn_flops_per_ctx_token * (double)T * (T + 1) / 2.0;
    printf("T=%d min_s=%.4f median_s=%.4f tok_s=%.1f gflops=%.2f\n", T, best, med, T / best, flops / best / 1e9);
    free(ts); free(ids); free(logits);
    dsv3_fwd_free(&f);
    dsv3_model_free(&m);
    return 0;
}
