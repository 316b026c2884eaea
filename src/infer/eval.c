// Engine forward steps over the rows of several sessions (include/dsv3.h; docs/INFERENCE.md).
//
// One step = every item's new rows stacked into one (R, d) activation matrix. Per layer:
//   dense parts over all R rows (norms, q/kv projections, o_proj, the MoE/SwiGLU): each weight is
//   read once per step for every session in the batch;
//   per item: its rows' latent [c | k_pe] written into its session's cache at positions
//   p0 .. p0+n-1 (p0 = the session's length), then attention of those rows over cache rows
//   0 .. p0+n-1 with the mask j <= p0 + i (spec inference §2.4), absorbed or decompressed (§2.2-2.3).
#include "infer/infer_impl.h"
#include "infer/attn_kernels.h"
#include "kernels/cpu/ops.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define QA_NORM_EPS 1e-6f // q_a_layernorm / kv_a_layernorm (HF default, as src/model/mla.c)
#define ABS_QB 16         // query positions per absorbed-attention block (rows = ABS_QB * H)
#define DEC_QB 64         // query positions per block in the decompressed path
#define HEAD_ROWS 32      // rows per lm_head call for items that want only their last row's logits

static float *fbuf(size_t n) { return dsv3_malloc(sizeof(float) * (n ? n : 1)); }

static dsv3_mat f32_mat(const float *p, int rows, int cols) {
    return (dsv3_mat){.dtype = DSV3_F32, .data = p, .rows = rows, .cols = cols, .block_rows = 128, .block_cols = 128};
}

void dsv3_engine_opts_default(dsv3_engine_opts *o) {
    o->max_rows = 256;
    o->max_ctx = 4096;
    o->attn = DSV3_ATTN_AUTO;
    o->naive_min_rows = 128;
}

dsv3_engine *dsv3_engine_new(const dsv3_lm *lm, const dsv3_engine_opts *opts) {
    dsv3_engine_opts o;
    if (opts) o = *opts; else dsv3_engine_opts_default(&o);
    const dsv3_config *c = &lm->m.cfg;
    if (o.max_ctx > c->max_position_embeddings) o.max_ctx = c->max_position_embeddings;
    if (o.max_rows < 1 || o.max_rows > 1 << 16) { dsv3_errorf("engine: max_rows %d outside 1..65536", o.max_rows); return NULL; }
    if (o.max_ctx < 1) { dsv3_errorf("engine: max_ctx %d must be at least 1", o.max_ctx); return NULL; }
    if (o.attn != DSV3_ATTN_AUTO && o.attn != DSV3_ATTN_ABSORBED && o.attn != DSV3_ATTN_DECOMPRESSED) {
        dsv3_errorf("engine: unknown attention policy %d", (int)o.attn);
        return NULL;
    }
    if (o.naive_min_rows < 1) o.naive_min_rows = 1;
    dsv3_engine *e = dsv3_calloc(1, sizeof *e);
    e->lm = lm;
    e->o = o;
    e->f = lm->f;
    const int R = o.max_rows, C = o.max_ctx, H = c->num_attention_heads;
    const int nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim, vd = c->v_head_dim, kvl = c->kv_lora_rank;
    const int qk = nope + rope, row = kvl + rope, np = rope / 2;
    dsv3_ws_alloc(&e->w, c, R, e->f.qblock);
    e->cos_t = fbuf((size_t)R * np);
    e->sin_t = fbuf((size_t)R * np);
    e->item_row0 = dsv3_calloc((size_t)R + 1, sizeof(int));
    e->pos0 = dsv3_calloc((size_t)R + 1, sizeof(int));
    const int aq = ABS_QB < R ? ABS_QB : R;
    e->qa = fbuf((size_t)aq * H * row);
    e->sc = fbuf((size_t)aq * H * C);
    e->lat = fbuf((size_t)aq * H * kvl);
    e->aqn = fbuf((size_t)aq * nope);
    e->aqab = fbuf((size_t)aq * kvl);
    e->aoh = fbuf((size_t)aq * vd);
    // the decompressed path runs only for chunks of >= naive_min_rows rows (or when forced)
    e->dec_ok = o.attn == DSV3_ATTN_DECOMPRESSED || (o.attn == DSV3_ATTN_AUTO && o.naive_min_rows <= R);
    if (e->dec_ok) {
        e->crow = fbuf((size_t)C * row);
        e->cl = fbuf((size_t)C * kvl);
        e->kv = fbuf((size_t)C * H * (nope + vd));
        e->nth_count = omp_get_max_threads();
        e->nth_stride = (size_t)C * qk + (size_t)vd * C + (size_t)DEC_QB * qk + 2 * (size_t)DEC_QB * C + (size_t)DEC_QB * vd;
        e->nth = fbuf((size_t)e->nth_count * e->nth_stride);
    }
    e->hn = fbuf((size_t)R * c->hidden_size);
    const int hr = HEAD_ROWS < R ? HEAD_ROWS : R;
    e->lrows = fbuf((size_t)hr * c->hidden_size);
    e->hlog = fbuf((size_t)hr * c->vocab_size);
    return e;
}

