// BF16 GEMM driver (bgemm.h): the scalar reference, and the blocked, threaded loop nest over the
// AVX-512 / AMX kernels of bgemm_avx512.c and bgemm_amx.c.
//
// Loop nest: op(A) is packed once (all threads, by 32-row groups) into bf16 rows [Mp][Kp]. For each
// NC-column block of op(B) the threads pack its 16-column VNNI panels (shared), then take tasks of
// (MC rows x a 32-column-aligned slice of the block): for every KC slice of K the kernel
// accumulates the task's C block in a per-thread fp32 scratch (A block in L2, one 32-column B strip
// in L1), and the scratch is merged into C with alpha and beta once. Buffers are grow-only and
// thread-local (the A and B packs are shared and owned by the calling thread): no allocation in
// steady state.
#include "kernels/cpu/bgemm.h"
#include "numerics/bf16.h"
#include "kernels/cpu/sgemm.h"
#include "core/error.h"
#include "numerics/fp8.h"
#include "kernels/cpu/wpack.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define MC DSV3_BG_MC
#define NC DSV3_BG_NC
#define KC DSV3_BG_KC

void dsv3_bgemm_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += dsv3_bf16_to_f32(dsv3_f32_to_bf16(a)) * dsv3_bf16_to_f32(dsv3_f32_to_bf16(b));
            }
            float *c = C + (size_t)i * ldc + j;
            *c = beta != 0.0f ? alpha * s + beta * *c : alpha * s;
        }
}

typedef struct { void *p; size_t cap; } tl_buf;
static _Thread_local tl_buf tl_apack, tl_bpack, tl_scratch, tl_tmp, tl_dec;

static void *tl_get(tl_buf *b, size_t bytes) {
    if (b->cap < bytes) {
        free(b->p);
        b->p = dsv3_alloc_pages(bytes);
        if (!b->p) dsv3_panic(__FILE__, __LINE__, "bgemm: out of memory for a %zu-byte buffer", bytes);
        b->cap = bytes;
    }
    return b->p;
}

// FP8 operands (dsv3_fp8_bgemm): rows [m0, m1) of the E4M3 codes A (M, K) into apack [Mp][Kp] bf16
// (rows >= M and columns >= K zero); lut maps a code to its bf16 bits (exact); vec: decode with
// dsv3_bg_decode_e4m3_avx512 (the table has the sign symmetry it needs).
static void pack_a_codes(const dsv3_fp8_gemm_args *q, const uint16_t *lut, int vec, int Kp, int m0, int m1, uint16_t *apack) {
    for (int m = m0; m < m1; m++) {
        uint16_t *d = apack + (size_t)m * Kp;
        if (m >= q->M) { memset(d, 0, sizeof(uint16_t) * Kp); continue; }
        const uint8_t *a = q->a + (size_t)m * q->lda;
        if (vec) dsv3_bg_decode_e4m3_avx512(d, a, q->K, lut);
        else
            for (int k = 0; k < q->K; k++) d[k] = lut[a[k]];
        for (int k = q->K; k < Kp; k++) d[k] = 0;
    }
}
// One 16-column VNNI panel [Kp/2][16] dwords of op(B) = Bᵀ for the codes B (N, K): columns n0.. .
// vec: each column is decoded into a row of bf16 first (row: Kp words of scratch), then its pairs
// are spread over the panel.
static void pack_b_codes(const dsv3_fp8_gemm_args *q, const uint16_t *lut, int vec, int Kp, int n0, uint32_t *panel,
                         uint16_t *row) {
    for (int j = 0; j < 16; j++) {
        int n = n0 + j;
        if (n >= q->N) {
            for (int p = 0; p < Kp / 2; p++) panel[(size_t)p * 16 + j] = 0;
            continue;
        }
        const uint8_t *b = q->b + (size_t)n * q->ldb;
        if (vec) {
            dsv3_bg_decode_e4m3_avx512(row, b, q->K, lut);
            for (int k = q->K; k < Kp; k++) row[k] = 0;
            const uint32_t *pr = (const uint32_t *)row;
            for (int p = 0; p < Kp / 2; p++) panel[(size_t)p * 16 + j] = pr[p];
            continue;
        }
        int p = 0;
        for (; 2 * p + 1 < q->K; p++) panel[(size_t)p * 16 + j] = lut[b[2 * p]] | (uint32_t)lut[b[2 * p + 1]] << 16;
        if (2 * p < q->K) { panel[(size_t)p * 16 + j] = lut[b[2 * p]]; p++; } // odd K: last pair half zero
        for (; p < Kp / 2; p++) panel[(size_t)p * 16 + j] = 0;
    }
}

