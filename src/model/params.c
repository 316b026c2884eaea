// The parameter table (params.h). The names follow the released DeepSeek-V3 checkpoint and HF
// transformers (per-expert tensors; the loader also accepts transformers-5 fused experts).
#include "model/params.h"
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    dsv3_param_table *t;
    int cap;
} builder;

static int add(builder *b, dsv3_pkind kind, int layer, int expert, int64_t rows, int64_t cols, int flags, const char *fmt,
               ...) {
    dsv3_param_table *t = b->t;
    if (t->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        t->p = dsv3_realloc(t->p, sizeof *t->p * (size_t)b->cap);
    }
    dsv3_param *p = &t->p[t->n];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->kind = kind;
    p->layer = layer;
    p->expert = expert;
    p->ndim = cols > 0 ? 2 : 1;
    p->rows = rows;
    p->cols = cols > 0 ? cols : 1;
    p->flags = flags | (cols > 0 ? DSV3_PF_DECAY : 0);
    p->alias = -1;
    return t->n++;
}

#define MAT(kind, rows, cols, ...) add(b, kind, l, -1, rows, cols, 0, __VA_ARGS__)
#define VEC(kind, n, ...) add(b, kind, l, -1, n, 0, 0, __VA_ARGS__)

static void layer_entries(builder *b, const dsv3_config *c, int l) {
    const int64_t d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    const int64_t ql = c->q_lora_rank, kvl = c->kv_lora_rank, rope = c->qk_rope_head_dim;
    const int64_t nope = c->qk_nope_head_dim, v = c->v_head_dim;
    VEC(DSV3_P_IN_NORM, d, "model.layers.%d.input_layernorm.weight", l);
    VEC(DSV3_P_POST_NORM, d, "model.layers.%d.post_attention_layernorm.weight", l);
    if (ql > 0) {
        MAT(DSV3_P_Q_A, ql, d, "model.layers.%d.self_attn.q_a_proj.weight", l);
        VEC(DSV3_P_Q_A_NORM, ql, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        MAT(DSV3_P_Q_B, H * qk, ql, "model.layers.%d.self_attn.q_b_proj.weight", l);
        if (c->attention_bias) VEC(DSV3_P_Q_A_BIAS, ql, "model.layers.%d.self_attn.q_a_proj.bias", l);
    } else {
        // q_proj never has a bias (HF: bias=False whatever attention_bias says)
        MAT(DSV3_P_Q, H * qk, d, "model.layers.%d.self_attn.q_proj.weight", l);
    }
    MAT(DSV3_P_KV_A, kvl + rope, d, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
    VEC(DSV3_P_KV_A_NORM, kvl, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    MAT(DSV3_P_KV_B, H * (nope + v), kvl, "model.layers.%d.self_attn.kv_b_proj.weight", l);
    MAT(DSV3_P_O, d, H * v, "model.layers.%d.self_attn.o_proj.weight", l);
    if (c->attention_bias) {
        VEC(DSV3_P_KV_A_BIAS, kvl + rope, "model.layers.%d.self_attn.kv_a_proj_with_mqa.bias", l);
        VEC(DSV3_P_O_BIAS, d, "model.layers.%d.self_attn.o_proj.bias", l);
    }
    if (!dsv3_layer_is_moe(c, l)) {
        const int64_t I = c->intermediate_size;
        MAT(DSV3_P_GATE, I, d, "model.layers.%d.mlp.gate_proj.weight", l);
        MAT(DSV3_P_UP, I, d, "model.layers.%d.mlp.up_proj.weight", l);
        MAT(DSV3_P_DOWN, d, I, "model.layers.%d.mlp.down_proj.weight", l);
        return;
    }
    const int64_t E = c->n_routed_experts, Im = c->moe_intermediate_size, Ish = Im * c->n_shared_experts;
    MAT(DSV3_P_ROUTER, E, d, "model.layers.%d.mlp.gate.weight", l);
    if (c->use_correction_bias)
        add(b, DSV3_P_CORR_BIAS, l, -1, E, 0, DSV3_PF_BUFFER, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    for (int e = 0; e < E; e++) {
        add(b, DSV3_P_EXP_GATE, l, e, Im, d, 0, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
        add(b, DSV3_P_EXP_UP, l, e, Im, d, 0, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
        add(b, DSV3_P_EXP_DOWN, l, e, d, Im, 0, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
    }
    if (Ish > 0) {
        MAT(DSV3_P_SH_GATE, Ish, d, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
        MAT(DSV3_P_SH_UP, Ish, d, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
        MAT(DSV3_P_SH_DOWN, d, Ish, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
    }
}

void dsv3_param_table_build(dsv3_param_table *t, const dsv3_config *c, int n_mtp) {
    memset(t, 0, sizeof *t);
    builder bb = {t, 0}, *b = &bb;
    const int64_t d = c->hidden_size, V = c->vocab_size;
    int l = -1;
    const int embed = MAT(DSV3_P_EMBED, V, d, "model.embed_tokens.weight");
    VEC(DSV3_P_NORM, d, "model.norm.weight");
    int head = embed;
    if (!c->tie_word_embeddings) head = MAT(DSV3_P_HEAD, V, d, "lm_head.weight");
    for (l = 0; l < c->num_hidden_layers; l++) layer_entries(b, c, l);
    t->n_mtp = n_mtp;
    for (int i = 0; i < n_mtp; i++) {
        l = c->num_hidden_layers + i;
        VEC(DSV3_P_ENORM, d, "model.layers.%d.enorm.weight", l);
        VEC(DSV3_P_HNORM, d, "model.layers.%d.hnorm.weight", l);
        MAT(DSV3_P_EH_PROJ, d, 2 * d, "model.layers.%d.eh_proj.weight", l);
        VEC(DSV3_P_SHEAD_NORM, d, "model.layers.%d.shared_head.norm.weight", l);
        int h = add(b, DSV3_P_MTP_HEAD, l, -1, V, d, DSV3_PF_OPTIONAL | DSV3_PF_ALIAS,
                    "model.layers.%d.shared_head.head.weight", l);
        t->p[h].alias = head;
        int e = add(b, DSV3_P_MTP_EMBED, l, -1, V, d, DSV3_PF_OPTIONAL | DSV3_PF_ALIAS,
                    "model.layers.%d.embed_tokens.weight", l);
        t->p[e].alias = embed;
        layer_entries(b, c, l);
    }
    size_t off = 0;
    for (int i = 0; i < t->n; i++) {
        dsv3_param *p = &t->p[i];
        if (p->flags & DSV3_PF_ALIAS) continue;
        p->offset = off;
        off += dsv3_param_numel(p);
        if (!(p->flags & DSV3_PF_BUFFER)) t->trainable += dsv3_param_numel(p);
    }
    for (int i = 0; i < t->n; i++)
        if (t->p[i].flags & DSV3_PF_ALIAS) t->p[i].offset = t->p[t->p[i].alias].offset;
    t->total = off;
}

void dsv3_param_table_free(dsv3_param_table *t) {
    free(t->p);
    memset(t, 0, sizeof *t);
}

int dsv3_param_find(const dsv3_param_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0) return i;
    return -1;
}
