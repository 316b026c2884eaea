// Flash-style causal attention for the fast CPU backend (see attention_cpu.h, kernels/backend.h).
//
// Forward: per (head, block of BQ queries), the keys are visited in blocks of BK up to the causal
// limit; scores of the block are formed, the running row max m, sum l and output accumulator are
// rescaled (online softmax), and no T x T matrix exists. O = acc / l, lse = m + log l.
// Backward: P is recomputed from the stored lse; D_i = dO_i·O_i, dS = P∘(dO·Vᵀ − D), dq = scale·dS·K,
// dk += scale·dSᵀ·Q, dv += Pᵀ·dO, block by block.
//
// Threads: the forward over (head, query block) items (independent outputs). The backward over
// heads: with per-head keys/values each head writes its own dk/dv rows; when keys or values are
// shared (head stride 0) every thread accumulates its heads into a private T-row buffer and the
// buffers are added into dk/dv in thread order, so results are deterministic for a given thread
// count. Called inside a parallel region everything runs on the calling thread.
#include "kernels/cpu/attention_cpu.h"
#include "kernels/cpu/ops_train_cpu.h"
#include "kernels/cpu/matmul.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BQ 32
#define BK 64

static void dots_c(float *S, int lds, int nx, int ny, const float *X, long ldx, const float *Y, long ldy, int d,
                   float scale) {
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < ny; j++) {
            float acc = 0.0f;
            for (int e = 0; e < d; e++) acc += X[i * ldx + e] * Y[j * ldy + e];
            S[(long)i * lds + j] = scale * acc;
        }
}

static void acc_c(float *Out, long ldo, int nout, const float *P, long prs, long pcs, int nin, const float *X, long ldx,
                  int d, float alpha) {
    for (int r = 0; r < nout; r++)
        for (int c = 0; c < nin; c++) {
            float p = P[r * prs + c * pcs];
            if (p == 0.0f) continue;
            p *= alpha;
            for (int e = 0; e < d; e++) Out[r * ldo + e] += p * X[c * ldx + e];
        }
}

typedef struct { float *p; size_t cap; } tl_buf;
static _Thread_local tl_buf tl_acc, tl_priv, tl_kt, tl_vt;

static float *tl_get(tl_buf *b, size_t n) {
    if (b->cap < n) {
        free(b->p);
        b->p = malloc(n * sizeof(float));
        if (!b->p) dsv3_panic(__FILE__, __LINE__, "attention: out of memory (%zu floats)", n);
        b->cap = n;
    }
    return b->p;
}

static dsv3_attn_dots_fn pick_dots(void) {
    dsv3_isa isa = dsv3_matmul_get_isa();
    return isa >= DSV3_ISA_AVX512 ? dsv3_attn_dots_avx512 : isa >= DSV3_ISA_AVX2 ? dsv3_attn_dots_avx2 : dots_c;
}
static dsv3_attn_acc_fn pick_acc(void) {
    dsv3_isa isa = dsv3_matmul_get_isa();
    return isa >= DSV3_ISA_AVX512 ? dsv3_attn_acc_avx512 : isa >= DSV3_ISA_AVX2 ? dsv3_attn_acc_avx2 : acc_c;
}

static int use_threads(double work) { return !omp_in_parallel() && omp_get_max_threads() > 1 && work > 2e5; }