// The whole of op(B) packed (panels of 16 columns, [Kp/2][16] dwords each, 2·ceil(N/32) of them),
// cached by wpack.h when B is a weight: the packs of the blocks below are its slices.
static void *cached_b(const dsv3_bg_fsrc *b, const dsv3_mat *w, int N, int K, int *build) {
    *build = 0;
    if (!b && !w) return NULL;
    dsv3_wpack_key key = {b ? (const void *)b->p : w->data, b ? 1 + b->trans : 16 + (int)w->dtype, N, K,
                          b ? b->ld : (long)w->cols};
    size_t bytes = (size_t)((K + 31) & ~31) * ((N + 31) & ~31) * 2;
    return dsv3_wpack_get(&key, bytes, build);
}

// What a task of the driver needs (shared, read-only inside the parallel region).
typedef struct {
    const dsv3_fp8_gemm_args *q;
    int amx, M, K, Kp, Ks, n_mb;
    const uint16_t *apack;
    float alpha, beta, *C;
    long ldc;
} bg_ctx;

// One task: rows [mb·MC, +MC) x the 32-column strips [j0, j1) of the block at column nb0 (nb columns,
// panels at bblk). S, tmp: the thread's scratch.
static void bg_task(const bg_ctx *x, const uint16_t *bblk, int nb0, int nb, int mb, int j0, int j1, float *S, float *tmp) {
    const int Kp = x->Kp, Ks = x->Ks, nt = j1 - j0;
    if (nt <= 0) return;
    int m0 = mb * MC, rows = x->M - m0 < MC ? x->M - m0 : MC, mt = (rows + 31) / 32;
    const uint16_t *bp = bblk + (size_t)(2 * j0) * Kp * 16;
    int c0 = nb0 + 32 * j0, cols = nb - 32 * j0 < nt * 32 ? nb - 32 * j0 : nt * 32;
    float *C = x->C;
    const long ldc = x->ldc;
    const dsv3_fp8_gemm_args *q = x->q;
    if (q) { // FP8: one 128-wide K group at a time through the scratch, merged with its scales
        const int nk = (x->K + 127) / 128;
        float *ra = tmp + 16 * 32, *cb = ra + MC;
        for (int kb = 0; kb < nk; kb++) {
            int k0 = 128 * kb, kc = Kp - k0 < 128 ? Kp - k0 : 128;
            const uint16_t *ap = x->apack + (size_t)m0 * Ks + k0;
            const uint16_t *bk = bp + (size_t)(k0 / 2) * 32;
            const long lds = (long)nt * 32 + 16; // an odd number of lines (see below)
            if (x->amx) dsv3_bg_block_amx(ap, Ks, mt, bk, (long)Kp * 16, nt, kc, S, lds, 1);
            else dsv3_bg_block_avx512(ap, Ks, mt, bk, (long)Kp * 16, nt, kc, S, lds, 1);
            for (int i = 0; i < rows; i++) ra[i] = q->sa[(long)(m0 + i) * q->sa_stride_m + (long)kb * q->sa_stride_k];
            for (int j = 0; j < cols; j++) cb[j] = q->sb[(size_t)((c0 + j) / q->b_block_n) * nk + kb];
            dsv3_bg_merge_scaled_avx512(C + (size_t)m0 * ldc + c0, ldc, S, lds, rows, cols, ra, cb, kb == 0 && x->beta == 0.0f);
        }
        return;
    }
    // Whole tiles with alpha = 1 and beta in {0, 1} accumulate in C itself (no scratch round trip, no
    // merge): the common fprop (beta 0) and gradient-accumulate (beta 1). Not when C's row stride is a
    // multiple of 512 bytes: the 16 rows of each C tile load and store would then share a few L1 sets
    // (measured: those tile loads hot in perf). The scratch's stride is an odd number of 64-byte lines
    // for the same reason.
    int direct = x->alpha == 1.0f && (x->beta == 0.0f || x->beta == 1.0f) && rows == mt * 32 && cols == nt * 32 &&
                 ldc % 128 != 0;
    float *acc = direct ? C + (size_t)m0 * ldc + c0 : S;
    long lds = direct ? ldc : (long)nt * 32 + 16;
    for (int k0 = 0; k0 < Kp; k0 += KC) {
        int kc = Kp - k0 < KC ? Kp - k0 : KC;
        const uint16_t *ap = x->apack + (size_t)m0 * Ks + k0;
        const uint16_t *bk = bp + (size_t)(k0 / 2) * 32;
        int first = k0 == 0 && !(direct && x->beta == 1.0f);
        if (x->amx) dsv3_bg_block_amx(ap, Ks, mt, bk, (long)Kp * 16, nt, kc, acc, lds, first);
        else dsv3_bg_block_avx512(ap, Ks, mt, bk, (long)Kp * 16, nt, kc, acc, lds, first);
    }
    if (!direct) dsv3_bg_merge_avx512(C + (size_t)m0 * ldc + c0, ldc, S, lds, rows, cols, x->alpha, x->beta);
}

