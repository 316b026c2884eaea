// The parameter table: every tensor of a DeepSeek-V3/V2 model as {HF name, shape, kind, layer,
// expert, flags}, built from the config alone. It is the one place the names live: loading
// (weights.c binds by walking it), saving, counts, random init, gradients and optimizer state all
// walk the same table. Order = the order tensors are bound and stored (docs/MODEL.md).
#pragma once
#include "model/config.h"
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DSV3_P_EMBED, DSV3_P_NORM, DSV3_P_HEAD,                        // model.embed_tokens, model.norm, lm_head
    DSV3_P_IN_NORM, DSV3_P_POST_NORM,                              // input_layernorm, post_attention_layernorm
    DSV3_P_Q_A, DSV3_P_Q_A_NORM, DSV3_P_Q_B, DSV3_P_Q_A_BIAS, DSV3_P_Q,
    DSV3_P_KV_A, DSV3_P_KV_A_NORM, DSV3_P_KV_B, DSV3_P_O, DSV3_P_KV_A_BIAS, DSV3_P_O_BIAS,
    DSV3_P_GATE, DSV3_P_UP, DSV3_P_DOWN,                           // dense SwiGLU
    DSV3_P_ROUTER, DSV3_P_CORR_BIAS,                               // mlp.gate.weight, e_score_correction_bias
    DSV3_P_EXP_GATE, DSV3_P_EXP_UP, DSV3_P_EXP_DOWN,               // mlp.experts.E.*
    DSV3_P_SH_GATE, DSV3_P_SH_UP, DSV3_P_SH_DOWN,                  // mlp.shared_experts.*
    DSV3_P_ENORM, DSV3_P_HNORM, DSV3_P_EH_PROJ, DSV3_P_SHEAD_NORM, // MTP module
    DSV3_P_MTP_HEAD, DSV3_P_MTP_EMBED,                             // MTP copies of lm_head / embed_tokens
    DSV3_P_NKINDS
} dsv3_pkind;

enum {
    DSV3_PF_BUFFER = 1,   // not a trainable parameter (the correction bias: updated by the balancing rule)
    DSV3_PF_OPTIONAL = 2, // may be absent from a checkpoint (the MTP copies of the embedding and head)
    DSV3_PF_ALIAS = 4,    // the same parameter as entry `alias` (one tensor, stored under two names)
    DSV3_PF_DECAY = 8,    // 2-D: weight decay applies (1-D norm gains and biases get none)
};

typedef struct {
    char name[96];        // HF tensor name
    dsv3_pkind kind;
    int layer;            // decoder layer index (MTP layers follow the main ones), -1 for global tensors
    int expert;           // routed expert index, -1 otherwise
    int ndim;             // 1 or 2
    int64_t rows, cols;   // 2-D: (out, in) as HF stores nn.Linear; 1-D: (n, 1)
    int flags;            // DSV3_PF_*
    int alias;            // DSV3_PF_ALIAS: index of the entry it shares storage with; else -1
    size_t offset;        // floats from the start of an fp32 arena holding every non-alias entry
} dsv3_param;

typedef struct {
    dsv3_param *p;
    int n;
    int n_mtp;            // MTP layers included
    size_t total;         // floats of the arena (non-alias entries, buffers included)
    size_t trainable;     // floats of trainable parameters (non-alias, non-buffer)
} dsv3_param_table;

// Builds the table for the main model plus the first n_mtp MTP layers (0..num_nextn_predict_layers).
void dsv3_param_table_build(dsv3_param_table *t, const dsv3_config *c, int n_mtp);
void dsv3_param_table_free(dsv3_param_table *t);
// Index of the entry named `name`, or -1.
int dsv3_param_find(const dsv3_param_table *t, const char *name);
static inline size_t dsv3_param_numel(const dsv3_param *p) { return (size_t)p->rows * (size_t)p->cols; }
