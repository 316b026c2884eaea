// `dsv3 train` against the same run in PyTorch (tools/ref/make_train_fixtures.py, docs/ORACLE.md §10): for each
// case in tests/fixtures/train, dsv3_train_run from the case's checkpoint on its rows.npy with the options of its
// args.json, then the per-step losses (loss, main, mtp, balance), lr, λ, γ, gradient norm and MaxVio of
// metrics.jsonl, the final weights and the e_score_correction_bias of every MoE layer (MTP included) against the
// float64 torch run (torch.optim.AdamW, clip_grad_norm_, the V3 schedule, the fp32 bias update). A missing or
// empty fixture set fails.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/safetensors.h"
#include "train/trainer.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

// Tolerances (docs/ORACLE.md §10.3). The same run in torch float32 differs from the float64 reference by at most
// (both cases, 8 steps): losses 8.3e-7 absolute, gradient norm 1.6e-6 relative, final weights 8.6e-6 relative
// per tensor (in norm), the weight *change* w − w0 4.5e-5 relative per tensor (Adam divides by √v̂, so a
// gradient element that is small against its tensor's rounding noise moves by a different fraction of lr).
// metrics.jsonl prints losses with 6 decimals (±5e-7) and lr / grad norm with 6 significant digits.
// The bounds are ~5-10x the torch float32 figures; the C errors measured are printed by the test.
#define LOSS_ATOL 5e-6       // loss, main, mtp (values 0.1 .. 7)
#define BAL_RTOL 1e-4        // balance (1e-4 .. 1e-2, 6 significant digits)
#define GNORM_RTOL 2e-5
#define LR_RTOL 2e-6         // lr is computed, not trained: print rounding only
#define MAXVIO_ATOL 6e-5     // identical routing counts; printed with 4 decimals
#define WEIGHT_RTOL 1e-4     // ||w - w_ref|| / ||w_ref|| per tensor
#define UPDATE_RTOL 5e-4     // ||w - w_ref|| / ||w_ref - w0|| per tensor (the trained change)
// e_score_correction_bias: bit-identical (fp32 steps of ±γ from the same start, given the same routing counts)

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static cJSON *read_json(const char *dir, const char *name) {
    char *path = dsv3_path_join(dir, name);
    char *txt = dsv3_read_file(path, NULL);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    CHECK(j != NULL, "%s: cannot read or parse", path);
    free(path);
    return j;
}

// args.json: {"args": ["--batch", "4", ...]}, the options of `dsv3 train` besides --model/--data/--out.
static int apply_args(dsv3_train_cfg *c, const cJSON *args, const char *name) {
    const int n = cJSON_GetArraySize(args);
    for (int i = 0; i + 1 < n; i += 2) {
        const cJSON *a = cJSON_GetArrayItem(args, i), *v = cJSON_GetArrayItem(args, i + 1);
        if (!cJSON_IsString(a) || !cJSON_IsString(v)) { CHECK(0, "%s: args.json: not strings", name); return -1; }
        const char *k = a->valuestring;
        const double x = strtod(v->valuestring, NULL);
        if (!strcmp(k, "--batch")) c->batch = (int)x;
        else if (!strcmp(k, "--micro-batch")) c->micro_batch = (int)x;
        else if (!strcmp(k, "--tokens")) c->tokens = (long long)x;
        else if (!strcmp(k, "--steps")) c->steps = (long)x;
        else if (!strcmp(k, "--lr")) c->lr = x;
        else if (!strcmp(k, "--warmup")) c->warmup = (long)x;
        else if (!strcmp(k, "--seq-aux")) c->seq_aux = x;
        else if (!strcmp(k, "--clip")) c->clip = x;
        else if (!strcmp(k, "--weight-decay")) c->adam.weight_decay = x;
        else if (!strcmp(k, "--mtp-weight")) c->mtp_weight = x;
        else if (!strcmp(k, "--bias-speed")) c->bias_speed = x;
        else { CHECK(0, "%s: args.json: option %s is not known to this test", name, k); return -1; }
    }
    CHECK(n % 2 == 0, "%s: args.json: odd argument count", name);
    return n % 2 ? -1 : 0;
}

