// `dsv3 train`: the DeepSeek-V3 recipe end to end (docs/TRAINING.md): data, micro-batches and
// gradient accumulation, the loss of train.h, clipping, AdamW, the schedules of η, λ and γ, the
// auxiliary-loss-free bias update, metrics, evaluation, checkpoints, exact resume.
#pragma once
#include "model/forward.h"
#include "model/train.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include <stdint.h>

typedef struct {
    const char *model_dir;     // start from a checkpoint, or
    const char *config_path;   // a config with random init (init_std)
    const char *resume_dir;    // continue a run exactly (a checkpoint folder written by train)
    const char *data;          // shards folder / manifest, or ROWS.npy [N, T+1]
    const char *out_dir;
    const char *tokenizer_dir; // copied into checkpoints (default: the dataset's tokenizer folder when known)
    float init_std;
    uint64_t seed;
    int batch, micro_batch;    // rows per optimizer step, rows per forward/backward
    long steps;                // optimizer steps (or 0: from tokens)
    long long tokens;          // token budget (or 0: steps · batch · T)
    double lr;                 // η peak
    long warmup;               // W optimizer steps
    dsv3_schedule schedule;
    dsv3_adamw_cfg adam;
    double clip;
    double mtp_weight;         // < 0: the schedule (0.3, then 0.1)
    double seq_aux;            // α
    double bias_speed;         // < 0: the schedule (1e-3, then 0)
    int batch_ramp;
    int shuffle;               // shards: seeded permutation per epoch (1) or in order (0)
    int verify_data;           // shards: full checksums and id range at open (default: size, header, sampled checksum)
    dsv3_save_dtype save_dtype; int save_dtype_set;
    long save_every, eval_every, log_every;
    int eval_rows;
    int keep_checkpoints;
    int max_bad_steps;
    dsv3_attn_mode attn;
    int precision;             // 0 fp32 GEMMs, 1 bf16 GEMM inputs with fp32 accumulation (dsv3_backend_cpu_bf16),
                               // 2 DeepSeek-V3's FP8 recipe (fp8 below) on the bf16 backend
    dsv3_fp8_recipe fp8;       // the FP8 recipe with precision 2 (dsv3_fp8_recipe_default)
    int quiet;
    long stop_at;              // > 0: end this invocation after that optimizer step (saving), budget unspent
} dsv3_train_cfg;

void dsv3_train_cfg_defaults(dsv3_train_cfg *c);
// Runs the training. Returns a process exit code: 0 done, 1 failure (I/O, too many non-finite
// steps), 2 bad input, 130 interrupted (a checkpoint was saved first).
int dsv3_train_run(const dsv3_train_cfg *c);
