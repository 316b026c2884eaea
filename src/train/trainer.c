// The training loop (trainer.h, docs/TRAINING.md).
#include "train/trainer.h"
#include "core/durable.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/npy.h"
#include "kernels/backend.h"
#include "model/train.h"
#include "train/data.h"
#include "train/plot.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRAIN_BYTES ((size_t)20 << 30)

void dsv3_train_cfg_defaults(dsv3_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->init_std = 0.006f;
    c->seed = 1;
    c->batch = 0; // 8, or the resumed run's
    c->lr = 1e-3;
    c->schedule = DSV3_SCHED_V3;
    c->adam = (dsv3_adamw_cfg){.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    c->clip = 1.0;
    c->mtp_weight = -1;
    c->seq_aux = 1e-4;
    c->bias_speed = -1;
    c->shuffle = 1;
    c->log_every = 10;
    c->eval_rows = 64;
    c->keep_checkpoints = 2;
    c->max_bad_steps = 5;
    c->attn = DSV3_ATTN_NAIVE;
    dsv3_fp8_recipe_default(&c->fp8);
}

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- data -------------------------------------------------------------------------------------------

typedef struct {
    dsv3_data *shards, *val;   // shard datasets, or
    int32_t *npy; uint64_t npy_rows;  // rows of a .npy
    int T;                     // input tokens per row (row = T + 1 ids)
    uint64_t n_rows;
    uint64_t seed, epoch, pos; // cursor: position `pos` of the epoch's order
    uint64_t *order; uint64_t order_n; uint64_t order_epoch;
    int shuffle;
    int64_t pad;
    uint64_t digest;
} data_src;

static int data_open(data_src *d, const char *path, uint64_t seed, int shuffle, int verify) {
    memset(d, 0, sizeof *d);
    d->seed = seed;
    d->shuffle = shuffle;
    d->order_epoch = UINT64_MAX;
    d->pad = -1;
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".npy") == 0) {
        int64_t r = 0, cols = 0;
        if (dsv3_npy_read_ids_2d(path, (uint64_t)1 << 31, &d->npy, &r, &cols) < 0) return -1;
        if (r < 1 || cols < 2) return dsv3_errorf("%s: training rows must have shape [N, T+1] with N >= 1, T+1 >= 2", path);
        d->npy_rows = d->n_rows = (uint64_t)r;
        d->T = (int)cols - 1;
        d->digest = dsv3_fnv1a64(d->npy, sizeof(int32_t) * (size_t)r * cols);
        return 0;
    }
    d->shards = dsv3_data_open(path, "train", verify);
    if (!d->shards) return -1;
    d->n_rows = dsv3_data_num_rows(d->shards);
    d->T = dsv3_data_seq_len(d->shards);
    d->pad = dsv3_data_pad_id(d->shards);
    d->digest = dsv3_data_digest(d->shards);
    if (d->n_rows == 0) return dsv3_errorf("%s: the train split has no rows", path);
    d->val = dsv3_data_open(path, "val", verify); // optional
    if (!d->val) dsv3_error_clear();
    else if (dsv3_data_num_rows(d->val) == 0) { dsv3_data_close(d->val); d->val = NULL; }
    return 0;
}

static void data_close(data_src *d) {
    if (d->shards) dsv3_data_close(d->shards);
    if (d->val) dsv3_data_close(d->val);
    free(d->npy);
    free(d->order);
    memset(d, 0, sizeof *d);
}

// Next training row into out (T+1 ids); advances the cursor.
static void data_next(data_src *d, int32_t *out, int V) {
    const int L1 = d->T + 1;
    if (d->npy) {
        memcpy(out, d->npy + (size_t)(d->pos % d->npy_rows) * L1, sizeof(int32_t) * L1);
        d->pos++;
        return;
    }
    if (d->pos >= d->n_rows) { d->epoch++; d->pos = 0; }
    if (d->order_epoch != d->epoch) {
        free(d->order);
        d->order = NULL;
        if (d->shuffle) dsv3_data_epoch_rows(d->n_rows, d->seed, d->epoch, 0, 1, 0, &d->order, &d->order_n);
        d->order_epoch = d->epoch;
    }
    const uint64_t r = d->order ? d->order[d->pos] : d->pos;
    const uint32_t *row = dsv3_data_row(d->shards, r);
    for (int i = 0; i < L1; i++) out[i] = (int32_t)row[i] < V ? (int32_t)row[i] : 0;
    d->pos++;
}

// ---- run state ----------------------------------------------------------------------------------------

typedef struct {
    long step;
    long long tokens_done, total_tokens;
    int bad_run;
} progress;

static char *read_text(const char *dir, const char *name) {
    char *p = dsv3_path_join(dir, name);
    char *t = dsv3_read_file_max(p, DSV3_READ_MAX_JSON, "a config.json", NULL);
    free(p);
    return t;
}

// A signature of the model architecture: FNV over the table's names and shapes.
static uint64_t model_signature(const dsv3_param_table *t) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < t->n; i++) {
        const dsv3_param *p = &t->p[i];
        for (const char *s = p->name; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001b3ULL; }
        int64_t sh[2] = {p->rows, p->cols};
        for (int k = 0; k < 16; k++) { h ^= ((unsigned char *)sh)[k]; h *= 0x100000001b3ULL; }
    }
    return h;
}

