// Multi-head Latent Attention for training: forward keeping what the backward needs, and the
// backward, in both forms (spec deepseek-v3 §2.4; docs/TRAINING.md):
//   naive:  keys per head [k_nope | k_pe] and values from kv_b_proj(cn) (the decompressed form);
//   absorb: queries per head [q_nope·W_UK | q_pe] against the shared rows [cn | k_pe], values cn,
//           output W_UV·(Σ p·cn): the same function, so the same gradients up to rounding.
// Attention itself is the backend's causal flash-style kernel (O and log-sum-exp kept).
#include "model/train_impl.h"
#include <string.h>

#define LATENT_EPS 1e-6f // q_a_layernorm / kv_a_layernorm (HF default, as the inference forward)

typedef struct {
    int N, Tl, B, H, nope, rope, qk, v, kvl, ql, per, d;
} dims;

static dims dims_of(const dsv3_config *c, const dsv3_layer_acts *a) {
    dims m;
    m.N = a->N; m.Tl = a->Tl; m.B = a->N / a->Tl; m.H = c->num_attention_heads;
    m.nope = c->qk_nope_head_dim; m.rope = c->qk_rope_head_dim; m.qk = m.nope + m.rope; m.v = c->v_head_dim;
    m.kvl = c->kv_lora_rank; m.ql = c->q_lora_rank; m.per = m.nope + m.v; m.d = c->hidden_size;
    return m;
}

// Attention arguments for row b of the layer.
static dsv3_attn_args attn_args(dsv3_train *tr, dsv3_layer_acts *a, const dims *m, dsv3_attn_mode mode, int b) {
    dsv3_attn_args g;
    memset(&g, 0, sizeof g);
    const size_t t0 = (size_t)b * m->Tl;
    g.T = m->Tl; g.H = m->H; g.scale = tr->scale;
    g.lse = a->lse + (size_t)b * m->H * m->Tl;
    if (mode == DSV3_ATTN_NAIVE) {
        g.dqk = m->qk; g.dv = m->v;
        g.q = a->q + t0 * m->H * m->qk; g.q_tok = (long)m->H * m->qk; g.q_head = m->qk;
        g.k = a->kfull + t0 * m->H * m->qk; g.k_tok = (long)m->H * m->qk; g.k_head = m->qk;
        g.v = a->kv + t0 * m->H * m->per + m->nope; g.v_tok = (long)m->H * m->per; g.v_head = m->per;
        g.o = a->att + t0 * m->H * m->v; g.o_tok = (long)m->H * m->v; g.o_head = m->v;
    } else {
        const int qc = m->kvl + m->rope;
        g.dqk = qc; g.dv = m->kvl;
        g.q = a->qabs + t0 * m->H * qc; g.q_tok = (long)m->H * qc; g.q_head = qc;
        g.k = a->kcat + t0 * qc; g.k_tok = qc; g.k_head = 0;
        g.v = a->kcat + t0 * qc; g.v_tok = qc; g.v_head = 0; // values = the first kvl columns (cn)
        g.o = a->lat + t0 * m->H * m->kvl; g.o_tok = (long)m->H * m->kvl; g.o_head = m->kvl;
    }
    return g;
}

