// The absorbed MLA path (latent cache, W_UK folded into the query, W_UV applied after the latent
// sum) must equal the naive path (per-head K and V) up to fp32 rounding. Checked on random models
// built in memory (with and without q compression, V3 yarn and default rope, attention biases,
// T = 1 and T = 19 so that softmax over several keys and the YaRN m² both matter), and on every
// model fixture in tests/fixtures/model/ when present.
//
// Tolerance: |absorb - naive| <= 2e-5 · max|naive| per logits tensor. The two paths differ only
// in the order of fp32 sums (q·(W_UK·c) vs (q·W_UK)·c: dots of length nope and kv_lora, 16-64
// here); fp32 rounding of such sums is ~sqrt(n)·6e-8 relative, carried through a few layers, i.e.
// ~1e-6 of the logit scale. A wrong head slice, transposed W_UK/W_UV or a missing scale factor
// moves logits by O(max|logit|), far above 2e-5.
#include "test.h"
#include "model/forward.h"
#include "core/error.h"
#include "model/safetensors.h"
#include <dirent.h>
#include <stdint.h>

typedef struct { void **p; int n; } pool;
static void *palloc(pool *pl, size_t n) {
    pl->p = realloc(pl->p, sizeof(void *) * (pl->n + 1));
    return pl->p[pl->n++] = calloc(1, n ? n : 1);
}
static void pool_free(pool *pl) { for (int i = 0; i < pl->n; i++) free(pl->p[i]); free(pl->p); }

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { // uniform in [-1, 1)
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static dsv3_mat rmat(pool *pl, int rows, int cols, float amp) {
    float *d = palloc(pl, sizeof(float) * (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) d[i] = amp * frand();
    return (dsv3_mat){.dtype = DSV3_F32, .data = d, .rows = rows, .cols = cols, .block_rows = 128, .block_cols = 128};
}
static float *rvec(pool *pl, int n, float base, float amp) {
    float *v = palloc(pl, sizeof(float) * n);
    for (int i = 0; i < n; i++) v[i] = base + amp * frand();
    return v;
}

// A random DeepSeek-V3-shaped model held in memory (F32 weights); MTP layers included when mtp.
static void build_random_model(dsv3_model *m, pool *pl, int q_lora, int yarn, int bias, int mtp) {
    memset(m, 0, sizeof *m);
    dsv3_config *c = &m->cfg;
    strcpy(c->model_type, "deepseek_v3");
    c->vocab_size = 97; c->hidden_size = 48; c->intermediate_size = 40; c->moe_intermediate_size = 16;
    c->num_hidden_layers = 3; c->num_nextn_predict_layers = mtp; c->first_k_dense_replace = 1; c->moe_layer_freq = 1;
    c->num_attention_heads = 3; c->num_key_value_heads = 3; c->q_lora_rank = q_lora; c->kv_lora_rank = 24;
    c->qk_nope_head_dim = 16; c->qk_rope_head_dim = 8; c->v_head_dim = 12;
    c->n_routed_experts = 8; c->n_shared_experts = 1; c->num_experts_per_tok = 3; c->n_group = 4; c->topk_group = 2;
    c->scoring = DSV3_SCORE_SIGMOID; c->use_correction_bias = 1; c->norm_topk_prob = 1; c->routed_scaling_factor = 2.5f;
    c->rms_norm_eps = 1e-6f; c->attention_bias = bias; c->rope_theta = 10000; c->rope_interleave = 1;
    c->rope_type = yarn ? DSV3_ROPE_YARN : DSV3_ROPE_DEFAULT; c->rope_factor = 40;
    c->original_max_position_embeddings = 4096; c->beta_fast = 32; c->beta_slow = 1; c->mscale = 1; c->mscale_all_dim = 1;
    c->max_position_embeddings = 163840;
    const int d = c->hidden_size, H = c->num_attention_heads, qk = 24, E = c->n_routed_experts, Im = c->moe_intermediate_size;
    m->embed = rmat(pl, c->vocab_size, d, 1.0f);
    m->lm_head = rmat(pl, c->vocab_size, d, 0.3f);
    m->norm = rvec(pl, d, 1.0f, 0.1f);
    m->n_layers_loaded = c->num_hidden_layers + mtp;
    m->layers = palloc(pl, sizeof(dsv3_layer) * m->n_layers_loaded);
    for (int l = 0; l < m->n_layers_loaded; l++) {
        dsv3_layer *L = &m->layers[l];
        L->is_moe = l >= c->first_k_dense_replace;
        L->input_layernorm = rvec(pl, d, 1.0f, 0.1f);
        L->post_attention_layernorm = rvec(pl, d, 1.0f, 0.1f);
        if (q_lora) {
            L->q_a_proj = rmat(pl, q_lora, d, 0.25f);
            L->q_a_layernorm = rvec(pl, q_lora, 1.0f, 0.1f);
            L->q_b_proj = rmat(pl, H * qk, q_lora, 0.3f);
            if (bias) L->q_a_proj_bias = rvec(pl, q_lora, 0.0f, 0.1f);
        } else {
            L->q_proj = rmat(pl, H * qk, d, 0.25f);
        }
        L->kv_a_proj = rmat(pl, c->kv_lora_rank + c->qk_rope_head_dim, d, 0.25f);
        L->kv_a_layernorm = rvec(pl, c->kv_lora_rank, 1.0f, 0.1f);
        L->kv_b_proj = rmat(pl, H * (16 + 12), c->kv_lora_rank, 0.3f);
        L->o_proj = rmat(pl, d, H * 12, 0.2f);
        if (bias) { L->kv_a_proj_bias = rvec(pl, c->kv_lora_rank + 8, 0.0f, 0.1f); L->o_proj_bias = rvec(pl, d, 0.0f, 0.1f); }
        if (!L->is_moe) {
            L->gate_proj = rmat(pl, c->intermediate_size, d, 0.2f);
            L->up_proj = rmat(pl, c->intermediate_size, d, 0.2f);
            L->down_proj = rmat(pl, d, c->intermediate_size, 0.2f);
        } else {
            L->router = rmat(pl, E, d, 0.3f);
            L->correction_bias = rvec(pl, E, 0.05f, 0.05f);
            L->exp_gate = palloc(pl, sizeof(dsv3_mat) * E);
            L->exp_up = palloc(pl, sizeof(dsv3_mat) * E);
            L->exp_down = palloc(pl, sizeof(dsv3_mat) * E);
            for (int e = 0; e < E; e++) {
                L->exp_gate[e] = rmat(pl, Im, d, 0.25f);
                L->exp_up[e] = rmat(pl, Im, d, 0.25f);
                L->exp_down[e] = rmat(pl, d, Im, 0.25f);
            }
            L->sh_gate = rmat(pl, Im, d, 0.25f);
            L->sh_up = rmat(pl, Im, d, 0.25f);
            L->sh_down = rmat(pl, d, Im, 0.25f);
        }
        if (l >= c->num_hidden_layers) {
            L->enorm = rvec(pl, d, 1.0f, 0.1f);
            L->hnorm = rvec(pl, d, 1.0f, 0.1f);
            L->shared_head_norm = rvec(pl, d, 1.0f, 0.1f);
            L->eh_proj = rmat(pl, d, 2 * d, 0.2f);
            L->mtp_embed = m->embed;
            L->mtp_head = m->lm_head;
        }
    }
}

// max |a - b| and max |a| over n values; NaN anywhere gives NaN (so every comparison with it fails).
static void diff_max(const float *a, const float *b, size_t n, double *md, double *mr) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d) || isnan(a[i])) { *md = NAN; *mr = NAN; return; }
        if (d > *md) *md = d;
        if (fabs(a[i]) > *mr) *mr = fabs(a[i]);
    }
}

