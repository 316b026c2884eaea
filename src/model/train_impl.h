// Internal to the training forward/backward (train.c, train_attn.c, train_ffn.c). Not a public API.
#pragma once
#include "model/train.h"

// The E4M3 1×128 codes of an FP8 Linear's input (numerics/quant.h layout: (N, in) codes, (N, ceil(in/128))
// scales), planned in the activation arena under the FP8 recipe: made by the first Fprop reading the
// input in the step (ready = 1), reused by the other Linears reading it and re-tiled by the Wgrads.
// q == NULL: not planned (quantize into scratch).
typedef struct { uint8_t *q; float *s; int ready; } dsv3_xq;

// Activations one decoder layer keeps for its backward. N = B·Tl rows (Tl = T for main layers,
// T − k for the depth-k MTP block), row b·Tl + i = token i of row b.
typedef struct {
    int layer, Tl, N;
    float *x;                  // (N, d)            layer input (residual stream)
    float *xn1, *rs1;          // (N, d), (N)       input_layernorm output, 1/rms
    float *qa, *qan, *qars;    // (N, ql) ×2, (N)   q_a_proj(+bias) output, q_a_layernorm output, 1/rms
    float *q;                  // (N, H·qk)         queries, rope part rotated
    float *c, *cn, *cnrs;      // (N, kvl) ×2, (N)  latent before / after kv_a_layernorm, 1/rms
    float *kpe;                // (N, rope)         rotated shared rope key
    float *kv;                 // (N, H·(nope+v))   naive: kv_b_proj(cn) = per head [k_nope | v]
    float *kfull;              // (N, H·qk)         naive: per head [k_nope | k_pe]
    float *qabs;               // (N, H·(kvl+rope)) absorbed: per head [q_nope·W_UK | q_pe]
    float *kcat;               // (N, kvl+rope)     absorbed: shared keys [cn | kpe]
    float *lat;                // (N, H·kvl)        absorbed: attention output in latent space
    float *att;                // (N, H·v)          concatenated head outputs
    float *lse;                // (B, H, Tl)
    float *xm;                 // (N, d)            x + attention output
    float *xn2, *rs2;          // (N, d), (N)       post_attention_layernorm output, 1/rms
    float *g, *u, *a;          // (N, I)            dense SwiGLU gate, up, silu(g)·u
    // MoE
    float *rlog;               // (N, E)            router logits
    int32_t *eidx; float *ew;  // (N, K)            chosen experts (ascending) and final gating weights
    int *off;                  // (E + 1)           slot ranges per expert
    int *tok; int *slot_of;    // (N·K)             token of each slot; slot of (t, k)
    float *xs;                 // (N·K, d)          gathered expert inputs, slot-major
    float *eg, *eu, *ea;       // (N·K, Im)         expert gate, up, activation per slot
    float *ey;                 // (N·K, d)          expert outputs per slot
    float *sg, *su, *sa;       // (N, Ish)          shared experts
    float *f;                  // (B, E)            balance-loss f_i per row (constants)
    // FP8 recipe: codes of the FP8 Linears' inputs. With the fp32 copies not kept (act8), xn1, qan,
    // cn, xn2, a, ea, sa point into layer-shared transient buffers (xn2 is recomputed for the router's
    // Wgrad) and xs is not planned: the experts' codes are gathered from xn2's.
    dsv3_xq qx1, qqan, qcn, qx2, qxs, qact, qea, qsa;
} dsv3_layer_acts;

typedef struct dsv3_fp8_state dsv3_fp8_state; // train_fp8.c

// What a Linear is under the FP8 recipe (train.h): high precision (the router), or an FP8 Linear with
// its scale policy.
typedef enum {
    DSV3_LIN_HI = 0,     // the step's backend GEMM (router)
    DSV3_LIN_FP8,        // FP8 Linear, scales per the recipe
    DSV3_LIN_FP8_EXPIN,  // experts' gate/up: input scales UE8M0 (the activations DeepSeek dispatches in FP8)
    DSV3_LIN_FP8_EXPOUT, // experts' down: output-gradient scales UE8M0 (the gradient combined back in FP8)
    DSV3_LIN_FP8_OPROJ,  // o_proj: Wgrad input from the E5M6 (UE8M0) copy of the attention output
} dsv3_lin_role;

