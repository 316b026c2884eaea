// Sampler: each filter on small hand-built logits with expected probabilities from exact math, the
// pipeline order, penalties, the full-size (V = 129280) distribution against a sort-based
// reference, the RNG stream (known answer, seeds, reset), chi-square tests of draw() and of
// speculative verify(), exact accept/unaccept rollback, settings validation, logprobs, no
// allocation after new, and the time per call at V = 129280.
#include "test.h"
#include "core/error.h"
#include "infer/sampler.h"
#include <stdint.h>
#include <time.h>

#define LN2 0.69314718055994530942
#define LN3 1.09861228866810969140
#define LN4 1.38629436111989061883

static dsv3_sampling cfg_default(void) {
    dsv3_sampling c;
    dsv3_sampling_defaults(&c);
    return c;
}

static dsv3_sampler *make(const dsv3_sampling *c, int V, int hist) {
    dsv3_sampler *s = dsv3_sampler_new(c, V, hist);
    CHECK(s != NULL, "dsv3_sampler_new: %s", dsv3_error());
    if (!s) exit(1);
    return s;
}

// dist of `logits` under `c` (fresh sampler, no history) compared with want[V] (atol 1e-6).
static void check_dist(const char *what, const dsv3_sampling *c, const float *logits, const double *want, int V) {
    dsv3_sampler *s = make(c, V, 16);
    float p[16];
    dsv3_sampler_dist(s, logits, p);
    for (int i = 0; i < V; i++)
        CHECK(t_close(p[i], want[i], 1e-6, 0) && (want[i] != 0 || p[i] == 0), "%s: p[%d] = %.9g, want %.9g", what,
              i, p[i], want[i]);
    dsv3_sampler_free(s);
}

// ---------------------------------------------------------------------------------------------
// Filters on hand-built logits

static void test_settings(void) {
    dsv3_sampling c = cfg_default();
    CHECK(c.temperature == 1 && c.top_k == 0 && c.top_p == 1 && c.min_p == 0 && c.repetition_penalty == 1 &&
              c.repeat_last_n == -1 && c.frequency_penalty == 0 && c.presence_penalty == 0 && c.seed == 0,
          "defaults");
    CHECK(dsv3_sampling_validate(&c) == 0, "defaults validate: %s", dsv3_error());

    // Each case: one field set out of range; the message must name the field.
    typedef struct { const char *field; dsv3_sampling c; } badcase;
    badcase cases[16];
    int nc = 0;
#define CASE(name, member, value) do { cases[nc].field = name; cases[nc].c = cfg_default(); \
        cases[nc].c.member = value; nc++; } while (0)
    CASE("temperature", temperature, NAN);
    CASE("temperature", temperature, INFINITY);
    CASE("top_p", top_p, 0.0f);
    CASE("top_p", top_p, 1.5f);
    CASE("top_p", top_p, NAN);
    CASE("min_p", min_p, -0.1f);
    CASE("min_p", min_p, 1.1f);
    CASE("min_p", min_p, NAN);
    CASE("repetition_penalty", repetition_penalty, 0.0f);
    CASE("repetition_penalty", repetition_penalty, -1.0f);
    CASE("repetition_penalty", repetition_penalty, NAN);
    CASE("repeat_last_n", repeat_last_n, -2);
    CASE("frequency_penalty", frequency_penalty, 2.5f);
    CASE("frequency_penalty", frequency_penalty, NAN);
    CASE("presence_penalty", presence_penalty, -3.0f);
    CASE("presence_penalty", presence_penalty, NAN);
#undef CASE
    for (int i = 0; i < nc; i++) {
        dsv3_error_clear();
        CHECK(dsv3_sampling_validate(&cases[i].c) == -1 && strstr(dsv3_error(), cases[i].field),
              "validate case %d (%s): got '%s'", i, cases[i].field, dsv3_error());
        dsv3_error_clear();
        CHECK(dsv3_sampler_new(&cases[i].c, 8, 8) == NULL && strstr(dsv3_error(), cases[i].field),
              "new rejects case %d (%s): '%s'", i, cases[i].field, dsv3_error());
    }
    // Boundary values that are valid.
    dsv3_sampling ok = cfg_default();
    ok.temperature = -1; ok.top_p = 1; ok.min_p = 1; ok.repetition_penalty = 1e-3f; ok.repeat_last_n = 0;
    ok.frequency_penalty = -2; ok.presence_penalty = 2; ok.top_k = -5;
    CHECK(dsv3_sampling_validate(&ok) == 0, "boundary values valid: %s", dsv3_error());
    CHECK(dsv3_sampler_new(&c, 0, 8) == NULL && strstr(dsv3_error(), "vocab"), "vocab 0 rejected: %s", dsv3_error());
    CHECK(dsv3_sampler_new(&c, 8, -1) == NULL && strstr(dsv3_error(), "max_history"), "max_history -1 rejected");
}