void dsv3_engine_free(dsv3_engine *e) {
    if (!e) return;
    dsv3_ws_free(&e->w);
    void *p[] = {e->cos_t, e->sin_t, e->item_row0, e->pos0, e->qa, e->sc, e->lat, e->aqn, e->aqab, e->aoh,
                 e->crow, e->cl, e->kv, e->nth, e->hn, e->lrows, e->hlog};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(e);
}

const dsv3_lm *dsv3_engine_lm(const dsv3_engine *e) { return e->lm; }

// ---- attention --------------------------------------------------------------------------------

// Absorbed attention of item rows r0..r0+n-1 (positions p0..) over cache layer `cl_layer` of s.
static void attn_absorbed(dsv3_engine *e, dsv3_session *s, int layer, int r0, int n, int p0) {
    const dsv3_config *c = &e->lm->m.cfg;
    dsv3_fwd_ws *w = &e->w;
    const int H = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    const int vd = c->v_head_dim, kvl = c->kv_lora_rank, qk = nope + rope, row = kvl + rope, kvb_n = nope + vd;
    const float *kvb = e->f.kvb_f32[layer], *wukt = e->f.wuk_t[layer];
    const size_t esz = s->dt == DSV3_CACHE_F32 ? 4 : 2;
    const void *cache = (const char *)s->cache + (size_t)layer * s->ctx * row * esz;
    const int aq = ABS_QB < e->o.max_rows ? ABS_QB : e->o.max_rows;
    for (int b0 = 0; b0 < n; b0 += aq) {
        const int nq = n - b0 < aq ? n - b0 : aq, Rq = nq * H, Lb = p0 + b0 + nq;
        // query rows (h, i) = [q_nope·W_UK[h] | q_pe]
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < nq; i++)
                memcpy(e->aqn + (size_t)i * nope, w->q + (size_t)(r0 + b0 + i) * H * qk + (size_t)h * qk, sizeof(float) * nope);
            const dsv3_mat WUKT = f32_mat(wukt + (size_t)h * kvl * nope, kvl, nope);
            dsv3_matmul(e->aqab, e->aqn, &WUKT, nq);
            for (int i = 0; i < nq; i++) {
                float *qrow = e->qa + ((size_t)h * nq + i) * row;
                memcpy(qrow, e->aqab + (size_t)i * kvl, sizeof(float) * kvl);
                memcpy(qrow + kvl, w->q + (size_t)(r0 + b0 + i) * H * qk + (size_t)h * qk + nope, sizeof(float) * rope);
            }
        }
        // scores (Rq, Lb) against the cached rows [c | k_pe], read once for all heads
        const dsv3_mat CM = {.dtype = s->dt == DSV3_CACHE_F32 ? DSV3_F32 : DSV3_BF16, .data = cache, .rows = Lb,
                             .cols = row, .block_rows = 128, .block_cols = 128};
        dsv3_matmul(e->sc, e->qa, &CM, Rq);
        const float scale = e->f.scale;
        #pragma omp parallel for schedule(static) if (Rq * Lb > 16384)
        for (int r = 0; r < Rq; r++) {
            const int i = r % nq, nk = p0 + b0 + i + 1;
            float *p = e->sc + (size_t)r * Lb;
            for (int k = 0; k < nk; k++) p[k] *= scale;
            dsv3_softmax(p, nk);
            for (int k = nk; k < Lb; k++) p[k] = 0.0f;
        }
        // latent sums (Rq, kvl) = P · C
        dsv3_attn_pc(e->lat, e->sc, Rq, Lb, cache, s->dt == DSV3_CACHE_BF16, row, kvl);
        // o_h = W_UV[h] · lat
        for (int h = 0; h < H; h++) {
            const dsv3_mat WUV = f32_mat(kvb + (size_t)h * kvb_n * kvl + (size_t)nope * kvl, vd, kvl);
            dsv3_matmul(e->aoh, e->lat + (size_t)h * nq * kvl, &WUV, nq);
            for (int i = 0; i < nq; i++)
                memcpy(w->att + (size_t)(r0 + b0 + i) * H * vd + (size_t)h * vd, e->aoh + (size_t)i * vd, sizeof(float) * vd);
        }
    }
}

