// The training loss and every gradient against torch autograd (float64 reference, transformers
// modules + the MTP module and balance loss assembled in tools/ref/make_grad_fixtures.py), for each
// case in tests/fixtures/grad, in both attention forms. A missing or empty fixture set fails.
#include "test.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/fileio.h"
#include "kernels/backend.h"
#include "model/safetensors.h"
#include "model/train.h"
#include <cjson/cJSON.h>
#include <stdint.h>

// Tolerances. An fp32 implementation lands within ~1e-6 relative (in norm, per tensor) of a float64
// reference (the generator measured 1.7e-6 at most for torch fp32 itself); 1e-4 is the bound
// and leaves room for fp32 summation-order differences through softmax/log-sum-exp. Losses: 1e-6
// relative (a few fp32 ulps on a sum of B·T terms accumulated in double).
#define GRAD_RTOL 1e-4
#define LOSS_RTOL 2e-6

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int32_t *load_rows(const char *path, int *B, int *T1) {
    int32_t *rows = NULL;
    int64_t r = 0, c = 0;
    if (dsv3_npy_read_ids_2d(path, (uint64_t)1 << 24, &rows, &r, &c) < 0) return NULL;
    *B = (int)r; *T1 = (int)c;
    return rows;
}

static void run_case(const char *dir, const char *name, dsv3_attn_mode mode) {
    char path[512];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    char *txt = dsv3_read_file(path, NULL);
    CHECK(txt != NULL, "%s: %s", name, dsv3_error());
    if (!txt) return;
    cJSON *ex = cJSON_Parse(txt);
    free(txt);
    CHECK(ex != NULL, "%s: expected.json does not parse", name);
    if (!ex) return;
    snprintf(path, sizeof path, "%s/rows.npy", dir);
    int B = 0, T1 = 0;
    int32_t *rows = load_rows(path, &B, &T1);
    CHECK(rows != NULL, "%s: rows.npy: %s", name, dsv3_error());
    dsv3_tmodel tm;
    int loaded = rows && dsv3_tmodel_load(&tm, dir) == 0;
    CHECK(loaded, "%s: load: %s", name, dsv3_error());
    if (!loaded) { cJSON_Delete(ex); free(rows); return; }
    dsv3_train *tr = dsv3_train_new(&tm, B, T1 - 1, dsv3_backend_cpu(), 0);
    CHECK(tr != NULL, "%s: %s", name, dsv3_error());
    dsv3_train_opts o = {.mtp_weight = (float)jnum(ex, "mtp_weight"), .seq_aux = (float)jnum(ex, "seq_aux"), .attn = mode};
    dsv3_loss_parts lp;
    dsv3_tmodel_zero_grads(&tm);
    int ok = tr && dsv3_train_step(tr, rows, &o, &lp) == 0;
    CHECK(ok, "%s: step: %s", name, dsv3_error());
    const char *an = mode == DSV3_ATTN_NAIVE ? "naive" : "absorb";
    if (ok) {
        const struct { const char *k; double v; } parts[] = {{"loss", lp.loss}, {"main", lp.main}, {"mtp", lp.mtp}, {"balance", lp.balance}};
        for (int i = 0; i < 4; i++) {
            double want = jnum(ex, parts[i].k);
            CHECK(t_close(parts[i].v, want, 1e-9, LOSS_RTOL), "%s (%s): %s = %.10g, torch %.10g", name, an, parts[i].k, parts[i].v, want);
        }
        CHECK(lp.tokens == (long)jnum(ex, "tokens"), "%s: tokens %ld", name, lp.tokens);
        // every trainable tensor has its gradient in the fixture and vice versa
        dsv3_st st;
        CHECK(dsv3_st_open_file(&st, (snprintf(path, sizeof path, "%s/grads.safetensors", dir), path)) == 0, "%s: %s", name,
              dsv3_error());
        int n_checked = 0;
        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < tm.tab.n; i++) {
            const dsv3_param *p = &tm.tab.p[i];
            if (p->flags & DSV3_PF_BUFFER) continue;
            const dsv3_st_tensor *t = dsv3_st_find(&st, p->name);
            CHECK(t != NULL, "%s: torch gradient of %s missing from the fixture", name, p->name);
            if (!t) continue;
            CHECK(t->dtype == DSV3_F32 && dsv3_st_numel(t) == (int64_t)dsv3_param_numel(p), "%s: %s: fixture shape/dtype", name, p->name);
            if (t->dtype != DSV3_F32 || dsv3_st_numel(t) != (int64_t)dsv3_param_numel(p)) continue;
            const float *g = dsv3_tmodel_grad(&tm, i);
            double dd = 0, nn = 0;
            for (size_t k = 0; k < dsv3_param_numel(p); k++) {
                float r;
                memcpy(&r, (const char *)t->data + 4 * k, 4);
                dd += ((double)g[k] - r) * ((double)g[k] - r);
                nn += (double)r * r;
            }
            const double rel = sqrt(dd) / (sqrt(nn) + 1e-30);
            if (rel > worst) { worst = rel; worst_name = p->name; }
            // tensors whose torch gradient is exactly 0 must be 0 here too
            CHECK(nn > 0 ? rel <= GRAD_RTOL : dd == 0, "%s (%s): %s: |g - torch| / |torch| = %.3g (|torch| = %.3g)", name, an,
                  p->name, rel, sqrt(nn));
            n_checked++;
        }
        int n_fix = 0;
        for (int i = 0; i < st.ntensors; i++) {
            n_fix++;
            CHECK(dsv3_param_find(&tm.tab, st.tensors[i].name) >= 0, "%s: fixture gradient %s is not a parameter", name,
                  st.tensors[i].name);
        }
        CHECK(n_checked == n_fix && n_checked > 0, "%s: %d gradients checked, fixture has %d", name, n_checked, n_fix);
        printf("%-26s %-6s loss %.8f  %3d tensors, worst |g - torch|/|torch| %.2e (%s)\n", name, an, lp.loss, n_checked, worst,
               worst_name);
        dsv3_st_close(&st);
    }
    dsv3_train_free(tr);
    dsv3_tmodel_free(&tm);
    cJSON_Delete(ex);
    free(rows);
}

int main(void) {
    const char *root = FIXTURE("grad");
    char *names[64];
    const int n = t_fixture_cases(root, names, 64);
    CHECK(n >= 0, "fixture directory %s is missing", root);
    if (n < 0) return test_report("test_grad");
    CHECK(n >= 5, "only %d grad fixture cases in %s (expected >= 5)", n, root);
    for (int i = 0; i < n; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        run_case(dir, names[i], DSV3_ATTN_NAIVE);
        run_case(dir, names[i], DSV3_ATTN_ABSORB);
        free(names[i]);
    }
    return test_report("test_grad");
}