static void test_filters(void) {
    dsv3_sampling c = cfg_default();
    // softmax([0, ln2, ln3]) = [1, 2, 3] / 6.
    const float l3[3] = {0.0f, (float)LN2, (float)LN3};
    check_dist("softmax", &c, l3, (double[]){1 / 6.0, 2 / 6.0, 3 / 6.0}, 3);
    // T = 0.5 doubles the logits: exp = [1, 4, 9] -> / 14.
    c.temperature = 0.5f;
    check_dist("temperature 0.5", &c, l3, (double[]){1 / 14.0, 4 / 14.0, 9 / 14.0}, 3);
    // top_k = 2 keeps ids 1, 2: [0, 2, 3] / 5.
    c = cfg_default(); c.top_k = 2;
    check_dist("top_k 2", &c, l3, (double[]){0, 0.4, 0.6}, 3);
    c.top_k = 3;
    check_dist("top_k = V is off", &c, l3, (double[]){1 / 6.0, 2 / 6.0, 3 / 6.0}, 3);
    // Ties: logits [1, 1, 1, 0], top_k = 2 keeps the two lowest ids of the tie.
    c.top_k = 2;
    check_dist("top_k ties", &c, (float[]){1, 1, 1, 0}, (double[]){0.5, 0.5, 0, 0}, 4);

    // p = [.1, .2, .3, .4] from logits ln[1, 2, 3, 4] (ids shuffled to [.3, .1, .4, .2] to check ids).
    const float l4[4] = {(float)LN3, 0.0f, (float)LN4, (float)LN2};
    c = cfg_default(); c.top_p = 0.65f; // .4, then .7 >= .65: keep {.4, .3} -> [3, 4] / 7
    check_dist("top_p 0.65", &c, l4, (double[]){3 / 7.0, 0, 4 / 7.0, 0}, 4);
    c.top_p = 0.75f; // .4, .7, .9 >= .75: keep three -> [3, 4, 2] / 9
    check_dist("top_p 0.75", &c, l4, (double[]){3 / 9.0, 0, 4 / 9.0, 2 / 9.0}, 4);
    c.top_p = 0.3f; // .4 >= .3 alone
    check_dist("top_p 0.3", &c, l4, (double[]){0, 0, 1, 0}, 4);
    c.top_p = 1e-6f; // always keeps one
    check_dist("top_p tiny", &c, l4, (double[]){0, 0, 1, 0}, 4);
    // min-p: p_i >= min_p * 0.4. min_p 0.6 -> >= .24: {.3, .4}; 0.45 -> >= .18: {.2, .3, .4}.
    c = cfg_default(); c.min_p = 0.6f;
    check_dist("min_p 0.6", &c, l4, (double[]){3 / 7.0, 0, 4 / 7.0, 0}, 4);
    c.min_p = 0.45f;
    check_dist("min_p 0.45", &c, l4, (double[]){3 / 9.0, 0, 4 / 9.0, 2 / 9.0}, 4);
    c.min_p = 1.0f; // only the max
    check_dist("min_p 1", &c, l4, (double[]){0, 0, 1, 0}, 4);

    // Order 1: temperature before min-p. T = 0.5 squares p: [1, 4, 9, 16] / 30; min_p 0.3 keeps
    // >= 4.8 / 30: {9, 16} -> [9, 16] / 25. (At T = 1 min_p 0.3 would keep three ids.)
    c = cfg_default(); c.temperature = 0.5f; c.min_p = 0.3f;
    check_dist("temperature then min_p", &c, l4, (double[]){9 / 25.0, 0, 16 / 25.0, 0}, 4);
    // Order 2: top-p renormalises over the top-k survivors. top_k 3 -> [.2, .3, .4] / .9 =
    // [.222, .333, .444]; top_p .75: .444, .778 >= .75 keeps two -> [3, 4] / 7. (Without top-k,
    // top_p .75 keeps three ids, see above.)
    c = cfg_default(); c.top_k = 3; c.top_p = 0.75f;
    check_dist("top_k then top_p", &c, l4, (double[]){3 / 7.0, 0, 4 / 7.0, 0}, 4);
    // Order 3: min-p then top-p: min_p .45 keeps [.2, .3, .4] as above, same renormalisation.
    c = cfg_default(); c.min_p = 0.45f; c.top_p = 0.75f;
    check_dist("min_p then top_p", &c, l4, (double[]){3 / 7.0, 0, 4 / 7.0, 0}, 4);

    // Greedy: one-hot at the argmax, lowest id on ties.
    c = cfg_default(); c.temperature = 0;
    check_dist("greedy", &c, (float[]){1, 3, 3, 2}, (double[]){0, 1, 0, 0}, 4);
    c.temperature = -1;
    check_dist("greedy (negative T)", &c, l4, (double[]){0, 0, 1, 0}, 4);

    // Non-finite logits: -inf / NaN get 0; +inf ties share the mass; all -inf -> uniform.
    c = cfg_default();
    check_dist("-inf, nan", &c, (float[]){0, -INFINITY, NAN, (float)LN3}, (double[]){0.25, 0, 0, 0.75}, 4);
    check_dist("+inf", &c, (float[]){INFINITY, 5, INFINITY, 0}, (double[]){0.5, 0, 0.5, 0}, 4);
    check_dist("all -inf", &c, (float[]){-INFINITY, NAN, -INFINITY}, (double[]){1 / 3.0, 1 / 3.0, 1 / 3.0}, 3);
    c.temperature = 0;
    check_dist("greedy nan", &c, (float[]){NAN, -1, 2, NAN}, (double[]){0, 0, 1, 0}, 4);
    // A tiny temperature is effectively greedy without overflow.
    c.temperature = 1e-30f;
    check_dist("T 1e-30", &c, (float[]){1, 3, 2}, (double[]){0, 1, 0}, 3);
}

