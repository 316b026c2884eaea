// Multi-head Latent Attention (spec deepseek-v3 §2.4, reference-oracle §2.5).
//   q  = q_b(q_a_layernorm(q_a(x)))  or  q_proj(x)          per head [nope | rope]
//   kv_a(x) = [c (kv_lora) | k_pe (rope)];  c = kv_a_layernorm(c) (eps 1e-6, as HF)
//   RoPE on q_pe (per head) and k_pe (shared by all heads)
// naive:  kv_b(c) per head = [k_nope (nope rows) | v (v rows)];  score = scale · q·[k_nope; k_pe]
// absorb: q_abs[h] = q_nope[h]·W_UK[h] (kv_lora-vector); score = scale · (q_abs·c + q_pe·k_pe);
//         lat = Σ p·c;  o[h] = W_UV[h]·lat
#include "model/forward_impl.h"
#include "kernels/cpu/ops.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define QA_NORM_EPS 1e-6f // HF DeepseekV3RMSNorm default for q_a_layernorm / kv_a_layernorm

static dsv3_mat f32_mat(const float *p, int rows, int cols) {
    return (dsv3_mat){.dtype = DSV3_F32, .data = p, .rows = rows, .cols = cols, .block_rows = 128, .block_cols = 128};
}

// fp32 copy of kv_b_proj (H*(nope+v), kv_lora) and W_UK[h]ᵀ (H, kv_lora, nope), built once per
// layer and kept in the context (absorbed path).
const float *dsv3_fwd_kvb(dsv3_fwd *f, int layer) {
    if (!f->kvb_f32[layer]) {
        const dsv3_config *c = &f->m->cfg;
        const dsv3_mat *W = &f->m->layers[layer].kv_b_proj;
        const int H = c->num_attention_heads, nope = c->qk_nope_head_dim, kvl = c->kv_lora_rank;
        const int per = nope + c->v_head_dim;
        float *p = dsv3_malloc(sizeof(float) * (size_t)W->rows * W->cols);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < W->rows; r++) dsv3_mat_row_f32(W, r, p + (size_t)r * W->cols);
        float *t = dsv3_malloc(sizeof(float) * (size_t)H * kvl * nope);
        for (int h = 0; h < H; h++)
            for (int j = 0; j < nope; j++)
                for (int i = 0; i < kvl; i++)
                    t[((size_t)h * kvl + i) * nope + j] = p[((size_t)h * per + j) * kvl + i];
        f->kvb_f32[layer] = p;
        f->wuk_t[layer] = t;
    }
    return f->kvb_f32[layer];
}

// Scaled, causally masked softmax of a block of score rows: sc (n, t1) for queries t0..t0+n-1 over
// keys 0..t1-1 -> pb (n, T), zero beyond each row's last key.
static void block_softmax(float *pb, const float *sc, int n, int t0, int t1, int T, float scale) {
    #pragma omp parallel for schedule(static) if (n * t1 > 16384)
    for (int i = 0; i < n; i++) {
        const int nk = t0 + i + 1;
        float *p = pb + (size_t)i * T;
        const float *s = sc + (size_t)i * t1;
        for (int k = 0; k < nk; k++) p[k] = s[k] * scale;
        dsv3_softmax(p, nk);
        for (int k = nk; k < T; k++) p[k] = 0.0f;
    }
}