void dsv3_t_attn_fwd(dsv3_train *tr, dsv3_layer_acts *a, dsv3_attn_mode mode) {
    const dsv3_config *c = &tr->tm->cfg;
    const dsv3_backend *be = tr->be;
    const dims m = dims_of(c, a);
    const int l = a->layer, N = m.N, H = m.H, qk = m.qk, kvl = m.kvl, rope = m.rope, kva_n = kvl + rope;
    tr->blk = DSV3_FP8_B_ATTN;
    // queries
    if (m.ql > 0) {
        dsv3_t_linear(tr, DSV3_LIN_FP8, a->qa, a->xn1, &a->qx1, N, dsv3_tw(tr, DSV3_P_Q_A, l, -1), dsv3_tw(tr, DSV3_P_Q_A_BIAS, l, -1), m.ql, m.d);
        be->rmsnorm_fwd(a->qan, a->qars, a->qa, dsv3_tw(tr, DSV3_P_Q_A_NORM, l, -1), N, m.ql, LATENT_EPS);
        dsv3_t_linear(tr, DSV3_LIN_FP8, a->q, a->qan, &a->qqan, N, dsv3_tw(tr, DSV3_P_Q_B, l, -1), NULL, H * qk, m.ql);
    } else {
        dsv3_t_linear(tr, DSV3_LIN_FP8, a->q, a->xn1, &a->qx1, N, dsv3_tw(tr, DSV3_P_Q, l, -1), NULL, H * qk, m.d);
    }
    be->rope(a->q, N, (long)H * qk, H, qk, m.nope, tr->cos_t, tr->sin_t, tr->pos, tr->np, tr->interleave, 0);
    // latent + shared rope key
    float *kva = tr->dkva; // (N, kvl + rope), forward-time scratch
    dsv3_t_linear(tr, DSV3_LIN_FP8, kva, a->xn1, &a->qx1, N, dsv3_tw(tr, DSV3_P_KV_A, l, -1), dsv3_tw(tr, DSV3_P_KV_A_BIAS, l, -1), kva_n, m.d);
    for (int t = 0; t < N; t++) {
        memcpy(a->c + (size_t)t * kvl, kva + (size_t)t * kva_n, sizeof(float) * kvl);
        memcpy(a->kpe + (size_t)t * rope, kva + (size_t)t * kva_n + kvl, sizeof(float) * rope);
    }
    be->rmsnorm_fwd(a->cn, a->cnrs, a->c, dsv3_tw(tr, DSV3_P_KV_A_NORM, l, -1), N, kvl, LATENT_EPS);
    be->rope(a->kpe, N, rope, 1, 0, 0, tr->cos_t, tr->sin_t, tr->pos, tr->np, tr->interleave, 0);

    const float *Wkvb = dsv3_tw(tr, DSV3_P_KV_B, l, -1);
    if (mode == DSV3_ATTN_NAIVE) {
        dsv3_t_linear(tr, DSV3_LIN_FP8, a->kv, a->cn, &a->qcn, N, Wkvb, NULL, H * m.per, kvl);
        for (int t = 0; t < N; t++)
            for (int h = 0; h < H; h++) {
                float *k = a->kfull + ((size_t)t * H + h) * qk;
                memcpy(k, a->kv + ((size_t)t * H + h) * m.per, sizeof(float) * m.nope);
                memcpy(k + m.nope, a->kpe + (size_t)t * rope, sizeof(float) * rope);
            }
        for (int b = 0; b < m.B; b++) {
            dsv3_attn_args g = attn_args(tr, a, &m, mode, b);
            be->attn_fwd(&g);
        }
    } else {
        const int qc = kva_n;
        for (int h = 0; h < H; h++) { // q_abs[h] = q_nope[h] · W_UK[h]   (W_UK[h] = kv_b rows h·per .. +nope)
            be->gemm(0, 0, N, kvl, m.nope, 1.0f, a->q + (size_t)h * qk, H * qk, Wkvb + (size_t)h * m.per * kvl, kvl, 0.0f,
                     a->qabs + (size_t)h * qc, H * qc);
            for (int t = 0; t < N; t++)
                memcpy(a->qabs + ((size_t)t * H + h) * qc + kvl, a->q + ((size_t)t * H + h) * qk + m.nope, sizeof(float) * rope);
        }
        for (int t = 0; t < N; t++) {
            memcpy(a->kcat + (size_t)t * qc, a->cn + (size_t)t * kvl, sizeof(float) * kvl);
            memcpy(a->kcat + (size_t)t * qc + kvl, a->kpe + (size_t)t * rope, sizeof(float) * rope);
        }
        for (int b = 0; b < m.B; b++) {
            dsv3_attn_args g = attn_args(tr, a, &m, mode, b);
            be->attn_fwd(&g);
        }
        for (int h = 0; h < H; h++) // o[h] = lat[h] · W_UV[h]ᵀ   (W_UV[h] = kv_b rows h·per + nope .. +v)
            be->gemm(0, 1, N, m.v, kvl, 1.0f, a->lat + (size_t)h * kvl, H * kvl, Wkvb + ((size_t)h * m.per + m.nope) * kvl, kvl,
                     0.0f, a->att + (size_t)h * m.v, H * m.v);
    }
    dsv3_t_linear(tr, DSV3_LIN_FP8_OPROJ, tr->dt, a->att, NULL, N, dsv3_tw(tr, DSV3_P_O, l, -1), dsv3_tw(tr, DSV3_P_O_BIAS, l, -1), m.d, H * m.v);
}