// Runs both modes; returns max |absorb - naive| / max |naive| over the logits (and MTP logits), or
// +inf when a forward call fails (the calloc'd outputs would otherwise compare equal: 0 <= 0). The
// caller also checks *maxref (the outputs are not trivially zero).
static double compare_modes(dsv3_model *m, const int32_t *ids, int T, int mtp, double *maxref) {
    const int V = m->cfg.vocab_size;
    dsv3_fwd f;
    dsv3_fwd_init(&f, m);
    float *a = calloc((size_t)T * V, sizeof(float)), *b = calloc((size_t)T * V, sizeof(float));
    float *ha = calloc((size_t)T * m->cfg.hidden_size, sizeof(float)), *hb = calloc((size_t)T * m->cfg.hidden_size, sizeof(float));
    int failed = 0;
    dsv3_forward_opts o = {.attn = DSV3_ATTN_NAIVE, .logits = a, .hidden = ha};
    int rc = dsv3_forward(&f, ids, T, &o);
    CHECK(rc == 0, "naive forward: %s", dsv3_error());
    failed |= rc != 0;
    o.attn = DSV3_ATTN_ABSORB; o.logits = b; o.hidden = hb;
    rc = dsv3_forward(&f, ids, T, &o);
    CHECK(rc == 0, "absorb forward: %s", dsv3_error());
    failed |= rc != 0;
    double md = 0, mr = 0;
    diff_max(a, b, (size_t)T * V, &md, &mr);
    double mh = 0, mhr = 0; // the hidden states feed MTP: they must be real outputs too
    diff_max(ha, hb, (size_t)T * m->cfg.hidden_size, &mh, &mhr);
    CHECK(mhr > 1e-2, "final hidden state is trivial (max |h| %g)", mhr);
    if (mtp && T > 1) {
        memset(a, 0, sizeof(float) * (size_t)T * V);
        memset(b, 0, sizeof(float) * (size_t)T * V);
        rc = dsv3_forward_mtp(&f, ids, T, ha, &(dsv3_mtp_opts){.attn = DSV3_ATTN_NAIVE, .depth = 1, .logits = a});
        CHECK(rc == 0, "mtp naive: %s", dsv3_error());
        failed |= rc != 0;
        rc = dsv3_forward_mtp(&f, ids, T, hb, &(dsv3_mtp_opts){.attn = DSV3_ATTN_ABSORB, .depth = 1, .logits = b});
        CHECK(rc == 0, "mtp absorb: %s", dsv3_error());
        failed |= rc != 0;
        double mmd = 0, mmr = 0;
        diff_max(a, b, (size_t)(T - 1) * V, &mmd, &mmr);
        CHECK(mmr > 1e-2, "MTP logits are trivial (max |logit| %g)", mmr);
        if (!(mmd <= md)) md = mmd;
        if (!(mmr <= mr)) mr = mmr;
    }
    free(a); free(b); free(ha); free(hb);
    dsv3_fwd_free(&f);
    *maxref = mr;
    if (failed) return INFINITY;
    return mr > 0 ? md / mr : INFINITY;
}

