// dsv3 grad: loss and fp32 gradients of every trainable tensor for a batch of rows (issue
// "Training, part 1"; docs/TRAINING.md). Writes one F32 tensor per parameter under its HF name.
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/npy.h"
#include "kernels/backend.h"
#include "model/safetensors.h"
#include "model/tmodel.h"
#include "model/train.h"
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRAIN_BYTES ((size_t)16 << 30) // activations + workspace of one batch

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 grad --model DIR --rows ROWS.npy --out GRADS.safetensors\n"
            "                 [--mtp-weight L] [--seq-aux A] [--attn naive|absorb] [--precision fp32|bf16|fp8] [FP8 options]\n"
            "                 [--json] [--threads N]\n"
            "\n"
            "Computes the training loss of DeepSeek-V3 (docs/TRAINING.md) on B rows of T+1 token ids and the\n"
            "fp32 gradient of every trainable tensor, and writes them as safetensors, one F32 tensor per\n"
            "parameter named and shaped like the model's HF tensor (MTP layers included; the MTP copies of the\n"
            "embedding and head are the main tensors: one gradient, written under both names).\n"
            "\n"
            "  --model DIR       HF checkpoint directory (F32/BF16/F16/FP8 weights, dequantized to fp32 masters)\n"
            "  --rows FILE       .npy of int32 or int64, shape [B, T+1] (inputs t_0..t_{T-1}, labels t_1..t_T)\n"
            "  --out FILE        gradients (written atomically; nothing is written on error)\n"
            "  --mtp-weight L    MTP loss weight lambda (default 0.3 with MTP layers, else 0)\n"
            "  --seq-aux A       sequence-wise balance loss weight alpha (default 1e-4)\n"
            "  --attn MODE       naive (decompressed K/V, default) or absorb (latent form); same gradients\n"
            "%s"
            "  --json            print {\"loss\", \"main\", \"mtp\", \"balance\", \"tokens\"} on stdout\n"
            "  --threads N       OpenMP threads (default: all cores)\n"
            "\n"
            "Loss: L = L_main + (lambda/D) sum_k L^k + sum over MoE layers of the mean over rows of\n"
            "alpha sum_i f_i P_i; L_main and every L^k are divided by B*T.\n"
            "Exit status: 0 ok, 1 the output could not be written, 2 bad input.\n", cli_precision_help);
}

static int parse_float(const char *opt, const char *v, float *out) {
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || !(x >= 0.0) || x > 1e6) return cli_usage_error("grad", "%s: '%s' is not a number >= 0", opt, v);
    *out = (float)x;
    return 0;
}

// Reads ROWS.npy (int32/int64, [B, T+1]) into int32 rows; checks the shape and the ids against the vocabulary.
static int read_rows(const char *path, int V, int32_t **rows, int *B, int *T1) {
    int64_t r = 0, c = 0;
    if (dsv3_npy_read_ids_2d(path, (uint64_t)1 << 26, rows, &r, &c) < 0) return -1;
    int rc = 0;
    if (r < 1 || c < 2) rc = dsv3_errorf("%s: shape [%lld, %lld]: need B >= 1 rows of T+1 >= 2 ids", path, (long long)r, (long long)c);
    for (int64_t i = 0; rc == 0 && i < r * c; i++)
        if ((*rows)[i] >= V)
            rc = dsv3_errorf("%s: token id %d at row %lld, position %lld is outside the vocabulary [0, %d)", path, (*rows)[i],
                             (long long)(i / c), (long long)(i % c), V);
    if (rc) { free(*rows); *rows = NULL; return -1; }
    *B = (int)r;
    *T1 = (int)c;
    return 0;
}