static char *state_json(const dsv3_train_cfg *c, const progress *pr, const data_src *d, const dsv3_tmodel *tm, int micro,
                        double lr_now) {
    cJSON *j = cJSON_CreateObject();
    char hex[17];
    cJSON_AddNumberToObject(j, "step", (double)pr->step);
    cJSON_AddNumberToObject(j, "tokens_done", (double)pr->tokens_done);
    cJSON_AddNumberToObject(j, "total_tokens", (double)pr->total_tokens);
    cJSON_AddNumberToObject(j, "bad_steps_in_a_row", pr->bad_run);
    cJSON_AddNumberToObject(j, "data_epoch", (double)d->epoch);
    cJSON_AddNumberToObject(j, "data_pos", (double)d->pos);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d->digest);
    cJSON_AddStringToObject(j, "data_digest", hex);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)c->seed);
    cJSON_AddStringToObject(j, "seed", hex);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)model_signature(&tm->tab));
    cJSON_AddStringToObject(j, "model_signature", hex);
    cJSON_AddNumberToObject(j, "n_mtp", tm->tab.n_mtp);
    cJSON_AddNumberToObject(j, "seq_len", d->T);
    cJSON_AddNumberToObject(j, "batch", c->batch);
    cJSON_AddNumberToObject(j, "micro_batch", micro);
    cJSON_AddNumberToObject(j, "lr_peak", c->lr);
    cJSON_AddNumberToObject(j, "lr_now", lr_now);
    cJSON_AddNumberToObject(j, "warmup", (double)c->warmup);
    cJSON_AddNumberToObject(j, "schedule", c->schedule);
    cJSON_AddNumberToObject(j, "batch_ramp", c->batch_ramp);
    cJSON_AddNumberToObject(j, "shuffle", c->shuffle);
    cJSON *r = cJSON_AddObjectToObject(j, "recipe"); // restored by --resume (the run keeps its recipe)
    const struct { const char *k; double v; } kv[] = {
        {"lr", c->lr}, {"warmup", (double)c->warmup}, {"schedule", c->schedule}, {"batch_ramp", c->batch_ramp},
        {"shuffle", c->shuffle}, {"clip", c->clip}, {"mtp_weight", c->mtp_weight}, {"seq_aux", c->seq_aux},
        {"bias_speed", c->bias_speed}, {"beta1", c->adam.beta1}, {"beta2", c->adam.beta2}, {"eps", c->adam.eps},
        {"weight_decay", c->adam.weight_decay}, {"attn", c->attn}, {"save_dtype", c->save_dtype},
        {"precision", c->precision}, {"fp8_scale_ue8m0", c->fp8.scale_fmt == DSV3_SCALE_UE8M0},
        {"fp8_accum_nc", c->fp8.acc.mode == DSV3_FP8_ACC_FP32 ? -1 : c->fp8.acc.nc}, {"fp8_dgrad_block", c->fp8.dgrad_block},
        {"fp8_wgrad_x_high", c->fp8.wgrad_x_high}, {"fp8_blocks", c->fp8.blocks}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) cJSON_AddNumberToObject(r, kv[i].k, kv[i].v);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static int save_all(const char *dir, const dsv3_train_cfg *c, const progress *pr, const data_src *d, const dsv3_tmodel *tm,
                    const dsv3_adamw *o, const char *cfg_text, int micro, double lr_now) {
    if (dsv3_ckpt_write_model(dir, tm, cfg_text, c->save_dtype, c->tokenizer_dir, 0) < 0) return -1;
    char *js = state_json(c, pr, d, tm, micro, lr_now);
    int rc = dsv3_ckpt_write_state(dir, js, tm, o);
    free(js);
    return rc;
}

static int rm_tree(const char *dir) {
    DIR *dd = opendir(dir);
    if (!dd) return -1;
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = dsv3_path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(dd);
    return rmdir(dir);
}

// Removes root/name so that a kill at any moment leaves it whole or absent: renamed to a hidden
// ".name.del.PID" first (atomic), then deleted.
static void rm_tree_atomic(const char *root, const char *name) {
    char tn[128];
    snprintf(tn, sizeof tn, ".%s.del.%d", name, (int)getpid());
    char *p = dsv3_path_join(root, name), *t = dsv3_path_join(root, tn);
    if (rename(p, t) == 0) { dsv3_fsync_dir(root); rm_tree(t); }
    free(p); free(t);
}

// Leftovers of dead writers in root: ".step-N.tmp.PID" / ".step-N.del.PID" folders whose PID is gone.
static void rm_stale_dirs(const char *root) {
    DIR *dd = opendir(root);
    if (!dd) return;
    struct dirent *e;
    while ((e = readdir(dd))) {
        const char *dot = strrchr(e->d_name, '.');
        if (strncmp(e->d_name, ".step-", 6) || !dot || !(strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".del."))) continue;
        char *end;
        long pid = strtol(dot + 1, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; // a live writer's
        char *p = dsv3_path_join(root, e->d_name);
        rm_tree(p);
        free(p);
    }
    closedir(dd);
}

// A periodic checkpoint: OUT/checkpoints/step-NNNNNNN, written under a temp name and renamed (a
// kill leaves either no folder or a complete one); keeps the newest `keep`.
static int save_periodic(const char *out, const dsv3_train_cfg *c, const progress *pr, const data_src *d,
                         const dsv3_tmodel *tm, const dsv3_adamw *o, const char *cfg_text, int micro, double lr_now) {
    char *root = dsv3_path_join(out, "checkpoints");
    mkdir(root, 0755);
    char name[64], tmpn[96];
    snprintf(name, sizeof name, "step-%07ld", pr->step);
    snprintf(tmpn, sizeof tmpn, ".%s.tmp.%d", name, (int)getpid());
    char *fin = dsv3_path_join(root, name), *tmp = dsv3_path_join(root, tmpn);
    rm_stale_dirs(root);
    rm_tree(tmp);
    int rc = save_all(tmp, c, pr, d, tm, o, cfg_text, micro, lr_now);
    if (rc == 0) {
        rm_tree_atomic(root, name);
        if (rename(tmp, fin) != 0) rc = dsv3_errorf("%s: rename failed: %s", fin, strerror(errno));
        else rc = dsv3_fsync_dir(root);
    } else {
        rm_tree(tmp);
    }
    // prune: keep the newest `keep` step-* folders
    if (rc == 0 && c->keep_checkpoints > 0) {
        DIR *dd = opendir(root);
        char *names[4096];
        int n = 0;
        struct dirent *e;
        while (dd && (e = readdir(dd)) && n < 4096)
            if (!strncmp(e->d_name, "step-", 5)) names[n++] = dsv3_strdup(e->d_name);
        if (dd) closedir(dd);
        for (int i = 1; i < n; i++)
            for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) { char *t = names[k]; names[k] = names[k - 1]; names[k - 1] = t; }
        for (int i = 0; i < n; i++) {
            if (i < n - c->keep_checkpoints) rm_tree_atomic(root, names[i]);
            free(names[i]);
        }
    }
    free(root); free(fin); free(tmp);
    return rc;
}

