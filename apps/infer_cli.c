#include "infer_cli.h"
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void infer_args_default(infer_args *a, float temperature) {
    memset(a, 0, sizeof *a);
    a->ctx = 4096;
    a->max_rows = 256;
    a->attn = DSV3_ATTN_AUTO;
    a->cache = DSV3_CACHE_F32;
    dsv3_sampling_defaults(&a->samp);
    a->samp.temperature = temperature;
    dsv3_gen_opts_default(&a->gen);
}

void infer_args_help(FILE *f) {
    fprintf(f,
            "model and engine:\n"
            "  --model DIR          Hugging Face checkpoint folder (config.json + *.safetensors; F32/BF16/F16/FP8 blocks)\n"
            "  --tokenizer FILE     tokenizer.json (default: DIR/tokenizer.json when present)\n"
            "  --ctx N              context length of the session (default 4096, at most max_position_embeddings)\n"
            "  --cache f32|bf16     latent KV cache precision (default f32)\n"
            "  --attn auto|absorbed|decompressed  attention (auto: decompressed for prompt chunks >= 128 rows)\n"
            "  --batch N            rows per forward step (prompt chunk size, default 256)\n"
            "  --threads N          OpenMP threads (default: all cores)\n"
            "sampling (order: penalties, temperature, min-p, top-k, top-p):\n"
            "  --temperature T      0 = greedy\n"
            "  --top-k K            0 = off (default)\n"
            "  --top-p P            1 = off (default)\n"
            "  --min-p P            0 = off (default)\n"
            "  --repeat-penalty R   CTRL-style over prompt + output (1 = off), window --repeat-last-n N (-1 = all)\n"
            "  --frequency-penalty F, --presence-penalty P   OpenAI-style over the output (0 = off)\n"
            "  --seed S             RNG seed (default: from the clock; printed); same seed, same output\n"
            "generation:\n"
            "  --max-tokens N       at most N new tokens (default 128)\n"
            "  --ignore-eos         do not stop at the model's EOS id\n"
            "  --stop TEXT          stop when the output contains TEXT (not printed; repeatable, up to 16)\n"
            "  --stop-id ID         stop at token ID (not emitted; repeatable)\n"
            "  --speculative mtp    MTP speculative decoding (the model's MTP module drafts); --draft K drafts per step (default 1)\n"
            "  --quiet              no statistics on stderr\n");
}

static int parse_f(const char *cmd, const char *name, const char *v, float *out) {
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || !isfinite(x)) return cli_usage_error(cmd, "%s: '%s' is not a number", name, v);
    *out = (float)x;
    return 0;
}

static int parse_i(const char *cmd, const char *name, const char *v, long lo, long hi, long *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || x < lo || x > hi) return cli_usage_error(cmd, "%s: '%s' is not an integer in %ld..%ld", name, v, lo, hi);
    *out = x;
    return 0;
}

