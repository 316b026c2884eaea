// Internal layout of the inference objects of include/dsv3.h (src/infer/*.c and tests only).
#pragma once
#include "dsv3.h"
#include "model/forward_impl.h"

struct dsv3_lm {
    dsv3_model m;
    dsv3_fwd f;            // rotary constants + fp32 kv_b_proj / W_UKᵀ of every layer, built at load
    uint64_t fingerprint;
    int eos_id;
    int n_mtp;             // MTP layers loaded (layers num_hidden_layers .. +n_mtp-1)
};

// Cache layout: layer-major, then position, then the row [c (kv_lora) | k_pe (rope)]:
// element (l, p, j) at ((size_t)l * ctx + p) * row + j, fp32 or bf16.
struct dsv3_session {
    const dsv3_lm *lm;
    int ctx, len, mtp_len;
    dsv3_cache_dtype dt;
    int n_layers, row;     // layers with a cache (main + MTP), kv_lora + rope
    void *cache;
    int32_t *tokens;       // (ctx) tokens at positions 0..len-1
    float *h_last;         // (d) final-normed hidden of position len-1, valid when h_last_pos == len-1
    int h_last_pos;        // -1 when unknown
};

struct dsv3_engine {
    const dsv3_lm *lm;
    dsv3_engine_opts o;
    dsv3_fwd f;            // a copy of lm->f (read-only use: the absorb caches are complete)
    dsv3_fwd_ws w;         // activations for max_rows rows (x, xn, q, kva, att, MoE scratch, cat)
    float *cos_t, *sin_t;  // (max_rows, rope/2) per row, at each row's own position
    int *item_row0;        // (max_rows + 1) first row of each item in the step
    int *pos0;             // (max_rows + 1) first position of each item
    // absorbed attention, per block of ABS_QB query positions x H heads (rows (h, i))
    float *qa;             // (rows, kv_lora + rope) [q_nope·W_UK[h] | q_pe]
    float *sc;             // (rows, max_ctx) scores, then probabilities
    float *lat;            // (rows, kv_lora) latent sums
    float *aqn, *aqab, *aoh; // (ABS_QB, nope / kv_lora / v) one head's q_nope, q_abs, output
    // decompressed attention (allocated when the policy can pick it)
    int dec_ok;
    float *crow;           // (max_ctx, kv_lora + rope) cache rows as fp32
    float *cl;             // (max_ctx, kv_lora) latent rows
    float *kv;             // (max_ctx, H * (nope + v)) decompressed keys/values
    float *nth; size_t nth_stride; int nth_count; // per thread: Kh (ctx, qk), VT (v, ctx), Qh (QB, qk), S, P (QB, ctx), Oh (QB, v)
    float *hn;             // (max_rows, d) final-normed rows
    float *lrows, *hlog;   // (HEAD_ROWS, d) rows gathered for the head, (HEAD_ROWS, V) their logits
};

// Cache row (l, p) of s as fp32 into out[row].
void dsv3_session_row_f32(const dsv3_session *s, int layer, int pos, float *out);
// Writes cache row (l, p) from fp32 (rounded to bf16 for a bf16 cache).
void dsv3_session_row_put(dsv3_session *s, int layer, int pos, const float *in);
