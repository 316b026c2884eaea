// Model configuration, read from a Hugging Face config.json (model_type deepseek_v3 or deepseek_v2).
// Field names follow HF; see docs/MODEL.md for the mapping to the paper and the official code.
#pragma once
#include <stdint.h>

// Upper bound on n_routed_experts accepted by the config reader (the router's per-token flags live
// on the stack: 64 KiB at this bound).
#define DSV3_MAX_ROUTED_EXPERTS 65536

typedef enum { DSV3_SCORE_SIGMOID = 0, DSV3_SCORE_SOFTMAX = 1 } dsv3_scoring;
typedef enum { DSV3_ROPE_DEFAULT = 0, DSV3_ROPE_YARN = 1 } dsv3_rope_type;

typedef struct {
    char model_type[32];          // "deepseek_v3" | "deepseek_v2"
    int vocab_size;
    int hidden_size;              // d
    int intermediate_size;        // dense SwiGLU inner dim
    int moe_intermediate_size;    // routed-expert inner dim
    int num_hidden_layers;        // main-model layers (MTP layers come after these)
    int num_nextn_predict_layers; // MTP depth D (0 if absent)
    int first_k_dense_replace;    // layers [0, k) are dense
    int moe_layer_freq;           // must be 1
    int num_attention_heads;      // H
    int num_key_value_heads;      // must equal H (MLA)
    int q_lora_rank;              // 0 = no q compression (q_proj), as HF null
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts, n_shared_experts, num_experts_per_tok;
    int n_group, topk_group;
    dsv3_scoring scoring;         // scoring_func
    int use_correction_bias;      // topk_method == "noaux_tc" (deepseek_v3): e_score_correction_bias exists
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;           // main norms; q_a/kv_a layernorms always use 1e-6 as HF does
    int attention_bias;           // biases on q_a/q/kv_a/o projections
    int tie_word_embeddings;
    int max_position_embeddings;
    int bos_token_id, eos_token_id;
    // rotary embedding
    double rope_theta;
    dsv3_rope_type rope_type;
    int rope_interleave;          // 1 (default): pairs (x[2i], x[2i+1]) as in the checkpoints
    double rope_factor;           // yarn only
    int original_max_position_embeddings;
    double beta_fast, beta_slow, mscale, mscale_all_dim;
    // (both zero by default, so a zero-initialised config keeps HF's defaults)
    double rope_attention_factor; // yarn "attention_factor": cos/sin multiplier as written (> 0); 0 when absent (derived)
    int rope_no_truncate;         // yarn "truncate": false (HF default true: floor/ceil the correction range)
    // quantization_config
    int fp8;                      // quant_method fp8 (weights F8_E4M3 + weight_scale_inv)
    int weight_block_rows, weight_block_cols; // weight_block_size, default 128x128
    int scale_fmt_ue8m0;          // scale_fmt "ue8m0"
    // Added by the config reader (docs/MODEL.md):
    char topk_method[24];         // "noaux_tc" | "greedy" | "group_limited_greedy" (as written, or the default)
    char dtype[16];               // torch_dtype / dtype as written ("" if absent); informational
    // Notes: mscale / mscale_all_dim are 0 when absent (HF treats 0 and absent alike: "if mscale_all_dim:").
    // topk_method "greedy" is stored with n_group = topk_group = 1 (plain top-k over all experts).
} dsv3_config;

// Parse and validate a config.json. Returns 0, or -1 with dsv3_error() naming the file and field.
int dsv3_config_load(dsv3_config *c, const char *path);
int dsv3_config_parse(dsv3_config *c, const char *json_text, const char *path_for_errors);
int dsv3_config_validate(const dsv3_config *c, const char *path_for_errors);

// Derived quantities
static inline int dsv3_qk_head_dim(const dsv3_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
static inline int dsv3_layer_is_moe(const dsv3_config *c, int layer) {
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace;
}

// Softmax scale including the YaRN mscale^2 factor (HF semantics).
double dsv3_softmax_scale(const dsv3_config *c);
// Inverse rotary frequencies, qk_rope_head_dim/2 values, YaRN-corrected when rope_type is yarn.
void dsv3_rope_inv_freq(const dsv3_config *c, float *inv_freq);
// cos/sin multiplier (HF attention_factor; 1.0 for V3).
double dsv3_rope_attention_factor(const dsv3_config *c);

// Counts for `dsv3 info`: exact unsigned integers. dsv3_config_validate bounds every dimension
// (below 2^31, experts <= 2^16, layers <= 10^5), so every count and every count x ctx (ctx <= 2^40)
// stays below 2^100; 128-bit integers hold them exactly (doubles would go wrong past 2^53).
__extension__ typedef unsigned __int128 dsv3_count;
typedef struct {
    dsv3_count total_params;      // main model (embedding + layers + final norm + head)
    dsv3_count active_params;     // per token: all but the unchosen routed experts
    dsv3_count mtp_params;        // MTP modules, excluding the shared embedding and head
    dsv3_count kv_bytes_per_token;      // MLA latent cache (kv_lora + rope) x layers x 2 bytes (bf16)
    dsv3_count mha_kv_bytes_per_token;  // equivalent per-head K and V cache in bf16
    dsv3_count flops_per_token;   // forward FLOPs per token (2 x active matmul params, attention excluded)
    // Breakdown (added with `dsv3 info`):
    dsv3_count embed_params;            // V*d (the head has the same count unless tied)
    dsv3_count head_params;             // V*d, 0 when tie_word_embeddings
    dsv3_count attn_params_per_layer;   // MLA projections + q_a/kv_a norms (+ biases); excludes the 2 block norms
    dsv3_count dense_ffn_params_per_layer; // 3*d*I
    dsv3_count expert_params;           // one routed expert, 3*d*Im
    dsv3_count moe_ffn_params_per_layer;   // all experts + shared + router weight (+ correction bias)
    dsv3_count mtp_active_params;       // MTP active per token, including the shared embedding and head
    dsv3_count active_matmul_params;    // active params that are matrix multiplies (no embedding, norms, biases)
    dsv3_count attn_flops_per_ctx_token; // score + value FLOPs per token per attended position, all layers:
                                         // 2*L*H*(qk + v) (MLA computed naively: q·k over qk dims, p·v over v dims)
} dsv3_counts;
void dsv3_config_counts(const dsv3_config *c, dsv3_counts *out);
// The decimal digits of v (no separators) in buf (cap >= 40 holds any value); returns buf.
char *dsv3_count_str(char *buf, unsigned long cap, dsv3_count v);
