// Unit tests for the forward pass's scalar ops, rotary / YaRN frequencies, softmax scale, the
// router on hand-built scores, and the .npy writer/reader. Expected values are exact math
// (computed here in double from the formulas in spec deepseek-v3 §2.4-2.7) or the spec's
// published table (§2.5), never outputs of the code under test.
#include "test.h"
#include "kernels/cpu/ops.h"
#include "model/forward.h"
#include "core/npy.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include <stdint.h>
#include <unistd.h>

static uint64_t rs = 0x1234567;
static float rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (float)((rs >> 40) / 16777216.0 * 2 - 1); }

static dsv3_config v3_rope_config(int rope_dim) {
    dsv3_config c;
    memset(&c, 0, sizeof c);
    strcpy(c.model_type, "deepseek_v3");
    c.qk_nope_head_dim = 128; c.qk_rope_head_dim = rope_dim;
    c.rope_theta = 10000.0; c.rope_type = DSV3_ROPE_YARN; c.rope_factor = 40.0;
    c.original_max_position_embeddings = 4096; c.beta_fast = 32; c.beta_slow = 1;
    c.mscale = 1.0; c.mscale_all_dim = 1.0; c.rope_interleave = 1;
    return c;
}

// YaRN inv_freq in double, straight from the spec's formula (deepseek-v3 §2.5).
static double yarn_ref(int dim, int i, double low, double high, double factor) {
    double f = 1.0 / pow(10000.0, 2.0 * i / dim);
    double ramp = (i - low) / (high - low);
    if (ramp < 0) ramp = 0;
    if (ramp > 1) ramp = 1;
    return f * (1 - ramp) + f / factor * ramp;
}

static void test_rmsnorm(void) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 0.5f, -1}, y[4];
    dsv3_rmsnorm(y, x, w, 4, 0.0f); // mean(x²) = 7.5
    for (int i = 0; i < 4; i++) CHECK(t_close(y[i], w[i] * x[i] / sqrt(7.5), 0, 2e-7), "rmsnorm[%d] %g", i, y[i]);
    dsv3_rmsnorm(y, x, w, 4, 0.5f); // eps enters inside the sqrt
    for (int i = 0; i < 4; i++) CHECK(t_close(y[i], w[i] * x[i] / sqrt(8.0), 0, 2e-7), "rmsnorm eps[%d] %g", i, y[i]);
    float z[3] = {0, 0, 0}, wz[3] = {1, 1, 1};
    dsv3_rmsnorm(z, z, wz, 3, 1e-6f);
    CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0, "rmsnorm of zeros is zero");
}

static void test_softmax_silu(void) {
    float x[4] = {0, logf(2), logf(3), -INFINITY};
    dsv3_softmax(x, 4);
    CHECK(t_close(x[0], 1.0 / 6, 0, 1e-6) && t_close(x[1], 2.0 / 6, 0, 1e-6) && t_close(x[2], 3.0 / 6, 0, 1e-6),
          "softmax {1,2,3}/6: %g %g %g", x[0], x[1], x[2]);
    CHECK(x[3] == 0.0f, "softmax of -inf is 0");
    float big[2] = {1000.0f, 1000.0f};
    dsv3_softmax(big, 2);
    CHECK(big[0] == 0.5f && big[1] == 0.5f, "softmax is shift-invariant (no overflow)");
    CHECK(dsv3_silu(0.0f) == 0.0f, "silu(0)");
    CHECK(t_close(dsv3_silu(1.0f), 1.0 / (1.0 + exp(-1.0)), 0, 1e-7), "silu(1)");
    CHECK(t_close(dsv3_silu(-2.0f), -2.0 / (1.0 + exp(2.0)), 0, 1e-6), "silu(-2)");
    float g[2] = {1, -2}, u[2] = {3, 0.5f};
    dsv3_swiglu(g, u, 2);
    CHECK(t_close(g[0], 3.0 / (1.0 + exp(-1.0)), 0, 1e-6) && t_close(g[1], 0.5 * -2.0 / (1.0 + exp(2.0)), 0, 1e-6), "swiglu");
}