int infer_arg(infer_args *a, const char *cmd, int argc, char **argv, int *i) {
    const char *k = argv[*i];
    if (!strcmp(k, "--ignore-eos")) { a->gen.ignore_eos = 1; return 1; }
    if (!strcmp(k, "--quiet")) { a->quiet = 1; return 1; }
    static const char *with_value[] = {"--model", "--tokenizer", "--ctx", "--cache", "--attn", "--batch", "--threads",
                                       "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                                       "--repeat-last-n", "--frequency-penalty", "--presence-penalty", "--seed",
                                       "--max-tokens", "--stop", "--stop-id", "--speculative", "--draft"};
    int known = 0;
    for (size_t j = 0; j < sizeof with_value / sizeof *with_value; j++) known |= !strcmp(k, with_value[j]);
    if (!known) return 0;
    if (*i + 1 >= argc) { cli_usage_error(cmd, "%s needs a value", k); return 2; }
    const char *v = argv[++*i];
    long n;
    int bad = 0;
    if (!strcmp(k, "--model")) a->model = v;
    else if (!strcmp(k, "--tokenizer")) a->tokenizer_path = v;
    else if (!strcmp(k, "--ctx")) { bad = parse_i(cmd, k, v, 1, 1 << 24, &n); a->ctx = (int)n; }
    else if (!strcmp(k, "--batch")) { bad = parse_i(cmd, k, v, 1, 65536, &n); a->max_rows = (int)n; }
    else if (!strcmp(k, "--threads")) { bad = parse_i(cmd, k, v, 1, 1024, &n); a->threads = (int)n; }
    else if (!strcmp(k, "--cache")) {
        if (!strcmp(v, "f32")) a->cache = DSV3_CACHE_F32;
        else if (!strcmp(v, "bf16")) a->cache = DSV3_CACHE_BF16;
        else bad = cli_usage_error(cmd, "--cache: '%s' is not f32 or bf16", v);
    } else if (!strcmp(k, "--attn")) {
        if (!strcmp(v, "auto")) a->attn = DSV3_ATTN_AUTO;
        else if (!strcmp(v, "absorbed")) a->attn = DSV3_ATTN_ABSORBED;
        else if (!strcmp(v, "decompressed")) a->attn = DSV3_ATTN_DECOMPRESSED;
        else bad = cli_usage_error(cmd, "--attn: '%s' is not auto, absorbed or decompressed", v);
    } else if (!strcmp(k, "--temperature")) bad = parse_f(cmd, k, v, &a->samp.temperature);
    else if (!strcmp(k, "--top-k")) { bad = parse_i(cmd, k, v, 0, 1L << 30, &n); a->samp.top_k = (int)n; }
    else if (!strcmp(k, "--top-p")) bad = parse_f(cmd, k, v, &a->samp.top_p);
    else if (!strcmp(k, "--min-p")) bad = parse_f(cmd, k, v, &a->samp.min_p);
    else if (!strcmp(k, "--repeat-penalty")) bad = parse_f(cmd, k, v, &a->samp.repetition_penalty);
    else if (!strcmp(k, "--repeat-last-n")) { bad = parse_i(cmd, k, v, -1, 1L << 30, &n); a->samp.repeat_last_n = (int)n; }
    else if (!strcmp(k, "--frequency-penalty")) bad = parse_f(cmd, k, v, &a->samp.frequency_penalty);
    else if (!strcmp(k, "--presence-penalty")) bad = parse_f(cmd, k, v, &a->samp.presence_penalty);
    else if (!strcmp(k, "--seed")) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        if (*v == '\0' || *v == '-' || *end) bad = cli_usage_error(cmd, "--seed: '%s' is not a non-negative integer", v);
        a->samp.seed = x;
        a->seed_given = 1;
    } else if (!strcmp(k, "--max-tokens")) { bad = parse_i(cmd, k, v, 0, 1 << 24, &n); a->gen.max_tokens = (int)n; }
    else if (!strcmp(k, "--stop")) {
        if (a->n_stops >= INFER_MAX_STOPS) bad = cli_usage_error(cmd, "at most %d --stop strings", INFER_MAX_STOPS);
        else if (!*v) bad = cli_usage_error(cmd, "--stop: empty string");
        else a->stops[a->n_stops++] = v;
    } else if (!strcmp(k, "--stop-id")) {
        if (a->gen.n_stop_ids >= INFER_MAX_STOPS) bad = cli_usage_error(cmd, "at most %d --stop-id ids", INFER_MAX_STOPS);
        else { bad = parse_i(cmd, k, v, 0, 1L << 30, &n); a->stop_ids[a->gen.n_stop_ids++] = (int32_t)n; a->gen.stop_ids = a->stop_ids; }
    } else if (!strcmp(k, "--speculative")) {
        if (!strcmp(v, "mtp")) a->gen.speculative = 1;
        else if (!strcmp(v, "none")) a->gen.speculative = 0;
        else bad = cli_usage_error(cmd, "--speculative: '%s' is not mtp or none", v);
    } else if (!strcmp(k, "--draft")) { bad = parse_i(cmd, k, v, 1, 16, &n); a->gen.draft = (int)n; }
    return bad ? 2 : 1;
}

int infer_open(infer_ctx *c, infer_args *a, const char *cmd) {
    memset(c, 0, sizeof *c);
    if (!a->model) return cli_usage_error(cmd, "--model DIR is required");
    if (a->threads) omp_set_num_threads(a->threads);
    if (!a->seed_given) a->samp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (dsv3_sampling_validate(&a->samp) != 0) return cli_bad_input();
    c->lm = dsv3_lm_load(a->model);
    if (!c->lm) return cli_bad_input();
    const int V = dsv3_lm_vocab_size(c->lm);
    for (int i = 0; i < a->gen.n_stop_ids; i++)
        if (a->stop_ids[i] >= V) { dsv3_errorf("--stop-id %d is outside the vocabulary [0, %d)", a->stop_ids[i], V); goto bad; }
    if (a->gen.speculative && dsv3_lm_mtp_layers(c->lm) < 1) {
        dsv3_errorf("--speculative mtp: %s has no MTP module (num_nextn_predict_layers = 0 or its layers are absent)", a->model);
        goto bad;
    }
    if (a->ctx > dsv3_lm_max_positions(c->lm)) a->ctx = dsv3_lm_max_positions(c->lm);
    dsv3_engine_opts eo;
    dsv3_engine_opts_default(&eo);
    eo.max_rows = a->max_rows;
    eo.max_ctx = a->ctx;
    eo.attn = a->attn;
    c->e = dsv3_engine_new(c->lm, &eo);
    if (!c->e) goto bad;
    c->s = dsv3_session_new(c->lm, a->ctx, a->cache);
    if (!c->s) goto bad;
    c->smp = dsv3_sampler_new(&a->samp, V, a->ctx + a->gen.max_tokens + 1);
    if (!c->smp) goto bad;
    char *tp = a->tokenizer_path ? NULL : dsv3_path_join(a->model, "tokenizer.json");
    const char *path = a->tokenizer_path ? a->tokenizer_path : tp;
    if (a->tokenizer_path || dsv3_file_exists(path)) {
        c->tok = dsv3_tokenizer_load(path);
        if (!c->tok) { free(tp); goto bad; }
        if (dsv3_tokenizer_vocab_size(c->tok) > V) {
            dsv3_errorf("%s: %d token ids, more than the model's vocab_size %d", path, dsv3_tokenizer_vocab_size(c->tok), V);
            free(tp);
            goto bad;
        }
    }
    free(tp);
    return 0;
bad:
    infer_close(c);
    return cli_bad_input();
}

