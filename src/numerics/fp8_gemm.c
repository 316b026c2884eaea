// FP8 GEMM reference with three accumulation models; see fp8_gemm.h and docs/FP8.md.
#include "numerics/fp8_gemm.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <math.h>
#include <stdlib.h>

#define KG 128 // K width of a scale group

float dsv3_fp8_limited_dot(const double *terms, int n, const dsv3_fp8_acc *acc, const float *chunk_sa,
                           const float *chunk_sb) {
    const int g = acc->group, nc = acc->nc, bits = acc->bits, fl = acc->round == DSV3_FP8_ROUND_FLOOR;
    float acc32 = 0.0f;
    double tc = 0.0; // the tensor-core accumulator: always a multiple of the last step's unit
    int chunk = 0;
    for (int i0 = 0; i0 < n; i0 += g) {
        int i1 = i0 + g < n ? i0 + g : n;
        // one k-step: align the accumulator and the step's products to the largest exponent among them,
        // keep `bits` bits from that exponent down (dropping the rest toward -inf or zero), add exactly
        double mx = fabs(tc);
        for (int i = i0; i < i1; i++) mx = fmax(mx, fabs(terms[i]));
        if (mx > 0.0) {
            int e = ilogb(mx);
            double inv = ldexp(1.0, bits - 1 - e), unit = ldexp(1.0, e - bits + 1);
            double sum;                   // integers below 2^(bits+6): exact in double
            if (fl) {
                sum = floor(tc * inv);
                for (int i = i0; i < i1; i++) sum += floor(terms[i] * inv);
            } else {
                sum = trunc(tc * inv);
                for (int i = i0; i < i1; i++) sum += trunc(terms[i] * inv);
            }
            tc = sum * unit;
        }
        if ((nc > 0 && i1 % nc == 0) || i1 == n) { // promotion to fp32 (CUDA cores)
            float part = (float)tc;                // <= bits + 6 significant bits: exact
            if (chunk_sa) acc32 = acc32 + (part * chunk_sa[chunk]) * chunk_sb[chunk];
            else acc32 = acc32 + part;
            tc = 0.0;
            chunk++;
        }
    }
    return acc32;
}

static int check_args(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, dsv3_dtype c_dtype, int ldc) {
    if (g->M < 0 || g->N < 0 || g->K < 0)
        return dsv3_errorf("fp8_gemm: negative shape (M %d, N %d, K %d)", g->M, g->N, g->K);
    if (g->lda < g->K || g->ldb < g->K || ldc < g->N)
        return dsv3_errorf("fp8_gemm: row stride too small (lda %d, ldb %d for K %d; ldc %d for N %d)", g->lda, g->ldb,
                           g->K, ldc, g->N);
    if (g->b_block_n != 128 && g->b_block_n != 1)
        return dsv3_errorf("fp8_gemm: B scale block must be 128 (128x128) or 1 (1x128), found %d", g->b_block_n);
    if (c_dtype != DSV3_F32 && c_dtype != DSV3_BF16)
        return dsv3_errorf("fp8_gemm: output dtype must be F32 or BF16, found %s", dsv3_dtype_name(c_dtype));
    if (acc->mode == DSV3_FP8_ACC_LIMITED) {
        if (acc->bits < 2 || acc->bits > 40) return dsv3_errorf("fp8_gemm: accumulator bits must be in [2, 40], found %d", acc->bits);
        if (acc->group < 1) return dsv3_errorf("fp8_gemm: accumulation group must be >= 1, found %d", acc->group);
        if (acc->nc < 0 || (acc->nc && acc->nc % acc->group))
            return dsv3_errorf("fp8_gemm: promotion interval must be 0 or a multiple of the group %d, found %d", acc->group,
                               acc->nc);
        if (acc->round != DSV3_FP8_ROUND_FLOOR && acc->round != DSV3_FP8_ROUND_TRUNC)
            return dsv3_errorf("fp8_gemm: unknown accumulator rounding %d", (int)acc->round);
    } else if (acc->mode != DSV3_FP8_ACC_FP32) return dsv3_errorf("fp8_gemm: unknown accumulation mode %d", (int)acc->mode);
    return 0;
}

int dsv3_fp8_gemm(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, void *C, dsv3_dtype c_dtype, int ldc) {
    if (check_args(g, acc, c_dtype, ldc)) return -1;
    const int M = g->M, N = g->N, K = g->K, nk = (K + KG - 1) / KG;
    const int limited = acc->mode == DSV3_FP8_ACC_LIMITED;
    // raw products + scales at promotion when each promotion chunk lies inside one scale group
    const int raw = limited && acc->nc > 0 && acc->nc <= KG && KG % acc->nc == 0;
    const int nchunks = raw ? (K + acc->nc - 1) / acc->nc : 1;
    #pragma omp parallel if ((double)M * N * K > 1e6)
    {
        float *arow = dsv3_malloc(sizeof(float) * (size_t)(K + 1));
        double *terms = limited ? dsv3_malloc(sizeof(double) * (size_t)(K + 1)) : NULL;
        float *csa = raw ? dsv3_malloc(sizeof(float) * (size_t)nchunks) : NULL;
        float *csb = raw ? dsv3_malloc(sizeof(float) * (size_t)nchunks) : NULL;
        #pragma omp for schedule(dynamic, 1)
        for (int m = 0; m < M; m++) {
            const uint8_t *a = g->a + (size_t)m * g->lda;
            for (int k = 0; k < K; k++) arow[k] = dsv3_e4m3_to_f32(a[k]);
            for (int n = 0; n < N; n++) {
                const uint8_t *b = g->b + (size_t)n * g->ldb;
                const float *sb = g->sb + (size_t)(n / g->b_block_n) * nk;
                float out;
                if (!limited) {
                    float acc32 = 0.0f;
                    for (int kb = 0; kb < nk; kb++) {
                        int k0 = kb * KG, k1 = k0 + KG < K ? k0 + KG : K;
                        float gs = 0.0f;
                        for (int k = k0; k < k1; k++) gs += arow[k] * dsv3_e4m3_to_f32(b[k]); // exact product
                        float sa = g->sa[m * g->sa_stride_m + kb * g->sa_stride_k];
                        acc32 = acc32 + (gs * sa) * sb[kb];
                    }
                    out = acc32;
                } else if (raw) {
                    for (int k = 0; k < K; k++) terms[k] = (double)arow[k] * dsv3_e4m3_to_f32(b[k]);
                    for (int c = 0; c < nchunks; c++) {
                        int kb = c * acc->nc / KG;
                        csa[c] = g->sa[m * g->sa_stride_m + kb * g->sa_stride_k];
                        csb[c] = sb[kb];
                    }
                    out = dsv3_fp8_limited_dot(terms, K, acc, csa, csb);
                } else {
                    for (int k = 0; k < K; k++) {
                        int kb = k / KG;
                        double sa = g->sa[m * g->sa_stride_m + kb * g->sa_stride_k];
                        terms[k] = (double)arow[k] * dsv3_e4m3_to_f32(b[k]) * sa * sb[kb];
                    }
                    out = dsv3_fp8_limited_dot(terms, K, acc, NULL, NULL);
                }
                if (c_dtype == DSV3_F32) ((float *)C)[(size_t)m * ldc + n] = out;
                else ((uint16_t *)C)[(size_t)m * ldc + n] = dsv3_f32_to_bf16(out);
            }
        }
        free(arow);
        free(terms);
        free(csa);
        free(csb);
    }
    return 0;
}
