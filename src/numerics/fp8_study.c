// The accumulation-precision study: how much an FP8 GEMM loses when its accumulator keeps only ~14 bits,
// and how promotion to fp32 every N_C elements recovers it (DeepSeek-V3 §3.3.2). See docs/FP8.md.
#include "core/error.h"
#include "numerics/fp8_gemm.h"
#include "numerics/quant.h"
#include <math.h>
#include <stdlib.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return ((splitmix(s) >> 11) + 0.5) * 0x1p-53; }

static void fill(float *x, size_t n, int dist, uint64_t *s) {
    for (size_t i = 0; i < n; i++)
        x[i] = dist == 1 ? (float)unif(s)
                         : (float)(sqrt(-2.0 * log(unif(s))) * cos(6.283185307179586 * unif(s)));
}

uint64_t dsv3_fp8_study_bytes(int M, int N, int K) {
    const uint64_t m = (uint64_t)M, n = (uint64_t)N, k = (uint64_t)K, nk = (k + 127) / 128, nn = (n + 127) / 128;
    return 5 * (m + n) * k + 4 * (m + nn) * nk + 20 * m * n;
}

int dsv3_fp8_study_check(const dsv3_fp8_study_cfg *cfg, int K) {
    const int M = cfg->M, N = cfg->N;
    if (M < 1 || N < 1 || K < 1 || M > (1 << 20) || N > (1 << 20) || K > (1 << 24))
        return dsv3_errorf("fp8 study: M, N must be in [1, 2^20] and K in [1, 2^24] (found %d, %d, %d)", M, N, K);
    const uint64_t need = dsv3_fp8_study_bytes(M, N, K);
    if (need > DSV3_FP8_STUDY_MAX_BYTES)
        return dsv3_errorf("fp8 study: M=%d N=%d K=%d needs %.2f GiB of working memory, above the %.0f GiB limit "
                           "(use a smaller --m/--n/--k)", M, N, K, need / 1073741824.0, DSV3_FP8_STUDY_MAX_BYTES / 1073741824.0);
    return 0;
}

int dsv3_fp8_study_run(const dsv3_fp8_study_cfg *cfg, int K, const int *ncs, int n_nc, dsv3_fp8_study_row *rows) {
    const int M = cfg->M, N = cfg->N;
    if (dsv3_fp8_study_check(cfg, K) != 0) return -1;
    const int nk = (K + 127) / 128, nn = (N + 127) / 128;
    uint64_t st = cfg->seed ^ ((uint64_t)K << 32);
    float *a = dsv3_malloc(sizeof(float) * (size_t)M * K), *b = dsv3_malloc(sizeof(float) * (size_t)N * K);
    fill(a, (size_t)M * K, cfg->dist, &st);
    fill(b, (size_t)N * K, cfg->dist, &st);
    uint8_t *qa = dsv3_malloc((size_t)M * K), *qb = dsv3_malloc((size_t)N * K);
    float *sa = dsv3_malloc(sizeof(float) * (size_t)M * nk), *sb = dsv3_malloc(sizeof(float) * (size_t)nn * nk);
    dsv3_scale_fmt sf = cfg->ue8m0 ? DSV3_SCALE_UE8M0 : DSV3_SCALE_AMAX;
    dsv3_quant_1x128_e4m3(qa, sa, a, M, K, sf);
    dsv3_quant_128x128_e4m3(qb, sb, b, N, K, sf);
    // fp64 reference of the dequantized inputs, and Σ|a b| for the normalized error
    double *ref = dsv3_malloc(sizeof(double) * (size_t)M * N), *mag = dsv3_malloc(sizeof(double) * (size_t)M * N);
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0.0, sm = 0.0;
            for (int k = 0; k < K; k++) {
                double x = (double)dsv3_e4m3_to_f32(qa[(size_t)m * K + k]) * sa[(size_t)m * nk + k / 128];
                double y = (double)dsv3_e4m3_to_f32(qb[(size_t)n * K + k]) * sb[(size_t)(n / 128) * nk + k / 128];
                s += x * y;
                sm += fabs(x * y);
            }
            ref[(size_t)m * N + n] = s;
            mag[(size_t)m * N + n] = sm;
        }
    float *c = dsv3_malloc(sizeof(float) * (size_t)M * N);
    dsv3_fp8_gemm_args g = {.M = M, .N = N, .K = K, .a = qa, .lda = K, .sa = sa, .sa_stride_m = nk, .sa_stride_k = 1,
                            .b = qb, .ldb = K, .sb = sb, .b_block_n = 128};
    int rc = 0;
    for (int i = 0; i < n_nc && rc == 0; i++) {
        dsv3_fp8_acc acc = {.mode = ncs[i] < 0 ? DSV3_FP8_ACC_FP32 : DSV3_FP8_ACC_LIMITED, .nc = ncs[i] < 0 ? 0 : ncs[i],
                            .bits = cfg->bits, .group = cfg->group, .round = cfg->round};
        if ((rc = dsv3_fp8_gemm(&g, &acc, c, DSV3_F32, N)) != 0) break;
        dsv3_fp8_study_row *r = &rows[i];
        r->K = K;
        r->nc = ncs[i];
        r->max_rel = r->mean_rel = r->max_nrm = r->mean_nrm = 0.0;
        for (size_t j = 0; j < (size_t)M * N; j++) {
            double e = fabs((double)c[j] - ref[j]);
            double rel = ref[j] != 0.0 ? e / fabs(ref[j]) : (e == 0.0 ? 0.0 : INFINITY);
            double nrm = mag[j] > 0.0 ? e / mag[j] : 0.0;
            r->max_rel = fmax(r->max_rel, rel);
            r->mean_rel += rel;
            r->max_nrm = fmax(r->max_nrm, nrm);
            r->mean_nrm += nrm;
        }
        r->mean_rel /= (double)M * N;
        r->mean_nrm /= (double)M * N;
    }
    free(a); free(b); free(qa); free(qb); free(sa); free(sb); free(ref); free(mag); free(c);
    return rc;
}
