// dsv3 train: the DeepSeek-V3 training recipe (src/train/trainer.c, docs/TRAINING.md).
#include "commands.h"
#include "core/error.h"
#include "train/trainer.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 train (--model DIR | --config CFG [--init-std S] | --resume DIR) --data DATA --out DIR\n"
            "                  (--steps N | --tokens N) [options]\n"
            "\n"
            "Trains a DeepSeek-V3 model with the paper's recipe: AdamW (b1 0.9, b2 0.95, eps 1e-8, decoupled\n"
            "weight decay 0.1 on 2-D tensors), global-norm clipping at 1.0, the V3 learning-rate shape over the\n"
            "run's tokens, MTP loss weight 0.3 then 0.1, sequence-wise balance loss 1e-4, auxiliary-loss-free\n"
            "bias updates (speed 1e-3, frozen for the last 3.4%% of tokens). Writes a Hugging Face checkpoint\n"
            "to --out when it ends (and every --save-every steps to DIR/checkpoints/step-N), metrics to\n"
            "DIR/metrics.jsonl.\n"
            "\n"
            "start:\n"
            "  --model DIR          an HF checkpoint (F32/BF16/F16/FP8 weights -> fp32 masters)\n"
            "  --config CFG         a config.json with random init: matrices N(0, S^2), norms 1, biases 0\n"
            "  --init-std S         default 0.006 (the paper's; 0.5/sqrt(hidden_size) is the width-scaled choice)\n"
            "  --seed N             init and data order (default 1)\n"
            "  --resume DIR         continue a run from a checkpoint written by train, bit-identically\n"
            "data:\n"
            "  --data DATA          shards from `dsv3 data prepare` (folder or manifest.json; the val split is\n"
            "                       used for evaluation) or ROWS.npy (int32/int64 [N, T+1], used in order)\n"
            "  --no-shuffle         read shard rows in order (default: a seeded permutation per epoch)\n"
            "  --verify             check every shard's full checksum and id range at open (default: size,\n"
            "                       header, run id and a sampled checksum)\n"
            "  --batch B            rows per optimizer step (default 8; with --resume the run's)\n"
            "  --micro-batch M      rows per forward/backward; B/M micro-batches are accumulated (default B)\n"
            "  --batch-ramp         B/5 -> B staircase over the first 3.17%% of tokens (by micro-batch count)\n"
            "  --steps N            optimizer steps (budget N*B*T tokens), or\n"
            "  --tokens N           the token budget (with --steps as well, N caps the steps)\n"
            "recipe:\n"
            "  --lr LR              peak learning rate (default 1e-3)\n"
            "  --warmup W           linear warmup steps (default 0)\n"
            "  --schedule S         v3 (default), cosine or constant\n"
            "  --weight-decay WD    default 0.1     --beta1 / --beta2 / --eps   default 0.9 / 0.95 / 1e-8\n"
            "  --clip C             global gradient norm (default 1.0)\n"
            "  --moments f32|bf16   AdamW moment storage (default f32; bf16 as the paper, RNE)\n"
            "  --mtp-weight L       fixed lambda (default: the schedule 0.3 -> 0.1 at 67.57%% of tokens)\n"
            "  --seq-aux A          sequence-wise balance loss weight (default 1e-4)\n"
            "  --bias-speed G       fixed gamma (default: 1e-3 -> 0 at 96.62%% of tokens; 0 disables balancing)\n"
            "  --attn naive|absorb  attention form (same function; default naive)\n"
            "%s"
            "                    --precision fp8 stores the AdamW moments in bf16 unless --moments is given.\n"
            "                    With --resume the run's precision and FP8 recipe are kept.\n"
            "output:\n"
            "  --out DIR            run folder: the final HF checkpoint, metrics.jsonl, checkpoints/\n"
            "  --save-dtype D       f32, bf16 or fp8 (E4M3 + 128x128 weight_scale_inv, as DeepSeek releases);\n"
            "                       default: the starting checkpoint's dtype, f32 for a random init\n"
            "  --save-every N       periodic checkpoints (default 0: only at the end)\n"
            "  --keep N             periodic checkpoints kept (default 2)\n"
            "  --eval-every N       validation loss + MaxVio_global every N steps (default 0: start and end)\n"
            "  --eval-rows N        validation rows per evaluation (default 64)\n"
            "  --log-every N        progress lines when stderr is not a terminal (default 10)\n"
            "  --stop-at STEP       end this invocation after STEP (saving); --resume continues the same run\n"
            "  --max-bad-steps N    non-finite steps in a row before stopping (default 5; each one is skipped)\n"
            "  --tokenizer DIR      folder with tokenizer.json to copy into checkpoints (default: the dataset's)\n"
            "  --threads N          OpenMP threads (default: all cores)   --quiet   no progress\n"
            "\n"
            "Exit status: 0 done, 1 failure (I/O, too many non-finite steps), 2 bad input, 130 interrupted\n"
            "(Ctrl-C / SIGTERM: the checkpoint is saved first).\n", cli_precision_help);
}

static int num(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || !(x >= lo && x <= hi)) return cli_usage_error("train", "%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    *out = x;
    return 0;
}

