// Packed fp32 SGEMM (see sgemm.h): C = alpha · op(A) · op(B) + beta · C.
//
// Loop nest (BLIS): for each NC-wide block of columns (jc) and KC-deep slice of K (pc), op(B) is
// packed once into NR-wide panels [kc][NR] shared by all threads; the M x N work of that slice is
// cut into (MC-row block, column chunk) items, each thread packs the op(A) block of its item into
// MR-row panels [kc][MR] (its own buffer) and runs the micro-kernel over every MR x NR tile. Edge
// panels are zero-padded, so one micro-kernel serves every shape and all four transpose combinations;
// the first K slice applies beta, later slices accumulate (beta = 1).
//
// Threads: OpenMP over the items when not already inside a parallel region (the backend contract).
// Packing buffers are grow-only and thread-local: no allocation in steady state.
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_kernels.h"
#include "core/error.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define KC DSV3_SG_KC
#define MC DSV3_SG_MC
#define NC DSV3_SG_NC

#define MR DSV3_SG_MR
#define NR DSV3_SG_NR
// Portable micro-kernel (the DSV3_NO_SIMD / non-AVX2 path); the compiler may vectorize it.
static void ukernel_c(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta,
                      int mr, int nr) {
    float t[MR][NR];
    memset(t, 0, sizeof t);
    for (int k = 0; k < kc; k++, a += MR, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) t[i][j] += a[i] * b[j];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = alpha * t[i][j];
            c[i * ldc + j] = beta != 0.0f ? v + beta * c[i * ldc + j] : v;
        }
}

#undef MR
#undef NR

typedef struct { float *p; size_t cap; } tl_buf;
static _Thread_local tl_buf tl_a, tl_b, tl_w;

static float *tl_get(tl_buf *b, size_t n) {
    if (b->cap < n) {
        free(b->p);
        b->p = dsv3_alloc_pages(n * sizeof(float));
        if (!b->p) dsv3_panic(__FILE__, __LINE__, "sgemm: out of memory for a %zu-float packing buffer", n);
        b->cap = n;
    }
    return b->p;
}

// op(A)[i0 .. i0+mc, p0 .. p0+kc] -> ceil(mc/MR) panels [kc][MR], rows past mc zero.
// simd: 0 scalar, 1 AVX2 transposes. MR ≤ 16 (a multiple of 4 above 8: rows 8.. are packed first,
// their 8-float stores spilling into the next k's lanes 0..3, which rows 0..7 then overwrite).
static void pack_a(int transA, const float *A, int lda, int i0, int mc, int p0, int kc, float *out, int simd, int MR) {
    for (int ir = 0; ir < mc; ir += MR, out += (size_t)kc * MR) {
        int mr = mc - ir < MR ? mc - ir : MR;
        if (transA) { // A stored (K, M): row k of the panel is contiguous
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(p0 + k) * lda + i0 + ir;
                float *d = out + (size_t)k * MR;
                if (mr == MR) { memcpy(d, src, MR * sizeof(float)); continue; }
                int i = 0;
                for (; i < mr; i++) d[i] = src[i];
                for (; i < MR; i++) d[i] = 0.0f;
            }
        } else if (simd && MR <= 8) {
            dsv3_sg_pack_t_avx2(A + (size_t)(i0 + ir) * lda + p0, lda, mr, kc, out, MR, MR);
        } else if (simd) {
            const float *src = A + (size_t)(i0 + ir) * lda + p0;
            dsv3_sg_pack_t_avx2(src + 8 * (size_t)lda, lda, mr > 8 ? mr - 8 : 0, kc, out + 8, MR, MR - 8);
            dsv3_sg_pack_t_avx2(src, lda, mr < 8 ? mr : 8, kc, out, MR, 8);
        } else {
            for (int i = 0; i < MR; i++) {
                if (i < mr) {
                    const float *src = A + (size_t)(i0 + ir + i) * lda + p0;
                    for (int k = 0; k < kc; k++) out[(size_t)k * MR + i] = src[k];
                } else
                    for (int k = 0; k < kc; k++) out[(size_t)k * MR + i] = 0.0f;
            }
        }
    }
}