static void rm_run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = dsv3_path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

static const float *f32_of(const dsv3_st *st, const char *name, int64_t numel) {
    const dsv3_st_tensor *t = dsv3_st_find(st, name);
    if (!t || t->dtype != DSV3_F32 || dsv3_st_numel(t) != numel) return NULL;
    return (const float *)t->data;
}

static void check_metrics(const char *name, const char *out, const cJSON *ex) {
    char *path = dsv3_path_join(out, "metrics.jsonl");
    char *txt = dsv3_read_file(path, NULL);
    free(path);
    CHECK(txt != NULL, "%s: %s", name, dsv3_error());
    if (!txt) return;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(ex, "steps");
    const int ns = cJSON_GetArraySize(steps);
    int seen = 0;
    double worst_loss = 0, worst_gn = 0, worst_bal = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *m = cJSON_Parse(line);
        CHECK(m != NULL, "%s: metrics.jsonl: a line does not parse", name);
        if (!m) continue;
        if (!cJSON_GetObjectItemCaseSensitive(m, "step")) { cJSON_Delete(m); continue; } // eval lines (none: .npy data)
        const int k = (int)jnum(m, "step");
        CHECK(k == seen + 1 && k <= ns, "%s: metrics step %d after %d (torch ran %d)", name, k, seen, ns);
        if (k != seen + 1 || k > ns) { cJSON_Delete(m); break; }
        seen = k;
        const cJSON *s = cJSON_GetArrayItem(steps, k - 1);
        CHECK(!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "skipped")), "%s: step %d skipped", name, k);
        static const char *lk[] = {"loss", "main", "mtp"};
        for (int i = 0; i < 3; i++) {
            const double a = jnum(m, lk[i]), b = jnum(s, lk[i]);
            worst_loss = fmax(worst_loss, fabs(a - b));
            CHECK(fabs(a - b) <= LOSS_ATOL, "%s: step %d: %s %.7f, torch %.7f (|d| %.2g)", name, k, lk[i], a, b, fabs(a - b));
        }
        worst_bal = fmax(worst_bal, fabs(jnum(m, "balance") - jnum(s, "balance")) / fabs(jnum(s, "balance")));
        CHECK(t_close(jnum(m, "balance"), jnum(s, "balance"), 1e-9, BAL_RTOL), "%s: step %d: balance %.7g, torch %.7g", name, k,
              jnum(m, "balance"), jnum(s, "balance"));
        const double gn = jnum(m, "grad_norm"), gt = jnum(s, "grad_norm");
        worst_gn = fmax(worst_gn, fabs(gn - gt) / gt);
        CHECK(t_close(gn, gt, 0, GNORM_RTOL), "%s: step %d: grad norm %.7g, torch %.7g", name, k, gn, gt);
        CHECK(t_close(jnum(m, "lr"), jnum(s, "lr"), 0, LR_RTOL), "%s: step %d: lr %.7g, torch %.7g", name, k, jnum(m, "lr"),
              jnum(s, "lr"));
        CHECK(t_close(jnum(m, "lambda"), jnum(s, "mtp_weight"), 0, 1e-6) || jnum(s, "mtp_weight") == 0,
              "%s: step %d: lambda %g, torch %g", name, k, jnum(m, "lambda"), jnum(s, "mtp_weight"));
        CHECK(t_close(jnum(m, "gamma"), jnum(s, "bias_speed"), 0, 1e-6), "%s: step %d: gamma %g, torch %g", name, k,
              jnum(m, "gamma"), jnum(s, "bias_speed"));
        CHECK((long long)jnum(m, "tokens") == (long long)jnum(s, "tokens"), "%s: step %d: tokens", name, k);
        const cJSON *mv = cJSON_GetObjectItemCaseSensitive(m, "maxvio"), *mt = cJSON_GetObjectItemCaseSensitive(s, "maxvio");
        CHECK(cJSON_GetArraySize(mv) == cJSON_GetArraySize(mt), "%s: step %d: %d MaxVio layers, torch %d", name, k,
              cJSON_GetArraySize(mv), cJSON_GetArraySize(mt));
        for (int l = 0; l < cJSON_GetArraySize(mv) && l < cJSON_GetArraySize(mt); l++) {
            const double a = cJSON_GetArrayItem(mv, l)->valuedouble, b = cJSON_GetArrayItem(mt, l)->valuedouble;
            CHECK(fabs(a - b) <= MAXVIO_ATOL, "%s: step %d: MaxVio of MoE layer %d %.4f, torch %.4f (routing counts differ)", name,
                  k, l, a, b);
        }
        cJSON_Delete(m);
    }
    CHECK(seen == ns && ns > 0, "%s: %d steps in metrics.jsonl, torch ran %d", name, seen, ns);
    printf("%-18s %d steps: losses max |d| %.2e, balance max rel %.2e, grad norm max rel %.2e\n", name, seen, worst_loss, worst_bal,
           worst_gn);
    free(txt);
}