static void test_random(void) {
    const int T = 19;
    int32_t ids[19];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 37 + 11) % 97);
    const int variants[][4] = {{32, 1, 0, 1}, {0, 1, 0, 0}, {32, 0, 1, 0}, {0, 0, 1, 1}};
    for (int v = 0; v < 4; v++) {
        pool pl = {0};
        dsv3_model m;
        build_random_model(&m, &pl, variants[v][0], variants[v][1], variants[v][2], variants[v][3]);
        double mr, rel = compare_modes(&m, ids, T, variants[v][3], &mr);
        printf("random variant %d (q_lora %d, yarn %d, bias %d, mtp %d): max|logit| %.3g, max rel diff %.3g\n", v,
               variants[v][0], variants[v][1], variants[v][2], variants[v][3], mr, rel);
        CHECK(mr > 1e-2, "logits are not degenerate (max %g)", mr);
        CHECK(rel <= 2e-5, "variant %d: absorb vs naive rel diff %g > 2e-5", v, rel);
        double mr1, rel1 = compare_modes(&m, ids, 1, 0, &mr1);
        CHECK(mr1 > 1e-2, "variant %d T=1: logits are not degenerate (max %g)", v, mr1);
        CHECK(rel1 <= 2e-5, "variant %d T=1: rel diff %g", v, rel1);
        pool_free(&pl);
    }
}

