// dsv3 generate: text or ids in, a continuation out (plain or MTP speculative decoding).
#include "commands.h"
#include "infer_cli.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/ids.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 generate --model DIR (--prompt TEXT | --prompt-file FILE | --ids 5,17,300) [options]\n"
            "\n"
            "Generates a continuation with the latent-KV-cache engine and streams the text to stdout (or, with\n"
            "--json, prints one JSON object). Temperature 0 is greedy decoding.\n"
            "\n"
            "input:\n"
            "  --prompt TEXT        tokenized with the model's tokenizer, BOS first (unless --no-bos)\n"
            "  --prompt-file FILE   the same, from a file ('-': stdin)\n"
            "  --ids LIST           token ids, used as given (no BOS added)\n"
            "  --prompts-file FILE  one text prompt per line, generated with continuous batching: up to --parallel\n"
            "                       sequences (default 8) decode in each step, a finished one's slot goes to the next\n"
            "                       prompt; prints one result per prompt (--json: one object per line) and the\n"
            "                       aggregate speed (plain decoding only)\n"
            "  --session FILE       prompt cache: restore FILE if it exists (the prompt's common prefix with the\n"
            "                       cached tokens is not recomputed) and save the session there afterwards\n"
            "output:\n"
            "  --json               {\"ids\", \"text\" (with a tokenizer), \"prompt_tokens\", \"generated\", \"drafted\",\n"
            "                       \"accepted\", \"tokens_per_second\", \"prefill_tokens_per_second\", ...}\n"
            "  --logprobs N         with --json: per token its logprob and the N most likely ids (0..32)\n"
            "\n");
    infer_args_help(f);
    fprintf(f,
            "\n"
            "Defaults: temperature 0.3 (DeepSeek's recommendation), max 128 tokens. Generation stops at the EOS id\n"
            "of config.json / generation_config.json (not printed, not in ids) unless --ignore-eos.\n"
            "Exit status: 0 ok, 1 an output could not be written, 2 bad input (usage, model, ids, prompt longer\n"
            "than the context, bad sampling values, a corrupted or foreign session file).\n");
}

static const char *stop_name(dsv3_stop_reason r) {
    switch (r) {
    case DSV3_STOP_EOS: return "eos";
    case DSV3_STOP_ID: return "stop_id";
    case DSV3_STOP_CALLBACK: return "stop";
    case DSV3_STOP_CONTEXT: return "context";
    default: return "length";
    }
}

// --prompts-file: every line a prompt, continuous batching over up to `parallel` sessions.
static int generate_many(infer_args *a, const char *path, int parallel, int json, int no_bos) {
    infer_ctx c;
    int rc = infer_open(&c, a, "generate");
    if (rc) return rc;
    size_t len = 0;
    char *text = NULL;
    if (!c.tok) { dsv3_errorf("--prompts-file: %s has no tokenizer.json (give --tokenizer FILE)", a->model); rc = cli_bad_input(); goto done0; }
    text = dsv3_read_file_max(path, (size_t)64 << 20, "prompts", &len);
    if (!text) { rc = cli_bad_input(); goto done0; }
    int n = 0, cap = 16;
    dsv3_batch_seq *q = dsv3_calloc((size_t)cap, sizeof *q);
    int32_t **ids = dsv3_calloc((size_t)cap, sizeof *ids);
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (l && p[l - 1] == '\r') l--;
        if (l) {
            if (n == cap) {
                cap *= 2;
                q = dsv3_realloc(q, sizeof *q * cap);
                ids = dsv3_realloc(ids, sizeof *ids * cap);
            }
            size_t ni = 0;
            memset(&q[n], 0, sizeof q[n]);
            ids[n] = NULL;
            int bos = !no_bos && dsv3_tokenizer_bos_id(c.tok) >= 0;
            if (dsv3_tokenizer_encode(c.tok, p, l, bos, &ids[n], &ni) != 0) { n++; rc = cli_bad_input(); goto done; }
            q[n].prompt = ids[n];
            q[n].n_prompt = (int)ni;
            q[n].s = dsv3_session_new(c.lm, dsv3_session_ctx(c.s), a->cache);
            dsv3_sampling sp = a->samp;
            sp.seed = a->samp.seed + (uint64_t)n; // one stream per prompt
            q[n].smp = dsv3_sampler_new(&sp, dsv3_lm_vocab_size(c.lm), dsv3_session_ctx(c.s) + a->gen.max_tokens + 1);
            q[n].out = dsv3_malloc(sizeof(int32_t) * ((size_t)a->gen.max_tokens + 1));
            n++;
        }
        p += (nl ? (size_t)(nl - p) + 1 : (size_t)(end - p));
    }
    if (n == 0) { dsv3_errorf("%s: no prompts (one per line)", path); rc = cli_bad_input(); goto done; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int steps = 0;
    if (dsv3_generate_batch(c.e, q, n, parallel, &a->gen, &steps) != 0) { rc = cli_bad_input(); goto done; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    long total = 0, ptoks = 0;
    for (int i = 0; i < n; i++) {
        size_t tl = 0;
        char *raw = dsv3_tokenizer_decode(c.tok, q[i].out, (size_t)q[i].st.generated, 1, &tl);
        char *t = infer_utf8_clean(raw ? raw : "", raw ? tl : 0);
        free(raw);
        total += q[i].st.generated;
        ptoks += q[i].st.prompt_tokens;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", i);
            cJSON *arr = cJSON_AddArrayToObject(o, "ids");
            for (int j = 0; j < q[i].st.generated; j++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(q[i].out[j]));
            cJSON_AddStringToObject(o, "text", t);
            cJSON_AddNumberToObject(o, "prompt_tokens", q[i].st.prompt_tokens);
            cJSON_AddNumberToObject(o, "generated", q[i].st.generated);
            cJSON_AddStringToObject(o, "stop_reason", stop_name(q[i].st.stop));
            char *js = cJSON_PrintUnformatted(o);
            printf("%s\n", js);
            free(js);
            cJSON_Delete(o);
        } else {
            printf("[%d] %s\n", i, t);
        }
        free(t);
    }
    if (!a->quiet)
        fprintf(stderr, "dsv3 generate: %d prompts (%ld tokens), %ld tokens generated in %.3f s: %.1f tok/s overall, "
                        "%d batched decode steps (up to %d sequences per step)\n",
                n, ptoks, total, wall, wall > 0 ? total / wall : 0.0, steps, parallel);
done:
    for (int i = 0; i < n; i++) {
        free(ids[i]);
        free(q[i].out);
        dsv3_sampler_free(q[i].smp);
        dsv3_session_free(q[i].s);
    }
    free(q);
    free(ids);
done0:
    free(text);
    infer_close(&c);
    return cli_stdout_done("generate", rc);
}