static void test_penalties(void) {
    float p[4];
    // Repetition (CTRL): r = 2 on ids 0, 1 (seen in the prompt): [2, -1, 1, .5] -> [1, -2, 1, .5].
    dsv3_sampling c = cfg_default();
    c.repetition_penalty = 2;
    dsv3_sampler *s = make(&c, 4, 16);
    dsv3_sampler_accept(s, 0, 0);
    dsv3_sampler_accept(s, 1, 0);
    dsv3_sampler_accept(s, 0, 0);
    dsv3_sampler_dist(s, (float[]){2, -1, 1, 0.5f}, p);
    double z[4] = {1, -2, 1, 0.5}, sum = 0;
    for (int i = 0; i < 4; i++) sum += exp(z[i]);
    for (int i = 0; i < 4; i++) CHECK(t_close(p[i], exp(z[i]) / sum, 1e-6, 0), "repetition p[%d]=%g", i, p[i]);
    dsv3_sampler_free(s);

    // Window: repeat_last_n 2 over history [0, 1, 2] penalises only 1, 2: [2, -1, 1, .5] -> [2, -2, .5, .5].
    c.repeat_last_n = 2;
    s = make(&c, 4, 16);
    for (int t = 0; t < 3; t++) dsv3_sampler_accept(s, t, t == 2);
    dsv3_sampler_dist(s, (float[]){2, -1, 1, 0.5f}, p);
    double zw[4] = {2, -2, 0.5, 0.5};
    sum = 0;
    for (int i = 0; i < 4; i++) sum += exp(zw[i]);
    for (int i = 0; i < 4; i++) CHECK(t_close(p[i], exp(zw[i]) / sum, 1e-6, 0), "window p[%d]=%g", i, p[i]);
    dsv3_sampler_free(s);
    c.repeat_last_n = 0; // no window: off
    s = make(&c, 4, 16);
    for (int t = 0; t < 3; t++) dsv3_sampler_accept(s, t, 1);
    dsv3_sampler_dist(s, (float[]){0, (float)LN2, (float)LN3, 0}, p);
    CHECK(t_close(p[2], 3 / 7.0, 1e-6, 0), "repeat_last_n 0 is off");
    dsv3_sampler_free(s);

    // Frequency/presence over output tokens only: prompt [1], output [0, 0, 2]; freq .5, pres 1:
    // z0 -= 2 * .5 + 1 = 2, z2 -= .5 + 1 = 1.5, z1 (prompt only) unchanged. Logits [2, 0, 1.5, 0] -> all 0
    // -> uniform.
    c = cfg_default();
    c.frequency_penalty = 0.5f;
    c.presence_penalty = 1.0f;
    s = make(&c, 4, 16);
    dsv3_sampler_accept(s, 1, 0);
    dsv3_sampler_accept(s, 0, 1);
    dsv3_sampler_accept(s, 0, 1);
    dsv3_sampler_accept(s, 2, 1);
    dsv3_sampler_dist(s, (float[]){2, 0, 1.5f, 0}, p);
    for (int i = 0; i < 4; i++) CHECK(t_close(p[i], 0.25, 1e-6, 0), "freq/presence p[%d]=%g want .25", i, p[i]);
    dsv3_sampler_free(s);

    // Penalties come before greedy's argmax: [3, 2.5] with r = 2 on output id 0 -> [1.5, 2.5] -> 1.
    c = cfg_default();
    c.temperature = 0;
    c.repetition_penalty = 2;
    s = make(&c, 2, 16);
    dsv3_sampler_accept(s, 0, 1);
    CHECK(dsv3_sampler_sample(s, (float[]){3, 2.5f}) == 1, "greedy sees the penalty");
    dsv3_sampler_reset(s);
    CHECK(dsv3_sampler_sample(s, (float[]){3, 2.5f}) == 0, "reset forgets the history");
    dsv3_sampler_free(s);
}

