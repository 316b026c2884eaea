// Parameter, KV-cache and FLOP counts of a config (`dsv3 info`). Exact integer arithmetic on the tensor
// shapes of docs/MODEL.md, in 128-bit unsigned integers (config.h says why that cannot overflow).
#include "model/config.h"
#include <string.h>

void dsv3_config_counts(const dsv3_config *c, dsv3_counts *o) {
    typedef dsv3_count U;
    memset(o, 0, sizeof *o);
    const U d = (U)c->hidden_size, V = (U)c->vocab_size, H = (U)c->num_attention_heads;
    const U qk = (U)dsv3_qk_head_dim(c), nope = (U)c->qk_nope_head_dim, rope = (U)c->qk_rope_head_dim, v = (U)c->v_head_dim;
    const U ql = (U)c->q_lora_rank, kvl = (U)c->kv_lora_rank;
    const U I = (U)c->intermediate_size, Im = (U)c->moe_intermediate_size;
    const U E = (U)c->n_routed_experts, S = (U)c->n_shared_experts, K = (U)c->num_experts_per_tok;
    const int L = c->num_hidden_layers;

    // Attention (MLA). Matrix parameters and vector parameters (norm gains, biases) kept apart for FLOPs.
    U attn_mat = (ql > 0 ? d * ql + ql * H * qk : d * H * qk) + d * (kvl + rope) + kvl * H * (nope + v) + H * v * d;
    U attn_vec = (ql > 0 ? ql : 0) + kvl;
    if (c->attention_bias) attn_vec += (ql > 0 ? ql : 0) + (kvl + rope) + d; // q_a / kv_a / o biases
    const U block_norms = 2 * d;
    o->attn_params_per_layer = attn_mat + attn_vec;
    o->dense_ffn_params_per_layer = 3 * d * I;
    o->expert_params = 3 * d * Im;
    const U shared = 3 * d * Im * S, router = E * d, corr = c->use_correction_bias ? E : 0;
    o->moe_ffn_params_per_layer = E * o->expert_params + shared + router + corr;
    o->embed_params = V * d;
    o->head_params = c->tie_word_embeddings ? 0 : V * d;

    U total = o->embed_params + o->head_params + d, active = total;
    U active_mat = V * d; // the head is a matmul (tied or not); the embedding is a lookup
    for (int l = 0; l < L; l++) {
        U layer = o->attn_params_per_layer + block_norms;
        U act = layer;
        active_mat += attn_mat;
        if (dsv3_layer_is_moe(c, l)) {
            layer += o->moe_ffn_params_per_layer;
            act += K * o->expert_params + shared + router + corr;
            active_mat += K * o->expert_params + shared + router;
        } else {
            layer += o->dense_ffn_params_per_layer;
            act += o->dense_ffn_params_per_layer;
            active_mat += o->dense_ffn_params_per_layer;
        }
        total += layer;
        active += act;
    }
    o->total_params = total;
    o->active_params = active;
    o->active_matmul_params = active_mat;
    o->flops_per_token = 2 * active_mat;

    // MTP modules (layer index L + i): enorm, hnorm, eh_proj, shared_head.norm and a full decoder layer;
    // the embedding and head are shared with the main model (stored copies are not counted).
    U mtp = 0, mtp_act = 0;
    for (int i = 0; i < c->num_nextn_predict_layers; i++) {
        U own = 3 * d + 2 * d * d + o->attn_params_per_layer + block_norms;
        U act = own;
        if (dsv3_layer_is_moe(c, L + i)) {
            own += o->moe_ffn_params_per_layer;
            act += K * o->expert_params + shared + router + corr;
        } else {
            own += o->dense_ffn_params_per_layer;
            act += o->dense_ffn_params_per_layer;
        }
        mtp += own;
        mtp_act += act + o->embed_params + o->head_params; // a tied head is the embedding, counted once
    }
    o->mtp_params = mtp;
    o->mtp_active_params = mtp_act;

    o->kv_bytes_per_token = (kvl + rope) * 2 * (U)L;
    o->mha_kv_bytes_per_token = H * (qk + v) * 2 * (U)L;
    o->attn_flops_per_ctx_token = 2 * (U)L * H * (qk + v);
}

char *dsv3_count_str(char *buf, unsigned long cap, dsv3_count v) {
    char tmp[48];
    int n = 0;
    do { tmp[n++] = (char)('0' + (int)(v % 10)); v /= 10; } while (v);
    unsigned long j = 0;
    while (n > 0 && j + 1 < cap) buf[j++] = tmp[--n];
    if (cap) buf[j] = 0;
    return buf;
}
