// Training forward + backward (src/model/train*.c) on the oracle model fixtures:
//  - the training loss equals what the (independently oracle-checked) inference forward gives;
//  - every tensor's gradient agrees with a central finite difference of the loss along a random
//    direction of that tensor (steps that change any routing decision are skipped and counted);
//  - naive and absorbed attention give the same gradients;
//  - a step allocates nothing, and the gradients accumulate across steps.
// The exact check against torch autograd is tests/test_grad.c (fixtures in tests/fixtures/grad).
#include "test.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "model/forward.h"
#include "model/train_impl.h"
#include <stdint.h>

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static double rnd_normal(void) {
    double u1 = (rnd() + 1.0) / 4294967297.0, u2 = rnd() / 4294967296.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

// Routing of every MoE layer run (main + MTP) concatenated, to detect a flipped decision.
static size_t routing_of(dsv3_train *tr, int32_t *buf) {
    const dsv3_config *c = &tr->tm->cfg;
    size_t n = 0;
    for (int l = 0; l < c->num_hidden_layers + tr->D; l++) {
        dsv3_layer_acts *a = &tr->acts[l];
        if (!a->eidx) continue;
        const size_t m = (size_t)a->N * c->num_experts_per_tok;
        if (buf) memcpy(buf + n, a->eidx, sizeof(int32_t) * m);
        n += m;
    }
    return n;
}

static double loss_at(dsv3_train *tr, const int32_t *rows, dsv3_train_opts o) {
    o.no_backward = 1;
    dsv3_loss_parts lp;
    CHECK(dsv3_train_step(tr, rows, &o, &lp) == 0, "step: %s", dsv3_error());
    return lp.loss;
}

static double dot_f(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void run_case(const char *name, int B, int T, float alpha, int fd) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/model/%s", name);
    dsv3_tmodel tm;
    if (dsv3_tmodel_load(&tm, dir) != 0) { CHECK(0, "%s: load: %s", name, dsv3_error()); return; }
    const dsv3_config *c = &tm.cfg;
    rng_state = 12345;
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)B * (T + 1));
    for (int i = 0; i < B * (T + 1); i++) rows[i] = (int32_t)(rnd() % (uint32_t)c->vocab_size);
    dsv3_train *tr = dsv3_train_new(&tm, B, T, dsv3_backend_cpu(), 0);
    CHECK(tr != NULL, "%s: train_new: %s", name, dsv3_error());
    if (!tr) { dsv3_tmodel_free(&tm); free(rows); return; }
    const float lambda = tm.tab.n_mtp > 0 ? 0.3f : 0.0f;
    dsv3_train_opts o = {.mtp_weight = lambda, .seq_aux = alpha, .attn = DSV3_ATTN_NAIVE};

    // 1. the loss equals the inference forward's cross-entropy (main and MTP depth 1)
    {
        dsv3_fwd f;
        dsv3_fwd_init(&f, &tm.view);
        const int V = c->vocab_size, d = c->hidden_size;
        float *lg = malloc(sizeof(float) * (size_t)T * V), *h = malloc(sizeof(float) * (size_t)T * d);
        double ce = 0, ce_mtp = 0, ce_ign = 0;
        const int32_t ign = rows[1]; // an id that occurs as a label
        long n_ign = 0;
        for (int b = 0; b < B; b++) {
            const int32_t *r = rows + (size_t)b * (T + 1);
            dsv3_forward_opts fo = {.attn = DSV3_ATTN_ABSORB, .logits = lg, .hidden = h};
            CHECK(dsv3_forward(&f, r, T, &fo) == 0, "forward");
            for (int t = 0; t < T; t++) {
                const float *z = lg + (size_t)t * V;
                double mx = -INFINITY, s = 0;
                for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
                for (int v = 0; v < V; v++) s += exp(z[v] - mx);
                ce += mx + log(s) - z[r[t + 1]];
                if (r[t + 1] != ign) { ce_ign += mx + log(s) - z[r[t + 1]]; n_ign++; }
            }
            if (lambda > 0 && T >= 2) {
                dsv3_mtp_opts mo = {.attn = DSV3_ATTN_ABSORB, .depth = 1, .logits = lg};
                CHECK(dsv3_forward_mtp(&f, r, T, h, &mo) == 0, "forward_mtp");
                for (int t = 0; t < T - 1; t++) {
                    const float *z = lg + (size_t)t * V;
                    double mx = -INFINITY, s = 0;
                    for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
                    for (int v = 0; v < V; v++) s += exp(z[v] - mx);
                    ce_mtp += mx + log(s) - z[r[t + 2]];
                }
            }
        }
        dsv3_fwd_free(&f);
        free(lg); free(h);
        dsv3_loss_parts lp;
        o.no_backward = 1;
        CHECK(dsv3_train_step(tr, rows, &o, &lp) == 0, "step");
        o.no_backward = 0;
        // both sides are fp32 forwards with different summation orders: 1e-5 relative on a sum of
        // B·T cross-entropies of O(5) each is ~50x the fp32 rounding of one logit row
        CHECK(t_close(lp.main, ce / (B * T), 0, 1e-5), "%s: main loss %.8f vs inference forward %.8f", name, lp.main, ce / (B * T));
        if (lambda > 0 && tm.tab.n_mtp == 1)
            CHECK(t_close(lp.mtp, lambda * ce_mtp / (B * T), 0, 1e-5), "%s: MTP loss %.8f vs inference forward %.8f", name, lp.mtp,
                  lambda * ce_mtp / (B * T));
        dsv3_train_opts oi = o;
        oi.no_backward = 1; oi.use_ignore = 1; oi.ignore_id = ign;
        dsv3_loss_parts li;
        CHECK(dsv3_train_step(tr, rows, &oi, &li) == 0, "step ignore");
        CHECK(li.tokens == n_ign && (n_ign == 0 ? li.main == 0 : t_close(li.main, ce_ign / n_ign, 0, 1e-5)), "%s: main loss with ignored label %d: %.8f (%ld) vs %.8f (%ld)",
              name, ign, li.main, li.tokens, ce_ign / n_ign, n_ign);
        CHECK(lp.balance > 0 && (alpha == 0 || lp.balance < 10 * alpha * (c->num_hidden_layers + 1)),
              "%s: balance loss %g for alpha %g", name, lp.balance, alpha);
    }

    // 2. gradients: one step (naive), then the allocation-free second step and accumulation
    dsv3_loss_parts lp;
    dsv3_tmodel_zero_grads(&tm);
    CHECK(dsv3_train_step(tr, rows, &o, &lp) == 0, "step: %s", dsv3_error());
    const size_t P = tm.tab.total;
    float *g1 = malloc(sizeof(float) * P);
    memcpy(g1, tm.grads, sizeof(float) * P);
    unsigned long before = dsv3_alloc_count();
    CHECK(dsv3_train_step(tr, rows, &o, &lp) == 0, "step 2");
    CHECK(dsv3_alloc_count() == before, "%s: a training step allocated %lu times", name, dsv3_alloc_count() - before);
    // accumulation: the second step adds the same gradient again (up to the fp32 rounding of adding
    // onto non-zero buffers, ~1e-7 relative in norm)
    double dacc = 0, nacc = 0;
    for (size_t i = 0; i < P; i++) {
        dacc += (tm.grads[i] - 2.0 * g1[i]) * (tm.grads[i] - 2.0 * g1[i]);
        nacc += 4.0 * g1[i] * g1[i];
    }
    CHECK(sqrt(dacc) <= 1e-5 * sqrt(nacc), "%s: gradients do not accumulate (|g2 - 2 g1| / |2 g1| = %g)", name, sqrt(dacc / nacc));

    // 3. absorbed attention: the same gradients (an fp32 reordering of the same sums). Not at T = 1:
    // one key means a softmax of 1 whatever q is, so the query-side gradients are exactly 0 and both
    // paths hold only rounding noise there.
    dsv3_tmodel_zero_grads(&tm);
    if (T > 1) {
    o.attn = DSV3_ATTN_ABSORB;
    CHECK(dsv3_train_step(tr, rows, &o, &lp) == 0, "step absorb");
    o.attn = DSV3_ATTN_NAIVE;
    for (int i = 0; i < tm.tab.n; i++) {
        const dsv3_param *p = &tm.tab.p[i];
        if (p->flags & (DSV3_PF_ALIAS | DSV3_PF_BUFFER)) continue;
        const size_t n = dsv3_param_numel(p);
        const float *ga = tm.grads + p->offset, *gn = g1 + p->offset;
        double dd = 0, nn = 0;
        for (size_t k = 0; k < n; k++) { dd += (ga[k] - gn[k]) * (double)(ga[k] - gn[k]); nn += (double)gn[k] * gn[k]; }
        // 1e-4 relative in norm: fp32 reassociation through softmax, both O(1e-6) per element
        CHECK(sqrt(dd) <= 1e-4 * sqrt(nn) + 1e-9, "%s: %s: naive vs absorb gradient differ: |d| %g, |g| %g", name, p->name,
              sqrt(dd), sqrt(nn));
    }
    }

    // 4. finite differences along a random unit direction per tensor
    if (fd) {
        int32_t *r0 = malloc(sizeof(int32_t) * (routing_of(tr, NULL) + 1)), *r1 = malloc(sizeof(int32_t) * (routing_of(tr, NULL) + 1));
        loss_at(tr, rows, o);
        const size_t nr = routing_of(tr, r0);
        float *u = malloc(sizeof(float) * P);
        int skipped = 0, checked = 0;
        for (int i = 0; i < tm.tab.n; i++) {
            const dsv3_param *p = &tm.tab.p[i];
            if (p->flags & (DSV3_PF_ALIAS | DSV3_PF_BUFFER)) continue;
            const size_t n = dsv3_param_numel(p);
            double nu = 0;
            for (size_t k = 0; k < n; k++) { u[k] = (float)rnd_normal(); nu += (double)u[k] * u[k]; }
            for (size_t k = 0; k < n; k++) u[k] = (float)(u[k] / sqrt(nu));
            float *w = tm.params + p->offset, *save = malloc(sizeof(float) * n);
            memcpy(save, w, sizeof(float) * n);
            const double h = 2e-3;
            for (size_t k = 0; k < n; k++) w[k] = save[k] + (float)(h * u[k]);
            double lp_ = loss_at(tr, rows, o);
            routing_of(tr, r1);
            int flip = memcmp(r0, r1, sizeof(int32_t) * nr) != 0;
            for (size_t k = 0; k < n; k++) w[k] = save[k] - (float)(h * u[k]);
            double lm_ = loss_at(tr, rows, o);
            routing_of(tr, r1);
            flip |= memcmp(r0, r1, sizeof(int32_t) * nr) != 0;
            memcpy(w, save, sizeof(float) * n);
            free(save);
            if (flip) { skipped++; continue; }
            const double fdv = (lp_ - lm_) / (2 * h), an = dot_f(g1 + p->offset, u, n);
            // the fp32 loss carries ~1e-7 relative rounding (≈ 1e-6 absolute): divided by 2h that is
            // ≈ 3e-4 of noise; the O(h²) truncation is far below it
            checked++;
            CHECK(fabs(fdv - an) <= 1e-3 + 2e-2 * fabs(an), "%s: %s: directional derivative %.6g, finite difference %.6g", name,
                  p->name, an, fdv);
        }
        printf("%s: finite differences on %d tensors, %d skipped (a routing decision flipped)\n", name, checked, skipped);
        CHECK(checked > skipped, "%s: too many finite-difference steps skipped (%d of %d)", name, skipped, checked + skipped);
        free(u); free(r0); free(r1);
    }
    free(g1);
    dsv3_train_free(tr);
    dsv3_tmodel_free(&tm);
    free(rows);
}