int cmd_grad(int argc, char **argv) {
    const char *model_dir = NULL, *rows_path = NULL, *out = NULL, *attn_s = "naive";
    cli_precision prec;
    cli_precision_default(&prec);
    float mtp_w = -1.0f, seq_aux = 1e-4f;
    int json = 0, threads = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return cli_stdout_done("grad", 0); }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("grad", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--rows")) rows_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--attn")) attn_s = v;
        else if (cli_precision_opt("grad", a, v, &prec, &bad)) { if (bad) return 2; }
        else if (!strcmp(a, "--mtp-weight")) { if (parse_float(a, v, &mtp_w)) return 2; }
        else if (!strcmp(a, "--seq-aux")) { if (parse_float(a, v, &seq_aux)) return 2; }
        else if (!strcmp(a, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end || t < 1 || t > 1024) return cli_usage_error("grad", "--threads: '%s' is not a thread count in 1..1024", v);
            threads = (int)t;
        } else return cli_usage_error("grad", "unknown option '%s'", a);
    }
    if (cli_precision_check("grad", &prec)) return 2;
    if (!model_dir) return cli_usage_error("grad", "--model DIR is required");
    if (!rows_path) return cli_usage_error("grad", "--rows ROWS.npy is required");
    if (!out) return cli_usage_error("grad", "--out GRADS.safetensors is required");
    dsv3_attn_mode mode;
    if (!strcmp(attn_s, "naive")) mode = DSV3_ATTN_NAIVE;
    else if (!strcmp(attn_s, "absorb")) mode = DSV3_ATTN_ABSORB;
    else return cli_usage_error("grad", "--attn: '%s' is not naive or absorb", attn_s);
    if (threads) omp_set_num_threads(threads);

    dsv3_tmodel tm;
    if (dsv3_tmodel_load(&tm, model_dir) < 0) return cli_bad_input();
    int32_t *rows = NULL;
    int B = 0, T1 = 0, rc = 0;
    dsv3_train *tr = NULL;
    if (read_rows(rows_path, tm.cfg.vocab_size, &rows, &B, &T1) < 0) { rc = cli_bad_input(); goto done; }
    if (T1 - 1 > tm.cfg.max_position_embeddings) {
        dsv3_errorf("%s: T = %d positions, more than the model context (max_position_embeddings %d)", rows_path, T1 - 1,
                    tm.cfg.max_position_embeddings);
        rc = cli_bad_input();
        goto done;
    }
    tr = dsv3_train_new(&tm, B, T1 - 1, cli_precision_backend(&prec), MAX_TRAIN_BYTES);
    if (!tr || (prec.precision == 2 && dsv3_train_set_fp8(tr, &prec.fp8) < 0)) { rc = cli_bad_input(); goto done; }
    if (mtp_w < 0.0f) mtp_w = tm.tab.n_mtp > 0 ? 0.3f : 0.0f;
    dsv3_train_opts o = {.mtp_weight = mtp_w, .seq_aux = seq_aux, .attn = mode};
    dsv3_loss_parts lp;
    dsv3_tmodel_zero_grads(&tm);
    if (dsv3_train_step(tr, rows, &o, &lp) < 0) { rc = cli_bad_input(); goto done; }

    dsv3_st_writer *w = dsv3_st_writer_new();
    for (int i = 0; i < tm.tab.n; i++) {
        const dsv3_param *p = &tm.tab.p[i];
        if (p->flags & DSV3_PF_BUFFER) continue;
        int64_t shape[2] = {p->rows, p->cols};
        dsv3_st_writer_add(w, p->name, DSV3_F32, p->ndim, shape, dsv3_tmodel_grad(&tm, i));
    }
    char meta[256];
    snprintf(meta, sizeof meta, "%.9g", lp.loss);
    dsv3_st_writer_set_metadata(w, "loss", meta);
    if (dsv3_st_writer_save(w, out) < 0) rc = cli_failure();
    dsv3_st_writer_free(w);
    if (rc == 0) {
        fprintf(stderr, "dsv3 grad: B=%d T=%d loss %.6f (main %.6f, mtp %.6f, balance %.3g); wrote %s\n", B, T1 - 1, lp.loss,
                lp.main, lp.mtp, lp.balance, out);
        if (json)
            printf("{\"loss\": %.9g, \"main\": %.9g, \"mtp\": %.9g, \"balance\": %.9g, \"tokens\": %ld}\n", lp.loss, lp.main,
                   lp.mtp, lp.balance, lp.tokens);
        rc = cli_stdout_done("grad", 0);
    }
done:
    dsv3_train_free(tr);
    free(rows);
    dsv3_tmodel_free(&tm);
    return rc;
}