// One NR panel of op(B)[p0 .. p0+kc, j0 .. j0+nr] -> [kc][NR], columns past nr zero.
// NR: a multiple of 8. simd: 0 scalar, 1 AVX2, 2 AVX-512. w != NULL (simd only): op(B)[k, n] = W[n, k] of a weight of any dsv3_mat dtype,
// dequantized to fp32 (dsv3_mat_block_f32_avx2) 8 rows at a time into tmp (8 x KC), then transposed.
static void pack_b_panel(int transB, const float *B, int ldb, const dsv3_mat *w, int p0, int kc, int j0, int nr,
                         float *out, int simd, int NR, float *tmp) {
    if (w) {
        for (int g = 0; g < NR; g += 8) {
            int rows = nr - g < 0 ? 0 : nr - g > 8 ? 8 : nr - g;
            if (rows) dsv3_mat_block_f32_avx2(w, j0 + g, rows, p0, kc, tmp, KC);
            dsv3_sg_pack_t_avx2(tmp, KC, rows, kc, out + g, NR, 8);
        }
        return;
    }
    if (!transB) { // B stored (K, N): a row of the panel is contiguous
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            float *d = out + (size_t)k * NR;
            if (nr == NR) { memcpy(d, src, NR * sizeof(float)); continue; }
            int j = 0;
            for (; j < nr; j++) d[j] = src[j];
            for (; j < NR; j++) d[j] = 0.0f;
        }
    } else if (simd == 2 && NR % 16 == 0) { // B stored (N, K): 16 x 16 transposes of 16-row groups
        for (int g = 0; g < NR; g += 16) {
            int rows = nr - g < 0 ? 0 : nr - g > 16 ? 16 : nr - g;
            dsv3_sg_pack_t16_avx512(B + (size_t)(j0 + g) * ldb + p0, ldb, rows, kc, out + g, NR);
        }
    } else if (simd) { // B stored (N, K): 8 x 8 transposes of 8-row groups
        for (int g = 0; g < NR; g += 8) {
            int rows = nr - g < 0 ? 0 : nr - g > 8 ? 8 : nr - g;
            dsv3_sg_pack_t_avx2(B + (size_t)(j0 + g) * ldb + p0, ldb, rows, kc, out + g, NR, 8);
        }
    } else { // B stored (N, K): gather NR rows
        for (int j = 0; j < NR; j++) {
            if (j < nr) {
                const float *src = B + (size_t)(j0 + j) * ldb + p0;
                for (int k = 0; k < kc; k++) out[(size_t)k * NR + j] = src[k];
            } else
                for (int k = 0; k < kc; k++) out[(size_t)k * NR + j] = 0.0f;
        }
    }
}

// C[M, N] = beta · C for the degenerate cases (K = 0 or alpha = 0); beta = 0 writes zeros.
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta != 0.0f ? beta * C[(size_t)i * ldc + j] : 0.0f;
}

