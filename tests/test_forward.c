// The fp32 forward pass against the HF transformers oracle fixtures in tests/fixtures/model/<case>/
// (tools/ref/make_model_fixtures.py, docs/ORACLE.md): logits, final-normed hidden state, hidden
// state after every layer, exact routed-expert sets and router weights per MoE layer and token,
// YaRN inverse frequencies, MTP logits / hidden / routing; each with naive and absorbed attention.
// DSV3_MODEL_FIXTURES=DIR points the test at another fixture directory.
//
// Tolerances (fp32 C vs fp32 torch eager on CPU, |logits| ~ 1-4):
//  - logits / hidden: |Δ| <= 1e-5 + 1e-4·|ref|. Both sides compute in fp32 with different summation
//    orders (torch's blocked GEMM vs our kernels) over dots of length <= 96, through 3 layers and a
//    softmax; that drifts ~1e-6 absolute (measured max 6e-6), far below the 1e-2-scale effect of any
//    semantic slip (a missing m², wrong rope pairing, 0.0 instead of -inf masking, wrong eps).
//  - router weights: |Δ| <= 1e-5 (weights are O(1); same fp32 drift argument).
//  - expert ids: exact. Fixtures are generated with every routing margin > 1e-3, so fp32 drift
//    cannot flip a choice.
//  - rope inverse frequencies: |Δ| <= 1e-7·|ref| (same fp32 formula; at most 1 ulp apart).
#include "test.h"
#include "model/forward.h"
#include "model/safetensors.h"
#include "core/error.h"
#include "core/npy.h"
#include <unistd.h>
#include <dirent.h>
#include <stdint.h>

// j_long_mtp (T = 300, V3 MoE + MTP) and k_long_fp8 (T = 333, FP8) are longer than one attention query
// block (256) and than the GEMV row limit, so the packed GEMM path (experts included) and multi-block
// attention are checked against the oracle inside the model, in both attention paths.
static const char *CASES[] = {"a_sigmoid_groups_yarn", "b_no_qlora_2shared", "c_one_group_nonorm", "d_v2_softmax",
                              "e_negative_bias", "f_fp8", "g_mtp", "h_bf16", "i_bias_halfsplit_tied",
                              "j_long_mtp", "k_long_fp8"};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

static const dsv3_st_tensor *want(const dsv3_st *st, const char *name, dsv3_dtype dt, int64_t n, const char *cs) {
    const dsv3_st_tensor *t = dsv3_st_find(st, name);
    CHECK(t && t->dtype == dt && dsv3_st_numel(t) == n, "%s: expected.safetensors tensor %s missing or shaped wrong (want %lld)",
          cs, name, (long long)n);
    return t && t->dtype == dt && dsv3_st_numel(t) == n ? t : NULL;
}

// Count elements outside |a-b| <= atol + rtol|b|; report max |a-b|.
static long compare(const float *a, const float *b, size_t n, double atol, double rtol, double *maxd) {
    long bad = 0;
    double md = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md)) md = d;
        if (!t_close(a[i], b[i], atol, rtol)) bad++;
    }
    *maxd = md;
    return bad;
}

