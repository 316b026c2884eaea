// Forward driver: embedding, decoder layers, final norm, lm_head; MTP modules (spec deepseek-v3
// §2, §5; reference-oracle §2.7). See docs/FORWARD.md.
#include "model/forward_impl.h"
#include "kernels/cpu/ops.h"
#include "core/error.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static float *fbuf(size_t n) { return dsv3_malloc(sizeof(float) * (n ? n : 1)); }
static int imax(int a, int b) { return a > b ? a : b; }

void dsv3_ws_alloc(dsv3_fwd_ws *w, const dsv3_config *c, int T, int qblock) {
    memset(w, 0, sizeof *w);
    const size_t d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    const size_t kvl = c->kv_lora_rank, rope = c->qk_rope_head_dim, vd = c->v_head_dim;
    const size_t E = c->n_routed_experts, K = c->num_experts_per_tok;
    const size_t Imax = imax(c->intermediate_size, imax(c->moe_intermediate_size,
                                                         c->moe_intermediate_size * c->n_shared_experts));
    w->T = T;
    w->nthreads = omp_get_max_threads();
    w->x = fbuf(T * d); w->xn = fbuf(T * d); w->o = fbuf(T * d);
    w->qa = fbuf(T * (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1));
    w->q = fbuf(T * H * qk);
    w->kva = fbuf(T * (kvl + rope));
    w->cl = fbuf(T * kvl);
    w->kv = fbuf(T * H * (c->qk_nope_head_dim + vd));
    w->att = fbuf(T * H * vd);
    w->cos_t = fbuf(T * (rope / 2)); w->sin_t = fbuf(T * (rope / 2));
    const size_t nope = c->qk_nope_head_dim, QB = T < qblock ? T : qblock;
    const size_t qcmax = qk > kvl + rope ? qk : kvl + rope, lmax = vd > kvl ? vd : kvl;
    w->ath_stride = T * qcmax + T * nope + T * kvl + T * qk + vd * T + 2 * QB * T + QB * lmax + QB * vd;
    w->ath = fbuf((size_t)w->nthreads * w->ath_stride);
    w->ct = fbuf(kvl * T);
    w->g = fbuf(T * Imax); w->u = fbuf(T * Imax);
    w->rlog = fbuf(T * (E ? E : 1));
    w->eidx = dsv3_malloc(sizeof(int32_t) * (T * K + 1)); w->ew = fbuf(T * K);
    w->cnt = dsv3_malloc(sizeof(int) * (E + 1)); w->off = dsv3_malloc(sizeof(int) * (E + 1));
    w->tok = dsv3_malloc(sizeof(int) * (T * K + 1)); w->tokw = fbuf(T * K);
    w->ye = fbuf(T * d);
    w->eth_stride = T * (d + 2 * (size_t)c->moe_intermediate_size);
    w->eth = fbuf((size_t)w->nthreads * w->eth_stride);
    w->yslot = fbuf(T * K * d);
    w->slot_of = dsv3_malloc(sizeof(int) * (T * K + 1));
    w->rscratch = fbuf(2 * E + (size_t)imax(c->n_group, 1));
    w->cat = fbuf(T * 2 * d);
}

void dsv3_ws_free(dsv3_fwd_ws *w) {
    void *p[] = {w->x, w->xn, w->o, w->qa, w->q, w->kva, w->cl, w->kv, w->att, w->cos_t, w->sin_t, w->ath, w->ct,
                 w->g, w->u, w->rlog, w->eidx, w->ew, w->cnt, w->off, w->tok, w->tokw, w->ye, w->eth, w->yslot, w->slot_of,
                 w->rscratch, w->cat};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    memset(w, 0, sizeof *w);
}

void dsv3_add_bias(float *y, const float *b, int T, int n) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += b[i];
}

