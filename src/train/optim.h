// The DeepSeek-V3 training recipe's optimizer side (spec training.md §1, §4; docs/TRAINING.md):
// AdamW with decoupled weight decay, global-norm clipping, the token-fraction schedules of the LR,
// the MTP weight λ and the bias speed γ, and the auxiliary-loss-free bias update.
#pragma once
#include "model/params.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { DSV3_SCHED_V3 = 0, DSV3_SCHED_COSINE = 1, DSV3_SCHED_CONSTANT = 2 } dsv3_schedule;

// τ breakpoints of the V3 schedule (fractions of the run's tokens; spec §0, §4.2)
#define DSV3_TAU_DECAY 0.6757   // constant LR until here; λ 0.3 -> 0.1 here
#define DSV3_TAU_COSINE_LEN 0.2905
#define DSV3_TAU_TAIL1 0.9662   // cosine ends; γ -> 0
#define DSV3_TAU_TAIL2 0.9887

// Learning rate of optimizer step k = 1..N (τ = tokens consumed before step k / tokens of the run):
// η·min(1, k/W) while k <= W; then v3: η (τ < 0.6757), 0.1η + 0.45η(1 + cos(π(τ − 0.6757)/0.2905))
// (τ < 0.9662), 0.1η (τ < 0.9887), 0.0332η; cosine: 0.1η + 0.45η(1 + cos(π τ')) with τ' the fraction
// of the post-warmup tokens; constant: η.
double dsv3_lr_at(dsv3_schedule s, double eta, long k, long warmup, double tau, double tau_warm_end);
double dsv3_mtp_weight_at(double tau);   // 0.3 then 0.1 at τ = 0.6757
double dsv3_bias_speed_at(double tau);   // 1e-3 then 0 at τ = 0.9662

typedef struct {
    double beta1, beta2, eps, weight_decay;
    int bf16_moments;        // moments stored as bf16 (RNE), updated in fp32
} dsv3_adamw_cfg;

typedef struct {
    size_t n;                // floats (the table arena size; alias and buffer slots are skipped)
    float *m, *v;            // fp32 moments, or NULL with bf16
    uint16_t *mb, *vb;       // bf16 moments, or NULL with fp32
    long step;               // optimizer steps taken (bias correction)
} dsv3_adamw;

void dsv3_adamw_init(dsv3_adamw *o, size_t n, int bf16_moments);
void dsv3_adamw_free(dsv3_adamw *o);
// One step over every trainable entry of `tab`: θ ← θ − lr·(m̂/(√v̂ + eps) + wd·θ) with decay only
// on 2-D entries (DSV3_PF_DECAY). g is the (clipped) gradient arena.
void dsv3_adamw_step(dsv3_adamw *o, const dsv3_adamw_cfg *c, const dsv3_param_table *tab, float *params, const float *g,
                     double lr);

// Global L2 norm of the gradients of every trainable entry (double accumulation), and the clip:
// scale by min(1, max_norm / (norm + 1e-6)) as torch clip_grad_norm_. Returns the norm before clipping.
double dsv3_grad_norm(const dsv3_param_table *tab, const float *g);
double dsv3_clip_grads(const dsv3_param_table *tab, float *g, double max_norm);

// Auxiliary-loss-free balancing for one MoE layer: c = tokens per expert over the step, c̄ their
// mean; b_i ← b_i + γ·sign(c̄ − c_i) (sign(0) = 0). Returns MaxVio = (max_i c_i − c̄) / c̄.
double dsv3_bias_update(float *bias, const int64_t *counts, int E, double gamma);
double dsv3_maxvio(const int64_t *counts, int E);