static void check_weights(const char *name, const char *dir, const char *out, const cJSON *ex) {
    dsv3_st got, want, init;
    char *path = dsv3_path_join(out, "model.safetensors");
    int ok_g = dsv3_st_open_file(&got, path) == 0;
    CHECK(ok_g, "%s: %s", name, dsv3_error());
    free(path);
    path = dsv3_path_join(dir, "expected.safetensors");
    int ok_w = dsv3_st_open_file(&want, path) == 0;
    CHECK(ok_w, "%s: %s", name, dsv3_error());
    free(path);
    path = dsv3_path_join(dir, "model.safetensors");
    int ok_i = dsv3_st_open_file(&init, path) == 0;
    CHECK(ok_i, "%s: %s", name, dsv3_error());
    free(path);
    if (!ok_g || !ok_w || !ok_i) goto out;
    double worst_w = 0, worst_u = 0;
    const char *worst_wn = "", *worst_un = "";
    int n_w = 0, n_b = 0;
    for (int i = 0; i < want.ntensors; i++) {
        const dsv3_st_tensor *t = &want.tensors[i];
        const int64_t n = dsv3_st_numel(t);
        const float *r = (const float *)t->data, *g = f32_of(&got, t->name, n), *w0 = f32_of(&init, t->name, n);
        CHECK(g != NULL, "%s: %s missing from the checkpoint (or not F32 of %lld values)", name, t->name, (long long)n);
        if (!g) continue;
        const size_t len = strlen(t->name);
        if (len > 23 && !strcmp(t->name + len - 23, "e_score_correction_bias")) {
            int same = !memcmp(g, r, sizeof(float) * (size_t)n);
            int at = -1;
            for (int64_t k = 0; k < n && at < 0; k++) if (g[k] != r[k]) at = (int)k;
            CHECK(same, "%s: %s differs from torch at expert %d: %.9g vs %.9g", name, t->name, at, at >= 0 ? g[at] : 0.f,
                  at >= 0 ? r[at] : 0.f);
            n_b++;
            continue;
        }
        CHECK(w0 != NULL, "%s: %s missing from the starting checkpoint", name, t->name);
        if (!w0) continue;
        double dd = 0, nr = 0, nu = 0, dmax = 0;
        int64_t kmax = 0;
        for (int64_t k = 0; k < n; k++) {
            if (fabs((double)g[k] - r[k]) > dmax) { dmax = fabs((double)g[k] - r[k]); kmax = k; }
            dd += ((double)g[k] - r[k]) * ((double)g[k] - r[k]);
            nr += (double)r[k] * r[k];
            nu += ((double)r[k] - w0[k]) * ((double)r[k] - w0[k]);
        }
        const double rw = sqrt(dd) / (sqrt(nr) + 1e-30), ru = sqrt(dd) / (sqrt(nu) + 1e-30);
        if (rw > worst_w) { worst_w = rw; worst_wn = t->name; }
        if (ru > worst_u) { worst_u = ru; worst_un = t->name; }
        CHECK(rw <= WEIGHT_RTOL, "%s: %s: |w - torch| / |torch| = %.3g", name, t->name, rw);
        CHECK(ru <= UPDATE_RTOL, "%s: %s: |w - torch| / |torch - w0| = %.3g (|torch - w0| / |torch| = %.3g; worst element %lld: "
              "%.8g vs %.8g, start %.8g)", name, t->name, ru, sqrt(nu / nr), (long long)kmax, g[kmax], r[kmax], w0[kmax]);
        n_w++;
    }
    CHECK(n_w == (int)jnum(ex, "weight_tensors") && n_b == (int)jnum(ex, "bias_tensors") && n_w > 0,
          "%s: %d weights and %d biases checked, expected %g and %g", name, n_w, n_b, jnum(ex, "weight_tensors"),
          jnum(ex, "bias_tensors"));
    // everything else in the checkpoint is an MTP layer's copy of the embedding / head: equal to the main tensor
    for (int i = 0; i < got.ntensors; i++) {
        const dsv3_st_tensor *t = &got.tensors[i];
        if (dsv3_st_find(&want, t->name)) continue;
        const char *main = strstr(t->name, ".embed_tokens.weight") ? "model.embed_tokens.weight"
                           : strstr(t->name, ".shared_head.head.weight") ? "lm_head.weight" : NULL;
        const dsv3_st_tensor *m = main ? dsv3_st_find(&got, main) : NULL;
        CHECK(m && m->nbytes == t->nbytes && !memcmp(m->data, t->data, t->nbytes), "%s: checkpoint tensor %s is not in the reference",
              name, t->name);
    }
    printf("%-18s %d weights: max |w - torch|/|torch| %.2e (%s), max |w - torch|/|torch - w0| %.2e (%s); %d biases exact\n", name,
           n_w, worst_w, worst_wn, worst_u, worst_un, n_b);
out:
    if (ok_g) dsv3_st_close(&got);
    if (ok_w) dsv3_st_close(&want);
    if (ok_i) dsv3_st_close(&init);
}

