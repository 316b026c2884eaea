// Internal to the forward pass (forward.c, mla.c, moe.c): the activation workspace and the
// per-block entry points. Not a public API.
#pragma once
#include "model/forward.h"


// Activation buffers for one forward over T positions, sized from the config once per call.
typedef struct {
    int T, nthreads;
    float *x, *xn, *o;        // (T, d) residual stream, normed input, block output
    float *qa;                // (T, q_lora_rank)
    float *q;                 // (T, H*qk)          rope dims rotated in place
    float *kva;               // (T, kv_lora + rope) c normed in place, k_pe rotated in place
    float *cl;                // (T, kv_lora)       contiguous normed latent (naive) / head q_abs (absorb)
    float *kv;                // (T, H*(nope+v))    naive path only
    float *att;               // (T, H*v)           concatenated head outputs
    float *cos_t, *sin_t;     // (T, rope/2)
    // attention: heads run in parallel (one head per thread at a time, its GEMMs single-threaded),
    // each thread with its own slice of `ath` (ath_stride floats):
    //   qh (T, max(qk, kv_lora + rope))  head queries [q_nope | q_pe] or [q_abs | q_pe]
    //   qn (T, nope), qab (T, kv_lora)   head q_nope and q_abs (absorb)
    //   kh (T, qk)                       head keys [k_nope | k_pe] (naive)
    //   vh (v, T)                        head values transposed (naive)
    //   sc, pb (QB, T)                   raw scores of a query block / probabilities, zero past the causal limit
    //   lat (QB, max(kv_lora, v)), oh (QB, v)  latent sums / head outputs
    // QB = min(T, f->qblock).
    float *ath; size_t ath_stride;
    float *ct;                // (kv_lora, T)       normed latent transposed, shared by heads (absorb)
    float *g, *u;             // (T, I_max)         SwiGLU inner activations
    float *rlog;              // (T, E)             router logits
    int32_t *eidx; float *ew; // (T, K)             chosen experts, weights
    int *cnt, *off;           // (E + 1)
    int *tok; float *tokw;    // (T*K)              tokens grouped by expert
    float *ye;                // (T, d)             shared-expert output
    float *eth; size_t eth_stride; // per thread: xe (T, d) gathered expert inputs, g/u (T, Im)
    float *yslot;             // (T*K, d)           routed expert outputs, one row per (token, expert) slot
    int *slot_of;             // (T*K)              slot of the k-th choice of token t
    float *rscratch;          // (2E + n_group)
    float *cat;               // (T, 2d)            MTP [enorm(emb); hnorm(h)]
} dsv3_fwd_ws;

void dsv3_ws_alloc(dsv3_fwd_ws *w, const dsv3_config *c, int T, int qblock);
void dsv3_ws_free(dsv3_fwd_ws *w);

// xn (T, d) -> w->o (T, d): multi-head latent attention at positions 0..T-1 (causal).
void dsv3_mla_forward(dsv3_fwd *f, dsv3_fwd_ws *w, int layer, int T, dsv3_attn_mode mode);
// xn (T, d) -> w->o (T, d): dense SwiGLU or DeepSeekMoE (routed + shared). For MoE layers the
// routing of each token is copied to tr_e/tr_w (T, K) when they are non-NULL.
void dsv3_ffn_forward(dsv3_fwd *f, dsv3_fwd_ws *w, int layer, int T, int32_t *tr_e, float *tr_w);

// fp32 kv_b_proj of `layer` (H*(nope+v), kv_lora), building it and W_UK[h]ᵀ (f->wuk_t[layer]) on
// first use. Not thread-safe while building; the inference engine builds every layer at load.
const float *dsv3_fwd_kvb(dsv3_fwd *f, int layer);
// y (T, n) += b (n) when b is non-NULL.
void dsv3_add_bias(float *y, const float *b, int T, int n);