// Column slices per block: split blocks when there are too few (row block, block) tasks for the threads.
static int bg_slices(int ntasks, int nt32, int nthreads) {
    int nsl = 1;
    while (ntasks * nsl < 2 * nthreads && nsl * 2 <= nt32) nsl *= 2;
    return nsl;
}

// op(B) packed whole for one call (below this size; above it, block by block in an L2-sized buffer):
// then the call has two barriers (after the packs, at the end) instead of two per 256-column block,
// which is what a small GEMM's time went to with sleeping OpenMP waiters (OMP_WAIT_POLICY=passive,
// dsv3's default: 256 x 512 x 1024 ran at half the speed of spinning waiters).
#define BG_WHOLE_B_MAX ((size_t)48 << 20)

// The common driver: A fp32 (a), B fp32 (b) or a weight matrix (w); or FP8 codes with scales (q,
// lut): then K goes in 128-wide groups, each summed in the scratch and merged with its scales.
static void bgemm_run(const dsv3_bg_fsrc *a, const dsv3_bg_fsrc *b, const dsv3_mat *w, const dsv3_fp8_gemm_args *q,
                      const uint16_t *lut, int M, int N, int K, float alpha, float beta, float *C, long ldc) {
    int build = 0;
    uint16_t *bfull = q ? NULL : cached_b(b, w, N, K, &build);
    int amx = dsv3_matmul_get_isa() >= DSV3_ISA_AMX;
    int vec = 0; // FP8: vector decode when the table has its sign symmetry (it does for E4M3 -> bf16)
    if (q) {
        vec = 1;
        for (int c = 0; c < 128; c++) vec &= lut[c | 0x80] == (uint16_t)(lut[c] | 0x8000);
    }
    int Kp = (K + 31) & ~31, Mp = (M + 31) & ~31;
    // Row stride of the packed A: an odd number of 64-byte lines, so that the 16 rows of an A tile
    // load do not all fall into one L1 set (with Kp * 2 a multiple of 4 KiB they did: the AMX A-tile
    // loads then missed L1 every time).
    int Ks = (Kp / 32) % 2 == 0 ? Kp + 32 : Kp;
    uint16_t *apack = tl_get(&tl_apack, (size_t)Mp * Ks * 2);
    const size_t whole_bytes = (size_t)Kp * ((N + 31) & ~31) * 2;
    // The whole op(B): the cached pack (read, or built now), or packed for this call alone.
    const int whole = bfull != NULL || whole_bytes <= BG_WHOLE_B_MAX;
    const int pack_whole = whole && (!bfull || build);
    uint16_t *ball = bfull ? bfull : whole ? tl_get(&tl_bpack, whole_bytes) : NULL;
    int ncb = N < NC ? (N + 31) & ~31 : NC;
    uint16_t *bpack = whole ? NULL : tl_get(&tl_bpack, (size_t)Kp * ncb * 2);
    double flops = 2.0 * M * N * K;
    int nth = omp_in_parallel() || flops < 4.0e6 ? 1 : omp_get_max_threads();
    int n_mb = (M + MC - 1) / MC;
    const int nall = 2 * ((N + 31) / 32);             // panels of the whole op(B)
    const int kn = !q && b && !b->trans;              // fp32 B stored (K, N): packed by runs of K pairs
    const int npairs = Kp / 2, nch = (npairs + 63) / 64;
    const bg_ctx x = {q, amx, M, K, Kp, Ks, n_mb, apack, alpha, beta, C, ldc};

#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        float *S = tl_get(&tl_scratch, (size_t)MC * (NC + 16) * sizeof(float));
        float *tmp = tl_get(&tl_tmp, (16 * 32 + MC + NC) * sizeof(float)); // pack scratch; row, column scales
        uint16_t *drow = q ? tl_get(&tl_dec, (size_t)Kp * sizeof(uint16_t)) : NULL; // a decoded B column
        int nt_threads = omp_get_num_threads();
        // Packs: op(A) by 32-row groups, and (whole) op(B) by panels or runs of K pairs, in one loop.
        const int na = Mp / 32, nbw = pack_whole ? (kn ? nch : nall) : 0;
#pragma omp for schedule(static)
        for (int it = 0; it < na + nbw; it++) {
            if (it < na) {
                const int g = it;
                if (q) pack_a_codes(q, lut, vec, Ks, 32 * g, 32 * g + 32, apack); // rows Ks apart, zero past K
                else dsv3_bg_pack_a_avx512(a, M, K, Ks, 32 * g, 32 * g + 32, apack);
            } else if (kn) {
                const int ch = it - na;
                dsv3_bg_pack_b_kn_avx512(b, N, K, Kp, 0, nall, 64 * ch, 64 * ch + 64 < npairs ? 64 * ch + 64 : npairs, ball);
            } else {
                const int p = it - na;
                if (q) pack_b_codes(q, lut, vec, Kp, 16 * p, (uint32_t *)(ball + (size_t)p * Kp * 16), drow);
                else dsv3_bg_pack_b_avx512(b, w, N, K, Kp, 16 * p, ball + (size_t)p * Kp * 16, tmp);
            }
        }
        const int nblk = (N + NC - 1) / NC;
        if (whole) { // every (block, row block, slice) task in one loop; blocks outermost
            const int nsl = bg_slices(n_mb * nblk, NC / 32, nt_threads), per_blk = n_mb * nsl;
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < nblk * per_blk; t++) {
                int blk = t / per_blk, r = t % per_blk, mb = r / nsl, sl = r % nsl;
                int nb0 = blk * NC, nb = N - nb0 < NC ? N - nb0 : NC, nt32 = (nb + 31) / 32;
                bg_task(&x, ball + (size_t)(nb0 / 16) * Kp * 16, nb0, nb, mb, nt32 * sl / nsl, nt32 * (sl + 1) / nsl, S, tmp);
            }
        } else
            for (int nb0 = 0; nb0 < N; nb0 += NC) { // block by block: pack it (shared), then its tasks
                int nb = N - nb0 < NC ? N - nb0 : NC, nt32 = (nb + 31) / 32;
                if (kn) {
#pragma omp for schedule(static)
                    for (int ch = 0; ch < nch; ch++)
                        dsv3_bg_pack_b_kn_avx512(b, N, K, Kp, nb0, 2 * nt32, 64 * ch, 64 * ch + 64 < npairs ? 64 * ch + 64 : npairs, bpack);
                } else {
#pragma omp for schedule(static)
                    for (int p = 0; p < 2 * nt32; p++) {
                        if (q) pack_b_codes(q, lut, vec, Kp, nb0 + 16 * p, (uint32_t *)(bpack + (size_t)p * Kp * 16), drow);
                        else dsv3_bg_pack_b_avx512(b, w, N, K, Kp, nb0 + 16 * p, bpack + (size_t)p * Kp * 16, tmp);
                    }
                }
                const int nsl = bg_slices(n_mb, nt32, nt_threads);
#pragma omp for schedule(dynamic, 1)
                for (int t = 0; t < n_mb * nsl; t++) {
                    int mb = t / nsl, sl = t % nsl;
                    bg_task(&x, bpack, nb0, nb, mb, nt32 * sl / nsl, nt32 * (sl + 1) / nsl, S, tmp);
                }
            }
    }
    if (build) dsv3_wpack_done(bfull);
}