void dsv3_t_attn_bwd(dsv3_train *tr, dsv3_layer_acts *a, dsv3_attn_mode mode, float *dxn1, const float *dout) {
    const dsv3_config *c = &tr->tm->cfg;
    const dsv3_backend *be = tr->be;
    const dims m = dims_of(c, a);
    const int l = a->layer, N = m.N, H = m.H, qk = m.qk, kvl = m.kvl, rope = m.rope, kva_n = kvl + rope;
    const float *Wkvb = dsv3_tw(tr, DSV3_P_KV_B, l, -1);
    float *dWkvb = dsv3_tg(tr, DSV3_P_KV_B, l, -1);
    tr->blk = DSV3_FP8_B_ATTN;
    // o_proj
    dsv3_t_linear_bwd(tr, DSV3_LIN_FP8_OPROJ, tr->datt, 0, dsv3_tg(tr, DSV3_P_O, l, -1), dsv3_tg(tr, DSV3_P_O_BIAS, l, -1), dout, a->att,
                      NULL, dsv3_tw(tr, DSV3_P_O, l, -1), N, m.d, H * m.v);
    float *dq = tr->dq; // (N, H·qk) once both branches are done
    if (mode == DSV3_ATTN_NAIVE) {
        memset(tr->dk, 0, sizeof(float) * (size_t)N * H * qk);
        memset(tr->dkv, 0, sizeof(float) * (size_t)N * H * m.per);
        for (int b = 0; b < m.B; b++) {
            dsv3_attn_args g = attn_args(tr, a, &m, mode, b);
            const size_t t0 = (size_t)b * m.Tl;
            be->attn_bwd(&g, tr->datt + t0 * H * m.v, dq + t0 * H * qk, tr->dk + t0 * H * qk,
                         tr->dkv + t0 * H * m.per + m.nope);
        }
        for (int t = 0; t < N; t++) {
            float *dkpe = tr->dkpe + (size_t)t * rope;
            memset(dkpe, 0, sizeof(float) * rope);
            for (int h = 0; h < H; h++) {
                const float *dk = tr->dk + ((size_t)t * H + h) * qk;
                memcpy(tr->dkv + ((size_t)t * H + h) * m.per, dk, sizeof(float) * m.nope);
                for (int j = 0; j < rope; j++) dkpe[j] += dk[m.nope + j];
            }
        }
        dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, tr->dcn, 0, dWkvb, NULL, tr->dkv, a->cn, &a->qcn, Wkvb, N, H * m.per, kvl);
    } else {
        const int qc = kva_n;
        for (int h = 0; h < H; h++) {
            const float *Wuv = Wkvb + ((size_t)h * m.per + m.nope) * kvl;
            be->gemm(0, 0, N, kvl, m.v, 1.0f, tr->datt + (size_t)h * m.v, H * m.v, Wuv, kvl, 0.0f, tr->dlat + (size_t)h * kvl,
                     H * kvl);
            be->gemm(1, 0, m.v, kvl, N, 1.0f, tr->datt + (size_t)h * m.v, H * m.v, a->lat + (size_t)h * kvl, H * kvl, 1.0f,
                     dWkvb + ((size_t)h * m.per + m.nope) * kvl, kvl);
        }
        float *dqabs = tr->dk, *dkcat = tr->dkva, *dvcat = tr->dkv; // (N, H·qc), (N, qc), (N, qc)
        memset(dkcat, 0, sizeof(float) * (size_t)N * qc);
        memset(dvcat, 0, sizeof(float) * (size_t)N * qc);
        for (int b = 0; b < m.B; b++) {
            dsv3_attn_args g = attn_args(tr, a, &m, mode, b);
            const size_t t0 = (size_t)b * m.Tl;
            be->attn_bwd(&g, tr->dlat + t0 * H * kvl, dqabs + t0 * H * qc, dkcat + t0 * qc, dvcat + t0 * qc);
        }
        for (int h = 0; h < H; h++) {
            const float *Wuk = Wkvb + (size_t)h * m.per * kvl;
            be->gemm(0, 1, N, m.nope, kvl, 1.0f, dqabs + (size_t)h * qc, H * qc, Wuk, kvl, 0.0f, dq + (size_t)h * qk, H * qk);
            be->gemm(1, 0, m.nope, kvl, N, 1.0f, a->q + (size_t)h * qk, H * qk, dqabs + (size_t)h * qc, H * qc, 1.0f,
                     dWkvb + (size_t)h * m.per * kvl, kvl);
            for (int t = 0; t < N; t++)
                memcpy(dq + ((size_t)t * H + h) * qk + m.nope, dqabs + ((size_t)t * H + h) * qc + kvl, sizeof(float) * rope);
        }
        for (int t = 0; t < N; t++) {
            for (int j = 0; j < kvl; j++) tr->dcn[(size_t)t * kvl + j] = dkcat[(size_t)t * qc + j] + dvcat[(size_t)t * qc + j];
            memcpy(tr->dkpe + (size_t)t * rope, dkcat + (size_t)t * qc + kvl, sizeof(float) * rope);
        }
    }
    // latent and rope key -> kv_a_proj output
    be->rope(tr->dkpe, N, rope, 1, 0, 0, tr->cos_t, tr->sin_t, tr->pos, tr->np, tr->interleave, 1);
    be->rmsnorm_bwd(tr->dc, dsv3_tg(tr, DSV3_P_KV_A_NORM, l, -1), tr->dcn, a->c, dsv3_tw(tr, DSV3_P_KV_A_NORM, l, -1),
                    a->cnrs, N, kvl);
    float *dkva = tr->dkva;
    for (int t = 0; t < N; t++) {
        memcpy(dkva + (size_t)t * kva_n, tr->dc + (size_t)t * kvl, sizeof(float) * kvl);
        memcpy(dkva + (size_t)t * kva_n + kvl, tr->dkpe + (size_t)t * rope, sizeof(float) * rope);
    }
    // queries
    be->rope(dq, N, (long)H * qk, H, qk, m.nope, tr->cos_t, tr->sin_t, tr->pos, tr->np, tr->interleave, 1);
    if (m.ql > 0) {
        dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, tr->dqan, 0, dsv3_tg(tr, DSV3_P_Q_B, l, -1), NULL, dq, a->qan, &a->qqan, dsv3_tw(tr, DSV3_P_Q_B, l, -1), N,
                          H * qk, m.ql);
        be->rmsnorm_bwd(tr->dqa, dsv3_tg(tr, DSV3_P_Q_A_NORM, l, -1), tr->dqan, a->qa, dsv3_tw(tr, DSV3_P_Q_A_NORM, l, -1),
                        a->qars, N, m.ql);
        dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, dxn1, 0, dsv3_tg(tr, DSV3_P_Q_A, l, -1), dsv3_tg(tr, DSV3_P_Q_A_BIAS, l, -1), tr->dqa, a->xn1,
                          &a->qx1, dsv3_tw(tr, DSV3_P_Q_A, l, -1), N, m.ql, m.d);
    } else {
        dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, dxn1, 0, dsv3_tg(tr, DSV3_P_Q, l, -1), NULL, dq, a->xn1, &a->qx1, dsv3_tw(tr, DSV3_P_Q, l, -1), N, H * qk,
                          m.d);
    }
    dsv3_t_linear_bwd(tr, DSV3_LIN_FP8, dxn1, 1, dsv3_tg(tr, DSV3_P_KV_A, l, -1), dsv3_tg(tr, DSV3_P_KV_A_BIAS, l, -1), dkva, a->xn1,
                      &a->qx1, dsv3_tw(tr, DSV3_P_KV_A, l, -1), N, kva_n, m.d);
}
