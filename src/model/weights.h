// A loaded model: config + weights bound by HF name. Large matrices are views into the mmapped
// safetensors files (F32 / BF16 / F16 / F8_E4M3 with block scales); small vectors (norm gains,
// biases, the router correction bias) are converted to owned fp32 arrays at load.
#pragma once
#include "model/config.h"
#include "model/safetensors.h"
#include "kernels/cpu/matmul.h"

typedef struct {
    int is_moe;
    float *input_layernorm;          // (d)
    float *post_attention_layernorm; // (d)
    // MLA
    dsv3_mat q_proj;                 // (H*qk, d)          only when q_lora_rank == 0
    dsv3_mat q_a_proj;               // (q_lora, d)
    float *q_a_layernorm;            // (q_lora)
    dsv3_mat q_b_proj;               // (H*qk, q_lora)
    dsv3_mat kv_a_proj;              // (kv_lora + rope, d)   kv_a_proj_with_mqa
    float *kv_a_layernorm;           // (kv_lora)
    dsv3_mat kv_b_proj;              // (H*(nope + v), kv_lora)
    dsv3_mat o_proj;                 // (d, H*v)
    float *q_a_proj_bias, *kv_a_proj_bias, *o_proj_bias; // attention_bias only, else NULL (q_proj has none, as in HF)
    // dense SwiGLU (layers < first_k_dense_replace)
    dsv3_mat gate_proj, up_proj;     // (I, d)
    dsv3_mat down_proj;              // (d, I)
    // DeepSeekMoE
    dsv3_mat router;                 // (E, d)   mlp.gate.weight
    float *correction_bias;          // (E)      mlp.gate.e_score_correction_bias, NULL if unused
    dsv3_mat *exp_gate, *exp_up;     // [E] of (Im, d)  per-expert or sliced from fused gate_up_proj
    dsv3_mat *exp_down;              // [E] of (d, Im)
    dsv3_mat sh_gate, sh_up;         // (Im*n_shared, d)  shared_experts (rows 0 if n_shared == 0)
    dsv3_mat sh_down;                // (d, Im*n_shared)
    // MTP module only (layer index >= num_hidden_layers)
    float *enorm, *hnorm;            // (d)
    dsv3_mat eh_proj;                // (d, 2d): input columns [0, d) embedding, [d, 2d) hidden
    float *shared_head_norm;         // (d)
    dsv3_mat mtp_embed;              // (V, d)   the stored copy, or the main embedding if absent
    dsv3_mat mtp_head;               // (V, d)   shared_head.head, or lm_head if absent
} dsv3_layer;

typedef struct {
    dsv3_config cfg;
    dsv3_st st;                      // the open safetensors files (owns the mappings)
    dsv3_mat embed;                  // (V, d)   model.embed_tokens.weight
    dsv3_layer *layers;              // [num_hidden_layers + num_nextn_predict_layers]
    int n_layers_loaded;             // num_hidden_layers + MTP layers found
    float *norm;                     // (d)      model.norm.weight
    dsv3_mat lm_head;                // (V, d)   lm_head.weight (embed when tied)
    void **owned; int n_owned, cap_owned; // fp32 arrays allocated at load
} dsv3_model;

// Load config.json and the safetensors of `dir`; checks every needed tensor is present with the
// right shape and dtype. Returns 0, or -1 with dsv3_error() naming file, tensor and problem.
int dsv3_model_load(dsv3_model *m, const char *dir);
void dsv3_model_free(dsv3_model *m);

// Binding by the parameter table (params.h): the field of `m` an entry binds to. dsv3_model_mat
// returns NULL for 1-D entries, dsv3_model_vec NULL for 2-D ones.
#include "model/params.h"
dsv3_mat *dsv3_model_mat(dsv3_model *m, const dsv3_param *p);
float **dsv3_model_vec(dsv3_model *m, const dsv3_param *p);
// Number of MTP layers (of the first D) whose tensors are in the open checkpoint.
int dsv3_model_mtp_present(const dsv3_model *m, int D);
// Allocates m->layers for the main model + n_mtp MTP layers (expert arrays, empty shared-expert
// matrices when n_shared_experts = 0) and sets n_layers_loaded; the tensors are bound afterwards.
void dsv3_model_layers_alloc(dsv3_model *m, int n_mtp);