void dsv3_bgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (dsv3_matmul_get_isa() < DSV3_ISA_AVX512) { // no bf16 arithmetic: round copies, fp32 SGEMM
        size_t na = transA ? (size_t)K * lda : (size_t)M * lda, nb = transB ? (size_t)N * ldb : (size_t)K * ldb;
        float *ra = tl_get(&tl_apack, na * sizeof(float)), *rb = tl_get(&tl_bpack, nb * sizeof(float));
        for (size_t i = 0; i < na; i++) ra[i] = dsv3_bf16_to_f32(dsv3_f32_to_bf16(A[i]));
        for (size_t i = 0; i < nb; i++) rb[i] = dsv3_bf16_to_f32(dsv3_f32_to_bf16(B[i]));
        dsv3_sgemm(transA, transB, M, N, K, alpha, ra, lda, rb, ldb, beta, C, ldc);
        return;
    }
    if (K <= 0 || alpha == 0.0f) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = C + (size_t)i * ldc + j;
                *c = beta != 0.0f ? beta * *c : 0.0f;
            }
        return;
    }
    dsv3_bg_fsrc a = {transA, A, lda}, b = {transB, B, ldb};
    bgemm_run(&a, &b, NULL, NULL, NULL, M, N, K, alpha, beta, C, ldc);
}

