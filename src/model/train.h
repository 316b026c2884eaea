// Training forward + backward of DeepSeek-V3 over a micro-batch (docs/TRAINING.md): B rows of T+1
// token ids (inputs t_0..t_{T-1}, labels t_1..t_T), the loss of issue "Training, part 1":
//   L_main = mean over the B·T positions of CE(lm_head(norm(h)), t_{i+1})
//   L^k    = Σ_rows Σ_{i=0}^{T-1-k} CE(MTP_k logits_i, t_{i+k+1}) / (B·T);   L_MTP = (λ/D) Σ_k L^k
//   L_Bal  = Σ_MoE layers (incl. the MTP blocks') mean_rows α Σ_i f_i P_i  (spec training.md §2.1)
//   L      = L_main + L_MTP + L_Bal
// and fp32 gradients of L for every trainable tensor, ACCUMULATED into dsv3_tmodel.grads.
//
// Memory is planned once per (B, T) by dsv3_train_new: one arena for the activations the backward
// needs and one workspace; a step allocates nothing (dsv3_alloc_count() is unchanged across it).
#pragma once
#include "model/tmodel.h"
#include "model/forward.h"
#include "kernels/backend.h"
#include "numerics/fp8_gemm.h"
#include "numerics/quant.h"
#include <stddef.h>
#include <stdint.h>

#define DSV3_TRAIN_MAX_MTP 8

typedef struct {
    float mtp_weight;        // λ (ignored without MTP layers)
    float seq_aux;           // α
    dsv3_attn_mode attn;     // naive (decompressed keys/values) or absorbed (latent) attention
    int no_backward;         // 1: loss only
    int same_weights;        // 1: the weights are unchanged since the last step (the micro-batches of one
                             //    optimizer step): the FP8 recipe reuses that step's weight codes
    int use_ignore;          // 1: labels equal to ignore_id (the dataset's PAD) count no loss; the main
    int32_t ignore_id;       //   and MTP losses are then divided by the counted main positions, not B·T
    float *logits;           // non-NULL: the main logits (B·T, V) are copied here (the fprop's head output)
    float *mtp_logits;       // non-NULL: depth-1 MTP logits (B·(T−1), V) (needs D >= 1 and mtp_weight != 0)
} dsv3_train_opts;

// The FP8 training recipe (DeepSeek-V3 §3.3; spec training.md §8; docs/FP8_TRAINING.md). Every Linear
// of attention (q/q_a/q_b, kv_a, kv_b in the naive form, o), of the dense MLP, of the shared and routed
// experts and the MTP eh_proj is an FP8 Linear; the embedding, head, router, norms and the attention
// core stay on the step's backend (bf16 GEMM inputs under `--precision fp8`). An FP8 Linear:
//   Fprop  Y = bf16(X·Wᵀ):  X E4M3 1×128 along K (per token), W E4M3 128×128 from the fp32 master
//          (quantized once per step and cached); fp32 accumulation promoted per 128-wide K group.
//   Dgrad  dX = bf16(dY·W): dY E4M3 1×128 along out (or 128×128 blocks: dgrad_block), Wᵀ = the same
//          codes and block scales transposed (no requantization).
//   Wgrad  dW += dYᵀ·X:     dY in 128×1 tiles (1×128 of dYᵀ along tokens); X re-tiled from its 1×128
//          codes (or quantized from the high-precision X: wgrad_x_high); fp32 into the gradient.
// Scales max(amax, 1e-4)/448, or UE8M0 (power of two, rounded up) for the experts' gate/up inputs,
// the experts' down-projection output gradients, the o_proj input's E5M6 copy, and everywhere with
// scale_fmt = UE8M0. The o_proj Wgrad takes X from its E5M6 copy (1×128 → 128×1 exact re-tiling).
enum { DSV3_FP8_B_ATTN = 1, DSV3_FP8_B_MLP = 2, DSV3_FP8_B_EXPERTS = 4, DSV3_FP8_B_MTP = 8, DSV3_FP8_B_ALL = 15 };
// Parses an --fp8-blocks value: "all" or a comma list of attn, mlp (dense), experts (routed + shared), mtp
// (eh_proj). 0, or -1 with a message.
int dsv3_fp8_blocks_parse(const char *s, unsigned *blocks);

