// Options and output shared by `dsv3 generate` and `dsv3 chat` (apps/infer_cli.c).
#pragma once
#include "dsv3.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "tokenizer/tokenizer.h"
#include <stdio.h>

#define INFER_MAX_STOPS 16

typedef struct {
    const char *model, *tokenizer_path;
    int threads, ctx, max_rows;
    dsv3_attn_policy attn;
    dsv3_cache_dtype cache;
    dsv3_sampling samp;
    int seed_given;
    dsv3_gen_opts gen;
    const char *stops[INFER_MAX_STOPS];
    int n_stops;
    int32_t stop_ids[INFER_MAX_STOPS];
    int quiet;
} infer_args;

void infer_args_default(infer_args *a, float temperature);
// Consumes argv[*i] (and its value) if it is one of the shared options: 1 consumed, 0 not ours,
// 2 bad usage (message printed).
int infer_arg(infer_args *a, const char *cmd, int argc, char **argv, int *i);
// Help text of the shared options.
void infer_args_help(FILE *f);

// The model, engine, tokenizer (NULL when the folder has none and no --tokenizer was given) and a
// session of the requested context. 0, or an exit code (2 bad input) with the message printed.
typedef struct {
    dsv3_lm *lm;
    dsv3_engine *e;
    dsv3_session *s;
    dsv3_tokenizer *tok;
    dsv3_sampler *smp;
} infer_ctx;
int infer_open(infer_ctx *c, infer_args *a, const char *cmd);
void infer_close(infer_ctx *c);

// Streams emitted tokens as text (stdout), holding back bytes that may start a stop string, and
// records ids / logprobs for the JSON output.
typedef struct {
    const dsv3_tokenizer *tok;
    FILE *out;              // NULL: no streaming
    const infer_args *a;
    char *text; size_t len, cap, printed;
    int hit_stop;           // a stop string ended the text at `len`
    int top_logprobs;       // -1 off, else top-n per token
    int V;
    char *lp_json; size_t lp_len, lp_cap; // ",{...}" entries
} infer_stream;
void infer_stream_init(infer_stream *st, const infer_ctx *c, const infer_args *a, FILE *out, int top_logprobs);
int infer_stream_token(void *ctx, int32_t tok, const float *logits);
void infer_stream_finish(infer_stream *st); // prints what was held back
void infer_stream_free(infer_stream *st);
// Copy of s[0..n) as valid UTF-8: each byte that does not start a well-formed sequence becomes
// U+FFFD (for JSON output and the chat history; the streamed text keeps the raw bytes). malloc'ed.
char *infer_utf8_clean(const char *s, size_t n);