// ---------------------------------------------------------------------------------------------
// Full-size distribution against a sort-based reference (the O(V log V) definition).

typedef struct { float e; int32_t id; } ref_t;
static int ref_cmp(const void *pa, const void *pb) {
    const ref_t *a = pa, *b = pb;
    if (a->e != b->e) return a->e > b->e ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

// No penalties: exp((z - max) / T) stored as float (the sampler's key), sort, min-p, top-k, top-p.
static void ref_dist(const dsv3_sampling *c, const float *z, int V, double *p, ref_t *tmp) {
    float m = -INFINITY;
    for (int i = 0; i < V; i++) m = fmaxf(m, z[i]);
    int n = 0;
    for (int i = 0; i < V; i++) {
        double e = exp(((double)z[i] - m) / c->temperature);
        if (e >= c->min_p && e > 0) tmp[n++] = (ref_t){(float)e, i};
    }
    qsort(tmp, (size_t)n, sizeof *tmp, ref_cmp);
    if (c->top_k > 0 && c->top_k < n) n = c->top_k;
    double S = 0, acc = 0;
    for (int i = 0; i < n; i++) S += tmp[i].e;
    int keep = n;
    if (c->top_p < 1)
        for (int i = 0; i < n; i++) {
            acc += tmp[i].e;
            if (acc >= c->top_p * S) { keep = i + 1; break; }
        }
    double K = 0;
    for (int i = 0; i < keep; i++) K += tmp[i].e;
    memset(p, 0, (size_t)V * sizeof *p);
    for (int i = 0; i < keep; i++) p[tmp[i].id] = tmp[i].e / K;
}

static uint64_t lcg_state = 12345;
static double lcg_uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((lcg_state >> 11) + 0.5) * 0x1.0p-53;
}
static double gauss(void) { return sqrt(-2 * log(lcg_uniform())) * cos(6.283185307179586 * lcg_uniform()); }

#define VBIG 129280