void dsv3_attn_fwd_cpu(const dsv3_attn_args *a) {
    dsv3_attn_dots_fn dots = pick_dots();
    dsv3_attn_acc_fn acc = pick_acc();
    const int vexp = dsv3_matmul_get_isa() >= DSV3_ISA_AVX2; // vector exp in the softmax
    // AVX-512: the keys of a head transposed once (per thread, kept while its tasks stay on that
    // head: with shared keys, once per call) instead of once per (query block, key block)
    const int tpose = dsv3_matmul_get_isa() >= DSV3_ISA_AVX512;
    int T = a->T, H = a->H, nqb = (T + BQ - 1) / BQ;
    const long T16 = (T + 15) & ~15;
    double work = (double)H * T * T * (a->dqk + a->dv);
#pragma omp parallel if (use_threads(work))
    {
        float *O = tl_get(&tl_acc, (size_t)BQ * a->dv);
        float *Kt = tpose ? tl_get(&tl_kt, (size_t)a->dqk * T16) : NULL;
        int kt_head = -1;
        float S[BQ * BK], m[BQ], l[BQ];
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int h = 0; h < H; h++)
            for (int qbr = 0; qbr < nqb; qbr++) {
                int qb = nqb - 1 - qbr; // longest rows first
                int q0 = qb * BQ, nq = T - q0 < BQ ? T - q0 : BQ;
                const float *Q = a->q + (size_t)q0 * a->q_tok + (size_t)h * a->q_head;
                const int hk = a->k_head ? h : 0;
                if (tpose && hk != kt_head) {
                    dsv3_attn_transpose_avx512(Kt, T16, a->k + (size_t)hk * a->k_head, a->k_tok, T, a->dqk);
                    kt_head = hk;
                }
                memset(O, 0, sizeof(float) * nq * a->dv);
                for (int i = 0; i < nq; i++) { m[i] = -INFINITY; l[i] = 0.0f; }
                for (int k0 = 0; k0 < q0 + nq; k0 += BK) {
                    int nk = q0 + nq - k0 < BK ? q0 + nq - k0 : BK;
                    if (tpose) dsv3_attn_dots_t_avx512(S, BK, nq, nk, Q, a->q_tok, Kt + k0, T16, a->dqk, a->scale);
                    else dots(S, BK, nq, nk, Q, a->q_tok, a->k + (size_t)k0 * a->k_tok + (size_t)h * a->k_head, a->k_tok,
                              a->dqk, a->scale);
                    for (int i = 0; i < nq; i++) {
                        float *s = S + i * BK;
                        int lim = q0 + i - k0 + 1; // keys j < lim are visible to row q0 + i
                        if (lim > nk) lim = nk;
                        float mx = m[i];
                        for (int j = 0; j < lim; j++) if (s[j] > mx) mx = s[j];
                        if (lim <= 0 || mx == -INFINITY) { for (int j = 0; j < nk; j++) s[j] = 0.0f; continue; }
                        float corr = expf(m[i] - mx), sum = 0.0f;
                        if (vexp) sum = dsv3_exp_sub_sum_avx2(s, lim, mx);
                        else for (int j = 0; j < lim; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
                        for (int j = lim; j < nk; j++) s[j] = 0.0f;
                        l[i] = l[i] * corr + sum;
                        m[i] = mx;
                        if (corr != 1.0f)
                            for (int e = 0; e < a->dv; e++) O[(size_t)i * a->dv + e] *= corr;
                    }
                    acc(O, a->dv, nq, S, BK, 1, nk, a->v + (size_t)k0 * a->v_tok + (size_t)h * a->v_head, a->v_tok,
                        a->dv, 1.0f);
                }
                for (int i = 0; i < nq; i++) {
                    float *o = a->o + (size_t)(q0 + i) * a->o_tok + (size_t)h * a->o_head, inv = 1.0f / l[i];
                    for (int e = 0; e < a->dv; e++) o[e] = O[(size_t)i * a->dv + e] * inv;
                    a->lse[(size_t)h * T + q0 + i] = m[i] + logf(l[i]);
                }
            }
    }
}