static void test_yarn(void) {
    // V3: dim 64 -> low = floor(10.47) = 10, high = ceil(22.51) = 23 (spec §2.5)
    dsv3_config c = v3_rope_config(64);
    float f[32];
    dsv3_rope_inv_freq(&c, f);
    for (int i = 0; i < 32; i++)
        CHECK(t_close(f[i], yarn_ref(64, i, 10, 23, 40), 0, 2e-6), "yarn inv_freq[%d] = %.8g want %.8g", i, f[i], yarn_ref(64, i, 10, 23, 40));
    // the spec's published table (4 significant digits)
    const int ti[6] = {0, 10, 16, 22, 23, 31};
    const double tv[6] = {1.0, 5.623e-2, 5.5e-3, 1.778e-4, 3.334e-5, 3.334e-6};
    for (int k = 0; k < 6; k++) CHECK(t_close(f[ti[k]], tv[k], 0, 1e-3), "spec table i=%d: %g want %g", ti[k], f[ti[k]], tv[k]);
    // rope dim 16 (fixture config): low 2, high 6 -> ramp 0,0,0,.25,.5,.75,1,1
    dsv3_config c16 = v3_rope_config(16);
    float g[8];
    dsv3_rope_inv_freq(&c16, g);
    const double ramp[8] = {0, 0, 0, .25, .5, .75, 1, 1};
    for (int i = 0; i < 8; i++) {
        double base = 1.0 / pow(10000.0, 2.0 * i / 16);
        double want = base * (1 - ramp[i]) + base / 40 * ramp[i];
        CHECK(t_close(g[i], want, 0, 2e-6), "dim16 inv_freq[%d] = %g want %g", i, g[i], want);
    }
    // default rope: plain base^(-2i/d)
    c16.rope_type = DSV3_ROPE_DEFAULT;
    dsv3_rope_inv_freq(&c16, g);
    for (int i = 0; i < 8; i++) CHECK(t_close(g[i], 1.0 / pow(10000.0, 2.0 * i / 16), 0, 2e-7), "default inv_freq[%d]", i);
}

static void test_scales(void) {
    dsv3_config c = v3_rope_config(64);
    double m = 0.1 * log(40.0) + 1.0;
    CHECK(t_close(dsv3_softmax_scale(&c), m * m / sqrt(192.0), 0, 1e-12), "V3 softmax scale %.9g", dsv3_softmax_scale(&c));
    CHECK(t_close(dsv3_softmax_scale(&c), 0.1352338, 0, 1e-6), "V3 softmax scale = spec 0.1352338");
    CHECK(dsv3_rope_attention_factor(&c) == 1.0, "V3 attention factor is 1");
    c.mscale = 0.707; c.mscale_all_dim = 0.707; // V2-Lite
    double m2 = 0.1 * 0.707 * log(40.0) + 1.0;
    CHECK(t_close(dsv3_softmax_scale(&c), m2 * m2 / sqrt(192.0), 0, 1e-12), "V2-Lite softmax scale");
    CHECK(t_close(dsv3_rope_attention_factor(&c), 1.0, 0, 1e-12), "V2-Lite attention factor 1");
    c.mscale = 1.0; c.mscale_all_dim = 0.5;
    CHECK(t_close(dsv3_rope_attention_factor(&c), (0.1 * log(40.0) + 1) / (0.05 * log(40.0) + 1), 0, 1e-12), "mscale ratio");
    c.mscale = 0; c.mscale_all_dim = 0; // neither set: no softmax m², cos/sin × (0.1 ln f + 1)
    CHECK(t_close(dsv3_softmax_scale(&c), 1.0 / sqrt(192.0), 0, 1e-12), "yarn without mscale_all_dim: plain scale");
    CHECK(t_close(dsv3_rope_attention_factor(&c), 0.1 * log(40.0) + 1, 0, 1e-12), "attention factor 0.1 ln f + 1");
    c.rope_type = DSV3_ROPE_DEFAULT; c.mscale_all_dim = 1.0;
    CHECK(t_close(dsv3_softmax_scale(&c), 1.0 / sqrt(192.0), 0, 1e-12), "default rope: plain scale");
    CHECK(dsv3_rope_attention_factor(&c) == 1.0, "default rope: factor 1");
}

