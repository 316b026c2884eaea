// Training-step benchmark (docs/PERF.md, section train; issue 7 item 7). Built by `make build/bench/train_bench`
// (or BUILD=...), run by bench/train_bench.sh. Not part of `make test`.
//
//   train_bench CONFIG.json B T STEPS [MODES]   MODES: comma list of naive, absorb, fwd (naive, forward + loss only)
//       fp32 masters from dsv3_tmodel_init_random (std 0.006, seed 1, every MTP layer of the config), B rows of
//       T+1 random ids (seeded splitmix64, bench/train_bench.py draws the same ids), one warm-up step, then
//       STEPS timed steps of dsv3_tmodel_zero_grads + dsv3_train_step (lambda 0.3, alpha 1e-4) on
//       dsv3_backend_cpu(), each followed (timed apart) by the optimizer of `dsv3 train`: dsv3_grad_norm +
//       dsv3_clip_grads (1.0) + dsv3_adamw_step (fp32 moments, lr 0: same arithmetic, weights unchanged);
//       "full step" = step + optimizer. Prints one JSON line per mode (all modes share one init).
//   train_bench --export CONFIG.json DIR      writes DIR/config.json + DIR/model.safetensors of that same init
//                                             (for the torch loss cross-check)
//   train_bench --peak THREADS                fp32 FMA peak of this machine (GFLOP/s, JSON line)
//
// Timing (as bench/matmul_bench, docs/PERF.md "How to read these numbers"): per step both the wall time and the
// critical-path CPU time (largest per-thread CPU time of the process over the step, per-thread clocks of every
// task in /proc/self/task). The machine is shared; on an idle machine the two agree. Reported: the best step
// and the median; tok/s and GFLOP/s from the best critical-path time.
//
// Training FLOPs per step (the 6N rule plus attention), with M_main = active matmul params per token of the
// main model (dsv3_config_counts: attention projections, dense/shared/K routed experts, router, lm_head) and
// M_mtp = the MTP module's (eh_proj 2d², its decoder block, the shared head):
//   6·B·(T·M_main + Σ_k (T−k)·M_mtp)  +  3 · 2·H·(qk+v) · B·(L·T(T+1)/2 + Σ_k (T−k)(T−k+1)/2)
// (forward attention = 2·H·(qk+v) per causal (query, key) pair and layer; the backward costs twice the forward.)
// The same count is used for both attention paths (the absorbed path does different, not fewer, useful work).
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/tmodel.h"
#include "model/train.h"
#include "train/optim.h"
#include <dirent.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define INIT_STD 0.006f
#define INIT_SEED 1
#define ROWS_SEED 42

static double wall_now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double ts_sec(struct timespec t) { return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// ---- critical-path CPU time: per-thread CPU clocks of every task of the process --------------------------
#define MAX_TASKS 256
typedef struct { int n; int tid[MAX_TASKS]; double cpu[MAX_TASKS]; } task_snap;

static void snap(task_snap *s) {
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && s->n < MAX_TASKS) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int tid = atoi(e->d_name);
        clockid_t id = (clockid_t)((~(unsigned)tid << 3) | 6); // Linux per-thread CPUCLOCK_SCHED
        struct timespec t;
        if (clock_gettime(id, &t) == 0) { s->tid[s->n] = tid; s->cpu[s->n] = ts_sec(t); s->n++; }
    }
    closedir(d);
}

static double crit(const task_snap *a, const task_snap *b) {
    double m = 0;
    for (int i = 0; i < b->n; i++) {
        double base = 0;
        for (int j = 0; j < a->n; j++) if (a->tid[j] == b->tid[i]) { base = a->cpu[j]; break; }
        if (b->cpu[i] - base > m) m = b->cpu[i] - base;
    }
    return m;
}

// ---- fp32 FMA peak: 10 independent 8-lane FMA chains per thread, timed by each thread's CPU clock -----------
__attribute__((target("avx2,fma"))) static double fma_rate_one_thread(long iters) {
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-8f);
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f);
    __m256 a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f);
    __m256 a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
    float out[8];
    _mm256_storeu_ps(out, s);
    if (out[0] == 12345.678f) fprintf(stderr, "!"); // keep the chains alive
    return (double)iters * 10 * 8 * 2 / (ts_sec(t1) - ts_sec(t0)) / 1e9;
}

