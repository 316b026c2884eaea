// dsv3 logits: exact fp32 forward of a token sequence; writes the logits (or MTP logits) as .npy.
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/ids.h"
#include "core/npy.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/tmodel.h"
#include "model/train.h"
#include "model/weights.h"
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS ((size_t)1 << 24)                  // ids accepted before the model is known
#define MAX_LOGITS_BYTES ((uint64_t)4 << 30)       // T x vocab x 4 bytes of output held in memory

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 logits --model DIR (--ids I,J,... | --ids-file FILE) --out FILE.npy\n"
            "                   [--attn naive|absorb] [--mtp] [--precision fp32|bf16|fp8] [FP8 options] [--threads N]\n"
            "\n"
            "Runs the fp32 forward pass of a DeepSeek-V3/V2 checkpoint (HF safetensors directory) over one\n"
            "token sequence at positions 0..T-1 and writes float32 logits [T, vocab] as a NumPy .npy file.\n"
            "\n"
            "  --model DIR     directory with config.json and *.safetensors\n"
            "  --ids LIST      token ids separated by commas (or whitespace), each in [0, vocab_size)\n"
            "  --ids-file FILE the ids from a file ('-': stdin, at most 64 MiB): the same text form (commas\n"
            "                  and/or whitespace, e.g. one id per line), or a .npy of int32/int64 with\n"
            "                  shape (T,) or (1, T)\n"
            "  --out FILE      output .npy (written atomically; nothing is written on error; '-': stdout)\n"
            "  --attn MODE     naive (per-head K/V) or absorb (latent cache, W_UK/W_UV folded; default)\n"
            "  --mtp           write the depth-1 MTP logits [T-1, vocab] instead (row i predicts token i+2);\n"
            "                  needs an MTP layer in the checkpoint and T >= 2\n"
            "  --threads N     OpenMP threads (default: all cores)\n"
            "%s"
            "                  bf16 and fp8 run the training forward (dsv3 train / dsv3 grad) on fp32 masters;\n"
            "                  fp32 (default) is the inference forward above. Compare fp8 with --attn naive:\n"
            "                  the absorbed form keeps kv_b_proj's per-head products in bf16.\n"
            "\n"
            "Limits, checked before any weight is read: T <= max_position_embeddings of the config, and the\n"
            "logits output T x vocab_size x 4 bytes <= 4 GiB (e.g. T <= 8304 for DeepSeek-V3's 129,280).\n"
            "Exit status: 0 ok, 1 the output could not be written, 2 bad input (usage, ids, model directory,\n"
            "limits).\n", cli_precision_help);
}