typedef struct {
    dsv3_scale_fmt scale_fmt; // DSV3_SCALE_AMAX (default) or DSV3_SCALE_UE8M0 for every tensor
    int dgrad_block;          // 1: activation gradients in 128×128 blocks (the variant the paper saw diverge)
    int wgrad_x_high;         // 1: Wgrad's Xᵀ quantized from the high-precision X (Transformer Engine's way)
    dsv3_fp8_acc acc;         // accumulator: FP32 (promoted every 128, "exact") or LIMITED (hopper14, promote:N)
    unsigned blocks;          // DSV3_FP8_B_* bits: the blocks whose Linears are FP8 (default all); the others run
                              //    on the step's backend (bf16 inputs), as the router does — for locating effects
    int keep_fp32_inputs;     // 1: keep the fp32 copies of the FP8 Linears' inputs beside their codes (memory
                              //    only: the gradients are the same; implied by wgrad_x_high, which reads them)
} dsv3_fp8_recipe;

// Parses an --fp8-accum value: "exact", "hopper14" (14-bit accumulator, never promoted) or "promote:N"
// (14 bits, promoted every N elements, N a multiple of 32 in 32..4096). 0, or -1 with a message.
int dsv3_fp8_accum_parse(const char *s, dsv3_fp8_acc *acc);
// The canonical name of an accumulator model ("exact", "hopper14", "promote:128") into buf.
const char *dsv3_fp8_accum_name(const dsv3_fp8_acc *acc, char *buf, int n);
// The recipe defaults: amax scales, 1×128 activation gradients, re-tiled Wgrad inputs, exact accumulation.
void dsv3_fp8_recipe_default(dsv3_fp8_recipe *r);

typedef struct {
    double loss, main, mtp, balance;   // L, L_main, L_MTP (λ/D-weighted), L_Bal
    double mtp_depth[DSV3_TRAIN_MAX_MTP]; // L^k (unweighted), k = 1..D
    long tokens;                       // label positions counted: B·T without ignore_id
} dsv3_loss_parts;

typedef struct dsv3_train dsv3_train;

// Plans and allocates the arenas for micro-batches of B rows of T+1 ids. NULL with a message when
// the sizes are unreasonable (checked against `max_bytes`, 0 = no limit).
dsv3_train *dsv3_train_new(dsv3_tmodel *tm, int B, int T, const dsv3_backend *be, size_t max_bytes);
void dsv3_train_free(dsv3_train *tr);
// Turns the FP8 Linears on (recipe) or off (NULL) for the following steps. Allocates the per-step
// weight code caches (2 bytes per matrix element + scales) once, and re-plans the activation arena:
// under the recipe it holds the E4M3 codes of every FP8 Linear input (what the Wgrads read) and, unless
// keep_fp32_inputs or wgrad_x_high, not their fp32 copies (DeepSeek-V3's FP8 activation caching; the
// RMSNorm output feeding the router is recomputed). Call it before the first step. 0, or -1 with a
// message (over the dsv3_train_new limit).
int dsv3_train_set_fp8(dsv3_train *tr, const dsv3_fp8_recipe *r);
// Bytes planned: activations kept for the backward, workspace, and the analytic minimum of the
// activations (what the backward cannot do without: layer inputs, normed inputs, attention
// outputs and LSE, FFN inner activations, routing).
void dsv3_train_bytes(const dsv3_train *tr, size_t *activations, size_t *workspace, size_t *minimum);
// Same numbers from a config without allocating (for `dsv3 info --train`); fp8: the plan under that
// FP8 recipe (NULL: fp32 / bf16, whose activations are the same fp32 tensors).
int dsv3_train_plan_bytes(const dsv3_config *c, int n_mtp, int B, int T, const dsv3_fp8_recipe *fp8, size_t *activations,
                          size_t *workspace, size_t *minimum);

// Tokens per expert routed by the last step (the biased routing actually used), ADDED to
// counts[layer · E + e] for every MoE layer it ran (main layers, then the MTP blocks; dense layers
// add nothing). dsv3_train_layers_run: main + MTP layers the last step ran.
void dsv3_train_route_counts(const dsv3_train *tr, int64_t *counts);
int dsv3_train_layers_run(const dsv3_train *tr);

// rows: (B, T+1) ids. Checks the ids against the vocabulary (-1 and a message otherwise).
int dsv3_train_step(dsv3_train *tr, const int32_t *rows, const dsv3_train_opts *o, dsv3_loss_parts *out);