void infer_close(infer_ctx *c) {
    dsv3_sampler_free(c->smp);
    dsv3_session_free(c->s);
    dsv3_engine_free(c->e);
    dsv3_tokenizer_free(c->tok);
    dsv3_lm_free(c->lm);
    memset(c, 0, sizeof *c);
}

void infer_stream_init(infer_stream *st, const infer_ctx *c, const infer_args *a, FILE *out, int top_logprobs) {
    memset(st, 0, sizeof *st);
    st->tok = c->tok;
    st->out = out;
    st->a = a;
    st->top_logprobs = top_logprobs;
    st->V = dsv3_lm_vocab_size(c->lm);
}

static void grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    *p = dsv3_realloc(*p, n);
    *cap = n;
}

static void emit(infer_stream *st, size_t upto) {
    if (st->out && upto > st->printed) {
        fwrite(st->text + st->printed, 1, upto - st->printed, st->out);
        fflush(st->out);
    }
    if (upto > st->printed) st->printed = upto;
}

int infer_stream_token(void *ctx, int32_t tok, const float *logits) {
    infer_stream *st = ctx;
    if (st->top_logprobs >= 0) {
        int32_t ids[32];
        float lps[32];
        int n = st->top_logprobs > 32 ? 32 : st->top_logprobs;
        float lp = dsv3_logprobs(logits, st->V, tok, n, ids, lps);
        char buf[64 + 48 * 32];
        int w = snprintf(buf, sizeof buf, "%s{\"id\":%d,\"logprob\":%.6g,\"top\":[", st->lp_len ? "," : "", tok, lp);
        for (int i = 0; i < n && i < st->V; i++)
            w += snprintf(buf + w, sizeof buf - w, "%s[%d,%.6g]", i ? "," : "", ids[i], lps[i]);
        w += snprintf(buf + w, sizeof buf - w, "]}");
        grow(&st->lp_json, &st->lp_cap, st->lp_len + w + 1);
        memcpy(st->lp_json + st->lp_len, buf, (size_t)w + 1);
        st->lp_len += w;
    }
    if (!st->tok) return 0;
    size_t n = 0;
    char *piece = dsv3_tokenizer_decode(st->tok, &tok, 1, 1, &n);
    if (!piece) return 0;
    grow(&st->text, &st->cap, st->len + n + 1);
    memcpy(st->text + st->len, piece, n);
    st->len += n;
    st->text[st->len] = 0;
    free(piece);
    // stop strings: the earliest occurrence that ends inside the new bytes
    size_t maxs = 0, cut = (size_t)-1;
    for (int i = 0; i < st->a->n_stops; i++) {
        size_t sl = strlen(st->a->stops[i]);
        if (sl > maxs) maxs = sl;
        size_t from = st->len - n >= sl ? st->len - n - sl + 1 : 0;
        const char *h = memmem(st->text + from, st->len - from, st->a->stops[i], sl);
        if (h && (size_t)(h - st->text) < cut) cut = (size_t)(h - st->text);
    }
    if (cut != (size_t)-1) {
        st->len = cut;
        st->text[cut] = 0;
        st->hit_stop = 1;
        emit(st, cut);
        return 1;
    }
    size_t safe = st->len >= maxs ? st->len - (maxs ? maxs - 1 : 0) : 0;
    emit(st, safe);
    return 0;
}

void infer_stream_finish(infer_stream *st) { emit(st, st->len); }

void infer_stream_free(infer_stream *st) {
    free(st->text);
    free(st->lp_json);
    memset(st, 0, sizeof *st);
}

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), 0 if none.
static size_t utf8_seq(const unsigned char *p, size_t n) {
    if (p[0] < 0x80) return 1;
    size_t len = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++) if ((p[i] & 0xC0) != 0x80) return 0;
    if (p[0] == 0xE0 && p[1] < 0xA0) return 0;
    if (p[0] == 0xED && p[1] > 0x9F) return 0;
    if (p[0] == 0xF0 && p[1] < 0x90) return 0;
    if (p[0] == 0xF4 && p[1] > 0x8F) return 0;
    return len;
}

char *infer_utf8_clean(const char *s, size_t n) {
    char *o = dsv3_malloc(3 * n + 1);
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (l) { memcpy(o + w, p + i, l); w += l; i += l; }
        else { memcpy(o + w, "\xEF\xBF\xBD", 3); w += 3; i++; }
    }
    o[w] = 0;
    return o;
}
