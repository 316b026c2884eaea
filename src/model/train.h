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
#include <stddef.h>
#include <stdint.h>

#define DSV3_TRAIN_MAX_MTP 8

typedef struct {
    float mtp_weight;        // λ (ignored without MTP layers)
    float seq_aux;           // α
    dsv3_attn_mode attn;     // naive (decompressed keys/values) or absorbed (latent) attention
    int no_backward;         // 1: loss only
    int use_ignore;          // 1: labels equal to ignore_id (the dataset's PAD) count no loss; the main
    int32_t ignore_id;       //   and MTP losses are then divided by the counted main positions, not B·T
} dsv3_train_opts;

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
// Bytes planned: activations kept for the backward, workspace, and the analytic minimum of the
// activations (what the backward cannot do without: layer inputs, normed inputs, attention
// outputs and LSE, FFN inner activations, routing).
void dsv3_train_bytes(const dsv3_train *tr, size_t *activations, size_t *workspace, size_t *minimum);
// Same numbers from a config without allocating (for `dsv3 info --train`).
int dsv3_train_plan_bytes(const dsv3_config *c, int n_mtp, int B, int T, size_t *activations, size_t *workspace,
                          size_t *minimum);

// Tokens per expert routed by the last step (the biased routing actually used), ADDED to
// counts[layer · E + e] for every MoE layer it ran (main layers, then the MTP blocks; dense layers
// add nothing). dsv3_train_layers_run: main + MTP layers the last step ran.
void dsv3_train_route_counts(const dsv3_train *tr, int64_t *counts);
int dsv3_train_layers_run(const dsv3_train *tr);

// rows: (B, T+1) ids. Checks the ids against the vocabulary (-1 and a message otherwise).
int dsv3_train_step(dsv3_train *tr, const int32_t *rows, const dsv3_train_opts *o, dsv3_loss_parts *out);
