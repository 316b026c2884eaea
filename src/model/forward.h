// Exact fp32 forward pass of DeepSeek-V3 / V2 (HF transformers semantics) over one sequence at
// positions 0..T-1: embedding, MLA (naive or absorbed), dense SwiGLU / DeepSeekMoE, final norm,
// lm_head; and the MTP modules. Weights go through dsv3_matmul; activations are fp32.
// docs/FORWARD.md describes the data flow and every rounding point.
#pragma once
#include "model/weights.h"
#include <stdint.h>

typedef enum { DSV3_ATTN_NAIVE = 0, DSV3_ATTN_ABSORB = 1 } dsv3_attn_mode;

// Per-model forward context: owns caches that are built once and reused across calls
// (fp32 W_UK / W_UV per layer for the absorbed attention path, rotary inverse frequencies).
typedef struct {
    const dsv3_model *m;
    float *inv_freq;       // (qk_rope_head_dim / 2)
    float attn_factor;     // cos/sin multiplier
    float scale;           // softmax scale incl. YaRN m²
    int qblock;            // attention query block (default 256; bounds scores to qblock x T floats)
    int interleave;        // rope pairs (x[2i], x[2i+1]); deepseek_v2 always, V3 per rope_interleave
    float **kvb_f32;       // [n_layers_loaded] of (H*(nope+v), kv_lora) dequantized kv_b_proj, built lazily;
                           //   W_UV[h] = rows h*(nope+v)+nope .. +v
    float **wuk_t;         // [n_layers_loaded] of (H, kv_lora, nope): W_UK[h]ᵀ, built lazily
} dsv3_fwd;

// Routing record of one forward: for each MoE layer (in layer order, MTP layers excluded) and
// token, the K chosen expert ids sorted ascending and their final weights (after norm_topk_prob and
// routed_scaling_factor), aligned with the ids.
typedef struct {
    int n_moe_layers, T, K;
    int32_t *experts;      // (n_moe_layers, T, K)
    float *weights;        // (n_moe_layers, T, K)
} dsv3_route_trace;

typedef struct {
    dsv3_attn_mode attn;
    float *logits;             // out (T, V), or NULL
    float *hidden;             // out (T, d): final-normed hidden state, or NULL
    dsv3_route_trace *trace;   // out, or NULL (allocated by dsv3_forward; free with dsv3_route_trace_free)
    float *layer_hidden;       // out (num_hidden_layers, T, d): residual stream after each layer, or NULL
} dsv3_forward_opts;

typedef struct {
    dsv3_attn_mode attn;
    int depth;                 // 1..number of MTP layers loaded
    float *logits;             // out (T - depth, V), or NULL
    float *hidden;             // out (T - depth, d): module output after shared_head.norm, or NULL
    dsv3_route_trace *trace;   // out, or NULL: routing of the depth-`depth` module (1 MoE layer, T - depth tokens)
} dsv3_mtp_opts;

int dsv3_fwd_init(dsv3_fwd *f, const dsv3_model *m);
void dsv3_fwd_free(dsv3_fwd *f);
// The model's weights changed (an optimizer step on a training model's masters): drops the caches
// derived from them (fp32 kv_b_proj, W_UK/W_UV), rebuilt on the next absorbed forward.
void dsv3_fwd_weights_changed(dsv3_fwd *f);

// Main-model forward over ids[T]. Returns 0, or -1 with dsv3_error() (bad token id, T <= 0).
int dsv3_forward(dsv3_fwd *f, const int32_t *ids, int T, const dsv3_forward_opts *o);

// MTP of depth o->depth (1..number of MTP layers loaded): logits (T - depth, V), row i predicting
// token i + depth + 1. Module k runs its decoder layer over positions 0..T-k-1 (causal). `hidden` is the main model's final-normed hidden state (T, d) from
// dsv3_forward. Depth k > 1 feeds module k the shared_head-normed output of module k-1.
// Returns 0, or -1 with dsv3_error() (no MTP layer, T <= depth, bad ids).
int dsv3_forward_mtp(dsv3_fwd *f, const int32_t *ids, int T, const float *hidden, const dsv3_mtp_opts *o);

void dsv3_route_trace_free(dsv3_route_trace *t);

// Router for one token (exposed for tests). logits[E] are the fp32 router logits; bias[E] (or NULL)
// the e_score_correction_bias. Writes the K chosen experts (ascending) and their weights.
// Sigmoid (V3): selection on sigmoid+bias, group score = sum of the top-2 biased scores per group,
// topk_group groups kept, others -inf; weights are the unbiased scores, normalised when
// norm_topk_prob (÷ (sum + 1e-20)), × routed_scaling_factor.
// Softmax (V2, HF deepseek_v2): scores = softmax(logits); group score = max per group (when
// n_group > 1), dropped groups filled with 0; weights = scores × routed_scaling_factor (HF V2
// ignores norm_topk_prob; when it is true and K > 1 we follow DeepSeek's V2 code: weights are the
// normalised scores, without routed_scaling_factor; no released V2 config sets it).
// `scratch` holds 2·E + n_group floats.
void dsv3_route_token(const dsv3_config *c, const float *logits, const float *bias, int32_t *experts,
                      float *weights, float *scratch);
// dsv3_route_token for T tokens (logits, experts, weights T rows of E, K, K): threads over tokens
// outside a parallel region when each can keep its scratch on the stack (2·E + n_group <= 4096
// floats), else one after another in `scratch`. Same results as the per-token loop.
void dsv3_route_tokens(const dsv3_config *c, const float *logits, const float *bias, int T, int32_t *experts,
                       float *weights, float *scratch);