// The backward of head h into dq (written) and dk/dv rows at dkh/dvh with token strides ldk/ldv
// (the caller's arrays offset to head h, or a thread's private accumulators).
static void bwd_head(const dsv3_attn_args *a, int h, const float *dout, float *dq, float *dkh, long ldk, float *dvh,
                     long ldv, float *dqacc, dsv3_attn_dots_fn dots, dsv3_attn_acc_fn acc) {
    int T = a->T;
    const int vexp = dsv3_matmul_get_isa() >= DSV3_ISA_AVX2; // vector exp in the softmax
    float P[BQ * BK], dS[BQ * BK], D[BQ];
    // AVX-512: the head's keys and values transposed once (not per query block)
    const int tpose = dsv3_matmul_get_isa() >= DSV3_ISA_AVX512;
    const long T16 = (T + 15) & ~15;
    float *Kt = NULL, *Vt = NULL;
    if (tpose) {
        Kt = tl_get(&tl_kt, (size_t)a->dqk * T16);
        Vt = tl_get(&tl_vt, (size_t)a->dv * T16);
        dsv3_attn_transpose_avx512(Kt, T16, a->k + (size_t)h * a->k_head, a->k_tok, T, a->dqk);
        dsv3_attn_transpose_avx512(Vt, T16, a->v + (size_t)h * a->v_head, a->v_tok, T, a->dv);
    }
    for (int q0 = 0; q0 < T; q0 += BQ) {
        int nq = T - q0 < BQ ? T - q0 : BQ;
        const float *Q = a->q + (size_t)q0 * a->q_tok + (size_t)h * a->q_head;
        const float *G = dout + (size_t)q0 * a->o_tok + (size_t)h * a->o_head;
        const float *lse = a->lse + (size_t)h * T + q0;
        for (int i = 0; i < nq; i++) {
            const float *o = a->o + (size_t)(q0 + i) * a->o_tok + (size_t)h * a->o_head, *g = G + (size_t)i * a->o_tok;
            float s = 0.0f;
            for (int e = 0; e < a->dv; e++) s += g[e] * o[e];
            D[i] = s;
        }
        memset(dqacc, 0, sizeof(float) * nq * a->dqk);
        for (int k0 = 0; k0 < q0 + nq; k0 += BK) {
            int nk = q0 + nq - k0 < BK ? q0 + nq - k0 : BK;
            const float *K = a->k + (size_t)k0 * a->k_tok + (size_t)h * a->k_head;
            const float *V = a->v + (size_t)k0 * a->v_tok + (size_t)h * a->v_head;
            if (tpose) {
                dsv3_attn_dots_t_avx512(P, BK, nq, nk, Q, a->q_tok, Kt + k0, T16, a->dqk, a->scale);
                dsv3_attn_dots_t_avx512(dS, BK, nq, nk, G, a->o_tok, Vt + k0, T16, a->dv, 1.0f);
            } else {
                dots(P, BK, nq, nk, Q, a->q_tok, K, a->k_tok, a->dqk, a->scale);
                dots(dS, BK, nq, nk, G, a->o_tok, V, a->v_tok, a->dv, 1.0f);
            }
            for (int i = 0; i < nq; i++) {
                int lim = q0 + i - k0 + 1;
                if (lim > nk) lim = nk;
                float *p = P + i * BK, *ds = dS + i * BK;
                int l0 = lim < 0 ? 0 : lim > nk ? nk : lim;
                if (vexp) dsv3_exp_sub_avx2(p, p, l0, lse[i]);
                else for (int j = 0; j < l0; j++) p[j] = expf(p[j] - lse[i]);
                for (int j = 0; j < nk; j++) {
                    float pj = j < l0 ? p[j] : 0.0f;
                    p[j] = pj;
                    ds[j] = pj * (ds[j] - D[i]);
                }
            }
            acc(dqacc, a->dqk, nq, dS, BK, 1, nk, K, a->k_tok, a->dqk, 1.0f);
            acc(dkh + (size_t)k0 * ldk, ldk, nk, dS, 1, BK, nq, Q, a->q_tok, a->dqk, a->scale);
            acc(dvh + (size_t)k0 * ldv, ldv, nk, P, 1, BK, nq, G, a->o_tok, a->dv, 1.0f);
        }
        for (int i = 0; i < nq; i++) {
            float *gq = dq + (size_t)(q0 + i) * a->q_tok + (size_t)h * a->q_head;
            for (int e = 0; e < a->dqk; e++) gq[e] = a->scale * dqacc[(size_t)i * a->dqk + e];
        }
    }
}

void dsv3_attn_bwd_cpu(const dsv3_attn_args *a, const float *dout, float *dq, float *dk, float *dv) {
    dsv3_attn_dots_fn dots = pick_dots();
    dsv3_attn_acc_fn acc = pick_acc();
    int T = a->T, H = a->H, dqk = a->dqk, dvd = a->dv;
    double work = 2.5 * H * T * T * (a->dqk + a->dv);
    int nt = use_threads(work) ? omp_get_max_threads() : 1;
    if (nt > H) nt = H;
    int pk = nt > 1 && a->k_head == 0, pv = nt > 1 && a->v_head == 0; // private accumulators needed
    float *priv = NULL;
    size_t per = (pk ? (size_t)T * dqk : 0) + (pv ? (size_t)T * dvd : 0);
    if (pk || pv) { // the caller's grow-only buffer, zeroed: O(T·d) next to the O(H·T²·d) work
        priv = tl_get(&tl_priv, (size_t)nt * per);
        memset(priv, 0, sizeof(float) * nt * per);
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        float *dqacc = tl_get(&tl_acc, (size_t)BQ * dqk);
        float *mk = pk ? priv + (size_t)t * per : NULL, *mv = pv ? priv + (size_t)t * per + (pk ? (size_t)T * dqk : 0) : NULL;
        for (int h = t; h < H; h += n) // fixed head -> thread map: deterministic for a given nt
            bwd_head(a, h, dout, dq, pk ? mk : dk + (size_t)h * a->k_head, pk ? dqk : a->k_tok,
                     pv ? mv : dv + (size_t)h * a->v_head, pv ? dvd : a->v_tok, dqacc, dots, acc);
        if (pk || pv) {
#pragma omp barrier
#pragma omp for schedule(static)
            for (int j = 0; j < T; j++)
                for (int u = 0; u < n; u++) { // fixed order over threads
                    const float *src = priv + (size_t)u * per;
                    if (pk) for (int e = 0; e < dqk; e++) dk[(size_t)j * a->k_tok + e] += src[(size_t)j * dqk + e];
                    if (pv) {
                        const float *sv = src + (pk ? (size_t)T * dqk : 0);
                        for (int e = 0; e < dvd; e++) dv[(size_t)j * a->v_tok + e] += sv[(size_t)j * dvd + e];
                    }
                }
        }
    }
}
