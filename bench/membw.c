/* membw: DRAM read bandwidth, the denominator of the decode roofline in bench/decode_bench.sh.
 *
 *   cc -O2 -march=native -pthread bench/membw.c -o membw
 *   ./membw [--threads 2] [--streams 4] [--mb 1024] [--reps 10] [--json]
 *
 * Each of T threads sums its own contiguous slice of one buffer of --mb MiB (far larger than the last-level
 * cache; each thread first-touches its slice) as --streams interleaved streams (its slice cut in S parts
 * read side by side, like a GEMV reading S weight rows), 256-bit loads (AVX2 when built for it, plain C
 * otherwise). One rep = every thread
 * reads its slice once, between two barriers; GB/s = bytes / wall time of the rep (1 GB = 1e9 bytes).
 * Prints the best and the median of --reps reps (after one warm-up rep); --json prints one JSON object. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    float *p;
    size_t n; /* floats, multiple of 32 */
    int reps, streams;
    double sink;
} job_t;

static pthread_barrier_t bar;

/* Sum of n floats at p read as S interleaved streams (S equal parts read side by side, one 64-byte line of
 * each per step: like a GEMV reading several weight rows at once; one stream per core leaves bandwidth
 * unused on some machines). n is a multiple of 16 * S. */
static double sum_slice(const float *p, size_t n, int S) {
    const size_t part = n / S;
#if defined(__AVX2__)
    __m256 a[2 * 8];
    for (int k = 0; k < 2 * S; k++) a[k] = _mm256_setzero_ps();
    for (size_t i = 0; i < part; i += 16)
        for (int k = 0; k < S; k++) {
            const float *q = p + (size_t)k * part + i;
            a[2 * k] = _mm256_add_ps(a[2 * k], _mm256_load_ps(q));
            a[2 * k + 1] = _mm256_add_ps(a[2 * k + 1], _mm256_load_ps(q + 8));
        }
    __m256 t = _mm256_setzero_ps();
    for (int k = 0; k < 2 * S; k++) t = _mm256_add_ps(t, a[k]);
    float f[8];
    _mm256_storeu_ps(f, t);
    return (double)f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
#else
    float a[16] = {0};
    for (size_t i = 0; i < part; i += 16)
        for (int k = 0; k < S; k++)
            for (int j = 0; j < 16; j++) a[j] += p[(size_t)k * part + i + j];
    double t = 0;
    for (int j = 0; j < 16; j++) t += a[j];
    return t;
#endif
}

static void *worker(void *arg) {
    job_t *j = arg;
    for (size_t i = 0; i < j->n; i++) j->p[i] = (float)(i & 7) * 0.125f; /* first touch: own slice */
    for (int r = 0; r <= j->reps; r++) { /* rep 0 is the warm-up */
        pthread_barrier_wait(&bar);
        j->sink += sum_slice(j->p, j->n, j->streams);
        pthread_barrier_wait(&bar);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int T = 2, reps = 10, json = 0, S = 4;
    size_t mb = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--streams") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: membw [--threads 2] [--streams 4] [--mb 1024] [--reps 10] [--json]\n");
            return 2;
        }
    }
    if (T < 1 || T > 256 || S < 1 || S > 8 || reps < 1 || mb < 1) {
        fprintf(stderr, "membw: bad arguments\n");
        return 2;
    }
    size_t n = mb << 18; /* floats */
    size_t per = n / T;
    per -= per % (16 * (size_t)S);
    n = per * T;
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, n * sizeof(float))) {
        fprintf(stderr, "membw: out of memory (%zu MiB)\n", mb);
        return 1;
    }
    /* the main thread takes the wall-clock stamps between the barriers */
    job_t *jobs = calloc(T, sizeof *jobs);
    pthread_t *th = calloc(T, sizeof *th);
    double *dt = calloc(reps + 1, sizeof *dt);
    pthread_barrier_init(&bar, NULL, T + 1);
    for (int t = 0; t < T; t++) {
        jobs[t] = (job_t){buf + per * t, per, reps, S, 0};
        pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    for (int r = 0; r <= reps; r++) {
        pthread_barrier_wait(&bar); /* start: every worker's first touch (r = 0) or previous rep is done */
        double t0 = now();
        pthread_barrier_wait(&bar); /* end of the rep */
        dt[r] = now() - t0;
    }
    double sink = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        sink += jobs[t].sink;
    }
    double bytes = (double)n * sizeof(float);
    double *g = calloc(reps, sizeof *g);
    for (int r = 0; r < reps; r++) g[r] = bytes / dt[r + 1] / 1e9;
    qsort(g, reps, sizeof *g, cmp_d);
    double best = g[reps - 1], med = reps & 1 ? g[reps / 2] : 0.5 * (g[reps / 2 - 1] + g[reps / 2]);
    if (json)
        printf("{\"threads\": %d, \"streams\": %d, \"mib\": %zu, \"reps\": %d, \"best_gbps\": %.3f, \"median_gbps\": %.3f, "
               "\"min_gbps\": %.3f, \"checksum\": %.6g}\n",
               T, S, mb, reps, best, med, g[0], sink);
    else
        printf("membw: %d threads x %d streams, %zu MiB read per rep, %d reps: best %.2f GB/s, median %.2f GB/s, min %.2f GB/s "
               "(checksum %.6g)\n",
               T, S, mb, reps, best, med, g[0], sink);
    free(g);
    free(dt);
    free(th);
    free(jobs);
    free(buf);
    return 0;
}