int dsv3_fwd_init(dsv3_fwd *f, const dsv3_model *m) {
    memset(f, 0, sizeof *f);
    f->m = m;
    const dsv3_config *c = &m->cfg;
    f->inv_freq = fbuf((size_t)c->qk_rope_head_dim / 2);
    dsv3_rope_inv_freq(c, f->inv_freq);
    f->attn_factor = (float)dsv3_rope_attention_factor(c);
    f->scale = (float)dsv3_softmax_scale(c);
    f->qblock = 256;
    f->interleave = strcmp(c->model_type, "deepseek_v2") == 0 ? 1 : c->rope_interleave;
    f->kvb_f32 = dsv3_calloc((size_t)(m->n_layers_loaded > 0 ? m->n_layers_loaded : 1), sizeof(float *));
    f->wuk_t = dsv3_calloc((size_t)(m->n_layers_loaded > 0 ? m->n_layers_loaded : 1), sizeof(float *));
    return 0;
}

void dsv3_fwd_weights_changed(dsv3_fwd *f) {
    for (int i = 0; i < f->m->n_layers_loaded; i++) {
        free(f->kvb_f32[i]); free(f->wuk_t[i]);
        f->kvb_f32[i] = NULL; f->wuk_t[i] = NULL;
    }
}

void dsv3_fwd_free(dsv3_fwd *f) {
    if (f->kvb_f32)
        for (int i = 0; i < f->m->n_layers_loaded; i++) { free(f->kvb_f32[i]); free(f->wuk_t[i]); }
    free(f->kvb_f32);
    free(f->wuk_t);
    free(f->inv_freq);
    memset(f, 0, sizeof *f);
}

void dsv3_route_trace_free(dsv3_route_trace *t) {
    free(t->experts);
    free(t->weights);
    memset(t, 0, sizeof *t);
}

static int check_ids(const dsv3_config *c, const int32_t *ids, int T) {
    if (T <= 0) return dsv3_errorf("forward: empty token sequence");
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return dsv3_errorf("forward: token id %d at position %d is outside the vocabulary [0, %d)",
                               ids[t], t, c->vocab_size);
    return 0;
}

// One decoder layer on w->x (T, d) in place: pre-norm attention and FFN with residuals.
static void layer_forward(dsv3_fwd *f, dsv3_fwd_ws *w, int layer, int T, dsv3_attn_mode mode,
                          int32_t *tr_e, float *tr_w) {
    const dsv3_config *c = &f->m->cfg;
    const dsv3_layer *L = &f->m->layers[layer];
    const size_t n = (size_t)T * c->hidden_size;
    dsv3_rmsnorm_rows(w->xn, w->x, L->input_layernorm, T, c->hidden_size, c->rms_norm_eps);
    dsv3_mla_forward(f, w, layer, T, mode);
    for (size_t i = 0; i < n; i++) w->x[i] += w->o[i];
    dsv3_rmsnorm_rows(w->xn, w->x, L->post_attention_layernorm, T, c->hidden_size, c->rms_norm_eps);
    dsv3_ffn_forward(f, w, layer, T, tr_e, tr_w);
    for (size_t i = 0; i < n; i++) w->x[i] += w->o[i];
}

int dsv3_forward(dsv3_fwd *f, const int32_t *ids, int T, const dsv3_forward_opts *o) {
    const dsv3_model *m = f->m;
    const dsv3_config *c = &m->cfg;
    if (check_ids(c, ids, T) != 0) return -1;
    const int d = c->hidden_size, K = c->num_experts_per_tok;
    int n_moe = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) n_moe += m->layers[l].is_moe;
    if (o->trace) {
        o->trace->n_moe_layers = n_moe; o->trace->T = T; o->trace->K = K;
        o->trace->experts = dsv3_malloc(sizeof(int32_t) * ((size_t)n_moe * T * K + 1));
        o->trace->weights = fbuf((size_t)n_moe * T * K);
    }
    dsv3_fwd_ws w;
    dsv3_ws_alloc(&w, c, T, f->qblock);
    dsv3_rope_tables(w.cos_t, w.sin_t, f->inv_freq, c->qk_rope_head_dim / 2, 0, T, f->attn_factor);
    for (int t = 0; t < T; t++) dsv3_mat_row_f32(&m->embed, ids[t], w.x + (size_t)t * d);
    int mi = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int32_t *tr_e = NULL; float *tr_w = NULL;
        if (o->trace && m->layers[l].is_moe) {
            tr_e = o->trace->experts + (size_t)mi * T * K;
            tr_w = o->trace->weights + (size_t)mi * T * K;
        }
        mi += m->layers[l].is_moe;
        layer_forward(f, &w, l, T, o->attn, tr_e, tr_w);
        if (o->layer_hidden) memcpy(o->layer_hidden + (size_t)l * T * d, w.x, sizeof(float) * (size_t)T * d);
    }
    dsv3_rmsnorm_rows(w.xn, w.x, m->norm, T, d, c->rms_norm_eps);
    if (o->hidden) memcpy(o->hidden, w.xn, sizeof(float) * (size_t)T * d);
    if (o->logits) dsv3_matmul(o->logits, w.xn, &m->lm_head, T);
    dsv3_ws_free(&w);
    return 0;
}

