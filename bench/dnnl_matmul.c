/* dnnl_matmul: times one matmul form through oneDNN (Debian's libdnnl-dev, the C API of oneDNN 2.x),
 * the peer of `dsv3 bench gemm` in bench/kernels_bench.sh.
 *
 *   cc -O2 bench/dnnl_matmul.c -ldnnl -o dnnl_matmul
 *   ./dnnl_matmul --m M --n N --k K --dtype f32|bf16 [--form fwd|dgrad|wgrad]
 *
 * Shapes as `dsv3 bench gemm`: fwd Y[M,N] = X[M,K]·Wᵀ with W stored [N,K]; dgrad dX[M,K] = dY[M,N]·W;
 * wgrad dW[N,K] = dYᵀ·X (overwritten, not accumulated). Operands in plain row-major layouts given
 * by strides (oneDNN reorders or not as it likes inside the primitive; no weight pre-packing between
 * calls, as dsv3 packs per call); f32 output. One warm-up call, then calls until 0.5 s (at least 5);
 * prints {"gflops", "seconds" (median), "impl"} as one JSON line. Threads: OMP_NUM_THREADS. */
#include <dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { fprintf(stderr, "dnnl_matmul: %s failed (%d)\n", #x, (int)s_); exit(1); } } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static void *filled(size_t n, dnnl_data_type_t dt, uint64_t seed) {
    size_t es = dt == dnnl_bf16 ? 2 : 4;
    void *p = aligned_alloc(64, (n * es + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        float v = (float)((seed >> 40) & 0xFFFF) / 65536.0f - 0.5f;
        if (dt == dnnl_bf16) { uint32_t u; memcpy(&u, &v, 4); ((uint16_t *)p)[i] = (uint16_t)(u >> 16); }
        else ((float *)p)[i] = v;
    }
    return p;
}

int main(int argc, char **argv) {
    long M = 0, N = 0, K = 0;
    const char *dts = "f32", *form = "fwd";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--m")) M = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--n")) N = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--k")) K = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) dts = argv[i + 1];
        else if (!strcmp(argv[i], "--form")) form = argv[i + 1];
        else { fprintf(stderr, "dnnl_matmul: unknown option %s\n", argv[i]); return 2; }
    }
    if (M <= 0 || N <= 0 || K <= 0) { fprintf(stderr, "usage: dnnl_matmul --m M --n N --k K --dtype f32|bf16 [--form fwd|dgrad|wgrad]\n"); return 2; }
    dnnl_data_type_t dt = !strcmp(dts, "bf16") ? dnnl_bf16 : dnnl_f32;
    // (rows, inner) of src and weights in oneDNN's terms: dst[r, c] = Σ_i src[r, i] · wei[i, c]
    long sr, si, wc;
    dnnl_dims_t s_st, w_st;
    if (!strcmp(form, "fwd")) { sr = M; si = K; wc = N; s_st[0] = K; s_st[1] = 1; w_st[0] = 1; w_st[1] = K; }       // W [N,K] as [K,N]
    else if (!strcmp(form, "dgrad")) { sr = M; si = N; wc = K; s_st[0] = N; s_st[1] = 1; w_st[0] = K; w_st[1] = 1; } // dY [M,N], W [N,K]
    else if (!strcmp(form, "wgrad")) { sr = N; si = M; wc = K; s_st[0] = 1; s_st[1] = N; w_st[0] = K; w_st[1] = 1; } // dYᵀ of [M,N], X [M,K]
    else { fprintf(stderr, "dnnl_matmul: --form %s is not fwd, dgrad or wgrad\n", form); return 2; }
    dnnl_engine_t eng;
    dnnl_stream_t st;
    OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    OK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t smd, wmd, dmd;
    dnnl_dims_t sd = {sr, si}, wd = {si, wc}, dd = {sr, wc}, dst_st = {wc, 1};
    OK(dnnl_memory_desc_init_by_strides(&smd, 2, sd, dt, s_st));
    OK(dnnl_memory_desc_init_by_strides(&wmd, 2, wd, dt, w_st));
    OK(dnnl_memory_desc_init_by_strides(&dmd, 2, dd, dnnl_f32, dst_st));
    dnnl_matmul_desc_t md;
    OK(dnnl_matmul_desc_init(&md, &smd, &wmd, NULL, &dmd));
    dnnl_primitive_desc_t pd;
    OK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_primitive_t prim;
    OK(dnnl_primitive_create(&prim, pd));
    void *sp = filled((size_t)sr * si, dt, 1), *wp = filled((size_t)si * wc, dt, 2), *dp = filled((size_t)sr * wc, dnnl_f32, 3);
    dnnl_memory_t sm, wm, dm;
    OK(dnnl_memory_create(&sm, &smd, eng, sp));
    OK(dnnl_memory_create(&wm, &wmd, eng, wp));
    OK(dnnl_memory_create(&dm, &dmd, eng, dp));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}};
    static double t[4096];
    int reps = 0;
    double t_end = 0;
    for (int it = -1; it < 4096; it++) {
        double t0 = now_s();
        OK(dnnl_primitive_execute(prim, st, 3, args));
        OK(dnnl_stream_wait(st));
        double dt_s = now_s() - t0;
        if (it < 0) { t_end = now_s() + 0.5; continue; }
        t[reps++] = dt_s;
        if (reps >= 5 && now_s() > t_end) break;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    double sec = t[reps / 2];
    const dnnl_version_t *v = dnnl_version();
    printf("{\"gflops\":%.3f,\"seconds\":%.6g,\"impl\":\"%s\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"dtype\":\"%s\",\"form\":\"%s\",\"onednn\":\"%d.%d.%d\",\"reps\":%d}\n",
           2.0 * M * N * K / sec / 1e9, sec, impl, M, N, K, dts, form, v->major, v->minor, v->patch, reps);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(sm); dnnl_memory_destroy(wm); dnnl_memory_destroy(dm);
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    free(sp); free(wp); free(dp);
    return 0;
}