// Decompressed attention: k_nope / v of every cached position from the latent, then standard
// causal attention per head (heads in parallel, one per thread at a time).
static void attn_decompressed(dsv3_engine *e, dsv3_session *s, int layer, int r0, int n, int p0) {
    const dsv3_config *c = &e->lm->m.cfg;
    const dsv3_layer *Lw = &e->lm->m.layers[layer];
    dsv3_fwd_ws *w = &e->w;
    const int H = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    const int vd = c->v_head_dim, kvl = c->kv_lora_rank, qk = nope + rope, row = kvl + rope, kvb_n = nope + vd;
    const int L = p0 + n;
    for (int j = 0; j < L; j++) {
        dsv3_session_row_f32(s, layer, j, e->crow + (size_t)j * row);
        memcpy(e->cl + (size_t)j * kvl, e->crow + (size_t)j * row, sizeof(float) * kvl);
    }
    dsv3_matmul(e->kv, e->cl, &Lw->kv_b_proj, L);
    const float scale = e->f.scale;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(e->nth_count) // one scratch slice per thread
    for (int h = 0; h < H; h++) {
        float *kh = e->nth + (size_t)omp_get_thread_num() * e->nth_stride;
        float *vt = kh + (size_t)e->o.max_ctx * qk, *qh = vt + (size_t)vd * e->o.max_ctx;
        float *sc = qh + (size_t)DEC_QB * qk, *pb = sc + (size_t)DEC_QB * e->o.max_ctx, *oh = pb + (size_t)DEC_QB * e->o.max_ctx;
        for (int j = 0; j < L; j++) {
            const float *kn = e->kv + (size_t)j * H * kvb_n + (size_t)h * kvb_n;
            memcpy(kh + (size_t)j * qk, kn, sizeof(float) * nope);
            memcpy(kh + (size_t)j * qk + nope, e->crow + (size_t)j * row + kvl, sizeof(float) * rope);
            for (int v = 0; v < vd; v++) vt[(size_t)v * L + j] = kn[nope + v];
        }
        const dsv3_mat VT = f32_mat(vt, vd, L);
        for (int b0 = 0; b0 < n; b0 += DEC_QB) {
            const int nq = n - b0 < DEC_QB ? n - b0 : DEC_QB, Lb = p0 + b0 + nq;
            for (int i = 0; i < nq; i++)
                memcpy(qh + (size_t)i * qk, w->q + (size_t)(r0 + b0 + i) * H * qk + (size_t)h * qk, sizeof(float) * qk);
            const dsv3_mat K = f32_mat(kh, Lb, qk);
            dsv3_matmul(sc, qh, &K, nq);
            for (int i = 0; i < nq; i++) {
                const int nk = p0 + b0 + i + 1;
                const float *si = sc + (size_t)i * Lb;
                float *p = pb + (size_t)i * L;
                for (int k = 0; k < nk; k++) p[k] = si[k] * scale;
                dsv3_softmax(p, nk);
                for (int k = nk; k < L; k++) p[k] = 0.0f;
            }
            dsv3_matmul(oh, pb, &VT, nq);
            for (int i = 0; i < nq; i++)
                memcpy(w->att + (size_t)(r0 + b0 + i) * H * vd + (size_t)h * vd, oh + (size_t)i * vd, sizeof(float) * vd);
        }
    }
}

