// Feed-forward blocks: dense SwiGLU and DeepSeekMoE (spec deepseek-v3 §2.6-2.8,
// reference-oracle §2.4). Routed experts are evaluated expert-major: the tokens routed to an
// expert are gathered into one batch, so each expert's weights are read once per forward.
#include "model/forward_impl.h"
#include "kernels/cpu/ops.h"
#include <math.h>
#include <omp.h>
#include <string.h>

// Index of the largest value among v[0..n) whose taken[] flag is 0 (lowest index on ties).
static int argmax_free(const float *v, const unsigned char *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

void dsv3_route_token(const dsv3_config *c, const float *logits, const float *bias, int32_t *experts,
                      float *weights, float *scratch) {
    const int E = c->n_routed_experts, K = c->num_experts_per_tok;
    const int G = c->n_group > 0 ? c->n_group : 1, per = E / G;
    float *s = scratch, *sel = scratch + E, *gs = scratch + 2 * E;
    unsigned char taken[E > G ? E : G];
    const int sig = c->scoring == DSV3_SCORE_SIGMOID;

    if (sig) {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    } else {
        for (int e = 0; e < E; e++) s[e] = logits[e];
        dsv3_softmax(s, E);
    }
    for (int e = 0; e < E; e++) sel[e] = (sig && bias) ? s[e] + bias[e] : s[e];

    // group limit (V3 always; V2 "group_limited_greedy" has n_group > 1)
    if (G > 1 && c->topk_group < G) {
        for (int g = 0; g < G; g++) {
            const float *v = sel + g * per;
            if (sig) { // sum of the top-2 biased scores in the group
                int a = 0;
                for (int i = 1; i < per; i++) if (v[i] > v[a]) a = i;
                int b = -1;
                for (int i = 0; i < per; i++) if (i != a && (b < 0 || v[i] > v[b])) b = i;
                gs[g] = v[a] + (b >= 0 ? v[b] : 0.0f);
            } else {   // HF deepseek_v2: max per group
                float mx = v[0];
                for (int i = 1; i < per; i++) if (v[i] > mx) mx = v[i];
                gs[g] = mx;
            }
        }
        memset(taken, 0, (size_t)G);
        for (int k = 0; k < c->topk_group; k++) taken[argmax_free(gs, taken, G)] = 1;
        // dropped groups: -inf (V3, HF >= 5.17 and the official code); 0.0 for V2 as HF does
        for (int g = 0; g < G; g++)
            if (!taken[g])
                for (int i = 0; i < per; i++) sel[g * per + i] = sig ? -INFINITY : 0.0f;
    }

    memset(taken, 0, (size_t)E);
    for (int k = 0; k < K; k++) taken[argmax_free(sel, taken, E)] = 1;
    int n = 0;
    for (int e = 0; e < E; e++) if (taken[e]) { experts[n] = e; weights[n] = s[e]; n++; }

    // norm_topk_prob: V3 (sigmoid, HF): normalise, then scale. For V2 (softmax) HF ignores the key;
    // DeepSeek's own V2 code normalises when it is true and top_k > 1, and then does NOT apply
    // routed_scaling_factor ("if top_k > 1 and norm_topk_prob: w /= sum  else: w *= scale"). Every
    // released V2 config has it false; we follow DeepSeek.
    const int norm = c->norm_topk_prob && (sig || K > 1);
    if (norm) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++) sum += weights[k];
        sum += 1e-20f;
        for (int k = 0; k < K; k++) weights[k] /= sum;
    }
    if (sig || !norm)
        for (int k = 0; k < K; k++) weights[k] *= c->routed_scaling_factor;
}

void dsv3_route_tokens(const dsv3_config *c, const float *logits, const float *bias, int T, int32_t *experts,
                       float *weights, float *scratch) {
    const int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group > 0 ? c->n_group : 1;
    enum { STACK = 4096 };
    const int threads = 2 * E + G <= STACK && (double)T * E >= 8192 && !omp_in_parallel() && omp_get_max_threads() > 1;
    if (!threads) {
        for (int t = 0; t < T; t++)
            dsv3_route_token(c, logits + (size_t)t * E, bias, experts + (size_t)t * K, weights + (size_t)t * K, scratch);
        return;
    }
#pragma omp parallel
    {
        float sc[STACK];
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++)
            dsv3_route_token(c, logits + (size_t)t * E, bias, experts + (size_t)t * K, weights + (size_t)t * K, sc);
    }
}