// ---- evaluation ------------------------------------------------------------------------------------------

typedef struct { double loss, main; double maxvio_global; int rows; } eval_res;

static int evaluate(dsv3_train *tr, dsv3_tmodel *tm, data_src *d, int micro, int eval_rows, float lambda, float alpha,
                    dsv3_attn_mode attn, int32_t *rows, int64_t *counts, eval_res *er) {
    memset(er, 0, sizeof *er);
    if (!d->val) return 0;
    const dsv3_config *c = &tm->cfg;
    const int L1 = d->T + 1, V = c->vocab_size, E = c->n_routed_experts;
    const uint64_t nv = dsv3_data_num_rows(d->val);
    int n = eval_rows < (int)nv ? eval_rows : (int)nv;
    n -= n % micro;
    if (n <= 0) return 0;
    const int nl = c->num_hidden_layers + tm->tab.n_mtp;
    memset(counts, 0, sizeof(int64_t) * (size_t)nl * (E ? E : 1));
    dsv3_train_opts o = {.mtp_weight = lambda, .seq_aux = alpha, .attn = attn, .no_backward = 1,
                         .use_ignore = d->pad >= 0, .ignore_id = (int32_t)d->pad};
    for (int r0 = 0; r0 < n; r0 += micro) {
        for (int b = 0; b < micro; b++) {
            const uint32_t *row = dsv3_data_row(d->val, (uint64_t)(r0 + b));
            for (int i = 0; i < L1; i++) rows[(size_t)b * L1 + i] = (int32_t)row[i] < V ? (int32_t)row[i] : 0;
        }
        dsv3_loss_parts lp;
        if (dsv3_train_step(tr, rows, &o, &lp) < 0) return -1;
        er->loss += lp.loss; er->main += lp.main;
        if (E) dsv3_train_route_counts(tr, counts);
    }
    er->loss /= n / micro; er->main /= n / micro;
    er->rows = n;
    double mv = 0;
    for (int l = 0; l < nl; l++) {
        const int64_t *cl = counts + (size_t)l * E;
        int64_t s = 0;
        for (int e = 0; e < E; e++) s += cl[e];
        if (s) mv = fmax(mv, dsv3_maxvio(cl, E));
    }
    er->maxvio_global = mv;
    return 0;
}

// Unigram entropy (nats) of the validation targets: the loss of the best context-free predictor.
static double unigram_entropy(data_src *d, int V) {
    if (!d->val) return NAN;
    double *cnt = dsv3_calloc((size_t)V, sizeof(double)), tot = 0;
    const uint64_t nv = dsv3_data_num_rows(d->val);
    for (uint64_t r = 0; r < nv; r++) {
        const uint32_t *row = dsv3_data_row(d->val, r);
        for (int i = 1; i <= d->T; i++) if ((int)row[i] < V) { cnt[row[i]]++; tot++; }
    }
    double h = 0;
    for (int v = 0; v < V; v++) if (cnt[v] > 0) h -= cnt[v] / tot * log(cnt[v] / tot);
    free(cnt);
    return h;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "?"); return; }
    long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

// The JSON header of DIR/trainer_state.bin, or NULL.
static cJSON *peek_state(const char *dir) {
    char *p = dsv3_path_join(dir, "trainer_state.bin");
    dsv3_mmap mm;
    cJSON *j = NULL;
    if (dsv3_mmap_open(&mm, p) == 0) {
        uint32_t hl;
        if (mm.size > 16 && (memcpy(&hl, mm.data + 12, 4), 16 + (size_t)hl <= mm.size)) {
            char *t = dsv3_malloc((size_t)hl + 1);
            memcpy(t, mm.data + 16, hl);
            t[hl] = 0;
            j = cJSON_Parse(t);
            free(t);
        }
        dsv3_mmap_close(&mm);
    }
    dsv3_error_clear();
    free(p);
    return j;
}

// ---- the run -------------------------------------------------------------------------------------------------