static void test_rope_apply(void) {
    float inv[2] = {1.0f, 0.5f}, cs[4], sn[4];
    dsv3_rope_tables(cs, sn, inv, 2, 0, 2, 1.0f);
    CHECK(cs[0] == 1 && cs[1] == 1 && sn[0] == 0 && sn[1] == 0, "position 0 is the identity");
    CHECK(t_close(cs[2], cos(1.0), 0, 1e-7) && t_close(sn[3], sin(0.5), 0, 1e-7), "position 1 angles");
    // interleaved: pairs (x0,x1), (x2,x3)
    float x[4] = {1, 2, 3, 4};
    dsv3_rope_apply(x, cs + 2, sn + 2, 2, 1);
    double c1 = cos(1.0), s1 = sin(1.0), c2 = cos(0.5), s2 = sin(0.5);
    CHECK(t_close(x[0], 1 * c1 - 2 * s1, 1e-6, 0) && t_close(x[1], 1 * s1 + 2 * c1, 1e-6, 0) &&
          t_close(x[2], 3 * c2 - 4 * s2, 1e-6, 0) && t_close(x[3], 3 * s2 + 4 * c2, 1e-6, 0), "interleaved pairs");
    // half split: pairs (x0,x2), (x1,x3)
    float y[4] = {1, 2, 3, 4};
    dsv3_rope_apply(y, cs + 2, sn + 2, 2, 0);
    CHECK(t_close(y[0], 1 * c1 - 3 * s1, 1e-6, 0) && t_close(y[2], 1 * s1 + 3 * c1, 1e-6, 0) &&
          t_close(y[1], 2 * c2 - 4 * s2, 1e-6, 0) && t_close(y[3], 2 * s2 + 4 * c2, 1e-6, 0), "half-split pairs");
    // attention factor multiplies cos and sin
    float cs2[2], sn2[2];
    dsv3_rope_tables(cs2, sn2, inv, 2, 3, 1, 2.0f);
    CHECK(t_close(cs2[0], 2 * cos(3.0), 0, 1e-6) && t_close(sn2[1], 2 * sin(1.5), 0, 1e-6), "pos0 offset and factor");
}

static float logit_of(double s) { return (float)log(s / (1 - s)); }

static dsv3_config route_config(void) {
    dsv3_config c;
    memset(&c, 0, sizeof c);
    c.n_routed_experts = 8; c.n_group = 4; c.topk_group = 2; c.num_experts_per_tok = 3;
    c.scoring = DSV3_SCORE_SIGMOID; c.use_correction_bias = 1; c.norm_topk_prob = 1; c.routed_scaling_factor = 2.5f;
    return c;
}