int dsv3_forward_mtp(dsv3_fwd *f, const int32_t *ids, int T, const float *hidden, const dsv3_mtp_opts *o) {
    const dsv3_model *m = f->m;
    const dsv3_config *c = &m->cfg;
    const int n_mtp = m->n_layers_loaded - c->num_hidden_layers, depth = o->depth;
    if (n_mtp <= 0) return dsv3_errorf("forward: the model has no MTP layer (num_nextn_predict_layers = %d, loaded 0)",
                                       c->num_nextn_predict_layers);
    if (depth < 1 || depth > n_mtp) return dsv3_errorf("forward: MTP depth %d outside 1..%d", depth, n_mtp);
    if (check_ids(c, ids, T) != 0) return -1;
    if (T <= depth) return dsv3_errorf("forward: MTP depth %d needs at least %d tokens (got %d)", depth, depth + 1, T);
    const int d = c->hidden_size, K = c->num_experts_per_tok;
    const int last = c->num_hidden_layers + depth - 1;
    if (o->trace) {
        int moe = m->layers[last].is_moe;
        o->trace->n_moe_layers = moe; o->trace->T = T - depth; o->trace->K = K;
        o->trace->experts = dsv3_malloc(sizeof(int32_t) * ((size_t)moe * (T - depth) * K + 1));
        o->trace->weights = fbuf((size_t)moe * (T - depth) * K);
    }
    dsv3_fwd_ws w;
    dsv3_ws_alloc(&w, c, T, f->qblock);
    float *prev = fbuf((size_t)T * d), *emb = fbuf((size_t)d);
    memcpy(prev, hidden, sizeof(float) * (size_t)T * d);
    for (int k = 1; k <= depth; k++) {
        const int layer = c->num_hidden_layers + k - 1, Tn = T - k;
        const dsv3_layer *L = &m->layers[layer];
        // h' = eh_proj([enorm(Emb(t_{i+k})); hnorm(h_i)]), embedding first
        for (int i = 0; i < Tn; i++) {
            float *row = w.cat + (size_t)i * 2 * d;
            dsv3_mat_row_f32(&L->mtp_embed, ids[i + k], emb);
            dsv3_rmsnorm(row, emb, L->enorm, d, c->rms_norm_eps);
            dsv3_rmsnorm(row + d, prev + (size_t)i * d, L->hnorm, d, c->rms_norm_eps);
        }
        dsv3_matmul(w.x, w.cat, &L->eh_proj, Tn);
        dsv3_rope_tables(w.cos_t, w.sin_t, f->inv_freq, c->qk_rope_head_dim / 2, 0, Tn, f->attn_factor);
        int rec = k == depth && o->trace && L->is_moe;
        layer_forward(f, &w, layer, Tn, o->attn, rec ? o->trace->experts : NULL, rec ? o->trace->weights : NULL);
        dsv3_rmsnorm_rows(prev, w.x, L->shared_head_norm, Tn, d, c->rms_norm_eps);
    }
    const int Tn = T - depth;
    if (o->hidden) memcpy(o->hidden, prev, sizeof(float) * (size_t)Tn * d);
    if (o->logits) dsv3_matmul(o->logits, prev, &m->layers[last].mtp_head, Tn);
    free(prev);
    free(emb);
    dsv3_ws_free(&w);
    return 0;
}