static void compare_big(const char *what, const dsv3_sampling *c, const float *z, float *p, double *want, ref_t *tmp) {
    dsv3_sampler *s = make(c, VBIG, 64);
    dsv3_sampler_dist(s, z, p);
    ref_dist(c, z, VBIG, want, tmp);
    int bad_set = 0, bad_val = 0, kept = 0;
    double sum = 0;
    for (int i = 0; i < VBIG; i++) {
        bad_set += (p[i] > 0) != (want[i] > 0);
        bad_val += !t_close(p[i], want[i], 1e-9, 1e-5);
        kept += p[i] > 0;
        sum += p[i];
    }
    CHECK(bad_set == 0 && bad_val == 0, "%s: %d ids differ in the kept set, %d in value (kept %d)", what, bad_set,
          bad_val, kept);
    CHECK(t_close(sum, 1, 1e-5, 0), "%s: sums to %.9g", what, sum);
    dsv3_sampler_free(s);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void test_big(void) {
    float *z = malloc(VBIG * sizeof *z), *p = malloc(VBIG * sizeof *p);
    double *want = malloc(VBIG * sizeof *want);
    ref_t *tmp = malloc(VBIG * sizeof *tmp);
    for (int i = 0; i < VBIG; i++) z[i] = (float)(3.0 * gauss());
    dsv3_sampling c = cfg_default();
    c.top_p = 0.95f;
    compare_big("top_p .95", &c, z, p, want, tmp);
    c.temperature = 0.3f;
    compare_big("T .3 top_p .95", &c, z, p, want, tmp);
    c.top_k = 40; c.min_p = 0.05f; c.temperature = 0.8f; // llama.cpp defaults
    compare_big("llama.cpp defaults", &c, z, p, want, tmp);
    c = cfg_default(); c.top_k = 1000;
    compare_big("top_k 1000", &c, z, p, want, tmp);
    c = cfg_default(); c.min_p = 0.01f;
    compare_big("min_p .01", &c, z, p, want, tmp);
    // Many exact ties (logits on a coarse grid): tie-breaking by id decides the boundary.
    for (int i = 0; i < VBIG; i++) z[i] = (float)floor(2.0 * gauss());
    c = cfg_default(); c.top_p = 0.5f;
    compare_big("ties top_p .5", &c, z, p, want, tmp);
    c = cfg_default(); c.top_k = 7777;
    compare_big("ties top_k 7777", &c, z, p, want, tmp);

    // Time per call, V = 129280, top_p = 0.95 (informational; the numbers are in sampler.h).
    for (int i = 0; i < VBIG; i++) z[i] = (float)(3.0 * gauss());
    c = cfg_default(); c.top_p = 0.95f;
    dsv3_sampler *s = make(&c, VBIG, 4096);
    for (int t = 0; t < 200; t++) dsv3_sampler_accept(s, (int32_t)(t * 7919 % VBIG), t >= 100);
    const int reps = 40;
    unsigned long allocs = dsv3_alloc_count();
    double t0 = now_s();
    for (int r = 0; r < reps; r++) dsv3_sampler_dist(s, z, p);
    double t1 = now_s();
    for (int r = 0; r < reps; r++) dsv3_sampler_sample(s, z);
    double t2 = now_s();
    for (int i = 0; i < VBIG; i++) z[i] = 1.0f; // flat: top-p keeps 95% of the vocabulary
    double t3 = now_s();
    for (int r = 0; r < reps; r++) dsv3_sampler_sample(s, z);
    double t4 = now_s();
    CHECK(dsv3_alloc_count() == allocs, "no allocation in dist/sample");
    printf("V=%d top_p=0.95: dist %.3f ms, sample %.3f ms (gaussian sd 3); sample %.3f ms (flat)\n", VBIG,
           1e3 * (t1 - t0) / reps, 1e3 * (t2 - t1) / reps, 1e3 * (t4 - t3) / reps);
    dsv3_sampler_free(s);
    free(z); free(p); free(want); free(tmp);
}

// ---------------------------------------------------------------------------------------------
// RNG and draws

static void test_rng(void) {
    // Known answer (an independent Python SplitMix64): key(seed 0) is SplitMix64's first output
    // 0xE220A8397B1DCDAF, and the stream's first uniforms are:
    dsv3_sampling c = cfg_default();
    dsv3_sampler *a = make(&c, 4, 0);
    const double want0[3] = {0.6524484863740322, 0.7012121095215252, 0.3871241409757855};
    for (int i = 0; i < 3; i++) CHECK(dsv3_sampler_uniform(a) == want0[i], "seed 0 uniform %d", i);
    c.seed = 42;
    dsv3_sampler *b = make(&c, 4, 0);
    const double want42[3] = {0.34329192209867343, 0.9557467261317436, 0.48634953628166855};
    for (int i = 0; i < 3; i++) CHECK(dsv3_sampler_uniform(b) == want42[i], "seed 42 uniform %d", i);
    dsv3_sampler_reset(b);
    CHECK(dsv3_sampler_uniform(b) == want42[0], "reset restarts the stream");
    dsv3_sampler_free(a);
    dsv3_sampler_free(b);

    // Same seed -> same token sequence; different seed -> different; range [0, 1) and mean 1/2.
    enum { V = 50, N = 2000 };
    float z[V];
    for (int i = 0; i < V; i++) z[i] = (float)gauss();
    c = cfg_default(); c.seed = 7; c.top_p = 0.9f;
    a = make(&c, V, 0);
    b = make(&c, V, 0);
    c.seed = 8;
    dsv3_sampler *d = make(&c, V, 0);
    int same_ab = 1, same_ad = 0;
    for (int t = 0; t < N; t++) {
        int32_t x = dsv3_sampler_sample(a, z), y = dsv3_sampler_sample(b, z), w = dsv3_sampler_sample(d, z);
        same_ab &= x == y;
        same_ad += x == w;
    }
    CHECK(same_ab, "same seed, same sequence");
    CHECK(same_ad < N, "different seed, different sequence (%d of %d equal)", same_ad, N);
    dsv3_sampler_reset(a);
    double mean = 0, lo = 1, hi = 0;
    for (int t = 0; t < 100000; t++) {
        double u = dsv3_sampler_uniform(a);
        mean += u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
    }
    mean /= 100000;
    // sd of the mean = sqrt(1/12 / 1e5) = 9.1e-4; 5 sd.
    CHECK(lo >= 0 && hi < 1 && fabs(mean - 0.5) < 4.6e-3, "uniforms in [0,1), mean %.5f", mean);
    // Greedy uses no random numbers.
    c = cfg_default(); c.temperature = 0; c.seed = 42;
    dsv3_sampler *g = make(&c, V, 0);
    for (int t = 0; t < 10; t++) dsv3_sampler_sample(g, z);
    int acc;
    dsv3_sampler_verify(g, z, 3, &acc);
    CHECK(dsv3_sampler_uniform(g) == want42[0], "greedy sample/verify consume no uniforms");
    CHECK(dsv3_sampler_is_greedy(g) && !dsv3_sampler_is_greedy(a), "is_greedy");
    dsv3_sampler_free(a); dsv3_sampler_free(b); dsv3_sampler_free(d); dsv3_sampler_free(g);
}

// Chi-square statistic of counts[K] against N * p[K] over the ids with p > 0; *df = their number - 1.
// Ids with p = 0 must never be drawn (checked by the caller through *zero_hits).
static double chi_square(const long *counts, const float *p, int K, long N, int *df, long *zero_hits) {
    double x2 = 0;
    int cells = 0;
    *zero_hits = 0;
    for (int i = 0; i < K; i++) {
        if (p[i] > 0) {
            double e = N * (double)p[i];
            x2 += (counts[i] - e) * (counts[i] - e) / e;
            cells++;
        } else *zero_hits += counts[i];
    }
    *df = cells - 1;
    return x2;
}

// 99.9% quantiles of chi-square with df = 1..8 (a fixed seed makes each test deterministic; the
// bound says how surprising the outcome would be for a correct sampler).
static const double CHI2_999[9] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12};

