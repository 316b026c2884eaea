// Feed-forward blocks for training: dense SwiGLU and DeepSeekMoE (router, routed experts on the
// tokens routed to them, shared experts) with the sequence-wise balance loss (spec training.md §2),
// forward keeping what the backward needs, and the backward (docs/TRAINING.md).
// Expert selection (correction bias, group limit) is not differentiable; the gating weights are:
//   sigmoid (V3): w_k = rsf · s_k / (Σ_sel s + 1e-20) with norm_topk_prob, else rsf · s_k;
//   softmax (V2): as dsv3_route_token (forward.h) defines them.
#include "model/train_impl.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <string.h>

static void scores_of(const dsv3_config *c, const float *z, float *s, int E) {
    if (c->scoring == DSV3_SCORE_SIGMOID) {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-z[e]));
    } else {
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) mx = z[e] > mx ? z[e] : mx;
        double sum = 0.0;
        for (int e = 0; e < E; e++) { s[e] = expf(z[e] - mx); sum += s[e]; }
        for (int e = 0; e < E; e++) s[e] = (float)(s[e] / sum);
    }
}

// The K largest of s[E] (lowest index on ties): marks flags[e] = 1.
static void topk_flags(const float *s, int E, int K, unsigned char *flags) {
    memset(flags, 0, (size_t)E);
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!flags[e] && (best < 0 || s[e] > s[best])) best = e;
        flags[best] = 1;
    }
}

// expert: 1 for routed and shared experts (their FP8 scale policy, train.h), 0 for the dense MLP.
// xq, aq: the FP8 codes of x and of the activation a (the down projection's input).
static void swiglu_block_fwd(dsv3_train *tr, int expert, const float *x, dsv3_xq *xq, int N, int in, const float *Wg,
                             const float *Wu, const float *Wd, int I, float *g, float *u, float *a, dsv3_xq *aq, float *out) {
    const dsv3_lin_role rin = expert ? DSV3_LIN_FP8_EXPIN : DSV3_LIN_FP8, rout = expert ? DSV3_LIN_FP8_EXPOUT : DSV3_LIN_FP8;
    dsv3_t_linear(tr, rin, g, x, xq, N, Wg, NULL, I, in);
    dsv3_t_linear(tr, rin, u, x, xq, N, Wu, NULL, I, in);
    tr->be->swiglu_fwd(a, g, u, (long)N * I);
    dsv3_t_linear(tr, rout, out, a, aq, N, Wd, NULL, in, I);
}

// dx (= or += when acc) from dout through down(silu(gate x) ⊙ up x); da/dg/du are (N, I) scratch.
static void swiglu_block_bwd(dsv3_train *tr, int expert, float *dx, int acc, const float *dout, const float *x, dsv3_xq *xq, int N,
                             int in, const float *Wg, const float *Wu, const float *Wd, float *dWg, float *dWu, float *dWd, int I,
                             const float *g, const float *u, const float *a, dsv3_xq *aq, float *da, float *dg, float *du) {
    const dsv3_lin_role rin = expert ? DSV3_LIN_FP8_EXPIN : DSV3_LIN_FP8, rout = expert ? DSV3_LIN_FP8_EXPOUT : DSV3_LIN_FP8;
    dsv3_t_linear_bwd(tr, rout, da, 0, dWd, NULL, dout, a, aq, Wd, N, in, I);
    tr->be->swiglu_bwd(dg, du, da, g, u, (long)N * I);
    dsv3_t_linear_bwd(tr, rin, dx, acc, dWg, NULL, dg, x, xq, Wg, N, I, in);
    dsv3_t_linear_bwd(tr, rin, dx, 1, dWu, NULL, du, x, xq, Wu, N, I, in);
}

// The codes of rows p0.. of a per-slot input (the routed experts' views into the layer's codes).
static dsv3_xq xq_rows(const dsv3_xq *q, int p0, int cols, int ready) {
    dsv3_xq v = {NULL, NULL, 0};
    if (!q->q) return v;
    const int nk = (cols + DSV3_QUANT_TILE - 1) / DSV3_QUANT_TILE;
    v.q = q->q + (size_t)p0 * cols;
    v.s = q->s + (size_t)p0 * nk;
    v.ready = ready;
    return v;
}