// ---- one decoder layer over the step's rows ---------------------------------------------------

// Attention block of `layer` over w->xn (R rows) into w->o; item k's rows start at item_row0[k],
// its first position is pos0[k] and its cache rows go to sessions[k].
static void attention_rows(dsv3_engine *e, dsv3_rows *items, int n_items, int layer, int R) {
    const dsv3_config *c = &e->lm->m.cfg;
    const dsv3_layer *L = &e->lm->m.layers[layer];
    dsv3_fwd_ws *w = &e->w;
    const int H = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    const int qk = nope + rope, kvl = c->kv_lora_rank, np = rope / 2, row = kvl + rope;
    if (c->q_lora_rank > 0) {
        dsv3_matmul(w->qa, w->xn, &L->q_a_proj, R);
        dsv3_add_bias(w->qa, L->q_a_proj_bias, R, c->q_lora_rank);
        dsv3_rmsnorm_rows(w->qa, w->qa, L->q_a_layernorm, R, c->q_lora_rank, QA_NORM_EPS);
        dsv3_matmul(w->q, w->qa, &L->q_b_proj, R);
    } else {
        dsv3_matmul(w->q, w->xn, &L->q_proj, R);
    }
    dsv3_matmul(w->kva, w->xn, &L->kv_a_proj, R);
    dsv3_add_bias(w->kva, L->kv_a_proj_bias, R, row);
    for (int t = 0; t < R; t++) {
        float *kr = w->kva + (size_t)t * row;
        const float *cs = e->cos_t + (size_t)t * np, *sn = e->sin_t + (size_t)t * np;
        dsv3_rmsnorm(kr, kr, L->kv_a_layernorm, kvl, QA_NORM_EPS);
        dsv3_rope_apply(kr + kvl, cs, sn, np, e->f.interleave);
        for (int h = 0; h < H; h++) dsv3_rope_apply(w->q + (size_t)t * H * qk + (size_t)h * qk + nope, cs, sn, np, e->f.interleave);
    }
    for (int k = 0; k < n_items; k++) {
        dsv3_session *s = items[k].s;
        const int r0 = e->item_row0[k], n = items[k].n, p0 = e->pos0[k];
        for (int i = 0; i < n; i++) dsv3_session_row_put(s, layer, p0 + i, w->kva + (size_t)(r0 + i) * row);
        int dec = e->o.attn == DSV3_ATTN_DECOMPRESSED || (e->o.attn == DSV3_ATTN_AUTO && n >= e->o.naive_min_rows);
        if (dec) attn_decompressed(e, s, layer, r0, n, p0);
        else attn_absorbed(e, s, layer, r0, n, p0);
    }
    dsv3_matmul(w->o, w->att, &L->o_proj, R);
    dsv3_add_bias(w->o, L->o_proj_bias, R, c->hidden_size);
}

static void layer_rows(dsv3_engine *e, dsv3_rows *items, int n_items, int layer, int R) {
    const dsv3_config *c = &e->lm->m.cfg;
    const dsv3_layer *L = &e->lm->m.layers[layer];
    dsv3_fwd_ws *w = &e->w;
    const size_t n = (size_t)R * c->hidden_size;
    dsv3_rmsnorm_rows(w->xn, w->x, L->input_layernorm, R, c->hidden_size, c->rms_norm_eps);
    attention_rows(e, items, n_items, layer, R);
    for (size_t i = 0; i < n; i++) w->x[i] += w->o[i];
    dsv3_rmsnorm_rows(w->xn, w->x, L->post_attention_layernorm, R, c->hidden_size, c->rms_norm_eps);
    dsv3_ffn_forward(&e->f, w, layer, R, NULL, NULL);
    for (size_t i = 0; i < n; i++) w->x[i] += w->o[i];
}