static void test_draw_frequencies(void) {
    enum { V = 8 };
    const long N = 200000;
    float z[V] = {0.3f, -1.2f, 2.0f, 0.0f, 1.1f, -0.4f, 0.9f, -3.0f};
    dsv3_sampling c = cfg_default();
    c.seed = 2024; c.temperature = 0.9f; c.top_k = 7; // id 7 filtered out
    dsv3_sampler *s = make(&c, V, 0);
    float p[V];
    dsv3_sampler_dist(s, z, p);
    long cs[V] = {0}, cd[V] = {0};
    for (long t = 0; t < N; t++) cs[dsv3_sampler_sample(s, z)]++;
    for (long t = 0; t < N; t++) cd[dsv3_sampler_draw(s, p)]++;
    int df;
    long zero;
    double x2 = chi_square(cs, p, V, N, &df, &zero);
    CHECK(df == 6 && zero == 0 && x2 < CHI2_999[6], "sample(): chi2 %.2f (df %d, bound %.2f), %ld draws of p=0", x2,
          df, CHI2_999[6], zero);
    x2 = chi_square(cd, p, V, N, &df, &zero);
    CHECK(zero == 0 && x2 < CHI2_999[6], "draw(): chi2 %.2f (df %d, bound %.2f)", x2, df, CHI2_999[6]);
    printf("draws: chi2 %.2f (df 6, 99.9%% bound %.2f)\n", x2, CHI2_999[6]);
    dsv3_sampler_free(s);
}

// verify(): the returned token is distributed as p whatever the draft; acceptance rate = p(d).
static void test_verify(void) {
    enum { V = 6 };
    const long N = 100000;
    float z[V] = {1.0f, 0.2f, 2.1f, -0.5f, 1.6f, -2.0f};
    dsv3_sampling c = cfg_default();
    c.seed = 99; c.temperature = 0.8f; c.top_k = 5; // id 5 has p = 0
    dsv3_sampler *s = make(&c, V, 0);
    float p[V];
    dsv3_sampler_dist(s, z, p);
    const int32_t drafts[3] = {2, 3, 5}; // the argmax, a small one, a filtered one
    for (int k = 0; k < 3; k++) {
        int32_t d = drafts[k];
        long counts[V] = {0}, acc = 0, inconsistent = 0;
        for (long t = 0; t < N; t++) {
            int a;
            int32_t x = dsv3_sampler_verify(s, z, d, &a);
            counts[x]++;
            acc += a;
            inconsistent += a ? x != d : x == d;
        }
        int df;
        long zero;
        double x2 = chi_square(counts, p, V, N, &df, &zero);
        double sd = sqrt(p[d] * (1 - p[d]) / N) + 1e-12;
        CHECK(inconsistent == 0 && zero == 0, "verify d=%d: accepted <=> returns d (%ld), no p=0 token (%ld)", d,
              inconsistent, zero);
        CHECK(x2 < CHI2_999[df], "verify d=%d: returned tokens ~ p: chi2 %.2f (df %d, bound %.2f)", d, x2, df,
              CHI2_999[df]);
        CHECK(fabs((double)acc / N - p[d]) < 5 * sd, "verify d=%d: acceptance %.4f, p(d) %.4f", d, (double)acc / N,
              p[d]);
    }
    CHECK(s != NULL, "verify");
    // Only the draft kept (top_k 1): always accepted.
    c.top_k = 1;
    dsv3_sampler *one = make(&c, V, 0);
    int a;
    CHECK(dsv3_sampler_verify(one, z, 2, &a) == 2 && a == 1, "verify with p(d) = 1 accepts");
    dsv3_sampler_free(one);
    // Greedy: accepted iff argmax == d; returns the argmax.
    c = cfg_default(); c.temperature = 0;
    dsv3_sampler *g = make(&c, V, 0);
    CHECK(dsv3_sampler_verify(g, z, 2, &a) == 2 && a == 1, "greedy verify accepts the argmax");
    CHECK(dsv3_sampler_verify(g, z, 4, &a) == 2 && a == 0, "greedy verify rejects and returns the argmax");
    dsv3_sampler_free(g);
    dsv3_sampler_free(s);
}

