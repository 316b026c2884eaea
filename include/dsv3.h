// dsv3.c inference API: an immutable model, per-thread engines, and sessions with a latent KV cache.
//
//   dsv3_lm       the weights (mmapped), the config and what is derived from them once at load
//                 (fp32 W_UK / W_UV per layer for absorbed attention, rotary tables). Read-only after
//                 dsv3_lm_load: any number of engines and sessions on any threads may share one.
//   dsv3_engine   the scratch one forward needs, preallocated for at most `max_rows` rows per step
//                 and `max_ctx` positions. One thread at a time uses an engine.
//   dsv3_session  one sequence: its latent cache (per layer and position kv_lora_rank + qk_rope_head_dim
//                 values: the normalised latent c and the rotated k_pe, fp32 or bf16), the tokens in
//                 the cache, and the state MTP speculative decoding keeps (the MTP layers' own cache).
//
// A forward step runs rows of several sessions at once (continuous batching): dense parts (every
// projection, the MoE, the head) over all rows together so each weight is read once per step;
// attention per session over its own cache with the causal mask j <= start_pos + i. Decode steps
// allocate nothing. docs/INFERENCE.md describes the data flow, the cache layout and the file formats.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv3_lm dsv3_lm;
typedef struct dsv3_engine dsv3_engine;
typedef struct dsv3_session dsv3_session;

// Error message of the last failing call on this thread.
const char *dsv3_error(void);

// ---- model ----------------------------------------------------------------------------------
// Loads config.json + safetensors of `dir` (F32 / BF16 / F16 / FP8-block weights, used as stored:
// FP8 weights are decoded inside the GEMV, never upcast as a whole). NULL + dsv3_error() on failure.
dsv3_lm *dsv3_lm_load(const char *dir);
void dsv3_lm_free(dsv3_lm *lm);
int dsv3_lm_vocab_size(const dsv3_lm *lm);
int dsv3_lm_hidden_size(const dsv3_lm *lm);
int dsv3_lm_eos_id(const dsv3_lm *lm);        // config.json / generation_config.json eos_token_id, -1 if none
int dsv3_lm_max_positions(const dsv3_lm *lm); // max_position_embeddings
int dsv3_lm_mtp_layers(const dsv3_lm *lm);    // MTP modules present in the checkpoint
// 64-bit identity of the model (config + tensor table + a sample of the weights): session files
// carry it, so a cache is never restored into a different model.
uint64_t dsv3_lm_fingerprint(const dsv3_lm *lm);

// ---- engine ---------------------------------------------------------------------------------
typedef enum { DSV3_ATTN_AUTO = 0, DSV3_ATTN_ABSORBED = 1, DSV3_ATTN_DECOMPRESSED = 2 } dsv3_attn_policy;
typedef struct {
    int max_rows;        // rows per forward step (all sessions together); prompts are cut into chunks of it. Default 256
    int max_ctx;         // longest session the engine serves. Default min(max_position_embeddings, 4096)
    dsv3_attn_policy attn; // AUTO: decompressed (naive) attention for a session's chunk of >= naive_min_rows
                         //   rows, absorbed below (decode, verify, short chunks). Default AUTO
    int naive_min_rows;  // default 128
} dsv3_engine_opts;
void dsv3_engine_opts_default(dsv3_engine_opts *o);
dsv3_engine *dsv3_engine_new(const dsv3_lm *lm, const dsv3_engine_opts *o); // NULL + error
void dsv3_engine_free(dsv3_engine *e);
const dsv3_lm *dsv3_engine_lm(const dsv3_engine *e);

// ---- session --------------------------------------------------------------------------------
typedef enum { DSV3_CACHE_F32 = 0, DSV3_CACHE_BF16 = 1 } dsv3_cache_dtype;
// A session for up to `ctx` positions (<= the engine's max_ctx when used with it).
dsv3_session *dsv3_session_new(const dsv3_lm *lm, int ctx, dsv3_cache_dtype dt);
void dsv3_session_free(dsv3_session *s);
int dsv3_session_len(const dsv3_session *s);          // tokens in the cache
int dsv3_session_ctx(const dsv3_session *s);
const int32_t *dsv3_session_tokens(const dsv3_session *s);
// Forget positions >= n (rollback; the rows stay in memory and are overwritten later).
void dsv3_session_truncate(dsv3_session *s, int n);
// Bytes of the cache (all layers, including the MTP layers) for ctx positions.
size_t dsv3_session_cache_bytes(const dsv3_session *s);

// Prompt cache on disk: the cached tokens and rows, the MTP cache state, and a header naming the
// model (fingerprint, layer count, row width, dtype). Written atomically (temp + fsync + rename).
int dsv3_session_save(const dsv3_session *s, const char *path);
// Restores into `s` (same model; ctx >= the saved length). A file of another model, a truncated or
// corrupted file, a foreign file: -1 with a message; `s` is then empty (length 0).
int dsv3_session_load(dsv3_session *s, const char *path);
// The same with application bytes stored alongside (at most 64 MiB; `dsv3 chat` keeps its message
// history there). load_ex returns them malloc'ed and NUL-terminated in *extra (NULL: not wanted).
int dsv3_session_save_ex(const dsv3_session *s, const char *path, const void *extra, size_t extra_len);
int dsv3_session_load_ex(dsv3_session *s, const char *path, char **extra, size_t *extra_len);

// ---- forward steps --------------------------------------------------------------------------
// One session's part of a step: `n` new tokens appended at positions len..len+n-1.
typedef struct {
    dsv3_session *s;
    const int32_t *ids;
    int n;
    float *logits;       // out: (n, V) when all_logits, else (1, V) of the last row; NULL = none
    int all_logits;
    float *hidden;       // out: (n, d) final-normed hidden rows (the MTP drafter's input), or NULL
} dsv3_rows;
// Runs the main model on the rows of every item (sum of n <= max_rows; one item per session) and
// appends them to the caches. 0, or -1 + error (id out of range, context full, too many rows).
int dsv3_engine_eval(dsv3_engine *e, dsv3_rows *items, int n_items);
// The same, cutting each item into chunks of max_rows rows (long prompts). One item.
int dsv3_engine_prefill(dsv3_engine *e, dsv3_rows *item);

// The MTP module (the checkpoint's first; chained drafts reuse it, spec inference §1.6) on rows of
// one session: row i pairs the main model's final-normed hidden[i] (position p0 + i, p0 = the
// session's MTP length) with the next token next_ids[i]; writes the MTP layer's cache rows
// p0..p0+n-1, and returns the module's shared_head-normed output (n, d) in `g` (recycled as the
// hidden input of a chained draft) and the logits (1, V) of the last row (the next draft), each
// when non-NULL.
int dsv3_engine_mtp(dsv3_engine *e, dsv3_session *s, const float *hidden, const int32_t *next_ids, int n,
                    float *g, float *logits);
int dsv3_session_mtp_len(const dsv3_session *s);
void dsv3_session_mtp_truncate(dsv3_session *s, int n);

#ifdef __cplusplus
}
#endif