double dsv3_t_ffn_fwd(dsv3_train *tr, dsv3_layer_acts *a, float *out, float alpha) {
    const dsv3_config *c = &tr->tm->cfg;
    const int l = a->layer, N = a->N, d = c->hidden_size;
    tr->blk = dsv3_layer_is_moe(c, l) ? DSV3_FP8_B_EXPERTS : DSV3_FP8_B_MLP;
    if (!dsv3_layer_is_moe(c, l)) {
        swiglu_block_fwd(tr, 0, a->xn2, &a->qx2, N, d, dsv3_tw(tr, DSV3_P_GATE, l, -1), dsv3_tw(tr, DSV3_P_UP, l, -1),
                         dsv3_tw(tr, DSV3_P_DOWN, l, -1), c->intermediate_size, a->g, a->u, a->a, &a->qact, out);
        return 0.0;
    }
    const int E = c->n_routed_experts, K = c->num_experts_per_tok, Im = c->moe_intermediate_size;
    const int Ish = Im * c->n_shared_experts;
    dsv3_t_linear(tr, DSV3_LIN_HI, a->rlog, a->xn2, NULL, N, dsv3_tw(tr, DSV3_P_ROUTER, l, -1), NULL, E, d);
    const float *bias = c->use_correction_bias ? dsv3_tw(tr, DSV3_P_CORR_BIAS, l, -1) : NULL;
    dsv3_route_tokens(c, a->rlog, bias, N, a->eidx, a->ew, tr->rscratch);
    // slots grouped by expert (counting sort; within an expert, tokens ascending)
    memset(a->off, 0, sizeof(int) * (size_t)(E + 1));
    for (int i = 0; i < N * K; i++) a->off[a->eidx[i] + 1]++;
    for (int e = 0; e < E; e++) a->off[e + 1] += a->off[e];
    int *run = tr->erun; // (E) fill counters
    memset(run, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < N; t++)
        for (int k = 0; k < K; k++) {
            const int e = a->eidx[(size_t)t * K + k], p = a->off[e] + run[e]++;
            a->tok[p] = t;
            a->slot_of[(size_t)t * K + k] = p;
        }
    // dispatch: the fp32 rows (kept unless act8) and, under the FP8 recipe, xn2's codes (made once, in
    // the experts' UE8M0 input format; 1×128 tiles are per row, so gathering them equals quantizing xs)
    if (a->xs) {
        #pragma omp parallel for schedule(static) if ((size_t)N * K * d > 65536)
        for (int p = 0; p < N * K; p++) memcpy(a->xs + (size_t)p * d, a->xn2 + (size_t)a->tok[p] * d, sizeof(float) * d);
    }
    const int codes = tr->fp8 && (tr->fp8_blocks & DSV3_FP8_B_EXPERTS) && a->qxs.q;
    if (codes) {
        const int nk = (d + DSV3_QUANT_TILE - 1) / DSV3_QUANT_TILE;
        dsv3_fp8_quant_input(tr, DSV3_LIN_FP8_EXPIN, &a->qx2, a->xn2, N, d);
        #pragma omp parallel for schedule(static) if ((size_t)N * K * d > 65536)
        for (int p = 0; p < N * K; p++) {
            memcpy(a->qxs.q + (size_t)p * d, a->qx2.q + (size_t)a->tok[p] * d, (size_t)d);
            memcpy(a->qxs.s + (size_t)p * nk, a->qx2.s + (size_t)a->tok[p] * nk, sizeof(float) * nk);
        }
        a->qxs.ready = 1;
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        const int p0 = a->off[e], n = a->off[e + 1] - p0;
        if (n == 0) continue;
        dsv3_xq xv = xq_rows(&a->qxs, p0, d, codes), av = xq_rows(&a->qea, p0, Im, 0);
        swiglu_block_fwd(tr, 1, a->xs ? a->xs + (size_t)p0 * d : NULL, &xv, n, d, dsv3_tw(tr, DSV3_P_EXP_GATE, l, e),
                         dsv3_tw(tr, DSV3_P_EXP_UP, l, e), dsv3_tw(tr, DSV3_P_EXP_DOWN, l, e), Im, a->eg + (size_t)p0 * Im,
                         a->eu + (size_t)p0 * Im, a->ea + (size_t)p0 * Im, &av, a->ey + (size_t)p0 * d);
    }
    if (codes) a->qea.ready = 1;
    #pragma omp parallel for schedule(static) if ((size_t)N * d > 65536)
    for (int t = 0; t < N; t++) { // ascending expert order: deterministic
        float *o = out + (size_t)t * d;
        memset(o, 0, sizeof(float) * d);
        for (int k = 0; k < K; k++) {
            const float w = a->ew[(size_t)t * K + k], *y = a->ey + (size_t)a->slot_of[(size_t)t * K + k] * d;
            for (int j = 0; j < d; j++) o[j] += w * y[j];
        }
    }
    if (Ish > 0) {
        float *ys = tr->dx; // forward-time scratch (N, d)
        swiglu_block_fwd(tr, 1, a->xn2, &a->qx2, N, d, dsv3_tw(tr, DSV3_P_SH_GATE, l, -1), dsv3_tw(tr, DSV3_P_SH_UP, l, -1),
                         dsv3_tw(tr, DSV3_P_SH_DOWN, l, -1), Ish, a->sg, a->su, a->sa, &a->qsa, ys);
        const size_t n = (size_t)N * d;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) out[i] += ys[i];
    }
    // sequence-wise balance loss: per row, f_i from the unbiased top-K of the raw scores, P_i the
    // mean of the scores normalised over all experts
    if (alpha == 0.0f) return 0.0;
    const int Tl = a->Tl, B = N / Tl;
    float *s = tr->rscratch;                       // (E) scores
    unsigned char *flags = (unsigned char *)(tr->rscratch + E); // E bytes in the next E floats
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        float *f = a->f + (size_t)b * E;
        double P[E > 0 ? E : 1];
        for (int e = 0; e < E; e++) { f[e] = 0.0f; P[e] = 0.0; }
        for (int i = 0; i < Tl; i++) {
            const int t = b * Tl + i;
            scores_of(c, a->rlog + (size_t)t * E, s, E);
            topk_flags(s, E, K, flags);
            double S = 0.0;
            for (int e = 0; e < E; e++) S += s[e];
            for (int e = 0; e < E; e++) { f[e] += flags[e]; P[e] += s[e] / S; }
        }
        double row = 0.0;
        for (int e = 0; e < E; e++) {
            f[e] = (float)((double)E / ((double)K * Tl) * f[e]);
            row += f[e] * (P[e] / Tl);
        }
        total += alpha * row;
    }
    return total / B;
}