static void test_routing(void) {
    float scratch[2 * 8 + 4], lg[8], w[3];
    int32_t e[3];
    dsv3_config c = route_config();
    // sigmoid scores, groups {0,1} {2,3} {4,5} {6,7}
    const double s[8] = {0.9, 0.1, 0.6, 0.55, 0.7, 0.2, 0.3, 0.35};
    // the bias lifts group 3 (0.5 + 0.55 = 1.05) above group 0 (0.9 + 0.1 = 1.0) and group 2 (0.9), so expert 0
    // (highest unbiased score) and expert 4 are not eligible
    const float bias[8] = {0, 0, 0, 0, 0, 0, 0.2f, 0.2f};
    for (int i = 0; i < 8; i++) lg[i] = logit_of(s[i]);
    // group sums: g0 = 1.0, g1 = 1.15, g2 = 0.9, g3 = 1.05 -> keep g1, g3
    dsv3_route_token(&c, lg, bias, e, w, scratch);
    // sel: e2 .6, e3 .55, e6 .5, e7 .55 -> top-3 = 2, 3, 7 (tie 3/7 at 0.55: both taken)
    CHECK(e[0] == 2 && e[1] == 3 && e[2] == 7, "group-limited choice: %d %d %d", e[0], e[1], e[2]);
    double sum = s[2] + s[3] + s[7];
    CHECK(t_close(w[0], 2.5 * s[2] / sum, 0, 1e-6) && t_close(w[1], 2.5 * s[3] / sum, 0, 1e-6) &&
          t_close(w[2], 2.5 * s[7] / sum, 0, 1e-6), "weights from unbiased scores, normalised, x2.5");
    // without normalisation
    c.norm_topk_prob = 0;
    dsv3_route_token(&c, lg, bias, e, w, scratch);
    CHECK(t_close(w[0], 2.5 * s[2], 0, 1e-6) && t_close(w[2], 2.5 * s[7], 0, 1e-6), "norm_topk_prob=false");
    c.norm_topk_prob = 1;
    // -inf masking: every biased score negative. Group 0 (sum -1.0 + -1.8) vs others lower; topk_group 1,
    // K 2. With a 0.0 fill the masked experts (0.0) would beat eligible experts at -0.1 / -0.9.
    c.topk_group = 1; c.num_experts_per_tok = 2;
    const double s2[8] = {0.9, 0.1, 0.5, 0.5, 0.4, 0.4, 0.3, 0.3};
    const float nb[8] = {-1, -1, -2, -2, -2, -2, -2, -2};
    for (int i = 0; i < 8; i++) lg[i] = logit_of(s2[i]);
    dsv3_route_token(&c, lg, nb, e, w, scratch);
    CHECK(e[0] == 0 && e[1] == 1, "-inf masking keeps the chosen group: %d %d", e[0], e[1]);
    { // dsv3_route_tokens (threaded over tokens for T·E >= 8192) == the per-token loop, token by token
        enum { T = 1500 };
        static float L[T * 8], W0[T * 3], W1[T * 3];
        static int32_t E0[T * 3], E1[T * 3];
        c.topk_group = 2; c.num_experts_per_tok = 3;
        for (int i = 0; i < T * 8; i++) L[i] = 4 * rnd();
        for (int t = 0; t < T; t++) dsv3_route_token(&c, L + t * 8, bias, E0 + t * 3, W0 + t * 3, scratch);
        for (int i = 0; i < T * 3; i++) { E1[i] = -1; W1[i] = NAN; }
        dsv3_route_tokens(&c, L, bias, T, E1, W1, scratch);
        CHECK(!memcmp(E0, E1, sizeof E0) && !memcmp(W0, W1, sizeof W0), "route_tokens over %d tokens == the per-token loop", T);
        c.topk_group = 1; c.num_experts_per_tok = 2;
    }
    CHECK(t_close(w[0], 2.5 * 0.9, 0, 1e-6) && t_close(w[1], 2.5 * 0.1, 0, 1e-6), "-inf case weights %g %g", w[0], w[1]);
    // no bias, one group: plain top-K of sigmoid
    c.n_group = 1; c.topk_group = 1;
    dsv3_route_token(&c, lg, NULL, e, w, scratch);
    CHECK(e[0] == 0 && (e[1] == 2 || e[1] == 3), "n_group 1: top-2 = %d %d", e[0], e[1]);
    // V2 softmax, greedy (n_group 1): weights are softmax probabilities x scale, not normalised
    dsv3_config v = route_config();
    v.scoring = DSV3_SCORE_SOFTMAX; v.use_correction_bias = 0; v.norm_topk_prob = 0; v.routed_scaling_factor = 16.0f;
    v.n_group = 1; v.topk_group = 1; v.num_experts_per_tok = 2;
    const float vl[8] = {0, 1, 2, 3, 0, 0, 2.5f, -1};
    double z = 0;
    for (int i = 0; i < 8; i++) z += exp(vl[i]);
    dsv3_route_token(&v, vl, NULL, e, w, scratch);
    CHECK(e[0] == 3 && e[1] == 6, "V2 greedy: %d %d", e[0], e[1]);
    CHECK(t_close(w[0], 16 * exp(3.0) / z, 0, 1e-6) && t_close(w[1], 16 * exp(2.5) / z, 0, 1e-6), "V2 weights");
    // V2 with norm_topk_prob (DeepSeek's V2 MoEGate: "if top_k > 1 and norm_topk_prob: w /= sum + 1e-20
    // else: w *= routed_scaling_factor"): normalised weights are not scaled; with K = 1 only the scale applies
    v.norm_topk_prob = 1;
    dsv3_route_token(&v, vl, NULL, e, w, scratch);
    const double zz = exp(3.0) + exp(2.5);
    CHECK(e[0] == 3 && e[1] == 6 && t_close(w[0], exp(3.0) / zz, 0, 1e-6) && t_close(w[1], exp(2.5) / zz, 0, 1e-6),
          "V2 norm_topk_prob: normalised, unscaled: %g %g", w[0], w[1]);
    v.num_experts_per_tok = 1;
    dsv3_route_token(&v, vl, NULL, e, w, scratch);
    CHECK(e[0] == 3 && t_close(w[0], 16 * exp(3.0) / z, 0, 1e-6), "V2 norm_topk_prob with K = 1: scaled only: %g", w[0]);
    v.num_experts_per_tok = 2; v.norm_topk_prob = 0;
    // V2 group_limited_greedy: group score = max; groups {0,1}{2,3}{4,5}{6,7} max = 1,3,0,2.5 -> keep 1 group: g1
    v.n_group = 4; v.topk_group = 1;
    dsv3_route_token(&v, vl, NULL, e, w, scratch);
    CHECK(e[0] == 2 && e[1] == 3, "V2 group-limited: %d %d", e[0], e[1]);
    CHECK(t_close(w[0], 16 * exp(2.0) / z, 0, 1e-6), "V2 group-limited weight uses full softmax");
}