void dsv3_bgemm_mat(float *y, const float *x, const dsv3_mat *w, int M) {
    DSV3_ASSERT(dsv3_matmul_get_isa() >= DSV3_ISA_AVX512);
    if (M <= 0 || w->rows <= 0) return;
    if (w->cols <= 0) { memset(y, 0, sizeof(float) * (size_t)M * w->rows); return; }
    dsv3_bg_fsrc a = {0, x, w->cols};
    bgemm_run(&a, NULL, w, NULL, NULL, M, w->rows, w->cols, 1.0f, 0.0f, y, w->rows);
}

void dsv3_fp8_bgemm(const dsv3_fp8_gemm_args *g, float *C, int ldc, float beta) {
    DSV3_ASSERT(dsv3_matmul_get_isa() >= DSV3_ISA_AVX512);
    DSV3_ASSERT(g->b_block_n == 128 || g->b_block_n == 1);
    if (g->M <= 0 || g->N <= 0) return;
    if (g->K <= 0) {
        if (beta == 0.0f)
            for (int i = 0; i < g->M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * g->N);
        return;
    }
    uint16_t lut[256];
    for (int c = 0; c < 256; c++) lut[c] = dsv3_f32_to_bf16(dsv3_e4m3_to_f32((uint8_t)c)); // exact (NaN stays NaN)
    bgemm_run(NULL, NULL, NULL, g, lut, g->M, g->N, g->K, 1.0f, beta, C, ldc);
}