int cmd_train_model(int argc, char **argv) {
    dsv3_train_cfg c;
    dsv3_train_cfg_defaults(&c);
    int threads = 0, moments_set = 0, bad = 0;
    cli_precision prec;
    cli_precision_default(&prec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double x;
        if (cli_is_help(a)) { usage(stdout); return cli_stdout_done("train", 0); }
        if (!strcmp(a, "--no-shuffle")) { c.shuffle = 0; continue; }
        if (!strcmp(a, "--batch-ramp")) { c.batch_ramp = 1; continue; }
        if (!strcmp(a, "--verify")) { c.verify_data = 1; continue; }
        if (!strcmp(a, "--quiet")) { c.quiet = 1; continue; }
        if (i + 1 >= argc) return cli_usage_error("train", "%s needs a value", a);
        const char *v = argv[++i];
#define NUM(lo, hi) do { if (num(a, v, lo, hi, &x)) return 2; } while (0)
        if (!strcmp(a, "--model")) c.model_dir = v;
        else if (!strcmp(a, "--config")) c.config_path = v;
        else if (!strcmp(a, "--resume")) c.resume_dir = v;
        else if (!strcmp(a, "--data")) c.data = v;
        else if (!strcmp(a, "--out")) c.out_dir = v;
        else if (!strcmp(a, "--tokenizer")) c.tokenizer_dir = v;
        else if (!strcmp(a, "--init-std")) { NUM(1e-9, 10); c.init_std = (float)x; }
        else if (!strcmp(a, "--seed")) { NUM(0, 9007199254740992.0); c.seed = (uint64_t)x; }
        else if (!strcmp(a, "--batch")) { NUM(1, 1 << 20); c.batch = (int)x; }
        else if (!strcmp(a, "--micro-batch")) { NUM(1, 1 << 20); c.micro_batch = (int)x; }
        else if (!strcmp(a, "--steps")) { NUM(1, 1e12); c.steps = (long)x; }
        else if (!strcmp(a, "--tokens")) { NUM(1, 1e16); c.tokens = (long long)x; }
        else if (!strcmp(a, "--lr")) { NUM(1e-12, 10); c.lr = x; }
        else if (!strcmp(a, "--warmup")) { NUM(0, 1e12); c.warmup = (long)x; }
        else if (!strcmp(a, "--schedule")) {
            if (!strcmp(v, "v3")) c.schedule = DSV3_SCHED_V3;
            else if (!strcmp(v, "cosine")) c.schedule = DSV3_SCHED_COSINE;
            else if (!strcmp(v, "constant")) c.schedule = DSV3_SCHED_CONSTANT;
            else return cli_usage_error("train", "--schedule: '%s' is not v3, cosine or constant", v);
        }
        else if (!strcmp(a, "--weight-decay")) { NUM(0, 10); c.adam.weight_decay = x; }
        else if (!strcmp(a, "--beta1")) { NUM(0, 0.999999); c.adam.beta1 = x; }
        else if (!strcmp(a, "--beta2")) { NUM(0, 0.999999); c.adam.beta2 = x; }
        else if (!strcmp(a, "--eps")) { NUM(0, 1); c.adam.eps = x; }
        else if (!strcmp(a, "--clip")) { NUM(1e-9, 1e9); c.clip = x; }
        else if (!strcmp(a, "--moments")) {
            moments_set = 1;
            if (!strcmp(v, "f32")) c.adam.bf16_moments = 0;
            else if (!strcmp(v, "bf16")) c.adam.bf16_moments = 1;
            else return cli_usage_error("train", "--moments: '%s' is not f32 or bf16", v);
        }
        else if (!strcmp(a, "--mtp-weight")) { NUM(0, 1e3); c.mtp_weight = x; }
        else if (!strcmp(a, "--seq-aux")) { NUM(0, 1e3); c.seq_aux = x; }
        else if (!strcmp(a, "--bias-speed")) { NUM(0, 1); c.bias_speed = x; }
        else if (cli_precision_opt("train", a, v, &prec, &bad)) { if (bad) return 2; }
        else if (!strcmp(a, "--attn")) {
            if (!strcmp(v, "naive")) c.attn = DSV3_ATTN_NAIVE;
            else if (!strcmp(v, "absorb")) c.attn = DSV3_ATTN_ABSORB;
            else return cli_usage_error("train", "--attn: '%s' is not naive or absorb", v);
        }
        else if (!strcmp(a, "--save-dtype")) {
            c.save_dtype_set = 1;
            if (!strcmp(v, "f32")) c.save_dtype = DSV3_SAVE_F32;
            else if (!strcmp(v, "bf16")) c.save_dtype = DSV3_SAVE_BF16;
            else if (!strcmp(v, "fp8")) c.save_dtype = DSV3_SAVE_FP8;
            else return cli_usage_error("train", "--save-dtype: '%s' is not f32, bf16 or fp8", v);
        }
        else if (!strcmp(a, "--save-every")) { NUM(0, 1e12); c.save_every = (long)x; }
        else if (!strcmp(a, "--keep")) { NUM(1, 1e6); c.keep_checkpoints = (int)x; }
        else if (!strcmp(a, "--eval-every")) { NUM(0, 1e12); c.eval_every = (long)x; }
        else if (!strcmp(a, "--eval-rows")) { NUM(0, 1 << 24); c.eval_rows = (int)x; }
        else if (!strcmp(a, "--log-every")) { NUM(0, 1e12); c.log_every = (long)x; }
        else if (!strcmp(a, "--stop-at")) { NUM(1, 1e12); c.stop_at = (long)x; }
        else if (!strcmp(a, "--max-bad-steps")) { NUM(1, 1e9); c.max_bad_steps = (int)x; }
        else if (!strcmp(a, "--threads")) { NUM(1, 1024); threads = (int)x; }
        else return cli_usage_error("train", "unknown option '%s'", a);
#undef NUM
    }
    if (cli_precision_check("train", &prec)) return 2;
    c.precision = prec.precision;
    c.fp8 = prec.fp8;
    if (c.precision == 2 && !moments_set) c.adam.bf16_moments = 1; // the paper's recipe (with --resume: the run's)
    if (threads) omp_set_num_threads(threads);
    return dsv3_train_run(&c);
}