struct dsv3_train {
    dsv3_fp8_state *fp8;       // NULL: no FP8 Linears
    unsigned fp8_blocks;       // DSV3_FP8_B_* of the recipe: the blocks whose Linears are FP8
    unsigned blk;              // the block whose Linears run now (DSV3_FP8_B_*; set by its forward/backward)
    int plan8;                 // the arenas hold the FP8 input codes (dsv3_xq)
    int act8;                  // ... and not the fp32 copies of those inputs (transient buffers instead)
    size_t max_bytes;          // the limit dsv3_train_new was given (re-planning checks it again)
    dsv3_tmodel *tm;
    const dsv3_backend *be;
    int B, T, D;               // D = MTP layers planned
    int D_run;                 // MTP layers the last step ran (0 when λ = 0)
    float scale;               // softmax scale
    int interleave, np;        // rope layout, rope pairs
    float *cos_t, *sin_t;      // (T, np)
    int32_t *pos;              // (B·T): row r of a layer with Tl tokens per row uses pos[r] (filled per Tl)
    int32_t *pos_tl[DSV3_TRAIN_MAX_MTP + 1]; // [k] positions for Tl = T − k: (B·(T−k))
    dsv3_layer_acts *acts;     // [n_layers run]: main layers, then MTP layers
    // global activations
    int32_t *ids, *tgt;        // (B·T) inputs, main targets
    int32_t *mids[DSV3_TRAIN_MAX_MTP], *mtgt[DSV3_TRAIN_MAX_MTP]; // depth k: (B·(T−k)) embedding ids t_{i+k}, targets t_{i+k+1}
    float *xf;                 // (N, d)      output of the last main layer
    float *hN, *rsN;           // (N, d), (N) final-normed hidden
    float *memb[DSV3_TRAIN_MAX_MTP], *men[DSV3_TRAIN_MAX_MTP], *mrse[DSV3_TRAIN_MAX_MTP];  // depth k: Emb, enorm(Emb), 1/rms
    float *mhp[DSV3_TRAIN_MAX_MTP], *mhn[DSV3_TRAIN_MAX_MTP], *mrsh[DSV3_TRAIN_MAX_MTP];   // h_prev gathered, hnorm(h_prev), 1/rms
    float *mcat[DSV3_TRAIN_MAX_MTP];                                                      // (N_k, 2d) [en | hn]
    dsv3_xq qcat[DSV3_TRAIN_MAX_MTP];                                                     // its FP8 codes (eh_proj input)
    float *mxo[DSV3_TRAIN_MAX_MTP], *mh[DSV3_TRAIN_MAX_MTP], *mrso[DSV3_TRAIN_MAX_MTP];   // block output, shared_head.norm, 1/rms
    float *mdh[DSV3_TRAIN_MAX_MTP];                                                       // dL/d mh from the depth's cross-entropy
    // workspace (reused by every layer)
    float *dx, *dt, *dxn;      // (N, d)
    float *dq, *dk, *dkv, *datt, *dlat, *dc, *dcn, *dkpe, *dkva, *dqa, *dqan; // attention grads
    float *dg, *du, *da;       // (N, Imax)
    float *deg, *deu, *dea;    // (N·K, Im)
    float *dey, *dxs;          // (N·K, d)
    float *drl, *dew;          // (N, E), (N, K)
    float *rscratch;           // (2E + G)
    int *erun;                 // (E + 1)
    float *lg;                 // (chunk, V) logits / their gradient
    float *dcat;               // (N, 2d)
    float *dhp;                // (N, d)   dL/d(final-normed main hidden): main CE + depth-1 MTP
    float *dnx;                // (N, d)   dL/dh_prev sent by an MTP depth to the depth before it
    int chunk;                 // rows per logits chunk
    int *lut;                  // ((n_layers + 1) · DSV3_P_NKINDS): table index per (layer + 1, kind), -1 if absent
    size_t act_bytes, ws_bytes, min_bytes;
    void *act_arena, *ws_arena;
};

// Re-plans the arenas for FP8 recipe r (NULL: none) when what they must hold changes (train.c); their
// contents are lost: call before the first step. 0, or -1 with a message.
int dsv3_t_replan(dsv3_train *tr, const dsv3_fp8_recipe *r);

// Pointers to the fp32 weights and gradients of a table entry kind in `layer` (expert e or -1).
float *dsv3_tw(dsv3_train *tr, int kind, int layer, int expert);
float *dsv3_tg(dsv3_train *tr, int kind, int layer, int expert);

// y (N, out) = x (N, in) · Wᵀ (+ bias): the fprop form through the backend. xq: the input's FP8 codes
// (FP8 Linears under the recipe; NULL or unplanned: quantized into scratch). x may be NULL when xq is
// ready (an FP8 Linear whose fp32 input is not kept).
void dsv3_t_linear(dsv3_train *tr, dsv3_lin_role role, float *y, const float *x, dsv3_xq *xq, int N, const float *W,
                   const float *bias, int out, int in);
// dX (=, or += when acc) dY·W and dW += dYᵀ·X, dbias += Σ rows dY (when non-NULL).
void dsv3_t_linear_bwd(dsv3_train *tr, dsv3_lin_role role, float *dx, int acc, float *dW, float *dbias, const float *dy, const float *x,
                       dsv3_xq *xq, const float *W, int N, int out, int in);

// The FP8 Linear forms (train_fp8.c): y = bf16(fprop); dx (=, += when acc) bf16(dgrad); dW += wgrad.
void dsv3_fp8_linear_fwd(dsv3_train *tr, dsv3_lin_role role, float *y, const float *x, dsv3_xq *xq, int N, const float *W, int out,
                         int in);
void dsv3_fp8_linear_bwd(dsv3_train *tr, dsv3_lin_role role, float *dx, int acc, float *dW, const float *dy, const float *x,
                         dsv3_xq *xq, const float *W, int N, int out, int in);
// Fills xq with the codes of x (N, in) for a Linear of `role` (its input scale format), ready = 1.
void dsv3_fp8_quant_input(dsv3_train *tr, dsv3_lin_role role, dsv3_xq *xq, const float *x, int N, int in);
void dsv3_fp8_state_free(dsv3_fp8_state *s);
void dsv3_fp8_new_step(dsv3_fp8_state *s); // weights may have changed: requantize on first use

void dsv3_t_attn_fwd(dsv3_train *tr, dsv3_layer_acts *a, dsv3_attn_mode mode);
void dsv3_t_attn_bwd(dsv3_train *tr, dsv3_layer_acts *a, dsv3_attn_mode mode, float *dxn1, const float *dout);
// FFN forward on a->xn2 -> out (N, d); returns the layer's balance loss (already × α / B).
double dsv3_t_ffn_fwd(dsv3_train *tr, dsv3_layer_acts *a, float *out, float alpha);
// dxn2 (written) from dout.
void dsv3_t_ffn_bwd(dsv3_train *tr, dsv3_layer_acts *a, float *dxn2, const float *dout, float alpha);
