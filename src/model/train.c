// Training forward + backward driver (train.h, docs/TRAINING.md): memory plan, embedding, decoder
// layers, final norm + head + cross-entropy in row chunks, MTP modules, and the backward in reverse.
#include "model/train_impl.h"
#include "core/error.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/wpack.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NORM_EPS_LATENT 1e-6f // q_a_layernorm / kv_a_layernorm (HF default, as the forward)

// ---- memory plan ------------------------------------------------------------------------------

typedef struct { char *base; size_t off; } bump;
static void *take(bump *b, size_t bytes) {
    size_t o = (b->off + 63) & ~(size_t)63;
    b->off = o + (bytes ? bytes : 1);
    return b->base ? b->base + o : NULL;
}
#define F(b, n) ((float *)take(b, sizeof(float) * (size_t)(n)))
#define I32(b, n) ((int32_t *)take(b, sizeof(int32_t) * (size_t)(n)))
#define INT(b, n) ((int *)take(b, sizeof(int) * (size_t)(n)))

static size_t imaxz(size_t a, size_t b) { return a > b ? a : b; }

// Layer-shared transient fp32 buffers for the FP8 Linear inputs whose fp32 copies are not kept (act8).
typedef struct { float *xn1, *qan, *cn, *xn2, *a, *ea; } transients;

static void xq_plan(bump *b, dsv3_xq *q, size_t N, size_t in) {
    q->q = (uint8_t *)take(b, N * in);
    q->s = F(b, N * ((in + DSV3_QUANT_TILE - 1) / DSV3_QUANT_TILE));
    q->ready = 0;
}

// Carves the activations of one layer with Tl tokens per row; `min` accumulates the analytic minimum.
// plan8: the FP8 input codes too; tt (non-NULL): those inputs' fp32 copies are the transient buffers.
static void plan_layer(bump *b, dsv3_layer_acts *a, const dsv3_config *c, int layer, int B, int Tl, size_t *min, int plan8,
                       const transients *tt) {
    const size_t N = (size_t)B * Tl, d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    const size_t ql = c->q_lora_rank, kvl = c->kv_lora_rank, rope = c->qk_rope_head_dim, nope = c->qk_nope_head_dim;
    const size_t v = c->v_head_dim, E = c->n_routed_experts, K = c->num_experts_per_tok, Im = c->moe_intermediate_size;
    const size_t Ish = Im * c->n_shared_experts;
    const int moe = dsv3_layer_is_moe(c, layer);
    memset(a, 0, sizeof *a);
    a->layer = layer; a->Tl = Tl; a->N = (int)N;
    a->x = F(b, N * d); a->xn1 = tt ? tt->xn1 : F(b, N * d); a->rs1 = F(b, N);
    if (ql) { a->qa = F(b, N * ql); a->qan = tt ? tt->qan : F(b, N * ql); a->qars = F(b, N); }
    a->q = F(b, N * H * qk);
    a->c = F(b, N * kvl); a->cn = tt ? tt->cn : F(b, N * kvl); a->cnrs = F(b, N); a->kpe = F(b, N * rope);
    a->kv = F(b, N * H * (nope + v)); a->kfull = F(b, N * H * qk);
    a->qabs = F(b, N * H * (kvl + rope)); a->kcat = F(b, N * (kvl + rope)); a->lat = F(b, N * H * kvl);
    a->att = F(b, N * H * v); a->lse = F(b, (size_t)B * H * Tl);
    a->xm = F(b, N * d); a->xn2 = tt ? tt->xn2 : F(b, N * d); a->rs2 = F(b, N);
    if (plan8) {
        xq_plan(b, &a->qx1, N, d); xq_plan(b, &a->qx2, N, d); xq_plan(b, &a->qcn, N, kvl);
        if (ql) xq_plan(b, &a->qqan, N, ql);
    }
    // minimum: layer input, two normed inputs, q, latent, attention output + LSE, residual midpoint
    size_t m = N * (4 * d + H * qk + kvl + rope + H * v + H + 3);
    if (!moe) {
        const size_t I = c->intermediate_size;
        a->g = F(b, N * I); a->u = F(b, N * I); a->a = tt ? tt->a : F(b, N * I);
        if (plan8) xq_plan(b, &a->qact, N, I);
        m += 2 * N * I;
    } else {
        a->rlog = F(b, N * E); a->eidx = I32(b, N * K); a->ew = F(b, N * K);
        a->off = INT(b, E + 1); a->tok = INT(b, N * K); a->slot_of = INT(b, N * K);
        a->xs = tt ? NULL : F(b, N * K * d); a->eg = F(b, N * K * Im); a->eu = F(b, N * K * Im);
        a->ea = tt ? tt->ea : F(b, N * K * Im);
        a->ey = F(b, N * K * d);
        if (Ish) { a->sg = F(b, N * Ish); a->su = F(b, N * Ish); a->sa = tt ? tt->a : F(b, N * Ish); }
        if (plan8) {
            xq_plan(b, &a->qxs, N * K, d); xq_plan(b, &a->qea, N * K, Im);
            if (Ish) xq_plan(b, &a->qsa, N, Ish);
        }
        a->f = F(b, (size_t)B * E);
        m += N * E + 2 * N * K + N * K * (2 * Im + d) + 2 * N * Ish;
    }
    *min += m * sizeof(float);
}