static int cmd_peak(int threads) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
        sum += fma_rate_one_thread(1L << 25);
        if (sum > best) best = sum;
    }
    printf("{\"peak_gflops\": %.1f, \"threads\": %d, \"per_thread_gflops\": %.1f, \"ghz_equiv\": %.3f}\n", best, threads,
           best / threads, best / threads / 32.0);
    return 0;
}

// ---- FLOPs --------------------------------------------------------------------------------------------------
// Matmul params per token of one decoder layer (attention projections + its FFN as a token sees it).
static double layer_matmul_params(const dsv3_config *c, int l) {
    const double d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c), nope = c->qk_nope_head_dim;
    const double rope = c->qk_rope_head_dim, v = c->v_head_dim, ql = c->q_lora_rank, kvl = c->kv_lora_rank;
    double attn = (ql > 0 ? d * ql + ql * H * qk : d * H * qk) + d * (kvl + rope) + kvl * H * (nope + v) + H * v * d;
    double ffn = dsv3_layer_is_moe(c, l)
                     ? 3.0 * d * c->moe_intermediate_size * (c->num_experts_per_tok + c->n_shared_experts) +
                           (double)c->n_routed_experts * d
                     : 3.0 * d * c->intermediate_size;
    return attn + ffn;
}

static double train_flops(const dsv3_config *c, int D, int B, int T) {
    dsv3_counts k;
    dsv3_config_counts(c, &k);
    const double d = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    double mm = (double)k.active_matmul_params * T;
    double pairs = L * (double)T * (T + 1) / 2.0;
    for (int j = 1; j <= D; j++) {
        double m_mtp = 2 * d * d + layer_matmul_params(c, c->num_hidden_layers + j - 1) + V * d;
        mm += m_mtp * (T - j);
        pairs += (double)(T - j) * (T - j + 1) / 2.0;
    }
    double attn_pair = 2.0 * c->num_attention_heads * (dsv3_qk_head_dim(c) + c->v_head_dim);
    return B * (6.0 * mm + 3.0 * attn_pair * pairs);
}

// ---- ids: splitmix64, the same stream as bench/train_bench.py's rows() -------------------------------------
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *base_name(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }

static int cmd_export(const char *cfg_path, const char *dir) {
    dsv3_config cfg;
    if (dsv3_config_load(&cfg, cfg_path) < 0) { fprintf(stderr, "%s\n", dsv3_error()); return 2; }
    dsv3_tmodel tm;
    if (dsv3_tmodel_init_random(&tm, &cfg, cfg.num_nextn_predict_layers, INIT_STD, INIT_SEED) < 0) {
        fprintf(stderr, "%s\n", dsv3_error()); return 1;
    }
    mkdir(dir, 0755);
    size_t n;
    char *text = dsv3_read_file(cfg_path, &n);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    if (!text || !f || fwrite(text, 1, n, f) != n || fclose(f) != 0) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    free(text);
    dsv3_st_writer *w = dsv3_st_writer_new();
    for (int i = 0; i < tm.tab.n; i++) {
        const dsv3_param *p = &tm.tab.p[i];
        if (p->flags & DSV3_PF_ALIAS) continue; // the MTP copies of embed/head: one tensor, stored once
        int64_t shape[2] = {p->rows, p->cols};
        dsv3_st_writer_add(w, p->name, DSV3_F32, p->ndim, shape, dsv3_tmodel_param(&tm, i));
    }
    dsv3_st_writer_set_metadata(w, "format", "pt");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = dsv3_st_writer_save(w, path);
    dsv3_st_writer_free(w);
    dsv3_tmodel_free(&tm);
    if (rc < 0) { fprintf(stderr, "%s\n", dsv3_error()); return 1; }
    fprintf(stderr, "train_bench: wrote %s (std %g, seed %d)\n", path, INIT_STD, INIT_SEED);
    return 0;
}

// Under `perf record -D -1 --control fifo:CTL` (bench/train_bench.sh's hot-spot profile) sampling starts here,
// after the init and the first warm-up step: TRAIN_BENCH_PERF_CTL names perf's control fifo.
// Sampling stops after the timed steps of that first mode, so the profile is exactly its timed steps.
static void perf_ctl(const char *cmd) {
    static int state; // 0: not yet enabled, 1: enabled, 2: done
    const char *p = getenv("TRAIN_BENCH_PERF_CTL");
    if (!p || !*p || state == 2 || (state == 0) != !strcmp(cmd, "enable")) return;
    state++;
    FILE *f = fopen(p, "w");
    if (f) { fprintf(f, "%s\n", cmd); fclose(f); }
}

