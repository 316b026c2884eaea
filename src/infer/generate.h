// Generation loops on one session: plain decoding and MTP speculative decoding (spec inference
// §1.4-1.6), prompt-prefix reuse, stop conditions, timing. Used by `dsv3 generate`, `dsv3 chat`
// and the tests; the server drives dsv3_engine_eval directly to batch many sessions.
#pragma once
#include "dsv3.h"
#include "infer/sampler.h"

typedef enum { DSV3_STOP_LENGTH = 0, DSV3_STOP_EOS, DSV3_STOP_ID, DSV3_STOP_CALLBACK, DSV3_STOP_CONTEXT } dsv3_stop_reason;

typedef struct {
    int max_tokens;          // generated tokens at most (>= 0)
    int ignore_eos;          // do not stop at the model's EOS
    const int32_t *stop_ids; // further ids that end generation (not emitted), n_stop_ids of them
    int n_stop_ids;
    int speculative;         // 0: plain decoding; 1: the MTP module drafts `draft` tokens per step
    int draft;               // drafts per step (>= 1; k > 1 chains the module on its own output)
    // Tests only: replaces each proposed draft (the MTP argmax) by hook(ctx, i, proposed), i = the
    // index among emitted tokens that the draft would take. NULL in normal use.
    int32_t (*draft_hook)(void *ctx, int index, int32_t proposed);
    void *draft_hook_ctx;
} dsv3_gen_opts;

typedef struct {
    int prompt_tokens;       // prompt length
    int reused_tokens;       // prompt tokens whose cache rows were already in the session
    int generated;           // tokens emitted (the stop id excluded)
    int drafted, accepted;   // MTP drafts proposed / accepted
    int target_steps;        // main-model forward steps after the prefill
    double prefill_s;        // prompt evaluation (+ MTP warm-up) up to the first token's logits
    double decode_s;         // everything after the first token
    dsv3_stop_reason stop;
} dsv3_gen_stats;

// Called for each emitted token, in order, with the logits row it was chosen from (V floats; raw,
// before penalties). Return non-zero to stop after this token (a stop string was completed, or the
// consumer is gone).
typedef int (*dsv3_token_fn)(void *ctx, int32_t token, const float *logits);

void dsv3_gen_opts_default(dsv3_gen_opts *o); // max_tokens 128, plain, 1 draft

// Generates after `prompt` (n_prompt >= 1 ids, used as given). The session may hold earlier
// tokens: the longest common prefix with the prompt is reused (at least one prompt token is always
// evaluated, and speculative decoding reuses only rows whose MTP cache is complete). The sampler is
// reset and fed the prompt. Emitted ids go to out_ids (max_tokens of room) when non-NULL.
// On return the session holds the prompt and every emitted token except the last one (which has
// not been through the model), so a follow-up prompt that extends the text reuses all of it.
// 0, or -1 with dsv3_error() (prompt too long for the session, bad ids, no MTP module).
int dsv3_generate(dsv3_engine *e, dsv3_session *s, dsv3_sampler *smp, const int32_t *prompt, int n_prompt,
                  const dsv3_gen_opts *o, dsv3_token_fn fn, void *ctx, int32_t *out_ids, dsv3_gen_stats *st);

// Continuous batching of plain decoding: up to max_active sequences decode together, one row each
// per dsv3_engine_eval step (the weights are read once per step for all of them); when one stops,
// the next waiting sequence joins (its prompt prefilled alone, then it decodes with the others).
// Each sequence brings its own session (fresh or holding a reusable prefix) and sampler; ids go to
// out (max_tokens of room). Stats per sequence; *steps_out counts batched steps (may be NULL).
// Same semantics per sequence as dsv3_generate without speculation. 0, or -1 + dsv3_error().
typedef struct {
    const int32_t *prompt;
    int n_prompt;
    dsv3_session *s;
    dsv3_sampler *smp;
    int32_t *out;
    dsv3_gen_stats st;
} dsv3_batch_seq;
int dsv3_generate_batch(dsv3_engine *e, dsv3_batch_seq *seqs, int n, int max_active, const dsv3_gen_opts *o, int *steps_out);