// ---------------------------------------------------------------------------------------------
// History rollback

static dsv3_sampling penalty_cfg(int repeat_last_n) {
    dsv3_sampling c = cfg_default();
    c.repetition_penalty = 1.3f; c.repeat_last_n = repeat_last_n;
    c.frequency_penalty = 0.37f; c.presence_penalty = 0.21f;
    return c;
}

// dist of a fresh sampler fed toks[0..n) (out[i]: output flag) equals that of `s` bitwise.
static int same_as_rebuilt(dsv3_sampler *s, const dsv3_sampling *c, int V, int hist, const int32_t *toks,
                           const uint8_t *out, int n, const float *z) {
    dsv3_sampler *r = make(c, V, hist);
    for (int i = 0; i < n; i++) dsv3_sampler_accept(r, toks[i], out[i]);
    float pa[32], pb[32];
    dsv3_sampler_dist(s, z, pa);
    dsv3_sampler_dist(r, z, pb);
    dsv3_sampler_free(r);
    return memcmp(pa, pb, (size_t)V * sizeof *pa) == 0;
}

static void test_unaccept(void) {
    enum { V = 16 };
    float z[V], before_p[V], after_p[V];
    for (int i = 0; i < V; i++) z[i] = (float)gauss();
    dsv3_sampling c = penalty_cfg(3);
    dsv3_sampler *s = make(&c, V, 100);
    const int32_t prompt[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) dsv3_sampler_accept(s, prompt[i], 0);
    dsv3_sampler_accept(s, 4, 1);
    dsv3_sampler_accept(s, 4, 1);
    dsv3_sampler_dist(s, z, before_p);
    dsv3_sampler_accept(s, 5, 1);
    dsv3_sampler_accept(s, 2, 1);
    dsv3_sampler_accept(s, 4, 1);
    dsv3_sampler_dist(s, z, after_p);
    CHECK(memcmp(before_p, after_p, sizeof before_p) != 0, "accepting changes the distribution");
    dsv3_sampler_unaccept(s, 3);
    dsv3_sampler_dist(s, z, after_p);
    CHECK(memcmp(before_p, after_p, sizeof before_p) == 0, "accept 3 + unaccept 3 restores dist exactly");
    dsv3_sampler_unaccept(s, 0);
    dsv3_sampler_dist(s, z, after_p);
    CHECK(memcmp(before_p, after_p, sizeof before_p) == 0, "unaccept 0 is a no-op");
    dsv3_sampler_free(s);

    // Random accept/unaccept sequences against a rebuild from the committed list, for windows
    // -1 (whole history), 0, 1, 5, and a history small enough to overflow (max_history 6: rollback
    // stays exact for up to DSV3_SAMPLER_ROLLBACK tokens past the overflow).
    const int windows[4] = {-1, 0, 1, 5}, hists[2] = {200, 6};
    int32_t toks[400];
    uint8_t out[400];
    for (int h = 0; h < 2; h++)
        for (int w = 0; w < 4; w++) {
            c = penalty_cfg(windows[w]);
            s = make(&c, V, hists[h]);
            int n = 0, ok = 1;
            for (int op = 0; op < 300 && ok; op++) {
                double r = lcg_uniform();
                if (r < 0.3 && n > 0) {
                    int k = 1 + (int)(lcg_uniform() * (n < 5 ? n : 5));
                    dsv3_sampler_unaccept(s, k);
                    n -= k;
                } else if (n < 200) {
                    toks[n] = (int32_t)(lcg_uniform() * 6); // few distinct ids: counts > 1
                    out[n] = n >= 4;
                    dsv3_sampler_accept(s, toks[n], out[n]);
                    n++;
                }
                ok = same_as_rebuilt(s, &c, V, hists[h], toks, out, n, z);
            }
            CHECK(ok, "random accept/unaccept = rebuild (window %d, max_history %d)", windows[w], hists[h]);
            dsv3_sampler_free(s);
        }

    // Unaccept all the way back to empty after overflowing by less than DSV3_SAMPLER_ROLLBACK.
    c = penalty_cfg(-1);
    s = make(&c, V, 4);
    dsv3_sampler_dist(s, z, before_p);
    for (int i = 0; i < 4 + DSV3_SAMPLER_ROLLBACK - 4; i++) dsv3_sampler_accept(s, (int32_t)(i % 7), 1);
    dsv3_sampler_unaccept(s, 4 + DSV3_SAMPLER_ROLLBACK - 4);
    dsv3_sampler_dist(s, z, after_p);
    CHECK(memcmp(before_p, after_p, sizeof before_p) == 0, "unaccept back to empty across the ring");
    dsv3_sampler_free(s);
}