// Item checks shared by eval and mtp; sets item_row0 / pos0 and the rotary rows. Returns R or -1.
static int prepare(dsv3_engine *e, dsv3_rows *items, int n_items, int mtp) {
    const dsv3_config *c = &e->lm->m.cfg;
    if (n_items < 1) return dsv3_errorf("eval: no items");
    int R = 0;
    for (int k = 0; k < n_items; k++) {
        dsv3_session *s = items[k].s;
        if (!s || s->lm != e->lm) return dsv3_errorf("eval: item %d has no session of this model", k);
        for (int j = 0; j < k; j++)
            if (items[j].s == s) return dsv3_errorf("eval: session of item %d appears twice in one step", k);
        if (items[k].n < 1) return dsv3_errorf("eval: item %d has no rows", k);
        if (s->ctx > e->o.max_ctx)
            return dsv3_errorf("eval: session context %d exceeds the engine's max_ctx %d", s->ctx, e->o.max_ctx);
        const int p0 = mtp ? s->mtp_len : s->len;
        if (p0 + items[k].n > s->ctx)
            return dsv3_errorf("eval: %d tokens at position %d exceed the context length %d", items[k].n, p0, s->ctx);
        for (int i = 0; i < items[k].n; i++)
            if (items[k].ids[i] < 0 || items[k].ids[i] >= c->vocab_size)
                return dsv3_errorf("eval: token id %d (row %d of item %d) is outside the vocabulary [0, %d)",
                                   items[k].ids[i], i, k, c->vocab_size);
        if (R + items[k].n > e->o.max_rows)
            return dsv3_errorf("eval: %d rows in one step exceed the engine's max_rows %d", R + items[k].n, e->o.max_rows);
        e->item_row0[k] = R;
        e->pos0[k] = p0;
        const int np = c->qk_rope_head_dim / 2;
        dsv3_rope_tables(e->cos_t + (size_t)R * np, e->sin_t + (size_t)R * np, e->f.inv_freq, np, p0, items[k].n,
                         e->f.attn_factor);
        R += items[k].n;
    }
    e->item_row0[n_items] = R;
    return R;
}

// Logits of the rows each item asks for: all rows straight into the item's buffer, or the last
// row, batched over items HEAD_ROWS at a time so lm_head is read once per batch.
static void head_rows(dsv3_engine *e, dsv3_rows *items, int n_items, const dsv3_mat *head) {
    const int d = e->lm->m.cfg.hidden_size, V = e->lm->m.cfg.vocab_size;
    const int hr = HEAD_ROWS < e->o.max_rows ? HEAD_ROWS : e->o.max_rows;
    int pend[HEAD_ROWS], np = 0;
    for (int k = 0; k <= n_items; k++) {
        if (k < n_items && items[k].logits) {
            if (items[k].all_logits) {
                dsv3_matmul(items[k].logits, e->hn + (size_t)e->item_row0[k] * d, head, items[k].n);
            } else {
                memcpy(e->lrows + (size_t)np * d, e->hn + (size_t)(e->item_row0[k + 1] - 1) * d, sizeof(float) * d);
                pend[np++] = k;
            }
        }
        if (np > 0 && (np == hr || k == n_items)) {
            dsv3_matmul(e->hlog, e->lrows, head, np);
            for (int i = 0; i < np; i++) memcpy(items[pend[i]].logits, e->hlog + (size_t)i * V, sizeof(float) * V);
            np = 0;
        }
    }
}