// Caches derived from the weights (absorbed W_UK/W_UV) follow a weight change once told.
static void weights_changed_case(void) {
    dsv3_tmodel tm;
    if (dsv3_tmodel_load(&tm, "tests/fixtures/model/g_mtp") != 0) { CHECK(0, "load: %s", dsv3_error()); return; }
    const int T = 9, V = tm.cfg.vocab_size;
    int32_t ids[9] = {1, 5, 9, 33, 2, 7, 100, 3, 4};
    float *a = malloc(sizeof(float) * T * V), *n = malloc(sizeof(float) * T * V);
    dsv3_fwd f;
    dsv3_fwd_init(&f, &tm.view);
    dsv3_forward(&f, ids, T, &(dsv3_forward_opts){.attn = DSV3_ATTN_ABSORB, .logits = a}); // builds the caches
    int i = dsv3_param_find(&tm.tab, "model.layers.0.self_attn.kv_b_proj.weight");
    for (size_t k = 0; k < dsv3_param_numel(&tm.tab.p[i]); k++) tm.params[tm.tab.p[i].offset + k] *= 1.5f;
    dsv3_fwd_weights_changed(&f);
    CHECK(dsv3_forward(&f, ids, T, &(dsv3_forward_opts){.attn = DSV3_ATTN_ABSORB, .logits = a}) == 0, "absorb");
    CHECK(dsv3_forward(&f, ids, T, &(dsv3_forward_opts){.attn = DSV3_ATTN_NAIVE, .logits = n}) == 0, "naive");
    double md = 0;
    for (int k = 0; k < T * V; k++) md = fmax(md, fabs(a[k] - n[k]));
    CHECK(md < 1e-4, "absorbed forward after a weight change differs from naive by %g", md);
    dsv3_fwd_free(&f);
    free(a); free(n);
    dsv3_tmodel_free(&tm);
}

int main(void) {
    weights_changed_case();
    run_case("g_mtp", 2, 17, 0.01f, 1);                 // V3 sigmoid, groups, YaRN, q_lora, MTP
    run_case("d_v2_softmax", 2, 13, 0.01f, 1);          // V2 softmax, no q_lora
    run_case("b_no_qlora_2shared", 3, 11, 0.01f, 1);    // 2 shared experts, fused experts on disk
    run_case("i_bias_halfsplit_tied", 2, 9, 0.01f, 1);  // attention biases, half-split rope, tied head
    run_case("f_fp8", 2, 17, 1e-4f, 1);                 // FP8 e4m3 checkpoint -> fp32 masters
    run_case("c_one_group_nonorm", 1, 1, 1e-4f, 0);     // T = 1
    return test_report("test_train");
}