int dsv3_train_run(const dsv3_train_cfg *c) {
    int rc = 0;
    dsv3_tmodel tm;
    memset(&tm, 0, sizeof tm);
    char *cfg_text = NULL, *state_txt = NULL;
    cJSON *st = NULL;
    data_src d;
    memset(&d, 0, sizeof d);
    dsv3_adamw opt;
    memset(&opt, 0, sizeof opt);
    dsv3_train *tr = NULL;
    dsv3_dirlock lock = {.fd = -1};
    FILE *mf = NULL;
    int32_t *rows = NULL;
    int64_t *counts = NULL, *ecounts = NULL;
    double *maxvio = NULL;
    float **biasp = NULL;
    dsv3_train_cfg cfg = *c;
    const int tty = isatty(2);

#define BAD(...) do { dsv3_errorf(__VA_ARGS__); rc = 2; goto done; } while (0)
#define BADE() do { rc = 2; goto done; } while (0)
    if (!cfg.out_dir) BAD("train: --out DIR is required");
    if (!cfg.data) BAD("train: --data (shards folder or ROWS.npy) is required");
    if (!!cfg.model_dir + !!cfg.config_path > 1) BAD("train: give --model or --config, not both");
    if (cfg.resume_dir && (cfg.model_dir || cfg.config_path))
        BAD("train: --resume DIR continues the run with DIR's own config and weights; leave out --%s", cfg.model_dir ? "model" : "config");
    if (!cfg.resume_dir && !cfg.model_dir && !cfg.config_path) BAD("train: --model DIR, --config CFG or --resume DIR is required");

    // model
    dsv3_config mc;
    if (cfg.resume_dir) {
        cfg_text = read_text(cfg.resume_dir, "config.json");
        if (!cfg_text) BADE();
        char *p = dsv3_path_join(cfg.resume_dir, "config.json");
        int r = dsv3_config_parse(&mc, cfg_text, p);
        free(p);
        if (r < 0) BADE();
    } else if (cfg.model_dir) {
        cfg_text = read_text(cfg.model_dir, "config.json");
        if (!cfg_text) BADE();
        if (dsv3_tmodel_load(&tm, cfg.model_dir) < 0) BADE();
        mc = tm.cfg;
        dsv3_config src; // tm.cfg has fp8 cleared (the masters are fp32): the file's own config says
        const int src_fp8 = dsv3_config_parse(&src, cfg_text, cfg.model_dir) == 0 && src.fp8;
        if (!cfg.save_dtype_set) // the dtype of the starting checkpoint
            cfg.save_dtype = src_fp8 ? DSV3_SAVE_FP8 : strstr(cfg_text, "\"bfloat16\"") ? DSV3_SAVE_BF16 : DSV3_SAVE_F32;
    } else {
        cfg_text = dsv3_read_file_max(cfg.config_path, DSV3_READ_MAX_JSON, "a config.json", NULL);
        if (!cfg_text) BADE();
        if (dsv3_config_parse(&mc, cfg_text, cfg.config_path) < 0) BADE();
        if (!(cfg.init_std > 0 && cfg.init_std < 10)) BAD("train: --init-std %g is not in (0, 10)", cfg.init_std);
    }

    // data
    if (data_open(&d, cfg.data, cfg.seed, cfg.shuffle, cfg.verify_data) < 0) BADE();
    if (d.shards && dsv3_data_vocab_size(d.shards) > mc.vocab_size)
        BAD("%s: the dataset's tokenizer has %d ids, the model's vocabulary only %d", cfg.data, dsv3_data_vocab_size(d.shards), mc.vocab_size);
    if (d.npy)
        for (uint64_t i = 0; i < d.n_rows * (uint64_t)(d.T + 1); i++)
            if (d.npy[i] >= mc.vocab_size) BAD("%s: id %d is outside the vocabulary [0, %d)", cfg.data, d.npy[i], mc.vocab_size);
    if (d.T > mc.max_position_embeddings) BAD("%s: rows of %d positions exceed max_position_embeddings %d", cfg.data, d.T, mc.max_position_embeddings);
    if (!cfg.tokenizer_dir && d.shards) {
        // the dataset records its tokenizer; the checkpoints carry a copy when it is a tokenizer.json file
        char *man = dsv3_path_join(cfg.data, "manifest.json");
        char *txt = dsv3_read_file_max(man, DSV3_READ_MAX_JSON, "a manifest", NULL);
        cJSON *mj = txt ? cJSON_Parse(txt) : NULL;
        const cJSON *tk = mj ? cJSON_GetObjectItemCaseSensitive(mj, "tokenizer") : NULL;
        if (cJSON_IsObject(tk)) tk = cJSON_GetObjectItemCaseSensitive(tk, "path");
        static char tokdir[4096];
        if (cJSON_IsString(tk)) {
            snprintf(tokdir, sizeof tokdir, "%s", tk->valuestring);
            char *slash = strrchr(tokdir, '/');
            if (slash) { *slash = 0; cfg.tokenizer_dir = tokdir; }
        }
        cJSON_Delete(mj); free(txt); free(man);
        dsv3_error_clear();
    }

    // batch geometry and budget
    if (cfg.resume_dir && (cfg.batch == 0 || cfg.micro_batch == 0)) { // the run's own geometry by default
        cJSON *j = peek_state(cfg.resume_dir);
        const cJSON *b = j ? cJSON_GetObjectItemCaseSensitive(j, "batch") : NULL, *m = j ? cJSON_GetObjectItemCaseSensitive(j, "micro_batch") : NULL;
        if (cfg.batch == 0 && cJSON_IsNumber(b)) cfg.batch = (int)b->valuedouble;
        if (cfg.micro_batch == 0 && cJSON_IsNumber(m) && cfg.batch == (cJSON_IsNumber(b) ? (int)b->valuedouble : -1)) cfg.micro_batch = (int)m->valuedouble;
        cJSON_Delete(j);
    }
    if (cfg.batch == 0) cfg.batch = 8;
    if (cfg.batch < 1) BAD("train: --batch must be >= 1");
    int micro = cfg.micro_batch > 0 ? cfg.micro_batch : cfg.batch;
    if (micro > cfg.batch || cfg.batch % micro) BAD("train: --batch %d is not a multiple of --micro-batch %d", cfg.batch, micro);
    const int n_micro = cfg.batch / micro;
    progress pr = {0};
    const long long step_tokens = (long long)cfg.batch * d.T;
    pr.total_tokens = cfg.tokens > 0 ? cfg.tokens : cfg.steps * step_tokens;
    if (!cfg.resume_dir && pr.total_tokens <= 0) BAD("train: give --steps N or --tokens N");
    if (cfg.warmup < 0) BAD("train: --warmup must be >= 0");
    if (!(cfg.lr > 0 && cfg.lr < 10)) BAD("train: --lr %g is not in (0, 10)", cfg.lr);

    // resume: the state overrides the budget and positions; config and data must match
    if (cfg.resume_dir) {
        // n_mtp comes from the state header; read it first
        int n_mtp = mc.num_nextn_predict_layers;
        {
            cJSON *j = peek_state(cfg.resume_dir);
            const cJSON *nm = j ? cJSON_GetObjectItemCaseSensitive(j, "n_mtp") : NULL;
            if (cJSON_IsNumber(nm)) n_mtp = (int)nm->valuedouble;
            cJSON_Delete(j);
        }
        if (n_mtp < 0 || n_mtp > mc.num_nextn_predict_layers) BAD("%s: trainer state names %d MTP layers", cfg.resume_dir, n_mtp);
        if (dsv3_tmodel_init_random(&tm, &mc, n_mtp, 1.0f, 0) < 0) BADE();
        if (dsv3_ckpt_read_state(cfg.resume_dir, &state_txt, &tm, &opt) < 0) BADE();
        st = cJSON_Parse(state_txt);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)model_signature(&tm.tab));
        const cJSON *sig = cJSON_GetObjectItemCaseSensitive(st, "model_signature");
        if (!cJSON_IsString(sig) || strcmp(sig->valuestring, hex)) BAD("%s: the trainer state belongs to another model", cfg.resume_dir);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d.digest);
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(st, "data_digest");
        if (!cJSON_IsString(dg) || strcmp(dg->valuestring, hex))
            BAD("%s: the run was trained on other data (digest %s, %s has %s)", cfg.resume_dir, cJSON_IsString(dg) ? dg->valuestring : "?",
                cfg.data, hex);
        const struct { const char *k; double want; const char *what; } m[] = {
            {"seq_len", d.T, "sequence length"}, {"batch", cfg.batch, "--batch"}, {"micro_batch", micro, "--micro-batch"}};
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, m[i].k);
            if (!cJSON_IsNumber(v) || v->valuedouble != m[i].want)
                BAD("%s: %s was %g in the run, %g now", cfg.resume_dir, m[i].what, cJSON_IsNumber(v) ? v->valuedouble : -1, m[i].want);
        }
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(st, "recipe");
        if (!cJSON_IsObject(r)) BAD("%s: trainer state has no recipe", cfg.resume_dir);