int dsv3_engine_eval(dsv3_engine *e, dsv3_rows *items, int n_items) {
    const dsv3_model *m = &e->lm->m;
    const dsv3_config *c = &m->cfg;
    const int d = c->hidden_size;
    int R = prepare(e, items, n_items, 0);
    if (R < 0) return -1;
    dsv3_fwd_ws *w = &e->w;
    for (int k = 0; k < n_items; k++)
        for (int i = 0; i < items[k].n; i++)
            dsv3_mat_row_f32(&m->embed, items[k].ids[i], w->x + (size_t)(e->item_row0[k] + i) * d);
    for (int l = 0; l < c->num_hidden_layers; l++) layer_rows(e, items, n_items, l, R);
    dsv3_rmsnorm_rows(e->hn, w->x, m->norm, R, d, c->rms_norm_eps);
    head_rows(e, items, n_items, &m->lm_head);
    for (int k = 0; k < n_items; k++) {
        dsv3_session *s = items[k].s;
        const int n = items[k].n, r0 = e->item_row0[k];
        if (items[k].hidden) memcpy(items[k].hidden, e->hn + (size_t)r0 * d, sizeof(float) * (size_t)n * d);
        memcpy(s->tokens + s->len, items[k].ids, sizeof(int32_t) * n);
        s->len += n;
        memcpy(s->h_last, e->hn + (size_t)(r0 + n - 1) * d, sizeof(float) * d);
        s->h_last_pos = s->len - 1;
    }
    return 0;
}

int dsv3_engine_prefill(dsv3_engine *e, dsv3_rows *item) {
    const int V = e->lm->m.cfg.vocab_size, d = e->lm->m.cfg.hidden_size, cap = e->o.max_rows;
    if (!item->s) return dsv3_errorf("prefill: no session");
    if (item->n < 1) return dsv3_errorf("prefill: no tokens");
    if (item->s->len + item->n > item->s->ctx)
        return dsv3_errorf("prefill: %d tokens at position %d exceed the context length %d", item->n, item->s->len,
                           item->s->ctx);
    for (int i = 0; i < item->n; i++)
        if (item->ids[i] < 0 || item->ids[i] >= V)
            return dsv3_errorf("prefill: token id %d at prompt position %d is outside the vocabulary [0, %d)",
                               item->ids[i], i, V);
    for (int i0 = 0; i0 < item->n; i0 += cap) {
        const int n = item->n - i0 < cap ? item->n - i0 : cap, last = i0 + n == item->n;
        dsv3_rows r = {.s = item->s, .ids = item->ids + i0, .n = n, .all_logits = item->all_logits};
        if (item->logits && (item->all_logits || last)) r.logits = item->logits + (item->all_logits ? (size_t)i0 * V : 0);
        if (item->hidden) r.hidden = item->hidden + (size_t)i0 * d;
        if (dsv3_engine_eval(e, &r, 1) != 0) return -1;
    }
    return 0;
}

int dsv3_engine_mtp(dsv3_engine *e, dsv3_session *s, const float *hidden, const int32_t *next_ids, int n, float *g,
                    float *logits) {
    const dsv3_model *m = &e->lm->m;
    const dsv3_config *c = &m->cfg;
    if (e->lm->n_mtp < 1) return dsv3_errorf("mtp: the model has no MTP module (num_nextn_predict_layers = %d)",
                                             c->num_nextn_predict_layers);
    const int d = c->hidden_size, layer = c->num_hidden_layers;
    const dsv3_layer *L = &m->layers[layer];
    dsv3_rows item = {.s = s, .ids = next_ids, .n = n, .logits = logits, .all_logits = 0};
    if (prepare(e, &item, 1, 1) < 0) return -1;
    dsv3_fwd_ws *w = &e->w;
    // x = eh_proj([enorm(Emb(next)); hnorm(h)]), embedding half first (spec inference §1.1)
    for (int i = 0; i < n; i++) {
        float *cat = w->cat + (size_t)i * 2 * d;
        dsv3_mat_row_f32(&L->mtp_embed, next_ids[i], w->o);
        dsv3_rmsnorm(cat, w->o, L->enorm, d, c->rms_norm_eps);
        dsv3_rmsnorm(cat + d, hidden + (size_t)i * d, L->hnorm, d, c->rms_norm_eps);
    }
    dsv3_matmul(w->x, w->cat, &L->eh_proj, n);
    layer_rows(e, &item, 1, layer, n);
    dsv3_rmsnorm_rows(e->hn, w->x, L->shared_head_norm, n, d, c->rms_norm_eps);
    if (g) memcpy(g, e->hn, sizeof(float) * (size_t)n * d);
    head_rows(e, &item, 1, &L->mtp_head);
    s->mtp_len += n;
    return 0;
}
