// A model for training: every tensor of the parameter table (params.h) as fp32 in one arena (the
// master weights, whatever the checkpoint dtype: BF16/F16/FP8-with-block-scales are dequantized on
// load), a gradient arena with the same offsets, and a dsv3_model "view" whose matrices are F32
// views into the master arena (so the inference forward runs on the masters unchanged).
#pragma once
#include "model/params.h"
#include "model/weights.h"
#include <stdint.h>

typedef struct {
    dsv3_config cfg;
    dsv3_param_table tab;  // main model + the MTP layers present
    float *params;         // (tab.total) fp32 masters; correction-bias buffers included
    float *grads;          // (tab.total) gradients at the same offsets (buffer slots stay 0)
    dsv3_model view;       // F32 views into params
} dsv3_tmodel;

// Dequantizes every tensor of a loaded model into a new training model. Returns 0 or -1 (message set).
int dsv3_tmodel_from_model(dsv3_tmodel *t, const dsv3_model *m);
// Loads an HF checkpoint directory (config.json + safetensors) as a training model.
int dsv3_tmodel_load(dsv3_tmodel *t, const char *dir);
// A random initialization from a config: matrices N(0, std²) (Box-Muller on a seeded splitmix64
// stream, deterministic per seed), RMSNorm gains 1, biases 0, correction biases 0; n_mtp MTP layers.
int dsv3_tmodel_init_random(dsv3_tmodel *t, const dsv3_config *c, int n_mtp, float std, uint64_t seed);
void dsv3_tmodel_free(dsv3_tmodel *t);
void dsv3_tmodel_zero_grads(dsv3_tmodel *t);
// Pointers into the arenas for table entry i (aliases resolve to their target).
static inline float *dsv3_tmodel_param(dsv3_tmodel *t, int i) { return t->params + t->tab.p[i].offset; }
static inline float *dsv3_tmodel_grad(dsv3_tmodel *t, int i) { return t->grads + t->tab.p[i].offset; }