#define RV(k) (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, k)) ? cJSON_GetObjectItemCaseSensitive(r, k)->valuedouble : NAN)
        cfg.lr = RV("lr"); cfg.warmup = (long)RV("warmup"); cfg.schedule = (dsv3_schedule)(int)RV("schedule");
        cfg.batch_ramp = (int)RV("batch_ramp"); cfg.shuffle = (int)RV("shuffle"); d.shuffle = cfg.shuffle;
        cfg.clip = RV("clip"); cfg.mtp_weight = RV("mtp_weight"); cfg.seq_aux = RV("seq_aux"); cfg.bias_speed = RV("bias_speed");
        cfg.adam.beta1 = RV("beta1"); cfg.adam.beta2 = RV("beta2"); cfg.adam.eps = RV("eps"); cfg.adam.weight_decay = RV("weight_decay");
        cfg.attn = (dsv3_attn_mode)(int)RV("attn");
        cfg.precision = isnan(RV("precision")) ? 0 : (int)RV("precision"); // states written before --precision: fp32
        const int keep_inputs = cfg.fp8.keep_fp32_inputs; // a memory choice of this invocation, not of the run
        dsv3_fp8_recipe_default(&cfg.fp8);
        cfg.fp8.keep_fp32_inputs = keep_inputs;
        if (cfg.precision == 2) {
            const double ue = RV("fp8_scale_ue8m0"), nc = RV("fp8_accum_nc"), db = RV("fp8_dgrad_block"), wh = RV("fp8_wgrad_x_high");
            char acc[32];
            snprintf(acc, sizeof acc, nc == 0 ? "hopper14" : "promote:%d", (int)nc);
            if (!(ue == 0 || ue == 1) || !(db == 0 || db == 1) || !(wh == 0 || wh == 1) || !(nc >= -1 && nc <= 4096) ||
                (nc >= 0 && dsv3_fp8_accum_parse(acc, &cfg.fp8.acc) < 0))
                BAD("%s/trainer_state.bin: the FP8 recipe in its header is malformed", cfg.resume_dir);
            cfg.fp8.scale_fmt = ue ? DSV3_SCALE_UE8M0 : DSV3_SCALE_AMAX;
            cfg.fp8.dgrad_block = (int)db;
            cfg.fp8.wgrad_x_high = (int)wh;
            const double fb = RV("fp8_blocks"); // states written before --fp8-blocks: all
            if (!isnan(fb) && !(fb >= 1 && fb <= DSV3_FP8_B_ALL && fb == (int)fb))
                BAD("%s/trainer_state.bin: the FP8 recipe in its header is malformed", cfg.resume_dir);
            cfg.fp8.blocks = isnan(fb) ? DSV3_FP8_B_ALL : (unsigned)fb;
        }
        if (!cfg.save_dtype_set) { cfg.save_dtype = (dsv3_save_dtype)(int)RV("save_dtype"); cfg.save_dtype_set = 1; }