// Query blocking: T = 40 in blocks of 7 (last block partial) must equal one 40-query block, in
// both modes (same fp32 products, only split differently: equal up to GEMM summation order).
static void test_blocking(void) {
    pool pl = {0};
    dsv3_model m;
    build_random_model(&m, &pl, 32, 1, 0, 0);
    const int T = 40, V = m.cfg.vocab_size;
    int32_t ids[40];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 53 + 5) % V);
    float *a = calloc((size_t)T * V, sizeof(float)), *b = calloc((size_t)T * V, sizeof(float));
    for (int mode = 0; mode < 2; mode++) {
        dsv3_fwd f;
        dsv3_fwd_init(&f, &m);
        memset(a, 0, sizeof(float) * (size_t)T * V);
        memset(b, 0, sizeof(float) * (size_t)T * V);
        dsv3_forward_opts o = {.attn = mode, .logits = a};
        CHECK(dsv3_forward(&f, ids, T, &o) == 0, "forward (one block): %s", dsv3_error());
        f.qblock = 7;
        o.logits = b;
        CHECK(dsv3_forward(&f, ids, T, &o) == 0, "forward (blocks of 7): %s", dsv3_error());
        double md = 0, mr = 0;
        diff_max(a, b, (size_t)T * V, &md, &mr);
        printf("query blocks of 7 vs 40 (%s): max rel diff %.3g\n", mode ? "absorb" : "naive", md / mr);
        CHECK(mr > 1e-2, "%s: logits are not degenerate (max %g)", mode ? "absorb" : "naive", mr);
        CHECK(md <= 2e-5 * mr, "%s: blocked attention differs (%g of max %g)", mode ? "absorb" : "naive", md, mr);
        dsv3_fwd_free(&f);
    }
    free(a); free(b);
    pool_free(&pl);
}

static void test_fixtures(void) {
    const char *root = getenv("DSV3_MODEL_FIXTURES");
    if (!root) root = FIXTURE("model");
    DIR *dir = opendir(root);
    CHECK(dir != NULL, "model fixture directory %s is missing", root);
    if (!dir) return;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.') continue;
        char p[600], e[700];
        snprintf(p, sizeof p, "%s/%s", root, de->d_name);
        snprintf(e, sizeof e, "%s/expected.safetensors", p);
        dsv3_model m;
        dsv3_st ex;
        if (dsv3_model_load(&m, p) != 0) { CHECK(0, "%s: %s", de->d_name, dsv3_error()); continue; }
        if (dsv3_st_open_file(&ex, e) != 0) { CHECK(0, "%s: %s", de->d_name, dsv3_error()); dsv3_model_free(&m); continue; }
        const dsv3_st_tensor *t = dsv3_st_find(&ex, "input_ids");
        CHECK(t && t->dtype == DSV3_I32 && t->ndim == 1, "%s: input_ids", de->d_name);
        if (t && t->dtype == DSV3_I32 && t->ndim == 1) {
            double mr, rel = compare_modes(&m, t->data, (int)t->shape[0], m.n_layers_loaded > m.cfg.num_hidden_layers, &mr);
            printf("fixture %-22s max|logit| %.3g, absorb vs naive max rel diff %.3g\n", de->d_name, mr, rel);
            CHECK(mr > 1e-2, "%s: logits are not degenerate (max %g)", de->d_name, mr);
            CHECK(rel <= 2e-5, "%s: absorb vs naive rel diff %g > 2e-5", de->d_name, rel);
            n++;
        }
        dsv3_st_close(&ex);
        dsv3_model_free(&m);
    }
    closedir(dir);
    CHECK(n > 0, "no fixture case under %s", root);
}

int main(void) {
    test_random();
    test_blocking();
    test_fixtures();
    return test_report("test_attention_absorb");
}