static void test_npy(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/dsv3_test_ops_%d.npy", (int)getpid());
    float a[6] = {1, -2.5f, 3, 4e-30f, -0.0f, 1e30f};
    int64_t sh[2] = {2, 3};
    CHECK(dsv3_npy_write_f32(path, a, 2, sh) == 0, "npy write: %s", dsv3_error());
    size_t n;
    char *raw = dsv3_read_file(path, &n);
    CHECK(raw && n % 64 == 24 && memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0, "npy header magic/alignment (size %zu)", n);
    if (raw) {
        size_t hl = (unsigned char)raw[8] | (size_t)(unsigned char)raw[9] << 8;
        CHECK((10 + hl) % 64 == 0 && raw[10 + hl - 1] == '\n', "header padded to 64 with trailing newline");
        CHECK(strstr(raw + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") == raw + 10, "header dict");
        free(raw);
    }
    float *b; int nd; int64_t shape[DSV3_NPY_MAX_DIMS];
    CHECK(dsv3_npy_read_f32(path, &b, &nd, shape) == 0, "npy read: %s", dsv3_error());
    if (b) {
        CHECK(nd == 2 && shape[0] == 2 && shape[1] == 3 && memcmp(a, b, sizeof a) == 0, "round trip");
        free(b);
    }
    int64_t s1[1] = {5};
    CHECK(dsv3_npy_write_f32(path, a, 1, s1) == 0, "rank-1 write");
    raw = dsv3_read_file(path, &n);
    CHECK(raw && strstr(raw + 10, "'shape': (5,), }"), "rank-1 shape spelled (5,)");
    free(raw);
    // truncated file: error, no crash
    FILE *fp = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\x76\x00{'descr'", 1, 18, fp);
    fclose(fp);
    b = NULL;
    CHECK(dsv3_npy_read_f32(path, &b, &nd, shape) == -1 && strstr(dsv3_error(), path), "truncated npy rejected");
    CHECK(dsv3_npy_write_f32("/nonexistent-dir/x.npy", a, 1, s1) == -1, "unwritable path reported");
    unlink(path);
}

int main(void) {
    test_rmsnorm();
    test_softmax_silu();
    test_yarn();
    test_scales();
    test_rope_apply();
    test_routing();
    test_npy();
    return test_report("test_ops");
}