// TRAIN_BENCH_PRECISION=bf16: the backend of `dsv3 train --precision bf16` (bf16 GEMM inputs, fp32
// accumulation); default fp32.
static int bench_bf16(void) { const char *p = getenv("TRAIN_BENCH_PRECISION"); return p && !strcmp(p, "bf16"); }
static const dsv3_backend *bench_backend(void) { return bench_bf16() ? dsv3_backend_cpu_bf16() : dsv3_backend_cpu(); }

// One mode: warm-up + `steps` timed steps; prints one JSON line.
static int run_mode(dsv3_tmodel *tm, dsv3_train *tr, const int32_t *rows, const char *cfg_path, int B, int T, int steps,
                    dsv3_attn_mode mode, int fwd_only, double t_init) {
    const dsv3_config *cfg = &tm->cfg;
    const dsv3_backend *be = bench_backend();
    size_t act = 0, ws = 0, minb = 0;
    dsv3_train_bytes(tr, &act, &ws, &minb);
    dsv3_train_opts o = {.mtp_weight = tm->tab.n_mtp > 0 ? 0.3f : 0.0f, .seq_aux = 1e-4f, .attn = mode,
                         .no_backward = fwd_only};
    dsv3_loss_parts lp0, lp;
    dsv3_tmodel_zero_grads(tm);
    if (dsv3_train_step(tr, rows, &o, &lp0) < 0) { fprintf(stderr, "%s\n", dsv3_error()); return 1; } // warm-up
    perf_ctl("enable");
    double *wt = malloc(sizeof(double) * steps), *ct = malloc(sizeof(double) * steps), zero_best = 1e30;
    // the optimizer of `dsv3 train` after each step (grad norm, clip at 1, AdamW; trainer.c's order), timed apart.
    // lr 0: the same arithmetic, weights unchanged (the other modes see the same model)
    double *ow = malloc(sizeof(double) * steps), *oc = malloc(sizeof(double) * steps), *fc = malloc(sizeof(double) * steps);
    const dsv3_adamw_cfg acfg = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    dsv3_adamw opt;
    dsv3_adamw_init(&opt, tm->tab.total, 0);
    unsigned long allocs = dsv3_alloc_count();
    for (int r = 0; r < steps; r++) {
        task_snap a, b;
        snap(&a);
        double t0 = wall_now();
        if (!fwd_only) dsv3_tmodel_zero_grads(tm);
        double tz = wall_now() - t0;
        if (tz < zero_best) zero_best = tz;
        dsv3_train_step(tr, rows, &o, &lp);
        wt[r] = wall_now() - t0;
        snap(&b);
        ct[r] = crit(&a, &b);
        ow[r] = oc[r] = 0;
        if (!fwd_only) {
            task_snap c, d;
            snap(&c);
            double t1 = wall_now();
            (void)dsv3_grad_norm(&tm->tab, tm->grads);
            dsv3_clip_grads(&tm->tab, tm->grads, 1.0);
            dsv3_adamw_step(&opt, &acfg, &tm->tab, tm->params, tm->grads, 0.0);
            ow[r] = wall_now() - t1;
            snap(&d);
            oc[r] = crit(&c, &d);
        }
        fc[r] = ct[r] + oc[r];
    }
    dsv3_adamw_free(&opt);
    perf_ctl("disable");
    allocs = dsv3_alloc_count() - allocs;
    qsort(wt, steps, sizeof(double), cmpd);
    qsort(ct, steps, sizeof(double), cmpd);
    qsort(ow, steps, sizeof(double), cmpd);
    qsort(oc, steps, sizeof(double), cmpd);
    qsort(fc, steps, sizeof(double), cmpd);
    const double tokens = (double)B * T;
    // forward only: a third of the training FLOPs (the 6N rule's 2N, the attention's forward)
    const double flops = train_flops(cfg, tm->tab.n_mtp < T ? tm->tab.n_mtp : T - 1, B, T) / (fwd_only ? 3.0 : 1.0);
    const char *cfg_name = base_name(cfg_path);
    const char *dot = strrchr(cfg_name, '.');
    printf("{\"impl\": \"dsv3\", \"attn\": \"%s\", \"config\": \"%.*s\", \"B\": %d, \"T\": %d, \"threads\": %d, "
           "\"steps\": %d, \"fwd_only\": %d, \"loss0\": %.7f, \"main0\": %.7f, \"mtp0\": %.7f, \"balance0\": %.6g, "
           "\"loss_last\": %.7f, \"params\": %zu, \"step_s_cpu_best\": %.4f, \"step_s_cpu_median\": %.4f, "
           "\"step_s_wall_best\": %.4f, \"step_s_wall_median\": %.4f, \"zero_grads_s\": %.4f, \"tok_s\": %.1f, "
           "\"tok_s_wall\": %.1f, \"train_gflop_per_step\": %.3f, \"gflops\": %.2f, \"act_mb\": %.1f, \"ws_mb\": %.1f, "
           "\"init_s\": %.2f, \"allocs_in_steps\": %lu, \"backend\": \"%s\", \"isa\": \"%s\", "
           "\"opt_s_cpu_best\": %.4f, \"opt_s_wall_best\": %.4f, \"full_step_s_cpu_best\": %.4f, \"full_tok_s\": %.1f}\n",
           mode == DSV3_ATTN_ABSORB ? "absorb" : "naive", (int)(dot ? dot - cfg_name : (long)strlen(cfg_name)), cfg_name, B,
           T, omp_get_max_threads(), steps, fwd_only, lp0.loss, lp0.main, lp0.mtp, lp0.balance, lp.loss, tm->tab.trainable,
           ct[0], ct[steps / 2], wt[0], wt[steps / 2], fwd_only ? 0.0 : zero_best, tokens / ct[0], tokens / wt[0],
           flops / 1e9, flops / ct[0] / 1e9, act / 1e6, ws / 1e6, t_init, allocs, be->name,
           dsv3_isa_name(dsv3_matmul_get_isa()), oc[0], ow[0], fc[0], tokens / fc[0]);
    fflush(stdout);
    free(wt); free(ct); free(ow); free(oc); free(fc);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--peak")) return cmd_peak(atoi(argv[2]));
    if (argc == 4 && !strcmp(argv[1], "--export")) return cmd_export(argv[2], argv[3]);
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: train_bench CONFIG.json B T STEPS [MODES] | --export CONFIG.json DIR | --peak THREADS\n"
                        "  MODES: comma-separated naive, absorb, fwd (naive forward + loss only); default naive\n");
        return 2;
    }
    const char *cfg_path = argv[1];
    const int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[4]);
    const char *modes = argc > 5 ? argv[5] : "naive";
    if (B < 1 || T < 2 || steps < 1) { fprintf(stderr, "train_bench: need B >= 1, T >= 2, STEPS >= 1\n"); return 2; }
    dsv3_config cfg;
    if (dsv3_config_load(&cfg, cfg_path) < 0) { fprintf(stderr, "%s\n", dsv3_error()); return 2; }
    double t_init = wall_now();
    dsv3_tmodel tm;
    if (dsv3_tmodel_init_random(&tm, &cfg, cfg.num_nextn_predict_layers, INIT_STD, INIT_SEED) < 0) {
        fprintf(stderr, "%s\n", dsv3_error()); return 1;
    }
    t_init = wall_now() - t_init;
    dsv3_train *tr = dsv3_train_new(&tm, B, T, bench_backend(), 0);
    if (!tr) { fprintf(stderr, "%s\n", dsv3_error()); return 1; }
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)B * (T + 1));
    uint64_t s = ROWS_SEED;
    for (long i = 0; i < (long)B * (T + 1); i++) rows[i] = (int32_t)(splitmix(&s) % (uint64_t)cfg.vocab_size);
    int rc = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", modes);
    for (char *save = NULL, *m = strtok_r(buf, ",", &save); m && rc == 0; m = strtok_r(NULL, ",", &save)) {
        if (!strcmp(m, "naive")) rc = run_mode(&tm, tr, rows, cfg_path, B, T, steps, DSV3_ATTN_NAIVE, 0, t_init);
        else if (!strcmp(m, "absorb")) rc = run_mode(&tm, tr, rows, cfg_path, B, T, steps, DSV3_ATTN_ABSORB, 0, t_init);
        else if (!strcmp(m, "fwd")) rc = run_mode(&tm, tr, rows, cfg_path, B, T, steps, DSV3_ATTN_NAIVE, 1, t_init);
        else { fprintf(stderr, "train_bench: unknown mode '%s'\n", m); rc = 2; }
    }
    free(rows);
    dsv3_train_free(tr);
    dsv3_tmodel_free(&tm);
    return rc;
}