// ---------------------------------------------------------------------------------------------
// Logprobs

static void test_logprobs(void) {
    // Direct: log(exp(z_i) / sum exp(z)) in double, for [1, 2, 3, 3, -inf, nan].
    const float z[6] = {1, 2, 3, 3, -INFINITY, NAN};
    double sum = exp(1.0) + exp(2.0) + 2 * exp(3.0);
    int32_t ids[4] = {-1, -1, -1, -1};
    float lp[4] = {0};
    float l0 = dsv3_logprobs(z, 6, 0, 3, ids, lp);
    CHECK(t_close(l0, log(exp(1.0) / sum), 1e-6, 0), "logprob of 0: %g", l0);
    CHECK(ids[0] == 2 && ids[1] == 3 && ids[2] == 1 && ids[3] == -1, "top-3 ids (ties by lower id): %d %d %d",
          ids[0], ids[1], ids[2]);
    CHECK(t_close(lp[0], log(exp(3.0) / sum), 1e-6, 0) && lp[0] == lp[1] && t_close(lp[2], log(exp(2.0) / sum), 1e-6, 0),
          "top-3 logprobs %g %g %g", lp[0], lp[1], lp[2]);
    CHECK(dsv3_logprobs(z, 6, 4, 0, NULL, NULL) == -INFINITY, "-inf logit -> -inf");
    CHECK(dsv3_logprobs(z, 6, 5, 0, NULL, NULL) == -INFINITY, "nan logit counts as -inf");
    int32_t all_ids[8];
    float all_lp[8];
    dsv3_logprobs(z, 6, 0, 8, all_ids, all_lp); // top_n > V clamps
    CHECK(all_ids[4] == 4 && all_ids[5] == 5 && all_lp[5] == -INFINITY, "top_n > V lists all ids");
    CHECK(t_close(dsv3_logprobs((float[]){INFINITY, 0, INFINITY}, 3, 2, 0, NULL, NULL), -LN2, 1e-7, 0),
          "+inf ties share the mass");
    // Raw logits: penalties/temperature do not enter, so a large vector matches direct math.
    enum { V = 5000 };
    static float big[V];
    double s = 0, m = -1e30;
    for (int i = 0; i < V; i++) { big[i] = (float)(4 * gauss()); m = fmax(m, big[i]); }
    for (int i = 0; i < V; i++) s += exp(big[i] - m);
    int32_t top[5];
    float tlp[5];
    float lc = dsv3_logprobs(big, V, 17, 5, top, tlp);
    CHECK(t_close(lc, big[17] - m - log(s), 1e-5, 0), "logprob on V=5000: %g vs %g", lc, big[17] - m - log(s));
    int ok = 1;
    for (int j = 0; j < 5; j++) {
        int better = 0; // ids strictly ahead of top[j]
        for (int i = 0; i < V; i++) better += big[i] > big[top[j]] || (big[i] == big[top[j]] && i < top[j]);
        ok &= better == j && t_close(tlp[j], big[top[j]] - m - log(s), 1e-5, 0);
    }
    CHECK(ok, "top-5 on V=5000 are the 5 largest, in order, with their logprobs");
}

int main(void) {
    test_settings();
    test_filters();
    test_penalties();
    test_rng();
    test_draw_frequencies();
    test_verify();
    test_unaccept();
    test_logprobs();
    test_big();
    return test_report("test_sampler");
}
