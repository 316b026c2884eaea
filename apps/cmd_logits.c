// dsv3 logits: exact fp32 forward of a token sequence; writes the logits (or MTP logits) as .npy.
#include "commands.h"
#include "core/error.h"
#include "core/npy.h"
#include "model/forward.h"
#include "model/weights.h"
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 logits --model DIR --ids I,J,... --out FILE.npy [--attn naive|absorb] [--mtp]\n"
            "                   [--threads N]\n"
            "\n"
            "Runs the fp32 forward pass of a DeepSeek-V3/V2 checkpoint (HF safetensors directory) over one\n"
            "token sequence at positions 0..T-1 and writes float32 logits [T, vocab] as a NumPy .npy file.\n"
            "\n"
            "  --model DIR     directory with config.json and *.safetensors\n"
            "  --ids LIST      comma-separated token ids, each in [0, vocab_size)\n"
            "  --out FILE      output .npy (written atomically; nothing is written on error)\n"
            "  --attn MODE     naive (per-head K/V) or absorb (latent cache, W_UK/W_UV folded; default)\n"
            "  --mtp           write the depth-1 MTP logits [T-1, vocab] instead (row i predicts token i+2);\n"
            "                  needs an MTP layer in the checkpoint and T >= 2\n"
            "  --threads N     OpenMP threads (default: all cores)\n"
            "\n"
            "Exit status: 0 ok, 2 bad input (usage, ids, model directory).\n");
}

// Parse "5,17,300" into a new array. Returns the count, or -1 with a message.
static int parse_ids(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = dsv3_malloc(sizeof(int32_t) * cap);
    const char *p = s;
    if (!*p) { free(ids); return dsv3_errorf("--ids: empty list"); }
    for (;;) {
        if (*p < '0' || *p > '9') { free(ids); return dsv3_errorf("--ids: '%s' is not a list of non-negative integers (at position %d)", s, (int)(p - s)); }
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno || v > INT32_MAX) { free(ids); return dsv3_errorf("--ids: id at position %d is too large", (int)(p - s)); }
        if (n == cap) { cap *= 2; ids = dsv3_realloc(ids, sizeof(int32_t) * cap); }
        ids[n++] = (int32_t)v;
        p = end;
        if (*p == '\0') break;
        if (*p != ',') { free(ids); return dsv3_errorf("--ids: unexpected '%c' at position %d in '%s'", *p, (int)(p - s), s); }
        p++;
    }
    *out = ids;
    return n;
}

int cmd_logits(int argc, char **argv) {
    const char *model_dir = NULL, *ids_s = NULL, *out = NULL, *attn_s = "absorb";
    int mtp = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return 0; }
        if (!strcmp(a, "--mtp")) { mtp = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("logits", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--ids")) ids_s = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--attn")) attn_s = v;
        else if (!strcmp(a, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end || t < 1 || t > 1024) return cli_usage_error("logits", "--threads: '%s' is not a thread count in 1..1024", v);
            threads = (int)t;
        } else return cli_usage_error("logits", "unknown option '%s'", a);
    }
    if (!model_dir) return cli_usage_error("logits", "--model DIR is required");
    if (!ids_s) return cli_usage_error("logits", "--ids is required");
    if (!out) return cli_usage_error("logits", "--out FILE is required");
    dsv3_attn_mode mode;
    if (!strcmp(attn_s, "naive")) mode = DSV3_ATTN_NAIVE;
    else if (!strcmp(attn_s, "absorb")) mode = DSV3_ATTN_ABSORB;
    else return cli_usage_error("logits", "--attn: '%s' is not naive or absorb", attn_s);
    if (threads) omp_set_num_threads(threads);

    int32_t *ids = NULL;
    int T = parse_ids(ids_s, &ids);
    if (T < 0) return cli_bad_input();

    dsv3_model m;
    if (dsv3_model_load(&m, model_dir) != 0) { free(ids); return cli_bad_input(); }
    const dsv3_config *c = &m.cfg;
    int rc = 0;
    for (int t = 0; t < T; t++)
        if (ids[t] >= c->vocab_size) {
            dsv3_errorf("--ids: token id %d (position %d) is not below vocab_size %d of %s", ids[t], t, c->vocab_size, model_dir);
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
        rc = cli_bad_input();
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