static void sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, const dsv3_mat *w, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) { scale_c(M, N, beta, C, ldc); return; }
    dsv3_isa isa = dsv3_matmul_get_isa();
    int simd = isa >= DSV3_ISA_AVX512 ? 2 : isa >= DSV3_ISA_AVX2; // 2: the AVX-512 transposing B pack
    // Micro-tile per level: 12 x 32 on AVX-512 (24 zmm accumulators), 6 x 16 on AVX2 and scalar.
    const int MR = isa >= DSV3_ISA_AVX512 ? DSV3_SG_MR_512 : DSV3_SG_MR, NR = isa >= DSV3_ISA_AVX512 ? DSV3_SG_NR_512 : DSV3_SG_NR;
    dsv3_sg_ukernel uk = isa >= DSV3_ISA_AVX512 ? dsv3_sg_ukernel_avx512 : simd ? dsv3_sg_ukernel_avx2 : ukernel_c;

    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    double flops = 2.0 * M * N * K;
    if (flops < 2.0e6) nth = 1; // below ~1 ms of one core the fork/join is not worth it
    // Balanced MC: the fewest blocks of ≤ MC rows, a multiple of the thread count, in equal sizes
    // rounded up to MR (so M = 256 on 2 threads is 4 blocks of 66/66/66/58 rows, not 120/120/16).
    int n_ic = (M + MC - 1) / MC;
    if (nth > 1) n_ic = (n_ic + nth - 1) / nth * nth;
    int mc = ((M + n_ic - 1) / n_ic + MR - 1) / MR * MR;
    if (mc < 4 * MR) mc = M < 4 * MR ? (M + MR - 1) / MR * MR : 4 * MR; // tiny M: split N instead
    n_ic = (M + mc - 1) / mc;
    int ncb = N < NC ? N : NC;
    float *bp = tl_get(&tl_b, (size_t)KC * ((ncb + NR - 1) / NR) * NR); // the caller's B block

#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        float *ap = tl_get(&tl_a, (size_t)mc * KC + MR * KC);
        float *wtmp = w ? tl_get(&tl_w, (size_t)8 * KC) : NULL;
        for (int jc = 0; jc < N; jc += NC) {
            int nc = N - jc < NC ? N - jc : NC;
            int n_jr = (nc + NR - 1) / NR;
            // Column chunks per item: enough items to keep every thread busy with little imbalance.
            int n_ch = 1;
            int nt = omp_get_num_threads();
            if (nt > 1 && n_ic % nt && n_ic < 4 * nt) n_ch = nt;
            if (n_ch > n_jr) n_ch = n_jr;
            for (int pc = 0; pc < K; pc += KC) {
                int kc = K - pc < KC ? K - pc : KC;
                float bet = pc == 0 ? beta : 1.0f;
#pragma omp for schedule(static)
                for (int jr = 0; jr < n_jr; jr++) {
                    int j0 = jr * NR, nr = nc - j0 < NR ? nc - j0 : NR;
                    pack_b_panel(transB, B, ldb, w, pc, kc, jc + j0, nr, bp + (size_t)jr * kc * NR, simd, NR, wtmp);
                }
#pragma omp for schedule(static)
                for (int it = 0; it < n_ic * n_ch; it++) {
                    int ic = it / n_ch, ch = it % n_ch;
                    int i0 = ic * mc, mcc = M - i0 < mc ? M - i0 : mc;
                    int jr0 = n_jr * ch / n_ch, jr1 = n_jr * (ch + 1) / n_ch;
                    pack_a(transA, A, lda, i0, mcc, pc, kc, ap, simd, MR);
                    for (int jr = jr0; jr < jr1; jr++) {
                        int j0 = jr * NR, nr = nc - j0 < NR ? nc - j0 : NR;
                        const float *bpan = bp + (size_t)jr * kc * NR;
                        for (int ir = 0; ir < mcc; ir += MR) {
                            int mr = mcc - ir < MR ? mcc - ir : MR;
                            uk(kc, ap + (size_t)ir * kc, bpan, C + (size_t)(i0 + ir) * ldc + jc + j0, ldc, alpha, bet,
                               mr, nr);
                        }
                    }
                }
            }
        }
    }
}

void dsv3_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

void dsv3_sgemm_mat(float *y, const float *x, const dsv3_mat *w, int M) {
    DSV3_ASSERT(dsv3_matmul_get_isa() >= DSV3_ISA_AVX2);
    sgemm(0, 1, M, w->rows, w->cols, 1.0f, x, w->cols, NULL, w->cols, w, 0.0f, y, w->rows);
}