void dsv3_t_ffn_bwd(dsv3_train *tr, dsv3_layer_acts *a, float *dxn2, const float *dout, float alpha) {
    const dsv3_config *c = &tr->tm->cfg;
    const int l = a->layer, N = a->N, d = c->hidden_size;
    tr->blk = dsv3_layer_is_moe(c, l) ? DSV3_FP8_B_EXPERTS : DSV3_FP8_B_MLP;
    if (!dsv3_layer_is_moe(c, l)) {
        swiglu_block_bwd(tr, 0, dxn2, 0, dout, a->xn2, &a->qx2, N, d, dsv3_tw(tr, DSV3_P_GATE, l, -1), dsv3_tw(tr, DSV3_P_UP, l, -1),
                         dsv3_tw(tr, DSV3_P_DOWN, l, -1), dsv3_tg(tr, DSV3_P_GATE, l, -1), dsv3_tg(tr, DSV3_P_UP, l, -1),
                         dsv3_tg(tr, DSV3_P_DOWN, l, -1), c->intermediate_size, a->g, a->u, a->a, &a->qact, tr->da, tr->dg, tr->du);
        return;
    }
    const int E = c->n_routed_experts, K = c->num_experts_per_tok, Im = c->moe_intermediate_size;
    const int Ish = Im * c->n_shared_experts;
    if (Ish > 0)
        swiglu_block_bwd(tr, 1, dxn2, 0, dout, a->xn2, &a->qx2, N, d, dsv3_tw(tr, DSV3_P_SH_GATE, l, -1),
                         dsv3_tw(tr, DSV3_P_SH_UP, l, -1), dsv3_tw(tr, DSV3_P_SH_DOWN, l, -1),
                         dsv3_tg(tr, DSV3_P_SH_GATE, l, -1), dsv3_tg(tr, DSV3_P_SH_UP, l, -1),
                         dsv3_tg(tr, DSV3_P_SH_DOWN, l, -1), Ish, a->sg, a->su, a->sa, &a->qsa, tr->da, tr->dg, tr->du);
    else
        memset(dxn2, 0, sizeof(float) * (size_t)N * d);
    // routed experts: dy per slot = w · dout, dw = <dout, y>
    #pragma omp parallel for schedule(static) if ((size_t)N * K * d > 65536)
    for (int t = 0; t < N; t++) {
        const float *go = dout + (size_t)t * d;
        for (int k = 0; k < K; k++) {
            const int p = a->slot_of[(size_t)t * K + k];
            const float w = a->ew[(size_t)t * K + k], *y = a->ey + (size_t)p * d;
            float *dy = tr->dey + (size_t)p * d;
            double dot = 0.0;
            for (int j = 0; j < d; j++) { dy[j] = w * go[j]; dot += (double)go[j] * y[j]; }
            tr->dew[(size_t)t * K + k] = (float)dot;
        }
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        const int p0 = a->off[e], n = a->off[e + 1] - p0;
        if (n == 0) continue;
        dsv3_xq xv = xq_rows(&a->qxs, p0, d, a->qxs.ready), av = xq_rows(&a->qea, p0, Im, a->qea.ready);
        swiglu_block_bwd(tr, 1, tr->dxs + (size_t)p0 * d, 0, tr->dey + (size_t)p0 * d, a->xs ? a->xs + (size_t)p0 * d : NULL, &xv,
                         n, d, dsv3_tw(tr, DSV3_P_EXP_GATE, l, e), dsv3_tw(tr, DSV3_P_EXP_UP, l, e),
                         dsv3_tw(tr, DSV3_P_EXP_DOWN, l, e), dsv3_tg(tr, DSV3_P_EXP_GATE, l, e), dsv3_tg(tr, DSV3_P_EXP_UP, l, e),
                         dsv3_tg(tr, DSV3_P_EXP_DOWN, l, e), Im, a->eg + (size_t)p0 * Im, a->eu + (size_t)p0 * Im,
                         a->ea + (size_t)p0 * Im, &av, tr->dea + (size_t)p0 * Im, tr->deg + (size_t)p0 * Im, tr->deu + (size_t)p0 * Im);
    }
    #pragma omp parallel for schedule(static) if ((size_t)N * K * d > 65536)
    for (int t = 0; t < N; t++) {
        float *g = dxn2 + (size_t)t * d;
        for (int k = 0; k < K; k++) {
            const float *s = tr->dxs + (size_t)a->slot_of[(size_t)t * K + k] * d;
            for (int j = 0; j < d; j++) g[j] += s[j];
        }
    }
    // router logits: gating weights + balance loss, through sigmoid / softmax
    const int sig = c->scoring == DSV3_SCORE_SIGMOID;
    const int norm = c->norm_topk_prob && (sig || K > 1);
    const float rsf = (sig || !norm) ? c->routed_scaling_factor : 1.0f;
    const int Tl = a->Tl, B = N / Tl;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float s[E], ds[E];
        const float *z = a->rlog + (size_t)t * E;
        scores_of(c, z, s, E);
        for (int e = 0; e < E; e++) ds[e] = 0.0f;
        const int32_t *ei = a->eidx + (size_t)t * K;
        const float *dw = tr->dew + (size_t)t * K;
        if (norm) {
            double S = 1e-20, sd = 0.0;
            for (int k = 0; k < K; k++) S += s[ei[k]];
            for (int k = 0; k < K; k++) sd += (double)dw[k] * s[ei[k]];
            for (int k = 0; k < K; k++) ds[ei[k]] += (float)(rsf * (dw[k] / S - sd / (S * S)));
        } else {
            for (int k = 0; k < K; k++) ds[ei[k]] += rsf * dw[k];
        }
        if (alpha != 0.0f) {
            const float *f = a->f + (size_t)(t / Tl) * E;
            double S = 0.0, Fs = 0.0;
            for (int e = 0; e < E; e++) { S += s[e]; Fs += (double)f[e] * s[e]; }
            const double F = Fs / S, k0 = alpha / ((double)B * Tl * S);
            for (int e = 0; e < E; e++) ds[e] += (float)(k0 * (f[e] - F));
        }
        float *dz = tr->drl + (size_t)t * E;
        if (sig) {
            for (int e = 0; e < E; e++) dz[e] = ds[e] * s[e] * (1.0f - s[e]);
        } else {
            double dot = 0.0;
            for (int e = 0; e < E; e++) dot += (double)ds[e] * s[e];
            for (int e = 0; e < E; e++) dz[e] = (float)(s[e] * (ds[e] - dot));
        }
    }
    dsv3_t_linear_bwd(tr, DSV3_LIN_HI, dxn2, 1, dsv3_tg(tr, DSV3_P_ROUTER, l, -1), NULL, tr->drl, a->xn2, NULL,
                      dsv3_tw(tr, DSV3_P_ROUTER, l, -1), N, E, d);
}