static void plan(dsv3_train *tr, const dsv3_config *c, bump *act, bump *ws) {
    const int B = tr->B, T = tr->T, D = tr->D, L = c->num_hidden_layers;
    const size_t N = (size_t)B * T, d = c->hidden_size, V = c->vocab_size, H = c->num_attention_heads;
    const size_t qk = dsv3_qk_head_dim(c), ql = c->q_lora_rank, kvl = c->kv_lora_rank, rope = c->qk_rope_head_dim;
    const size_t nope = c->qk_nope_head_dim, v = c->v_head_dim, E = c->n_routed_experts, K = c->num_experts_per_tok;
    const size_t Im = c->moe_intermediate_size, G = c->n_group > 0 ? c->n_group : 1;
    const size_t Imax = imaxz(c->intermediate_size, Im * c->n_shared_experts);
    size_t min = 0;
    transients tt = {0};
    float *ten = NULL, *thn = NULL, *tcat = NULL;
    if (tr->act8) { // one of each per step, in the workspace: every layer overwrites them
        tt.xn1 = F(ws, N * d); tt.qan = F(ws, N * (ql ? ql : 1)); tt.cn = F(ws, N * kvl); tt.xn2 = F(ws, N * d);
        tt.a = F(ws, N * Imax); tt.ea = F(ws, N * K * (Im ? Im : 1));
        // the MTP depth's normed inputs and their concatenation die at its eh_proj, before the block's
        // first layer writes xn1 / xn2 / a: they share those buffers
        if (D) { ten = tt.xn1; thn = tt.xn2; tcat = Imax >= 2 * d ? tt.a : F(ws, N * 2 * d); }
    }
    tr->cos_t = F(act, (size_t)T * tr->np); tr->sin_t = F(act, (size_t)T * tr->np);
    for (int k = 0; k <= D; k++) tr->pos_tl[k] = I32(act, (size_t)B * (T - k));
    tr->ids = I32(act, N); tr->tgt = I32(act, N);
    for (int l = 0; l < L; l++) plan_layer(act, &tr->acts[l], c, l, B, T, &min, tr->plan8, tr->act8 ? &tt : NULL);
    tr->xf = F(act, N * d); tr->hN = F(act, N * d); tr->rsN = F(act, N);
    min += N * (2 * d + 1) * sizeof(float);
    for (int k = 1; k <= D; k++) {
        const size_t Nk = (size_t)B * (T - k);
        tr->mids[k - 1] = I32(act, Nk); tr->mtgt[k - 1] = I32(act, Nk);
        tr->memb[k - 1] = F(act, Nk * d); tr->mrse[k - 1] = F(act, Nk);
        tr->mhp[k - 1] = F(act, Nk * d); tr->mrsh[k - 1] = F(act, Nk);
        if (tr->act8) { tr->men[k - 1] = ten; tr->mhn[k - 1] = thn; tr->mcat[k - 1] = tcat; }
        else { tr->men[k - 1] = F(act, Nk * d); tr->mhn[k - 1] = F(act, Nk * d); tr->mcat[k - 1] = F(act, Nk * 2 * d); }
        memset(&tr->qcat[k - 1], 0, sizeof tr->qcat[k - 1]);
        if (tr->plan8) xq_plan(act, &tr->qcat[k - 1], Nk, 2 * d);
        plan_layer(act, &tr->acts[L + k - 1], c, L + k - 1, B, T - k, &min, tr->plan8, tr->act8 ? &tt : NULL);
        tr->mxo[k - 1] = F(act, Nk * d); tr->mh[k - 1] = F(act, Nk * d); tr->mrso[k - 1] = F(act, Nk);
        tr->mdh[k - 1] = F(act, Nk * d);
        min += Nk * (4 * d + 2) * sizeof(float);
    }
    // workspace
    tr->dx = F(ws, N * d); tr->dt = F(ws, N * d); tr->dxn = F(ws, N * d);
    tr->dq = F(ws, N * H * imaxz(qk, kvl + rope));
    tr->dk = F(ws, N * H * imaxz(qk, kvl + rope));
    tr->dkv = F(ws, N * imaxz(H * (nope + v), kvl + rope)); tr->datt = F(ws, N * H * v); tr->dlat = F(ws, N * H * kvl);
    tr->dc = F(ws, N * kvl); tr->dcn = F(ws, N * kvl); tr->dkpe = F(ws, N * rope); tr->dkva = F(ws, N * (kvl + rope));
    tr->dqa = F(ws, N * (ql ? ql : 1)); tr->dqan = F(ws, N * (ql ? ql : 1));
    tr->dg = F(ws, N * Imax); tr->du = F(ws, N * Imax); tr->da = F(ws, N * Imax);
    tr->deg = F(ws, N * K * Im); tr->deu = F(ws, N * K * Im); tr->dea = F(ws, N * K * Im);
    tr->dey = F(ws, N * K * d); tr->dxs = F(ws, N * K * d);
    tr->drl = F(ws, N * (E ? E : 1)); tr->dew = F(ws, N * (K ? K : 1));
    tr->rscratch = F(ws, 2 * E + G); tr->erun = INT(ws, E + 1);
    tr->lg = F(ws, (size_t)tr->chunk * V);
    tr->dcat = F(ws, N * 2 * d); tr->dhp = F(ws, N * d); tr->dnx = F(ws, N * d);
    tr->min_bytes = min;
}