#undef RV
        if (!(cfg.lr > 0) || !(cfg.clip > 0) || !(cfg.warmup >= 0) || !(cfg.schedule >= 0 && cfg.schedule <= 2) || !(cfg.adam.beta1 >= 0 && cfg.adam.beta1 < 1) ||
            !(cfg.adam.beta2 >= 0 && cfg.adam.beta2 < 1) || !(cfg.adam.eps >= 0) || !(cfg.adam.weight_decay >= 0) || isnan(cfg.mtp_weight) ||
            !(cfg.seq_aux >= 0) || isnan(cfg.bias_speed) || !(cfg.attn == DSV3_ATTN_NAIVE || cfg.attn == DSV3_ATTN_ABSORB) ||
            !(cfg.save_dtype >= DSV3_SAVE_F32 && cfg.save_dtype <= DSV3_SAVE_FP8) || !(cfg.precision >= 0 && cfg.precision <= 2))
            BAD("%s/trainer_state.bin: the recipe in its header is malformed", cfg.resume_dir);
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(st, "seed");
        if (cJSON_IsString(sd)) { cfg.seed = strtoull(sd->valuestring, NULL, 16); d.seed = cfg.seed; }
        double nums[6];
        const char *keys[6] = {"step", "tokens_done", "total_tokens", "data_epoch", "data_pos", "bad_steps_in_a_row"};
        for (int i = 0; i < 6; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, keys[i]);
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9007199254740992.0)
                BAD("%s/trainer_state.bin: header field \"%s\" is missing or not a non-negative integer", cfg.resume_dir, keys[i]);
            nums[i] = v->valuedouble;
        }
        pr.step = (long)nums[0];
        pr.tokens_done = (long long)nums[1];
        const long long tt = (long long)nums[2];
        if (tt <= 0) BAD("%s/trainer_state.bin: the run's token budget is 0", cfg.resume_dir);
        if (pr.total_tokens > 0 && pr.total_tokens != tt)
            BAD("%s: the run's budget is %lld tokens, --steps/--tokens asks %lld (leave them out to continue)", cfg.resume_dir, tt, pr.total_tokens);
        pr.total_tokens = tt;
        d.epoch = (uint64_t)nums[3];
        d.pos = (uint64_t)nums[4];
        if (!d.npy && d.pos > d.n_rows) BAD("%s/trainer_state.bin: data position %llu past the %llu rows", cfg.resume_dir,
                                             (unsigned long long)d.pos, (unsigned long long)d.n_rows);
        pr.bad_run = (int)fmin(nums[5], 1e9);
    } else if (cfg.config_path) {
        if (dsv3_tmodel_init_random(&tm, &mc, mc.num_nextn_predict_layers, cfg.init_std, cfg.seed) < 0) BADE();
        dsv3_adamw_init(&opt, tm.tab.total, cfg.adam.bf16_moments);
    } else {
        dsv3_adamw_init(&opt, tm.tab.total, cfg.adam.bf16_moments);
    }
    if (!!opt.mb != !!cfg.adam.bf16_moments && cfg.resume_dir) cfg.adam.bf16_moments = !!opt.mb;

    tr = dsv3_train_new(&tm, micro, d.T, cfg.precision ? dsv3_backend_cpu_bf16() : dsv3_backend_cpu(), MAX_TRAIN_BYTES);
    if (!tr) BADE();
    if (cfg.precision == 2 && dsv3_train_set_fp8(tr, &cfg.fp8) < 0) BADE();

    // output folder: one writer at a time
    {
        struct stat sb;
        if (stat(cfg.out_dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) BAD("%s: --out names an existing file, not a folder", cfg.out_dir);
        char *path = dsv3_strdup(cfg.out_dir); // mkdir -p
        for (char *q = path + 1; *q; q++)
            if (*q == '/') { *q = 0; mkdir(path, 0755); *q = '/'; }
        free(path);
        if (mkdir(cfg.out_dir, 0755) != 0 && errno != EEXIST) BAD("%s: cannot create: %s", cfg.out_dir, strerror(errno));
        if (dsv3_dir_lock(&lock, cfg.out_dir) < 0) BADE();
        dsv3_dir_clean_stale_temps(cfg.out_dir, NULL, NULL);
        char *mp = dsv3_path_join(cfg.out_dir, "metrics.jsonl");
        mf = fopen(mp, cfg.resume_dir ? "a" : "w");
        free(mp);
        if (!mf) { dsv3_errorf("%s/metrics.jsonl: %s", cfg.out_dir, strerror(errno)); rc = 1; goto done; }
    }

    const dsv3_config *mcfg = &tm.cfg;
    const int E = mcfg->n_routed_experts, nl = mcfg->num_hidden_layers + tm.tab.n_mtp;
    const int L1 = d.T + 1;
    rows = dsv3_malloc(sizeof(int32_t) * (size_t)micro * L1);
    counts = dsv3_calloc((size_t)nl * (E ? E : 1), sizeof(int64_t));
    ecounts = dsv3_calloc((size_t)nl * (E ? E : 1), sizeof(int64_t));
    maxvio = dsv3_calloc((size_t)nl + 1, sizeof(double));
    const int balancing = mcfg->use_correction_bias && mcfg->scoring == DSV3_SCORE_SIGMOID && E > 0;
    biasp = dsv3_calloc((size_t)nl + 1, sizeof(float *)); // e_score_correction_bias per layer (the buffers)
    for (int i = 0; i < tm.tab.n; i++)
        if (tm.tab.p[i].kind == DSV3_P_CORR_BIAS) biasp[tm.tab.p[i].layer] = dsv3_tmodel_param(&tm, i);
    const double tau_warm = pr.total_tokens > 0 ? fmin(1.0, (double)cfg.warmup * step_tokens / pr.total_tokens) : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_interrupted = 0;

    if (!cfg.quiet) {
        size_t ab, wb, mb;
        dsv3_train_bytes(tr, &ab, &wb, &mb);
        fprintf(stderr, "dsv3 train: %zu parameters (%d MTP layers), batch %d x %d tokens (%d micro-batches of %d), "
                "%lld tokens, lr %g, warmup %ld; activations %.1f MiB + workspace %.1f MiB\n",
                tm.tab.trainable, tm.tab.n_mtp, cfg.batch, d.T, n_micro, micro, pr.total_tokens, cfg.lr, cfg.warmup,
                ab / 1048576.0, wb / 1048576.0);
        char acc[32];
        if (cfg.precision == 2)
            fprintf(stderr, "dsv3 train: precision fp8 (E4M3 Linears, %s scales, accumulator %s, dY %s, Wgrad X %s, Linear inputs "
                    "kept as %s, FP8 blocks 0x%x of 0xf: attn 1, mlp 2, experts 4, mtp 8), %s moments\n",
                    cfg.fp8.scale_fmt == DSV3_SCALE_UE8M0 ? "ue8m0" : "amax", dsv3_fp8_accum_name(&cfg.fp8.acc, acc, sizeof acc),
                    cfg.fp8.dgrad_block ? "128x128 blocks" : "1x128 tiles", cfg.fp8.wgrad_x_high ? "from high precision" : "re-tiled",
                    cfg.fp8.keep_fp32_inputs || cfg.fp8.wgrad_x_high || cfg.fp8.blocks != DSV3_FP8_B_ALL ? "fp8 codes + fp32"
                                                                                                        : "fp8 codes",
                    cfg.fp8.blocks, opt.mb ? "bf16" : "f32");
        else
            fprintf(stderr, "dsv3 train: precision %s, %s moments\n", cfg.precision ? "bf16" : "fp32", opt.mb ? "bf16" : "f32");
    }
    eval_res e0;
    double first_maxvio = NAN, last_maxvio = NAN;
    const float lam0 = tm.tab.n_mtp ? (float)(cfg.mtp_weight >= 0 ? cfg.mtp_weight : dsv3_mtp_weight_at(0)) : 0.0f;
    if (evaluate(tr, &tm, &d, micro, cfg.eval_rows, lam0, (float)cfg.seq_aux, cfg.attn, rows, ecounts, &e0) < 0) BADE();
    if (e0.rows && !cfg.resume_dir) {
        fprintf(mf, "{\"eval\": %ld, \"tokens\": %lld, \"val_loss\": %.6f, \"val_main\": %.6f, \"maxvio_global\": %.4f}\n", pr.step,
                pr.tokens_done, e0.loss, e0.main, e0.maxvio_global);
        if (!cfg.quiet) fprintf(stderr, "dsv3 train: step %ld val loss %.4f (main %.4f), MaxVio_global %.3f\n", pr.step, e0.loss, e0.main, e0.maxvio_global);
    }
    double t_start = now_s(), lr = 0, last_log = 0;
    long long tok_start = pr.tokens_done;
    eval_res elast = e0;
    int stopped = 0;

    while (pr.tokens_done < pr.total_tokens) {
        const long k = pr.step + 1;
        const double tau = (double)pr.tokens_done / pr.total_tokens;
        int nm = n_micro;
        if (cfg.batch_ramp) { // B/5 -> B staircase (8 stairs) over the first 3.17% of tokens, by micro-batch count
            const double f = fmin(1.0, 0.2 + 0.8 * floor(tau / 0.0317 * 8) / 8);
            nm = (int)fmax(1, round(n_micro * f));
        }
        const float lambda = tm.tab.n_mtp ? (float)(cfg.mtp_weight >= 0 ? cfg.mtp_weight : dsv3_mtp_weight_at(tau)) : 0.0f;
        const double gamma = cfg.bias_speed >= 0 ? cfg.bias_speed : dsv3_bias_speed_at(tau);
        dsv3_train_opts o = {.mtp_weight = lambda, .seq_aux = (float)cfg.seq_aux, .attn = cfg.attn,
                             .use_ignore = d.pad >= 0, .ignore_id = (int32_t)d.pad};
        dsv3_tmodel_zero_grads(&tm);
        memset(counts, 0, sizeof(int64_t) * (size_t)nl * (E ? E : 1));
        dsv3_loss_parts acc = {0};
        for (int mbi = 0; mbi < nm; mbi++) {
            for (int b = 0; b < micro; b++) data_next(&d, rows + (size_t)b * L1, mcfg->vocab_size);
            dsv3_loss_parts lp;
            o.same_weights = mbi > 0; // FP8: one weight quantization per optimizer step, not per micro-batch
            if (dsv3_train_step(tr, rows, &o, &lp) < 0) { rc = 2; goto done; }
            acc.loss += lp.loss / nm; acc.main += lp.main / nm; acc.mtp += lp.mtp / nm; acc.balance += lp.balance / nm;
            if (E) dsv3_train_route_counts(tr, counts);
        }
        if (nm > 1) { // the step's loss is the mean of its micro-batch losses
            const float s = 1.0f / nm;
            for (size_t i = 0; i < tm.tab.total; i++) tm.grads[i] *= s;
        }
        const double gnorm = dsv3_grad_norm(&tm.tab, tm.grads);
        pr.step = k;
        pr.tokens_done += (long long)nm * micro * d.T;
        if (!isfinite(acc.loss) || !isfinite(gnorm)) {
            pr.bad_run++;
            fprintf(stderr, "dsv3 train: step %ld: non-finite %s (%g); step skipped (%d in a row, limit %d)\n", k,
                    isfinite(acc.loss) ? "gradient norm" : "loss", isfinite(acc.loss) ? gnorm : acc.loss, pr.bad_run, cfg.max_bad_steps);
            fprintf(mf, "{\"step\": %ld, \"skipped\": true, \"loss\": %s}\n", k, isfinite(acc.loss) ? "0" : "null");
            if (pr.bad_run >= cfg.max_bad_steps) {
                dsv3_errorf("train: %d non-finite steps in a row: stopped (the last checkpoint is kept)", pr.bad_run);
                rc = 1;
                goto done;
            }
            continue;
        }
        pr.bad_run = 0;
        dsv3_clip_grads(&tm.tab, tm.grads, cfg.clip);
        lr = dsv3_lr_at(cfg.schedule, cfg.lr, k, cfg.warmup, tau, tau_warm);
        dsv3_adamw_step(&opt, &cfg.adam, &tm.tab, tm.params, tm.grads, lr);
        // auxiliary-loss-free balancing: per MoE layer run, counts of all micro-batches of the step
        double mv_max = 0;
        for (int l = 0; l < nl; l++) {
            maxvio[l] = NAN;
            if (!E || !dsv3_layer_is_moe(mcfg, l)) continue;
            const int64_t *cl = counts + (size_t)l * E;
            int64_t s = 0;
            for (int e = 0; e < E; e++) s += cl[e];
            if (!s) continue; // an MTP block that did not run (λ = 0)
            float *bias = balancing ? biasp[l] : NULL;
            maxvio[l] = bias ? dsv3_bias_update(bias, cl, E, gamma) : dsv3_maxvio(cl, E);
            mv_max = fmax(mv_max, maxvio[l]);
        }
        if (isnan(first_maxvio)) first_maxvio = mv_max;
        last_maxvio = mv_max;
        const double el = now_s() - t_start, tps = el > 0 ? (pr.tokens_done - tok_start) / el : 0;
        fprintf(mf, "{\"step\": %ld, \"tokens\": %lld, \"lr\": %.6g, \"loss\": %.6f, \"main\": %.6f, \"mtp\": %.6f, \"balance\": %.6g, "
                "\"grad_norm\": %.6g, \"lambda\": %.3g, \"gamma\": %.3g, \"tok_s\": %.1f, \"maxvio\": [",
                k, pr.tokens_done, lr, acc.loss, acc.main, acc.mtp, acc.balance, gnorm, lambda, gamma, tps);
        int first = 1;
        for (int l = 0; l < nl; l++) {
            if (isnan(maxvio[l])) continue;
            fprintf(mf, "%s%.4f", first ? "" : ", ", maxvio[l]);
            first = 0;
        }
        fprintf(mf, "]}\n");
        fflush(mf);
        const int last = pr.tokens_done >= pr.total_tokens;
        if (!cfg.quiet && (tty || k == 1 || last || (cfg.log_every > 0 && k % cfg.log_every == 0) || el - last_log > 30)) {
            char eta[32];
            fmt_eta(eta, sizeof eta, tps > 0 ? (pr.total_tokens - pr.tokens_done) / tps : -1);
            fprintf(stderr, "%sstep %ld | loss %.4f (main %.4f, mtp %.4f, bal %.2g) | lr %.3g | %.0f tok/s | gnorm %.3f | MaxVio %.3f | eta %s%s",
                    tty ? "\r" : "", k, acc.loss, acc.main, acc.mtp, acc.balance, lr, tps, gnorm, mv_max, eta, tty ? "\033[K" : "\n");
            last_log = el;
        }
        if (cfg.eval_every > 0 && k % cfg.eval_every == 0 && !last) {
            if (evaluate(tr, &tm, &d, micro, cfg.eval_rows, lambda, (float)cfg.seq_aux, cfg.attn, rows, ecounts, &elast) < 0) BADE();
            if (elast.rows) {
                fprintf(mf, "{\"eval\": %ld, \"tokens\": %lld, \"val_loss\": %.6f, \"val_main\": %.6f, \"maxvio_global\": %.4f}\n", k,
                        pr.tokens_done, elast.loss, elast.main, elast.maxvio_global);
                if (!cfg.quiet) fprintf(stderr, "%sdsv3 train: step %ld val loss %.4f (main %.4f), MaxVio_global %.3f\n", tty ? "\n" : "", k,
                                        elast.loss, elast.main, elast.maxvio_global);
            }
        }
        if (cfg.save_every > 0 && k % cfg.save_every == 0 && !last) {
            if (save_periodic(cfg.out_dir, &cfg, &pr, &d, &tm, &opt, cfg_text, micro, lr) < 0) { rc = 1; goto done; }
        }
        if (g_interrupted) { stopped = 130; break; }
        if (cfg.steps > 0 && cfg.tokens > 0 && k >= cfg.steps) break; // --steps caps a --tokens budget
        if (c->stop_at > 0 && k >= c->stop_at) break;
    }
    if (tty && !cfg.quiet) fputc('\n', stderr);

    // the end: final evaluation, the checkpoint in OUT, a summary
    if (evaluate(tr, &tm, &d, micro, cfg.eval_rows, lam0 ? (float)(cfg.mtp_weight >= 0 ? cfg.mtp_weight : dsv3_mtp_weight_at(1.0)) : 0.0f,
                 (float)cfg.seq_aux, cfg.attn, rows, ecounts, &elast) < 0) BADE();
    if (elast.rows)
        fprintf(mf, "{\"eval\": %ld, \"tokens\": %lld, \"val_loss\": %.6f, \"val_main\": %.6f, \"maxvio_global\": %.4f}\n", pr.step,
                pr.tokens_done, elast.loss, elast.main, elast.maxvio_global);
    if (fflush(mf) != 0 || ferror(mf)) { dsv3_errorf("%s/metrics.jsonl: write failed", cfg.out_dir); rc = 1; goto done; }
    if (save_all(cfg.out_dir, &cfg, &pr, &d, &tm, &opt, cfg_text, micro, lr) < 0) { rc = 1; goto done; }
    if (dsv3_plot_run(cfg.out_dir, NULL) != 0) fprintf(stderr, "dsv3 train: warning: plots not written: %s\n", dsv3_error());
    else if (!cfg.quiet) fprintf(stderr, "dsv3 train: plots in %s/{loss,lr,expert_load}.png\n", cfg.out_dir);
    if (!cfg.quiet) {
        fprintf(stderr, "dsv3 train: %s after %ld steps (%lld tokens) in %.1f s; checkpoint in %s (%s)\n",
                stopped ? "interrupted, saved" : "done", pr.step, pr.tokens_done, now_s() - t_start, cfg.out_dir,
                dsv3_save_dtype_name(cfg.save_dtype));
        if (elast.rows)
            fprintf(stderr, "dsv3 train: validation loss %.4f (main %.4f; unigram entropy of the validation set %.4f nats; at start %.4f)\n",
                    elast.loss, elast.main, unigram_entropy(&d, mcfg->vocab_size), e0.main);
        if (!isnan(first_maxvio) && elast.rows)
            fprintf(stderr, "dsv3 train: MaxVio (worst layer) first step %.3f, last step %.3f; validation MaxVio_global %.3f -> %.3f\n",
                    first_maxvio, last_maxvio, e0.maxvio_global, elast.maxvio_global);
        fprintf(stderr, "dsv3 train: metrics in %s/metrics.jsonl\n", cfg.out_dir);
    }
    rc = stopped;
done:
    if (rc == 2 || rc == 1) fprintf(stderr, "dsv3 train: %s%s\n", rc == 1 ? "error: " : "", dsv3_error());
    if (mf) fclose(mf);
    dsv3_dir_unlock(&lock);
    dsv3_train_free(tr);
    dsv3_adamw_free(&opt);
    dsv3_tmodel_free(&tm);
    data_close(&d);
    cJSON_Delete(st);
    free(state_txt); free(cfg_text); free(rows); free(counts); free(ecounts); free(maxvio); free(biasp);
    return rc;
#undef BAD
#undef BADE
}