// Returns T of the case (0 when it could not be run).
static int run_case(const char *root, const char *cs) {
    char dir[512], exp_path[600];
    snprintf(dir, sizeof dir, "%s/%s", root, cs);
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    dsv3_model m;
    int T_run = 0;
    if (dsv3_model_load(&m, dir) != 0) { CHECK(0, "%s: load: %s", cs, dsv3_error()); return 0; }
    dsv3_st ex;
    if (dsv3_st_open_file(&ex, exp_path) != 0) { CHECK(0, "%s: %s", cs, dsv3_error()); dsv3_model_free(&m); return 0; }
    const dsv3_config *c = &m.cfg;
    const dsv3_st_tensor *tid = dsv3_st_find(&ex, "input_ids");
    CHECK(tid && tid->dtype == DSV3_I32 && tid->ndim == 1, "%s: input_ids", cs);
    if (!tid) goto out;
    const int T = (int)tid->shape[0], V = c->vocab_size, d = c->hidden_size, K = c->num_experts_per_tok;
    const int32_t *ids = tid->data;
    int n_moe = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) n_moe += m.layers[l].is_moe;
    const dsv3_st_tensor *tl = want(&ex, "logits", DSV3_F32, (int64_t)T * V, cs);
    const dsv3_st_tensor *th = want(&ex, "final_hidden", DSV3_F32, (int64_t)T * d, cs);
    const dsv3_st_tensor *tlh = want(&ex, "layer_hidden", DSV3_F32, (int64_t)c->num_hidden_layers * T * d, cs);
    const dsv3_st_tensor *tre = want(&ex, "router_experts", DSV3_I32, (int64_t)n_moe * T * K, cs);
    const dsv3_st_tensor *trw = want(&ex, "router_weights", DSV3_F32, (int64_t)n_moe * T * K, cs);
    const dsv3_st_tensor *tf = want(&ex, "rope_inv_freq", DSV3_F32, c->qk_rope_head_dim / 2, cs);
    if (!tl || !th || !tlh || !tre || !trw || !tf) goto out;

    float inv[256];
    dsv3_rope_inv_freq(c, inv);
    for (int i = 0; i < c->qk_rope_head_dim / 2; i++)
        CHECK(t_close(inv[i], ((const float *)tf->data)[i], 0, 1e-7), "%s: inv_freq[%d] %.9g vs %.9g", cs, i, inv[i],
              ((const float *)tf->data)[i]);

    dsv3_fwd f;
    dsv3_fwd_init(&f, &m);
    T_run = T;
    float *logits = malloc(sizeof(float) * (size_t)T * V), *hidden = malloc(sizeof(float) * (size_t)T * d);
    float *lh = malloc(sizeof(float) * (size_t)c->num_hidden_layers * T * d);
    for (int mode = 0; mode < 2; mode++) {
        const char *mn = mode ? "absorb" : "naive";
        dsv3_route_trace tr = {0};
        dsv3_forward_opts o = {.attn = mode, .logits = logits, .hidden = hidden, .trace = &tr, .layer_hidden = lh};
        if (dsv3_forward(&f, ids, T, &o) != 0) { CHECK(0, "%s/%s: forward: %s", cs, mn, dsv3_error()); continue; }
        double md;
        long bad = compare(logits, tl->data, (size_t)T * V, 1e-5, 1e-4, &md);
        CHECK(bad == 0, "%s/%s: %ld logits outside 1e-5 + 1e-4|ref| (max |d| %.3g)", cs, mn, bad, md);
        printf("%-22s %-6s logits max|d| %.3g", cs, mn, md);
        if (mode == 0) { // the .npy the CLI writes holds exactly these floats
            char np[64];
            snprintf(np, sizeof np, "/tmp/dsv3_test_forward_%d.npy", (int)getpid());
            int64_t shp[2] = {T, V};
            float *back = NULL; int nd = 0; int64_t bs[DSV3_NPY_MAX_DIMS] = {0};
            CHECK(dsv3_npy_write_f32(np, logits, 2, shp) == 0 && dsv3_npy_read_f32(np, &back, &nd, bs) == 0,
                  "%s: npy round trip: %s", cs, dsv3_error());
            CHECK(back && nd == 2 && bs[0] == T && bs[1] == V && memcmp(back, logits, sizeof(float) * (size_t)T * V) == 0,
                  "%s: npy round trip changed the logits", cs);
            free(back);
            unlink(np);
        }
        bad = compare(hidden, th->data, (size_t)T * d, 1e-5, 1e-4, &md);
        CHECK(bad == 0, "%s/%s: %ld final_hidden values off (max |d| %.3g)", cs, mn, bad, md);
        printf("  final_hidden %.3g", md);
        bad = compare(lh, tlh->data, (size_t)c->num_hidden_layers * T * d, 1e-5, 1e-4, &md);
        CHECK(bad == 0, "%s/%s: %ld layer_hidden values off (max |d| %.3g)", cs, mn, bad, md);
        printf("  layer_hidden %.3g", md);
        CHECK(tr.n_moe_layers == n_moe && tr.T == T && tr.K == K, "%s/%s: trace shape", cs, mn);
        long eb = 0;
        for (size_t i = 0; i < (size_t)n_moe * T * K; i++) eb += tr.experts[i] != ((const int32_t *)tre->data)[i];
        CHECK(eb == 0, "%s/%s: %ld routed expert ids differ", cs, mn, eb);
        bad = compare(tr.weights, trw->data, (size_t)n_moe * T * K, 1e-5, 0, &md);
        CHECK(bad == 0, "%s/%s: %ld router weights off (max |d| %.3g)", cs, mn, bad, md);
        printf("  router w %.3g", md);
        dsv3_route_trace_free(&tr);

        const dsv3_st_tensor *tml = dsv3_st_find(&ex, "mtp_logits");
        if (tml) {
            const dsv3_st_tensor *tm = want(&ex, "mtp_logits", DSV3_F32, (int64_t)(T - 1) * V, cs);
            const dsv3_st_tensor *tmh = want(&ex, "mtp_final_hidden", DSV3_F32, (int64_t)(T - 1) * d, cs);
            const dsv3_st_tensor *tme = want(&ex, "mtp_router_experts", DSV3_I32, (int64_t)(T - 1) * K, cs);
            const dsv3_st_tensor *tmw = want(&ex, "mtp_router_weights", DSV3_F32, (int64_t)(T - 1) * K, cs);
            CHECK(m.n_layers_loaded == c->num_hidden_layers + 1, "%s: MTP layer loaded", cs);
            if (tm && tmh && tme && tmw && m.n_layers_loaded > c->num_hidden_layers) {
                float *ml = malloc(sizeof(float) * (size_t)(T - 1) * V), *mh = malloc(sizeof(float) * (size_t)(T - 1) * d);
                dsv3_route_trace mt = {0};
                dsv3_mtp_opts mo = {.attn = mode, .depth = 1, .logits = ml, .hidden = mh, .trace = &mt};
                CHECK(dsv3_forward_mtp(&f, ids, T, hidden, &mo) == 0, "%s/%s: mtp: %s", cs, mn, dsv3_error());
                bad = compare(ml, tm->data, (size_t)(T - 1) * V, 1e-5, 1e-4, &md);
                CHECK(bad == 0, "%s/%s: %ld MTP logits off (max |d| %.3g)", cs, mn, bad, md);
                printf("  mtp logits %.3g", md);
                bad = compare(mh, tmh->data, (size_t)(T - 1) * d, 1e-5, 1e-4, &md);
                CHECK(bad == 0, "%s/%s: %ld MTP hidden off (max |d| %.3g)", cs, mn, bad, md);
                eb = 0;
                for (size_t i = 0; i < (size_t)(T - 1) * K && mt.experts; i++) eb += mt.experts[i] != ((const int32_t *)tme->data)[i];
                CHECK(mt.n_moe_layers == 1 && eb == 0, "%s/%s: MTP expert ids differ (%ld)", cs, mn, eb);
                if (mt.n_moe_layers == 1) {
                    bad = compare(mt.weights, tmw->data, (size_t)(T - 1) * K, 1e-5, 0, &md);
                    CHECK(bad == 0, "%s/%s: MTP router weights off (max %.3g)", cs, mn, md);
                }
                dsv3_route_trace_free(&mt);
                free(ml);
                free(mh);
            }
        }
        printf("\n");
    }
    // error paths: out-of-vocabulary id, empty sequence, MTP on a model without MTP layers
    int32_t bad_ids[2] = {1, V};
    dsv3_forward_opts o = {.attn = DSV3_ATTN_NAIVE, .logits = logits};
    CHECK(dsv3_forward(&f, bad_ids, 2, &o) == -1 && strstr(dsv3_error(), "vocabulary"), "%s: id >= V rejected", cs);
    CHECK(dsv3_forward(&f, ids, 0, &o) == -1, "%s: T = 0 rejected", cs);
    if (m.n_layers_loaded == c->num_hidden_layers)
        CHECK(dsv3_forward_mtp(&f, ids, T, hidden, &(dsv3_mtp_opts){.depth = 1, .logits = logits}) == -1, "%s: no MTP layer", cs);
    free(logits);
    free(hidden);
    free(lh);
    dsv3_fwd_free(&f);
out:
    dsv3_st_close(&ex);
    dsv3_model_free(&m);
    return T_run;
}

int main(void) {
    const char *root = getenv("DSV3_MODEL_FIXTURES");
    if (!root) root = FIXTURE("model");
    DIR *dir = opendir(root);
    CHECK(dir != NULL, "model fixture directory %s is missing (tools/ref/make_model_fixtures.py writes it)", root);
    if (!dir) return test_report("test_forward");
    closedir(dir);
    int ran = 0, longest = 0;
    for (int i = 0; i < NCASES; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s/expected.safetensors", root, CASES[i]);
        FILE *fp = fopen(p, "rb");
        CHECK(fp != NULL, "fixture case %s missing (%s)", CASES[i], p);
        if (!fp) continue;
        fclose(fp);
        int T = run_case(root, CASES[i]);
        ran += T > 0;
        if (T > longest) longest = T;
    }
    CHECK(ran == NCASES, "only %d of %d fixture cases ran", ran, NCASES);
    CHECK(longest > 256, "no fixture longer than one attention query block of 256 (longest T = %d)", longest);
    return test_report("test_forward");
}