// What the arenas hold under an FP8 recipe r (NULL: no FP8 Linears).
static void modes_of(const dsv3_fp8_recipe *r, int *plan8, int *act8) {
    *plan8 = r != NULL;
    *act8 = r && !r->keep_fp32_inputs && !r->wgrad_x_high && (r->blocks & DSV3_FP8_B_ALL) == DSV3_FP8_B_ALL;
}

static dsv3_train *train_alloc(const dsv3_config *c, int n_mtp, int B, int T, const dsv3_fp8_recipe *r) {
    dsv3_train *tr = dsv3_calloc(1, sizeof *tr);
    tr->B = B; tr->T = T;
    modes_of(r, &tr->plan8, &tr->act8);
    tr->D = n_mtp < T ? n_mtp : T - 1;
    if (tr->D < 0) tr->D = 0;
    tr->np = c->qk_rope_head_dim / 2;
    tr->chunk = 256;
    tr->acts = dsv3_calloc((size_t)c->num_hidden_layers + tr->D + 1, sizeof *tr->acts);
    bump a = {0}, w = {0};
    plan(tr, c, &a, &w);
    tr->act_bytes = a.off; tr->ws_bytes = w.off;
    return tr;
}

static int check_shape(const dsv3_config *c, int n_mtp, int B, int T) {
    if (B < 1 || T < 1) return dsv3_errorf("train: need B >= 1 rows and T >= 1 input tokens per row (got B=%d, T=%d)", B, T);
    if (n_mtp > DSV3_TRAIN_MAX_MTP) return dsv3_errorf("train: %d MTP layers, at most %d supported", n_mtp, DSV3_TRAIN_MAX_MTP);
    if ((double)B * T > 1e8) return dsv3_errorf("train: B·T = %.0f tokens per micro-batch is too many", (double)B * T);
    return 0;
}

int dsv3_train_plan_bytes(const dsv3_config *c, int n_mtp, int B, int T, const dsv3_fp8_recipe *fp8, size_t *act, size_t *ws,
                          size_t *min) {
    if (check_shape(c, n_mtp, B, T) < 0) return -1;
    dsv3_train *tr = train_alloc(c, n_mtp, B, T, fp8);
    *act = tr->act_bytes; *ws = tr->ws_bytes; *min = tr->min_bytes;
    free(tr->acts);
    free(tr);
    return 0;
}

// Allocates the arenas for the plan tr's modes describe, carves them, fills the rope and position tables.
static void carve(dsv3_train *tr) {
    const dsv3_config *c = &tr->tm->cfg;
    const int B = tr->B, T = tr->T;
    // huge-page advised (core/error.h dsv3_alloc_pages), zeroed as before
    tr->act_arena = dsv3_alloc_pages(tr->act_bytes ? tr->act_bytes : 1);
    tr->ws_arena = dsv3_alloc_pages(tr->ws_bytes ? tr->ws_bytes : 1);
    if (!tr->act_arena || !tr->ws_arena)
        dsv3_panic(__FILE__, __LINE__, "train: out of memory for the %zu + %zu byte arenas", tr->act_bytes, tr->ws_bytes);
    memset(tr->act_arena, 0, tr->act_bytes);
    memset(tr->ws_arena, 0, tr->ws_bytes);
    bump a = {tr->act_arena, 0}, w = {tr->ws_arena, 0};
    plan(tr, c, &a, &w);
    float *inv = dsv3_malloc(sizeof(float) * (size_t)(tr->np ? tr->np : 1));
    dsv3_rope_inv_freq(c, inv);
    dsv3_rope_tables(tr->cos_t, tr->sin_t, inv, tr->np, 0, T, (float)dsv3_rope_attention_factor(c));
    free(inv);
    for (int k = 0; k <= tr->D; k++)
        for (int r = 0; r < B * (T - k); r++) tr->pos_tl[k][r] = r % (T - k);
}