static void run_case(const char *dir, const char *name, const char *tmp) {
    cJSON *args = read_json(dir, "args.json"), *ex = read_json(dir, "expected.json");
    char *data = dsv3_path_join(dir, "rows.npy"), *out = dsv3_path_join(tmp, name);
    dsv3_train_cfg c;
    dsv3_train_cfg_defaults(&c);
    c.model_dir = dir;
    c.data = data;
    c.out_dir = out;
    c.quiet = 1;
    if (args && ex && apply_args(&c, cJSON_GetObjectItemCaseSensitive(args, "args"), name) == 0) {
        const int rc = dsv3_train_run(&c);
        CHECK(rc == 0, "%s: dsv3_train_run returned %d: %s", name, rc, dsv3_error());
        if (rc == 0) {
            check_metrics(name, out, ex);
            check_weights(name, dir, out, ex);
        }
    }
    rm_run_dir(out);
    free(data);
    free(out);
    cJSON_Delete(args);
    cJSON_Delete(ex);
}

int main(void) {
    const char *root = FIXTURE("train");
    char *names[64];
    const int n = t_fixture_cases(root, names, 64);
    CHECK(n >= 0, "%s: missing", root);
    if (n < 0) return test_report("train_ref");
    char tmp[] = "/tmp/dsv3_train_ref_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    for (int i = 0; i < n; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        run_case(dir, names[i], tmp);
        free(names[i]);
    }
    rmdir(tmp);
    CHECK(n > 0, "no cases in %s", root);
    return test_report("train_ref");
}