// --precision bf16|fp8: the training forward (loss only) of one row, ids + a dummy label; its head
// output is the logits at positions 0..T-1, the depth-1 MTP head's at 0..T-2.
static int train_forward_logits(const char *model_dir, const int32_t *ids, int T, int mtp, dsv3_attn_mode mode,
                                const cli_precision *p, const char *out, const char *attn_s) {
    dsv3_tmodel tm;
    if (dsv3_tmodel_load(&tm, model_dir) != 0) return cli_bad_input();
    int rc = 0;
    const int V = tm.cfg.vocab_size;
    for (int t = 0; t < T && !rc; t++)
        if (ids[t] >= V)
            rc = (dsv3_errorf("token id %d (position %d) is not below vocab_size %d of %s", ids[t], t, V, model_dir), cli_bad_input());
    if (!rc && mtp && tm.tab.n_mtp == 0)
        rc = (dsv3_errorf("--mtp: %s has no MTP layer", model_dir), cli_bad_input());
    if (!rc && mtp && T < 2) rc = (dsv3_errorf("--mtp: needs at least 2 token ids (got %d)", T), cli_bad_input());
    dsv3_train *tr = NULL;
    int32_t *row = NULL;
    float *logits = NULL;
    if (!rc) {
        tr = dsv3_train_new(&tm, 1, T, cli_precision_backend(p), 0);
        if (!tr || (p->precision == 2 && dsv3_train_set_fp8(tr, &p->fp8) < 0)) rc = cli_bad_input();
    }
    if (!rc) {
        row = dsv3_malloc(sizeof(int32_t) * (size_t)(T + 1));
        memcpy(row, ids, sizeof(int32_t) * (size_t)T);
        row[T] = 0; // the label of the last position: only its loss term sees it
        logits = dsv3_malloc(sizeof(float) * (size_t)T * V);
        dsv3_train_opts o = {.mtp_weight = mtp ? 1.0f : 0.0f, .attn = mode, .no_backward = 1,
                             .logits = mtp ? NULL : logits, .mtp_logits = mtp ? logits : NULL};
        dsv3_loss_parts lp;
        int64_t shape[2] = {mtp ? T - 1 : T, V};
        if (dsv3_train_step(tr, row, &o, &lp) != 0) rc = cli_bad_input();
        else if (dsv3_npy_write_f32(out, logits, 2, shape) != 0) rc = cli_failure();
        else
            fprintf(stderr, "dsv3 logits: wrote %s [%lld, %d] (%s attention%s, %s training forward)\n", out, (long long)shape[0], V,
                    attn_s, mtp ? ", MTP depth 1" : "", p->precision == 2 ? "fp8" : "bf16");
    }
    free(logits);
    free(row);
    dsv3_train_free(tr);
    dsv3_tmodel_free(&tm);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    const char *model_dir = NULL, *ids_s = NULL, *ids_file = NULL, *out = NULL, *attn_s = "absorb";
    int mtp = 0, threads = 0, bad = 0;
    cli_precision prec;
    cli_precision_default(&prec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return 0; }
        if (!strcmp(a, "--mtp")) { mtp = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("logits", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--ids")) ids_s = v;
        else if (!strcmp(a, "--ids-file")) ids_file = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--attn")) attn_s = v;
        else if (cli_precision_opt("logits", a, v, &prec, &bad)) { if (bad) return 2; }
        else if (!strcmp(a, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end || t < 1 || t > 1024) return cli_usage_error("logits", "--threads: '%s' is not a thread count in 1..1024", v);
            threads = (int)t;
        } else return cli_usage_error("logits", "unknown option '%s'", a);
    }
    if (!model_dir) return cli_usage_error("logits", "--model DIR is required");
    if (!ids_s && !ids_file) return cli_usage_error("logits", "--ids or --ids-file is required");
    if (ids_s && ids_file) return cli_usage_error("logits", "give --ids or --ids-file, not both");
    if (!out) return cli_usage_error("logits", "--out FILE is required");
    if (cli_precision_check("logits", &prec)) return 2;
    dsv3_attn_mode mode;
    if (!strcmp(attn_s, "naive")) mode = DSV3_ATTN_NAIVE;
    else if (!strcmp(attn_s, "absorb")) mode = DSV3_ATTN_ABSORB;
    else return cli_usage_error("logits", "--attn: '%s' is not naive or absorb", attn_s);
    if (threads) omp_set_num_threads(threads);

    int32_t *ids = NULL;
    size_t nids = 0;
    if (ids_file ? dsv3_ids_read_file(ids_file, MAX_IDS, &ids, &nids) : dsv3_ids_parse(ids_s, strlen(ids_s), "--ids", MAX_IDS, &ids, &nids))
        return cli_bad_input();
    const int T = (int)nids; // <= MAX_IDS

    // Limits from the config alone, before the weights are mapped.
    {
        dsv3_config c;
        char *cfg_path = dsv3_path_join(model_dir, "config.json");
        int bad = dsv3_config_load(&c, cfg_path);
        if (!bad && T > c.max_position_embeddings)
            bad = dsv3_errorf("%s: %d token ids, more than the model context (max_position_embeddings %d in %s)",
                              ids_file ? ids_file : "--ids", T, c.max_position_embeddings, cfg_path);
        const uint64_t rows = (uint64_t)(mtp && T > 1 ? T - 1 : T), bytes = rows * (uint64_t)c.vocab_size * 4;
        if (!bad && bytes > MAX_LOGITS_BYTES)
            bad = dsv3_errorf("%s: logits [%llu, %d] would take %.2f GiB, above the %llu GiB limit (use fewer ids)",
                              ids_file ? ids_file : "--ids", (unsigned long long)rows, c.vocab_size, bytes / 1073741824.0,
                              (unsigned long long)(MAX_LOGITS_BYTES >> 30));
        free(cfg_path);
        if (bad) { free(ids); return cli_bad_input(); }
    }

    if (prec.precision) {
        int r = train_forward_logits(model_dir, ids, T, mtp, mode, &prec, out, attn_s);
        free(ids);
        return r;
    }
    dsv3_model m;
    if (dsv3_model_load(&m, model_dir) != 0) { free(ids); return cli_bad_input(); }
    const dsv3_config *c = &m.cfg;
    int rc = 0;
    for (int t = 0; t < T; t++)
        if (ids[t] >= c->vocab_size) {
            dsv3_errorf("%s: token id %d (position %d) is not below vocab_size %d of %s", ids_file ? ids_file : "--ids", ids[t], t,
                        c->vocab_size, model_dir);
            rc = cli_bad_input();
            goto done;
        }
    if (mtp && m.n_layers_loaded <= c->num_hidden_layers) {
        dsv3_errorf("--mtp: %s has no MTP layer (num_nextn_predict_layers = %d, none loaded)", model_dir, c->num_nextn_predict_layers);
        rc = cli_bad_input();
        goto done;
    }
    if (mtp && T < 2) {
        dsv3_errorf("--mtp: needs at least 2 token ids (got %d)", T);
        rc = cli_bad_input();
        goto done;
    }

    dsv3_fwd f;
    dsv3_fwd_init(&f, &m);
    const int V = c->vocab_size, d = c->hidden_size;
    float *logits = dsv3_malloc(sizeof(float) * (size_t)T * V);
    float *hidden = mtp ? dsv3_malloc(sizeof(float) * (size_t)T * d) : NULL;
    dsv3_forward_opts o = {.attn = mode, .logits = mtp ? NULL : logits, .hidden = hidden};
    int64_t shape[2] = {mtp ? T - 1 : T, V};
    if (dsv3_forward(&f, ids, T, &o) != 0 ||
        (mtp && dsv3_forward_mtp(&f, ids, T, hidden, &(dsv3_mtp_opts){.attn = mode, .depth = 1, .logits = logits}) != 0)) {
        rc = cli_bad_input();
    } else if (dsv3_npy_write_f32(out, logits, 2, shape) != 0) {
        rc = cli_failure(); // the output could not be created or written (a full disk, /dev/full)
    } else {
        fprintf(stderr, "dsv3 logits: wrote %s [%lld, %d] (%s attention%s)\n", out, (long long)shape[0], V, attn_s,
                mtp ? ", MTP depth 1" : "");
    }
    free(logits);
    free(hidden);
    dsv3_fwd_free(&f);
done:
    dsv3_model_free(&m);
    free(ids);
    return rc;
}