int dsv3_t_replan(dsv3_train *tr, const dsv3_fp8_recipe *r) {
    int p8, a8;
    modes_of(r, &p8, &a8);
    if (p8 == tr->plan8 && a8 == tr->act8) return 0;
    const int old8 = tr->plan8, olda = tr->act8;
    tr->plan8 = p8; tr->act8 = a8;
    bump a = {0}, w = {0};
    plan(tr, &tr->tm->cfg, &a, &w); // sizes only (the pointers are re-carved below)
    if (tr->max_bytes && a.off + w.off > tr->max_bytes) {
        tr->plan8 = old8; tr->act8 = olda;
        bump a0 = {tr->act_arena, 0}, w0 = {tr->ws_arena, 0};
        plan(tr, &tr->tm->cfg, &a0, &w0);
        return dsv3_errorf("train: B=%d x T=%d needs %.1f MiB of activations + workspace under the FP8 recipe, over the limit of "
                           "%.1f MiB", tr->B, tr->T, (a.off + w.off) / 1048576.0, tr->max_bytes / 1048576.0);
    }
    free(tr->act_arena);
    free(tr->ws_arena);
    tr->act_bytes = a.off; tr->ws_bytes = w.off;
    carve(tr);
    return 0;
}

dsv3_train *dsv3_train_new(dsv3_tmodel *tm, int B, int T, const dsv3_backend *be, size_t max_bytes) {
    const dsv3_config *c = &tm->cfg;
    if (check_shape(c, tm->tab.n_mtp, B, T) < 0) return NULL;
    dsv3_train *tr = train_alloc(c, tm->tab.n_mtp, B, T, NULL);
    tr->max_bytes = max_bytes;
    if (max_bytes && tr->act_bytes + tr->ws_bytes > max_bytes) {
        dsv3_errorf("train: B=%d x T=%d needs %.1f MiB of activations + workspace, over the limit of %.1f MiB", B, T,
                    (tr->act_bytes + tr->ws_bytes) / 1048576.0, max_bytes / 1048576.0);
        free(tr->acts); free(tr);
        return NULL;
    }
    tr->tm = tm;
    tr->be = be;
    tr->scale = (float)dsv3_softmax_scale(c);
    tr->interleave = strcmp(c->model_type, "deepseek_v2") == 0 ? 1 : c->rope_interleave;
    carve(tr);
    // lookup: (layer + 1, kind) -> first table entry
    const int nl = c->num_hidden_layers + tm->tab.n_mtp;
    tr->lut = dsv3_malloc(sizeof(int) * (size_t)(nl + 1) * DSV3_P_NKINDS);
    for (int i = 0; i < (nl + 1) * DSV3_P_NKINDS; i++) tr->lut[i] = -1;
    for (int i = tm->tab.n - 1; i >= 0; i--) {
        const dsv3_param *p = &tm->tab.p[i];
        tr->lut[(p->layer + 1) * DSV3_P_NKINDS + p->kind] = i;
    }
    return tr;
}

void dsv3_train_free(dsv3_train *tr) {
    if (!tr) return;
    dsv3_fp8_state_free(tr->fp8);
    free(tr->act_arena);
    free(tr->ws_arena);
    free(tr->acts);
    free(tr->lut);
    free(tr);
}

void dsv3_train_bytes(const dsv3_train *tr, size_t *act, size_t *ws, size_t *min) {
    *act = tr->act_bytes; *ws = tr->ws_bytes; *min = tr->min_bytes;
}

static int entry(dsv3_train *tr, int kind, int layer, int expert) {
    int i = tr->lut[(layer + 1) * DSV3_P_NKINDS + kind];
    if (i < 0) return -1;
    if (expert > 0) i += 3 * expert; // experts: gate, up, down per expert, consecutive
    return i;
}
float *dsv3_tw(dsv3_train *tr, int kind, int layer, int expert) {
    int i = entry(tr, kind, layer, expert);
    return i < 0 ? NULL : dsv3_tmodel_param(tr->tm, i);
}
float *dsv3_tg(dsv3_train *tr, int kind, int layer, int expert) {
    int i = entry(tr, kind, layer, expert);
    return i < 0 ? NULL : dsv3_tmodel_grad(tr->tm, i);
}