// out (T, d) = down(silu(gate(xn)) ⊙ up(xn)), using w->g / w->u as the inner buffers.
static void swiglu_mlp(dsv3_fwd_ws *w, const float *xn, int T, const dsv3_mat *gate, const dsv3_mat *up,
                       const dsv3_mat *down, float *out) {
    const int I = gate->rows;
    dsv3_matmul(w->g, xn, gate, T);
    dsv3_matmul(w->u, xn, up, T);
    dsv3_swiglu(w->g, w->u, (long)T * I);
    dsv3_matmul(out, w->g, down, T);
}

void dsv3_ffn_forward(dsv3_fwd *f, dsv3_fwd_ws *w, int layer, int T, int32_t *tr_e, float *tr_w) {
    const dsv3_config *c = &f->m->cfg;
    const dsv3_layer *L = &f->m->layers[layer];
    const int d = c->hidden_size;
    if (!L->is_moe) {
        swiglu_mlp(w, w->xn, T, &L->gate_proj, &L->up_proj, &L->down_proj, w->o);
        return;
    }
    const int E = c->n_routed_experts, K = c->num_experts_per_tok;

    // router in fp32
    dsv3_matmul(w->rlog, w->xn, &L->router, T);
    dsv3_route_tokens(c, w->rlog, c->use_correction_bias ? L->correction_bias : NULL, T, w->eidx, w->ew, w->rscratch);
    if (tr_e) {
        memcpy(tr_e, w->eidx, sizeof(int32_t) * (size_t)T * K);
        memcpy(tr_w, w->ew, sizeof(float) * (size_t)T * K);
    }

    // group (token, weight) pairs by expert: counting sort; slot_of[t*K + k] = position of the pair
    memset(w->cnt, 0, sizeof(int) * (size_t)(E + 1));
    for (int i = 0; i < T * K; i++) w->cnt[w->eidx[i]]++;
    w->off[0] = 0;
    for (int e = 0; e < E; e++) w->off[e + 1] = w->off[e] + w->cnt[e];
    memset(w->cnt, 0, sizeof(int) * (size_t)(E + 1));
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int e = w->eidx[(size_t)t * K + k], p = w->off[e] + w->cnt[e]++;
            w->tok[p] = t;
            w->tokw[p] = w->ew[(size_t)t * K + k];
            w->slot_of[(size_t)t * K + k] = p;
        }

    // Experts run in parallel, one per thread at a time (their GEMMs single-threaded): each expert's
    // tokens form one (n_e, d) batch, so its weights are read once per forward. Outputs go to one row
    // per (token, expert) slot; no two experts write the same row.
    const int Im = c->moe_intermediate_size;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < E; e++) {
        const int n = w->off[e + 1] - w->off[e];
        if (n == 0) continue;
        float *xe = w->eth + (size_t)omp_get_thread_num() * w->eth_stride;
        float *g = xe + (size_t)T * d, *u = g + (size_t)T * Im;
        const int *tk = w->tok + w->off[e];
        for (int i = 0; i < n; i++) memcpy(xe + (size_t)i * d, w->xn + (size_t)tk[i] * d, sizeof(float) * d);
        dsv3_matmul(g, xe, &L->exp_gate[e], n);
        dsv3_matmul(u, xe, &L->exp_up[e], n);
        dsv3_swiglu(g, u, (long)n * Im);
        dsv3_matmul(w->yslot + (size_t)w->off[e] * d, g, &L->exp_down[e], n);
    }
    // combine per token in ascending expert order (deterministic, independent of the thread count)
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dst = w->o + (size_t)t * d;
        memset(dst, 0, sizeof(float) * d);
        for (int k = 0; k < K; k++) {
            const int p = w->slot_of[(size_t)t * K + k];
            const float *src = w->yslot + (size_t)p * d;
            const float wt = w->tokw[p];
            for (int j = 0; j < d; j++) dst[j] += src[j] * wt;
        }
    }
    if (c->n_shared_experts > 0) {
        swiglu_mlp(w, w->xn, T, &L->sh_gate, &L->sh_up, &L->sh_down, w->ye);
        for (size_t i = 0; i < (size_t)T * d; i++) w->o[i] += w->ye[i];
    }
}