void dsv3_mla_forward(dsv3_fwd *f, dsv3_fwd_ws *w, int layer, int T, dsv3_attn_mode mode) {
    const dsv3_config *c = &f->m->cfg;
    const dsv3_layer *L = &f->m->layers[layer];
    const int H = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    const int qk = nope + rope, vd = c->v_head_dim, kvl = c->kv_lora_rank, np = rope / 2;
    const int kva_n = kvl + rope, kvb_n = nope + vd;
    const float scale = f->scale;

    // queries
    if (c->q_lora_rank > 0) {
        dsv3_matmul(w->qa, w->xn, &L->q_a_proj, T);
        dsv3_add_bias(w->qa, L->q_a_proj_bias, T, c->q_lora_rank);
        dsv3_rmsnorm_rows(w->qa, w->qa, L->q_a_layernorm, T, c->q_lora_rank, QA_NORM_EPS);
        dsv3_matmul(w->q, w->qa, &L->q_b_proj, T);
    } else {
        dsv3_matmul(w->q, w->xn, &L->q_proj, T);
    }
    // latent + shared rope key
    dsv3_matmul(w->kva, w->xn, &L->kv_a_proj, T);
    dsv3_add_bias(w->kva, L->kv_a_proj_bias, T, kva_n);
    for (int t = 0; t < T; t++) {
        float *row = w->kva + (size_t)t * kva_n;
        const float *cs = w->cos_t + (size_t)t * np, *sn = w->sin_t + (size_t)t * np;
        dsv3_rmsnorm(row, row, L->kv_a_layernorm, kvl, QA_NORM_EPS);
        dsv3_rope_apply(row + kvl, cs, sn, np, f->interleave);
        for (int h = 0; h < H; h++) dsv3_rope_apply(w->q + (size_t)t * H * qk + (size_t)h * qk + nope, cs, sn, np, f->interleave);
    }

    // Heads run in parallel, one per thread at a time (the GEMMs inside are then single-threaded:
    // one fork/join per layer instead of several per head). Per head, queries in blocks [t0, t1):
    // scores = Q_blk · K[0:t1]ᵀ (a prefix of the key rows), masked softmax into pb (QB, T) zero-padded
    // past the causal limit, then pb · (Vᵀ)ᵀ over all T columns. All products are dsv3_matmul with
    // fp32 operands.
    const int QB = T < f->qblock ? T : f->qblock;
    const int qc = kvl + rope, qcmax = qk > qc ? qk : qc, lmax = vd > kvl ? vd : kvl;
    const float *kvb = NULL;
    if (mode == DSV3_ATTN_NAIVE) {
        // expand the latent to per-head [k_nope | v]: kv (T, H*(nope+v)) = c · kv_bᵀ.
        // c rows are strided inside kva; matmul takes contiguous rows, so gather them first.
        for (int t = 0; t < T; t++) memcpy(w->cl + (size_t)t * kvl, w->kva + (size_t)t * kva_n, sizeof(float) * kvl);
        dsv3_matmul(w->kv, w->cl, &L->kv_b_proj, T);
    } else {
        kvb = dsv3_fwd_kvb(f, layer);
        // latentᵀ (kvl, T), shared by every head: the right operand of P · C
        for (int t = 0; t < T; t++)
            for (int i = 0; i < kvl; i++) w->ct[(size_t)i * T + t] = w->kva[(size_t)t * kva_n + i];
    }
    #pragma omp parallel for schedule(dynamic, 1)
    for (int h = 0; h < H; h++) {
        float *qh = w->ath + (size_t)omp_get_thread_num() * w->ath_stride;
        float *qn = qh + (size_t)T * qcmax, *qab = qn + (size_t)T * nope, *kh = qab + (size_t)T * kvl;
        float *vh = kh + (size_t)T * qk, *sc = vh + (size_t)vd * T, *pb = sc + (size_t)QB * T;
        float *lat = pb + (size_t)QB * T, *oh = lat + (size_t)QB * lmax;
        if (mode == DSV3_ATTN_NAIVE) {
            for (int t = 0; t < T; t++) {
                const float *qs = w->q + (size_t)t * H * qk + (size_t)h * qk;
                const float *kn = w->kv + (size_t)t * H * kvb_n + (size_t)h * kvb_n;
                memcpy(qh + (size_t)t * qk, qs, sizeof(float) * qk);
                memcpy(kh + (size_t)t * qk, kn, sizeof(float) * nope);
                memcpy(kh + (size_t)t * qk + nope, w->kva + (size_t)t * kva_n + kvl, sizeof(float) * rope);
                for (int j = 0; j < vd; j++) vh[(size_t)j * T + t] = kn[nope + j];
            }
            const dsv3_mat VT = f32_mat(vh, vd, T);
            for (int t0 = 0; t0 < T; t0 += QB) {
                const int t1 = t0 + QB < T ? t0 + QB : T, n = t1 - t0;
                const dsv3_mat K = f32_mat(kh, t1, qk);
                dsv3_matmul(sc, qh + (size_t)t0 * qk, &K, n);
                block_softmax(pb, sc, n, t0, t1, T, scale);
                dsv3_matmul(oh, pb, &VT, n);
                for (int i = 0; i < n; i++)
                    memcpy(w->att + (size_t)(t0 + i) * H * vd + (size_t)h * vd, oh + (size_t)i * vd, sizeof(float) * vd);
            }
        } else {
            const float *Wuv = kvb + (size_t)h * kvb_n * kvl + (size_t)nope * kvl;      // (v, kvl)
            const dsv3_mat WUV = f32_mat(Wuv, vd, kvl);
            const dsv3_mat WUKT = f32_mat(f->wuk_t[layer] + (size_t)h * kvl * nope, kvl, nope);
            for (int t = 0; t < T; t++)
                memcpy(qn + (size_t)t * nope, w->q + (size_t)t * H * qk + (size_t)h * qk, sizeof(float) * nope);
            // q_abs (T, kvl) = q_nope · W_UK[h]; the query row becomes [q_abs | q_pe]
            dsv3_matmul(qab, qn, &WUKT, T);
            for (int t = 0; t < T; t++) {
                memcpy(qh + (size_t)t * qc, qab + (size_t)t * kvl, sizeof(float) * kvl);
                memcpy(qh + (size_t)t * qc + kvl, w->q + (size_t)t * H * qk + (size_t)h * qk + nope, sizeof(float) * rope);
            }
            const dsv3_mat CT = f32_mat(w->ct, kvl, T);
            for (int t0 = 0; t0 < T; t0 += QB) {
                const int t1 = t0 + QB < T ? t0 + QB : T, n = t1 - t0;
                const dsv3_mat K = f32_mat(w->kva, t1, qc);  // cached rows [c | k_pe]
                dsv3_matmul(sc, qh + (size_t)t0 * qc, &K, n);
                block_softmax(pb, sc, n, t0, t1, T, scale);
                dsv3_matmul(lat, pb, &CT, n);                // latent sums (n, kvl)
                dsv3_matmul(oh, lat, &WUV, n);               // o_h = W_UV[h] · lat
                for (int i = 0; i < n; i++)
                    memcpy(w->att + (size_t)(t0 + i) * H * vd + (size_t)h * vd, oh + (size_t)i * vd, sizeof(float) * vd);
            }
        }
    }

    dsv3_matmul(w->o, w->att, &L->o_proj, T);
    dsv3_add_bias(w->o, L->o_proj_bias, T, c->hidden_size);
}