// ---- shared helpers -----------------------------------------------------------------------------

void dsv3_t_linear(dsv3_train *tr, dsv3_lin_role role, float *y, const float *x, dsv3_xq *xq, int N, const float *W,
                   const float *bias, int out, int in) {
    if (N == 0 || out == 0) return;
    if (tr->fp8 && role != DSV3_LIN_HI && (tr->fp8_blocks & tr->blk)) dsv3_fp8_linear_fwd(tr, role, y, x, xq, N, W, out, in);
    else tr->be->gemm(0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (bias)
        for (int r = 0; r < N; r++)
            for (int j = 0; j < out; j++) y[(size_t)r * out + j] += bias[j];
}

void dsv3_t_linear_bwd(dsv3_train *tr, dsv3_lin_role role, float *dx, int acc, float *dW, float *dbias, const float *dy,
                       const float *x, dsv3_xq *xq, const float *W, int N, int out, int in) {
    if (N == 0 || out == 0) {
        if (dx && !acc) memset(dx, 0, sizeof(float) * (size_t)N * in);
        return;
    }
    if (tr->fp8 && role != DSV3_LIN_HI && (tr->fp8_blocks & tr->blk)) {
        dsv3_fp8_linear_bwd(tr, role, dx, acc, dW, dy, x, xq, W, N, out, in);
    } else {
        if (dx) tr->be->gemm(0, 0, N, in, out, 1.0f, dy, out, W, in, acc ? 1.0f : 0.0f, dx, in);
        tr->be->gemm(1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    }
    if (dbias)
        for (int r = 0; r < N; r++)
            for (int j = 0; j < out; j++) dbias[j] += dy[(size_t)r * out + j];
}

static void add_to(float *y, const float *x, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

// ---- one decoder layer ----------------------------------------------------------------------------

static double layer_fwd(dsv3_train *tr, dsv3_layer_acts *a, float *out, const dsv3_train_opts *o) {
    const dsv3_config *c = &tr->tm->cfg;
    const int N = a->N, d = c->hidden_size;
    dsv3_xq *qs[] = {&a->qx1, &a->qqan, &a->qcn, &a->qx2, &a->qxs, &a->qact, &a->qea, &a->qsa};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) qs[i]->ready = 0; // this step's codes are made below
    tr->be->rmsnorm_fwd(a->xn1, a->rs1, a->x, dsv3_tw(tr, DSV3_P_IN_NORM, a->layer, -1), N, d, c->rms_norm_eps);
    dsv3_t_attn_fwd(tr, a, o->attn);  // writes tr->dt = attention block output (N, d)
    for (size_t i = 0; i < (size_t)N * d; i++) a->xm[i] = a->x[i] + tr->dt[i];
    tr->be->rmsnorm_fwd(a->xn2, a->rs2, a->xm, dsv3_tw(tr, DSV3_P_POST_NORM, a->layer, -1), N, d, c->rms_norm_eps);
    double bal = dsv3_t_ffn_fwd(tr, a, tr->dt, o->seq_aux);
    for (size_t i = 0; i < (size_t)N * d; i++) out[i] = a->xm[i] + tr->dt[i];
    return bal;
}

// dx (N, d): gradient w.r.t. the layer output on entry, w.r.t. its input on return.
static void layer_bwd(dsv3_train *tr, dsv3_layer_acts *a, float *dx, const dsv3_train_opts *o) {
    const dsv3_config *c = &tr->tm->cfg;
    const int N = a->N, d = c->hidden_size;
    const size_t n = (size_t)N * d;
    // FFN branch: dxm = dx + norm2ᵀ(ffnᵀ(dx))
    if (tr->act8 && dsv3_layer_is_moe(c, a->layer)) // the router's Wgrad reads xn2: recomputed (bit-identical)
        tr->be->rmsnorm_fwd(a->xn2, a->rs2, a->xm, dsv3_tw(tr, DSV3_P_POST_NORM, a->layer, -1), N, d, c->rms_norm_eps);
    dsv3_t_ffn_bwd(tr, a, tr->dxn, dx, o->seq_aux);
    tr->be->rmsnorm_bwd(tr->dt, dsv3_tg(tr, DSV3_P_POST_NORM, a->layer, -1), tr->dxn, a->xm,
                        dsv3_tw(tr, DSV3_P_POST_NORM, a->layer, -1), a->rs2, N, d);
    add_to(dx, tr->dt, n);
    // attention branch
    dsv3_t_attn_bwd(tr, a, o->attn, tr->dxn, dx);
    tr->be->rmsnorm_bwd(tr->dt, dsv3_tg(tr, DSV3_P_IN_NORM, a->layer, -1), tr->dxn, a->x,
                        dsv3_tw(tr, DSV3_P_IN_NORM, a->layer, -1), a->rs1, N, d);
    add_to(dx, tr->dt, n);
}

// ---- head + cross-entropy in row chunks -----------------------------------------------------------

// CE of h (N, d) through the head W (V, d) against tgt; gradient scale `scale`; writes dh (N, d)
// (when dh) and accumulates dW. Returns Σ CE.
// `logits` (non-NULL): the (N, V) logits are copied there before the cross-entropy.
static double head_xent(dsv3_train *tr, const float *h, const int32_t *tgt, int N, float scale, float *dh, float *dW,
                        float *logits) {
    const dsv3_config *c = &tr->tm->cfg;
    const int d = c->hidden_size, V = c->vocab_size;
    const float *W = dsv3_tw(tr, c->tie_word_embeddings ? DSV3_P_EMBED : DSV3_P_HEAD, -1, -1);
    double sum = 0.0;
    for (int r0 = 0; r0 < N; r0 += tr->chunk) {
        const int n = N - r0 < tr->chunk ? N - r0 : tr->chunk;
        tr->be->gemm(0, 1, n, V, d, 1.0f, h + (size_t)r0 * d, d, W, d, 0.0f, tr->lg, V);
        if (logits) memcpy(logits + (size_t)r0 * V, tr->lg, sizeof(float) * (size_t)n * V);
        sum += tr->be->xent(tr->lg, tgt + r0, n, V, scale, dh ? tr->lg : NULL);
        if (dh) {
            tr->be->gemm(0, 0, n, d, V, 1.0f, tr->lg, V, W, d, 0.0f, dh + (size_t)r0 * d, d);
            tr->be->gemm(1, 0, V, d, n, 1.0f, tr->lg, V, h + (size_t)r0 * d, d, 1.0f, dW, d);
        }
    }
    return sum;
}

static void embed_rows(dsv3_train *tr, float *x, const int32_t *ids, int N) {
    const int d = tr->tm->cfg.hidden_size;
    const float *E = dsv3_tw(tr, DSV3_P_EMBED, -1, -1);
    #pragma omp parallel for schedule(static) if ((size_t)N * d > 65536)
    for (int t = 0; t < N; t++) memcpy(x + (size_t)t * d, E + (size_t)ids[t] * d, sizeof(float) * d);
}

// dE[ids[t]] += dx[t]; serial over tokens (repeated ids), parallel over columns.
static void embed_bwd(dsv3_train *tr, const float *dx, const int32_t *ids, int N) {
    const int d = tr->tm->cfg.hidden_size;
    float *dE = dsv3_tg(tr, DSV3_P_EMBED, -1, -1);
    #pragma omp parallel for schedule(static) if ((size_t)N * d > 65536)
    for (int j0 = 0; j0 < d; j0 += 64) {
        const int j1 = j0 + 64 < d ? j0 + 64 : d;
        for (int t = 0; t < N; t++) {
            float *g = dE + (size_t)ids[t] * d;
            const float *s = dx + (size_t)t * d;
            for (int j = j0; j < j1; j++) g[j] += s[j];
        }
    }
}

// ---- the step -------------------------------------------------------------------------------------

int dsv3_train_step(dsv3_train *tr, const int32_t *rows, const dsv3_train_opts *o, dsv3_loss_parts *out) {
    const dsv3_config *c = &tr->tm->cfg;
    const int B = tr->B, T = tr->T, D = o->mtp_weight != 0.0f ? tr->D : 0, L = c->num_hidden_layers;
    const int d = c->hidden_size, V = c->vocab_size, N = B * T;
    for (int b = 0; b < B; b++)
        for (int i = 0; i <= T; i++) {
            int32_t id = rows[(size_t)b * (T + 1) + i];
            if (id < 0 || id >= V)
                return dsv3_errorf("train: token id %d at row %d, position %d is outside the vocabulary [0, %d)", id, b, i, V);
        }
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            tr->ids[b * T + i] = rows[(size_t)b * (T + 1) + i];
            const int32_t y = rows[(size_t)b * (T + 1) + i + 1];
            tr->tgt[b * T + i] = (o->use_ignore && y == o->ignore_id) ? -1 : y;
        }
    memset(out, 0, sizeof *out);
    tr->D_run = D;
    if (!o->same_weights) { // the weights may have changed since the last step
        if (tr->fp8) dsv3_fp8_new_step(tr->fp8);
        // A new version of the masters: GEMM packs of them are re-made (kernels/cpu/wpack.h), and
        // kept while the step (and the micro-batches after it, same_weights) reuse a weight.
        dsv3_wpack_region(tr->tm->params, sizeof(float) * (size_t)tr->tm->tab.total);
    }
    const float eps = c->rms_norm_eps;
    const int bwd = !o->no_backward;

    // forward: main model
    double bal = 0.0;
    embed_rows(tr, tr->acts[0].x, tr->ids, N);
    for (int l = 0; l < L; l++) {
        dsv3_layer_acts *a = &tr->acts[l];
        tr->pos = tr->pos_tl[0];
        bal += layer_fwd(tr, a, l + 1 < L ? tr->acts[l + 1].x : tr->xf, o);
    }
    tr->be->rmsnorm_fwd(tr->hN, tr->rsN, tr->xf, dsv3_tw(tr, DSV3_P_NORM, -1, -1), N, d, eps);
    float *dhead = dsv3_tg(tr, c->tie_word_embeddings ? DSV3_P_EMBED : DSV3_P_HEAD, -1, -1);
    // the losses are means over the counted label positions: B·T unless targets equal ignore_id
    long counted = 0;
    for (int i = 0; i < N; i++) counted += tr->tgt[i] >= 0;
    out->tokens = counted;
    const double Nc = counted > 0 ? (double)counted : 1.0;
    out->main = head_xent(tr, tr->hN, tr->tgt, N, (float)(1.0 / Nc), bwd ? tr->dxn : NULL, dhead, o->logits) / Nc;
    float *dhN = tr->dhp; // reuse: dhN accumulates the main and the depth-1 MTP gradients
    if (bwd) memcpy(dhN, tr->dxn, sizeof(float) * (size_t)N * d);

    // forward: MTP depths
    for (int k = 1; k <= D; k++) {
        const int Tk = T - k, Nk = B * Tk, L_k = L + k - 1;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Tk; i++) {
                tr->mids[k - 1][b * Tk + i] = rows[(size_t)b * (T + 1) + i + k];
                const int32_t y = rows[(size_t)b * (T + 1) + i + k + 1];
                tr->mtgt[k - 1][b * Tk + i] = (o->use_ignore && y == o->ignore_id) ? -1 : y;
            }
        const float *hprev = k == 1 ? tr->hN : tr->mh[k - 2];
        const int Tprev = T - (k - 1);
        for (int b = 0; b < B; b++)
            memcpy(tr->mhp[k - 1] + (size_t)b * Tk * d, hprev + (size_t)b * Tprev * d, sizeof(float) * (size_t)Tk * d);
        embed_rows(tr, tr->memb[k - 1], tr->mids[k - 1], Nk);
        float *en = tr->men[k - 1], *hn = tr->mhn[k - 1], *cat = tr->mcat[k - 1];
        tr->be->rmsnorm_fwd(en, tr->mrse[k - 1], tr->memb[k - 1], dsv3_tw(tr, DSV3_P_ENORM, L_k, -1), Nk, d, eps);
        tr->be->rmsnorm_fwd(hn, tr->mrsh[k - 1], tr->mhp[k - 1], dsv3_tw(tr, DSV3_P_HNORM, L_k, -1), Nk, d, eps);
        for (int r = 0; r < Nk; r++) {
            memcpy(cat + (size_t)r * 2 * d, en + (size_t)r * d, sizeof(float) * d);
            memcpy(cat + (size_t)r * 2 * d + d, hn + (size_t)r * d, sizeof(float) * d);
        }
        dsv3_layer_acts *a = &tr->acts[L_k];
        tr->qcat[k - 1].ready = 0;
        tr->blk = DSV3_FP8_B_MTP;
        dsv3_t_linear(tr, DSV3_LIN_FP8, a->x, cat, &tr->qcat[k - 1], Nk, dsv3_tw(tr, DSV3_P_EH_PROJ, L_k, -1), NULL, d, 2 * d);
        tr->pos = tr->pos_tl[k];
        bal += layer_fwd(tr, a, tr->mxo[k - 1], o);
        tr->be->rmsnorm_fwd(tr->mh[k - 1], tr->mrso[k - 1], tr->mxo[k - 1], dsv3_tw(tr, DSV3_P_SHEAD_NORM, L_k, -1), Nk, d, eps);
        // the loss of depth k (its gradient is computed in the backward below)
        // the loss of depth k and (training) its gradient w.r.t. mh, kept for the backward
        const float msc = (float)(o->mtp_weight / D / Nc);
        out->mtp_depth[k - 1] = head_xent(tr, tr->mh[k - 1], tr->mtgt[k - 1], Nk, msc, bwd ? tr->mdh[k - 1] : NULL, dhead,
                                        k == 1 ? o->mtp_logits : NULL) / Nc;
        out->mtp += out->mtp_depth[k - 1];
    }
    if (D > 0) out->mtp *= o->mtp_weight / D;
    out->balance = bal;
    out->loss = out->main + out->mtp + out->balance;
    if (!bwd) return 0;

    // backward: MTP depths D..1; tr->dx carries dL/dh_k into depth k from depth k+1's h_prev input
    float *dnext = tr->dnx; // (B·(T−k), d): dL/dh_{k-1} sent by depth k to the output of depth k-1
    for (int k = D; k >= 1; k--) {
        const int Tk = T - k, Nk = B * Tk, L_k = L + k - 1;
        dsv3_layer_acts *a = &tr->acts[L_k];
        float *dh = tr->dx; // (Nk, d): dL/d mh[k-1], from the forward's cross-entropy
        memcpy(dh, tr->mdh[k - 1], sizeof(float) * (size_t)Nk * d);
        if (k < D) { // + the gradient that depth k+1 sent to its h_prev = this depth's output rows i < T-k-1
            const int Tn = Tk - 1;
            for (int b = 0; b < B; b++) add_to(dh + (size_t)b * Tk * d, dnext + (size_t)b * Tn * d, (size_t)Tn * d);
        }
        tr->be->rmsnorm_bwd(tr->dt, dsv3_tg(tr, DSV3_P_SHEAD_NORM, L_k, -1), dh, tr->mxo[k - 1],
                            dsv3_tw(tr, DSV3_P_SHEAD_NORM, L_k, -1), tr->mrso[k - 1], Nk, d);
        memcpy(dh, tr->dt, sizeof(float) * (size_t)Nk * d);
        tr->pos = tr->pos_tl[k];
        layer_bwd(tr, a, dh, o);
        // eh_proj: dcat = dh·W, dW += dhᵀ·cat
        float *dcat = tr->dcat;
        tr->blk = DSV3_FP8_B_MTP;
        dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, dcat, 0, dsv3_tg(tr, DSV3_P_EH_PROJ, L_k, -1), NULL, dh, tr->mcat[k - 1],
                          &tr->qcat[k - 1], dsv3_tw(tr, DSV3_P_EH_PROJ, L_k, -1), Nk, d, 2 * d);
        for (int r = 0; r < Nk; r++) { // split [den | dhn]
            memcpy(tr->dt + (size_t)r * d, dcat + (size_t)r * 2 * d, sizeof(float) * d);
            memcpy(tr->dxn + (size_t)r * d, dcat + (size_t)r * 2 * d + d, sizeof(float) * d);
        }
        // enorm -> embedding rows t_{i+k}
        tr->be->rmsnorm_bwd(dh, dsv3_tg(tr, DSV3_P_ENORM, L_k, -1), tr->dt, tr->memb[k - 1],
                            dsv3_tw(tr, DSV3_P_ENORM, L_k, -1), tr->mrse[k - 1], Nk, d);
        embed_bwd(tr, dh, tr->mids[k - 1], Nk);
        // hnorm -> h_prev
        tr->be->rmsnorm_bwd(dnext, dsv3_tg(tr, DSV3_P_HNORM, L_k, -1), tr->dxn, tr->mhp[k - 1],
                            dsv3_tw(tr, DSV3_P_HNORM, L_k, -1), tr->mrsh[k - 1], Nk, d);
    }
    if (D >= 1) // depth 1's h_prev is the final-normed main hidden state, rows i < T-1 of each row
        for (int b = 0; b < B; b++) add_to(dhN + (size_t)b * T * d, dnext + (size_t)b * (T - 1) * d, (size_t)(T - 1) * d);

    // backward: final norm and the main layers
    tr->be->rmsnorm_bwd(tr->dx, dsv3_tg(tr, DSV3_P_NORM, -1, -1), dhN, tr->xf, dsv3_tw(tr, DSV3_P_NORM, -1, -1), tr->rsN, N, d);
    for (int l = L - 1; l >= 0; l--) {
        tr->pos = tr->pos_tl[0];
        layer_bwd(tr, &tr->acts[l], tr->dx, o);
    }
    embed_bwd(tr, tr->dx, tr->ids, N);
    return 0;
}

int dsv3_train_layers_run(const dsv3_train *tr) { return tr->tm->cfg.num_hidden_layers + tr->D_run; }

void dsv3_train_route_counts(const dsv3_train *tr, int64_t *counts) {
    const dsv3_config *c = &tr->tm->cfg;
    const int E = c->n_routed_experts, K = c->num_experts_per_tok;
    for (int l = 0; l < c->num_hidden_layers + tr->D_run; l++) {
        const dsv3_layer_acts *a = &tr->acts[l];
        if (!a->eidx) continue;
        for (size_t i = 0; i < (size_t)a->N * K; i++) counts[(size_t)l * E + a->eidx[i]]++;
    }
}