int cmd_generate(int argc, char **argv) {
    infer_args a;
    infer_args_default(&a, 0.3f);
    const char *prompt = NULL, *prompt_file = NULL, *ids_s = NULL, *session = NULL, *prompts_file = NULL;
    int json = 0, no_bos = 0, top_lp = -1, parallel = 8;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (cli_is_help(k)) { usage(stdout); return 0; }
        int r = infer_arg(&a, "generate", argc, argv, &i);
        if (r == 2) return 2;
        if (r == 1) continue;
        if (!strcmp(k, "--json")) { json = 1; continue; }
        if (!strcmp(k, "--no-bos")) { no_bos = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("generate", "unknown option '%s' (or it needs a value)", k);
        const char *v = argv[++i];
        if (!strcmp(k, "--prompt")) prompt = v;
        else if (!strcmp(k, "--prompt-file")) prompt_file = v;
        else if (!strcmp(k, "--ids")) ids_s = v;
        else if (!strcmp(k, "--session")) session = v;
        else if (!strcmp(k, "--prompts-file")) prompts_file = v;
        else if (!strcmp(k, "--parallel")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > 256) return cli_usage_error("generate", "--parallel: '%s' is not in 1..256", v);
            parallel = (int)n;
        }
        else if (!strcmp(k, "--logprobs")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 0 || n > 32) return cli_usage_error("generate", "--logprobs: '%s' is not in 0..32", v);
            top_lp = (int)n;
        } else return cli_usage_error("generate", "unknown option '%s'", k);
    }
    if ((prompt != NULL) + (prompt_file != NULL) + (ids_s != NULL) + (prompts_file != NULL) != 1)
        return cli_usage_error("generate", "give exactly one of --prompt, --prompt-file, --prompts-file and --ids");
    if (prompts_file) {
        if (a.gen.speculative) return cli_usage_error("generate", "--prompts-file decodes without --speculative");
        if (session || top_lp >= 0) return cli_usage_error("generate", "--prompts-file takes neither --session nor --logprobs");
        return generate_many(&a, prompts_file, parallel, json, no_bos);
    }
    if (top_lp >= 0 && !json) return cli_usage_error("generate", "--logprobs needs --json");

    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (ids_s && dsv3_ids_parse(ids_s, strlen(ids_s), "--ids", (size_t)1 << 24, &ids, &n_ids) != 0) return cli_bad_input();
    if (ids_s && n_ids == 0) { free(ids); return cli_usage_error("generate", "--ids: no token ids"); }

    infer_ctx c;
    int rc = infer_open(&c, &a, "generate");
    if (rc) { free(ids); return rc; }
    char *text = NULL;
    if (!ids) {
        if (!c.tok) {
            dsv3_errorf("--prompt: %s has no tokenizer.json (give --tokenizer FILE, or --ids)", a.model);
            rc = cli_bad_input();
            goto done;
        }
        size_t len = 0;
        if (prompt_file) {
            text = dsv3_read_file_max(prompt_file, (size_t)64 << 20, "prompt", &len);
            if (!text) { rc = cli_bad_input(); goto done; }
        }
        const char *t = prompt ? prompt : text;
        if (prompt) len = strlen(prompt);
        int bos = !no_bos && dsv3_tokenizer_bos_id(c.tok) >= 0;
        if (dsv3_tokenizer_encode(c.tok, t, len, bos, &ids, &n_ids) != 0) { rc = cli_bad_input(); goto done; }
        if (n_ids == 0) { dsv3_errorf("--prompt: the prompt is empty (no tokens)"); rc = cli_bad_input(); goto done; }
    }
    const int V = dsv3_lm_vocab_size(c.lm);
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            dsv3_errorf("--ids: token id %d (position %zu) is outside the vocabulary [0, %d) of %s", ids[i], i, V, a.model);
            rc = cli_bad_input();
            goto done;
        }
    if (n_ids > (size_t)dsv3_session_ctx(c.s)) {
        dsv3_errorf("the prompt has %zu tokens, more than the context length %d (--ctx; max_position_embeddings %d)", n_ids,
                    dsv3_session_ctx(c.s), dsv3_lm_max_positions(c.lm));
        rc = cli_bad_input();
        goto done;
    }
    if (session && dsv3_file_exists(session) && dsv3_session_load(c.s, session) != 0) { rc = cli_bad_input(); goto done; }

    infer_stream st;
    infer_stream_init(&st, &c, &a, json ? NULL : stdout, top_lp);
    int32_t *out = dsv3_malloc(sizeof(int32_t) * ((size_t)a.gen.max_tokens + 1));
    dsv3_gen_stats gs;
    if (dsv3_generate(c.e, c.s, c.smp, ids, (int)n_ids, &a.gen, infer_stream_token, &st, out, &gs) != 0) {
        rc = cli_bad_input();
    } else {
        infer_stream_finish(&st);
        const double dec_tps = gs.generated > 1 && gs.decode_s > 0 ? (gs.generated - 1) / gs.decode_s : 0;
        const int evald = gs.prompt_tokens - gs.reused_tokens;
        const double pre_tps = gs.prefill_s > 0 ? evald / gs.prefill_s : 0;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON *arr = cJSON_AddArrayToObject(o, "ids");
            for (int i = 0; i < gs.generated; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(out[i]));
            if (c.tok) {
                char *clean = infer_utf8_clean(st.text ? st.text : "", st.len);
                cJSON_AddStringToObject(o, "text", clean);
                free(clean);
            }
            cJSON_AddNumberToObject(o, "prompt_tokens", gs.prompt_tokens);
            cJSON_AddNumberToObject(o, "reused_tokens", gs.reused_tokens);
            cJSON_AddNumberToObject(o, "generated", gs.generated);
            cJSON_AddStringToObject(o, "stop_reason", stop_name(gs.stop));
            cJSON_AddNumberToObject(o, "drafted", gs.drafted);
            cJSON_AddNumberToObject(o, "accepted", gs.accepted);
            cJSON_AddNumberToObject(o, "acceptance_rate", gs.drafted ? (double)gs.accepted / gs.drafted : 0);
            cJSON_AddNumberToObject(o, "target_steps", gs.target_steps);
            cJSON_AddNumberToObject(o, "tokens_per_second", dec_tps);
            cJSON_AddNumberToObject(o, "prefill_tokens_per_second", pre_tps);
            cJSON_AddNumberToObject(o, "prefill_seconds", gs.prefill_s);
            cJSON_AddNumberToObject(o, "decode_seconds", gs.decode_s);
            char seed[32];
            snprintf(seed, sizeof seed, "%llu", (unsigned long long)a.samp.seed);
            cJSON_AddRawToObject(o, "seed", seed);
            if (top_lp >= 0) {
                char *raw = dsv3_malloc(st.lp_len + 3);
                snprintf(raw, st.lp_len + 3, "[%s]", st.lp_json ? st.lp_json : "");
                cJSON_AddRawToObject(o, "logprobs", raw);
                free(raw);
            }
            char *js = cJSON_PrintUnformatted(o);
            printf("%s\n", js);
            free(js);
            cJSON_Delete(o);
        } else if (c.tok) {
            printf("\n");
        } else {
            for (int i = 0; i < gs.generated; i++) printf("%s%d", i ? "," : "", out[i]);
            printf("\n");
        }
        if (!a.quiet) {
            fprintf(stderr, "dsv3 generate: prompt %d tokens (%d reused) in %.3f s (%.1f tok/s); %d tokens in %.3f s (%.2f tok/s), stop: %s",
                    gs.prompt_tokens, gs.reused_tokens, gs.prefill_s, pre_tps, gs.generated, gs.decode_s, dec_tps,
                    stop_name(gs.stop));
            if (a.gen.speculative)
                fprintf(stderr, "; MTP drafted %d, accepted %d (%.1f%%), %d target steps", gs.drafted, gs.accepted,
                        gs.drafted ? 100.0 * gs.accepted / gs.drafted : 0.0, gs.target_steps);
            fprintf(stderr, "\n");
        }
        if (session && dsv3_session_save(c.s, session) != 0) rc = cli_failure();
    }
    free(out);
    infer_stream_free(&st);
    rc = cli_stdout_done("generate", rc);
done:
    free(text);
    free(ids);
    infer_close(&c);
    return rc;
}
