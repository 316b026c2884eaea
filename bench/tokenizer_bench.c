// Encode throughput of the C tokenizer (built and run by bench/tokenizer_bench.sh, not by make).
// usage: tokenizer_bench TOKENIZER_JSON DOCS_FILE [REPEATS]
// DOCS_FILE holds documents separated by NUL bytes. Prints one key=value line per measurement and
// an order-sensitive hash of all ids so the HF side can check it produced the same tokens.
#include "core/error.h"
#include "core/fileio.h"
#include "tokenizer/tokenizer.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
// CPU time of this process: on a shared, oversubscribed machine it measures our work, not the wait.
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s TOKENIZER_JSON DOCS_FILE [REPEATS]\n", argv[0]); return 2; }
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    double t0 = now_s();
    dsv3_tokenizer *t = dsv3_tokenizer_load(argv[1]);
    if (!t) { fprintf(stderr, "error: %s\n", dsv3_error()); return 2; }
    printf("load_s=%.3f\n", now_s() - t0);
    size_t len;
    char *data = dsv3_read_file(argv[2], &len);
    if (!data) { fprintf(stderr, "error: %s\n", dsv3_error()); return 2; }
    size_t ndoc = 0, cap = 1024, *off = malloc(cap * sizeof *off), *dl = malloc(cap * sizeof *dl);
    for (size_t p = 0; p <= len;) {
        char *z = memchr(data + p, 0, len - p);
        size_t e = z ? (size_t)(z - data) : len;
        if (ndoc == cap) cap *= 2, off = realloc(off, cap * sizeof *off), dl = realloc(dl, cap * sizeof *dl);
        off[ndoc] = p, dl[ndoc] = e - p, ndoc++;
        p = e + 1;
    }
    size_t bytes = len - (ndoc - 1);
    // single thread, one encode call per document
    double best = 1e30, best_cpu = 1e30;
    uint64_t hash = 0;
    size_t ntok = 0;
    for (int r = 0; r < reps; r++) {
        double s = now_s(), sc = cpu_s();
        uint64_t h = 1469598103934665603ull;
        size_t nt = 0;
        for (size_t d = 0; d < ndoc; d++) {
            int32_t *ids;
            size_t n;
            if (dsv3_tokenizer_encode(t, data + off[d], dl[d], 0, &ids, &n)) { fprintf(stderr, "error: %s\n", dsv3_error()); return 1; }
            for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)(uint32_t)ids[i]) * 1099511628211ull;
            nt += n;
            free(ids);
        }
        double el = now_s() - s, elc = cpu_s() - sc;
        if (el < best) best = el;
        if (elc < best_cpu) best_cpu = elc;
        hash = h, ntok = nt;
    }
    printf("docs=%zu bytes=%zu tokens=%zu hash=%016llx\n", ndoc, bytes, ntok, (unsigned long long)hash);
    printf("c_1thread_s=%.3f c_1thread_mbps=%.2f c_1thread_cpu_s=%.3f c_1thread_cpu_mbps=%.2f\n", best,
           bytes / best / 1e6, best_cpu, bytes / best_cpu / 1e6);
    // all threads (OpenMP), documents split dynamically
    int nth = omp_get_max_threads();
    best = 1e30;
    for (int r = 0; r < reps; r++) {
        double s = now_s();
        #pragma omp parallel for schedule(dynamic, 16)
        for (size_t d = 0; d < ndoc; d++) {
            int32_t *ids;
            size_t n;
            if (dsv3_tokenizer_encode(t, data + off[d], dl[d], 0, &ids, &n) == 0) free(ids);
        }
        double el = now_s() - s;
        if (el < best) best = el;
    }
    printf("c_threads=%d c_nthread_s=%.3f c_nthread_mbps=%.2f\n", nth, best, bytes / best / 1e6);
    free(off), free(dl), free(data);
    dsv3_tokenizer_free(t);
    return 0;
}
