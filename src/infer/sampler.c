// Token sampler (see sampler.h for the pipeline, the RNG and the history rules).
#include "infer/sampler.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DSV3_SAMPLER_BUCKETS 1024 // float bits >> 20 of e in (0, 1] are <= 1016
#define DRAW_BLOCK 256

// A candidate id with its e = exp((z - zmax) / T) (= p / p_max before the final normalisation).
typedef struct { float v; int32_t id; } cand_t;

struct dsv3_sampler {
    dsv3_sampling cfg;
    int V;
    int window;       // repetition window W = min(repeat_last_n, max_history) (repeat_last_n -1: max_history)
    int cap;          // ring capacity: max_history + DSV3_SAMPLER_ROLLBACK
    int64_t n;        // tokens recorded since the reset (index of the next one)
    int64_t n_max;    // largest n since the reset: ring slots hold indices [n_max - cap, n)
    uint64_t key;     // RNG key derived from the seed
    uint64_t counter; // uniforms consumed since the reset
    int32_t *out_count; // [V] output tokens per id (frequency / presence)
    int32_t *rep_count; // [V] tokens per id in the repetition window
    int32_t *ring;      // [cap] token of index i at slot i % cap
    uint8_t *ring_out;  // [cap] 1 if that token is an output token
    float *z;           // [V] penalised logits, then e = p / p_max (scratch of dist)
    cand_t *cand;       // [V] kept ids (front) and the boundary bucket's ids (back)
    float *p;           // [V] the distribution sample() and verify() draw from
    double *block;      // [ceil(V / DRAW_BLOCK)] block masses of a draw
    int32_t hist_n[DSV3_SAMPLER_BUCKETS];   // ids per bucket of e (see histogram())
    double hist_mass[DSV3_SAMPLER_BUCKETS]; // their summed e
};

// ---------------------------------------------------------------------------------------------
// Settings

void dsv3_sampling_defaults(dsv3_sampling *s) {
    memset(s, 0, sizeof *s);
    s->temperature = 1.0f;
    s->top_k = 0;
    s->top_p = 1.0f;
    s->min_p = 0.0f;
    s->repetition_penalty = 1.0f;
    s->repeat_last_n = -1;
    s->frequency_penalty = 0.0f;
    s->presence_penalty = 0.0f;
    s->seed = 0;
}

// Written so that NaN fails every range test (comparisons with NaN are false).
int dsv3_sampling_validate(const dsv3_sampling *s) {
    if (!isfinite(s->temperature))
        return dsv3_errorf("sampling: temperature must be a finite number (<= 0 means greedy), got %g",
                           (double)s->temperature);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return dsv3_errorf("sampling: top_p must be in (0, 1] (1 = off), got %g", (double)s->top_p);
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f))
        return dsv3_errorf("sampling: min_p must be in [0, 1] (0 = off), got %g", (double)s->min_p);
    if (!(s->repetition_penalty > 0.0f && isfinite(s->repetition_penalty)))
        return dsv3_errorf("sampling: repetition_penalty must be a finite number > 0 (1 = off), got %g",
                           (double)s->repetition_penalty);
    if (s->repeat_last_n < -1)
        return dsv3_errorf("sampling: repeat_last_n must be >= -1 (-1 = whole history, 0 = none), got %d",
                           s->repeat_last_n);
    if (!(s->frequency_penalty >= -2.0f && s->frequency_penalty <= 2.0f))
        return dsv3_errorf("sampling: frequency_penalty must be in [-2, 2] (0 = off), got %g",
                           (double)s->frequency_penalty);
    if (!(s->presence_penalty >= -2.0f && s->presence_penalty <= 2.0f))
        return dsv3_errorf("sampling: presence_penalty must be in [-2, 2] (0 = off), got %g",
                           (double)s->presence_penalty);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// RNG: counter-based SplitMix64

#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t splitmix_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double dsv3_sampler_uniform(dsv3_sampler *s) {
    uint64_t x = splitmix_mix(s->key + (s->counter + 1) * SPLITMIX_GAMMA);
    s->counter++;
    return (double)(x >> 11) * 0x1.0p-53; // top 53 bits: exactly representable, < 1
}

// ---------------------------------------------------------------------------------------------
// Lifetime and history

dsv3_sampler *dsv3_sampler_new(const dsv3_sampling *cfg, int vocab, int max_history) {
    if (dsv3_sampling_validate(cfg) != 0) return NULL;
    if (vocab < 1) { dsv3_errorf("sampler: vocab must be >= 1, got %d", vocab); return NULL; }
    if (max_history < 0 || max_history > INT32_MAX - DSV3_SAMPLER_ROLLBACK) {
        dsv3_errorf("sampler: max_history must be in [0, %d], got %d", INT32_MAX - DSV3_SAMPLER_ROLLBACK,
                    max_history);
        return NULL;
    }
    dsv3_sampler *s = dsv3_calloc(1, sizeof *s);
    s->cfg = *cfg;
    s->V = vocab;
    s->cap = max_history + DSV3_SAMPLER_ROLLBACK;
    s->window = cfg->repeat_last_n < 0 || cfg->repeat_last_n > max_history ? max_history : cfg->repeat_last_n;
    s->key = splitmix_mix(cfg->seed + SPLITMIX_GAMMA);
    s->out_count = dsv3_calloc((size_t)vocab, sizeof *s->out_count);
    s->rep_count = dsv3_calloc((size_t)vocab, sizeof *s->rep_count);
    s->ring = dsv3_malloc((size_t)s->cap * sizeof *s->ring);
    s->ring_out = dsv3_malloc((size_t)s->cap);
    s->z = dsv3_malloc((size_t)vocab * sizeof *s->z);
    s->cand = dsv3_malloc((size_t)vocab * sizeof *s->cand);
    s->block = dsv3_malloc((size_t)((vocab + DRAW_BLOCK - 1) / DRAW_BLOCK) * sizeof *s->block);
    s->p = dsv3_malloc((size_t)vocab * sizeof *s->p);
    return s;
}

void dsv3_sampler_free(dsv3_sampler *s) {
    if (!s) return;
    free(s->out_count);
    free(s->rep_count);
    free(s->ring);
    free(s->ring_out);
    free(s->z);
    free(s->cand);
    free(s->block);
    free(s->p);
    free(s);
}

void dsv3_sampler_reset(dsv3_sampler *s) {
    memset(s->out_count, 0, (size_t)s->V * sizeof *s->out_count);
    memset(s->rep_count, 0, (size_t)s->V * sizeof *s->rep_count);
    s->n = s->n_max = 0;
    s->counter = 0;
}

static int32_t ring_at(const dsv3_sampler *s, int64_t i) { return s->ring[i % s->cap]; }
// Whether the token of index i is still in the ring (not overwritten by index i + cap).
static int ring_has(const dsv3_sampler *s, int64_t i) { return i >= 0 && i >= s->n_max - s->cap && i < s->n; }

void dsv3_sampler_accept(dsv3_sampler *s, int32_t token, int is_output) {
    DSV3_ASSERT(token >= 0 && token < s->V);
    int64_t i = s->n;
    s->ring[i % s->cap] = token;
    s->ring_out[i % s->cap] = is_output != 0;
    if (is_output) s->out_count[token]++;
    if (s->window > 0) {
        s->rep_count[token]++;
        // Index i - W leaves the window. It is in the ring: W <= max_history < cap, and after an
        // unaccept down to n, unaccept checked that index n - W was still there.
        if (i - s->window >= 0) s->rep_count[ring_at(s, i - s->window)]--;
    }
    s->n = i + 1;
    if (s->n > s->n_max) s->n_max = s->n;
}

void dsv3_sampler_unaccept(dsv3_sampler *s, int n) {
    DSV3_ASSERT(n >= 0 && n <= s->n);
    for (int k = 0; k < n; k++) {
        int64_t i = s->n - 1;
        DSV3_ASSERT(ring_has(s, i));
        int32_t token = ring_at(s, i);
        if (s->ring_out[i % s->cap]) s->out_count[token]--;
        if (s->window > 0) {
            s->rep_count[token]--;
            int64_t back = i - s->window; // re-enters the window
            if (back >= 0) {
                DSV3_ASSERT(ring_has(s, back)); // more than DSV3_SAMPLER_ROLLBACK past an overflow
                s->rep_count[ring_at(s, back)]++;
            }
        }
        s->n = i;
    }
}

int dsv3_sampler_is_greedy(const dsv3_sampler *s) { return !(s->cfg.temperature > 0.0f); }

// ---------------------------------------------------------------------------------------------
// Vectorisable pieces. The per-token passes over V run as SIMD loops (omp simd: -fopenmp is on),
// so they are written branch-free.

// exp(x) for x <= 0, clamped at x >= -87 (e^-87 = 1.6e-38, just above the smallest normal float).
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the degree-7 Taylor polynomial
// (truncation < 5e-9 relative); <= 2 ulp overall, exactly 1 at 0, never above 1. Callers drop
// values under EXP_FLOOR (ids with p / p_max < 2e-38 get probability 0). The clamp is done on the
// bits (for x <= 0 a larger uint32 pattern is a more negative float, -inf included): GCC, with its
// default -ftrapping-math, does not if-convert (so does not vectorise) a float select whose result
// feeds more float arithmetic.
#define EXP_FLOOR 2e-38f
static inline float exp_clamped(float x) {
    uint32_t xb;
    memcpy(&xb, &x, sizeof xb);
    const uint32_t lo = 0xC2AE0000u; // -87.0f
    xb = xb > lo ? lo : xb;
    memcpy(&x, &xb, sizeof x);
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; // round to nearest (1.5 * 2^23 trick)
    float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;    // ln2 split: n * hi is exact
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; // 2^n, n in [-126, 0]
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = p * scale;
    return e > 1.0f ? 1.0f : e;
}

static float max_of(const float *z, int n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int i = 0; i < n; i++) m = z[i] > m ? z[i] : m;
    return m;
}

static double sum_of(const float *x, int n) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

// ---------------------------------------------------------------------------------------------
// Penalties

// z[0, V) = the penalised logits (NaN -> -inf). Counts are zero for ids outside the window /
// never output, so the branch-free selects leave those logits unchanged.
static void penalised_logits(const dsv3_sampler *s, const float *logits, float *z) {
    const dsv3_sampling *c = &s->cfg;
    const int V = s->V;
#pragma omp simd
    for (int i = 0; i < V; i++) z[i] = logits[i] != logits[i] ? -INFINITY : logits[i];
    if (c->repetition_penalty != 1.0f && s->window > 0) {
        const float r = c->repetition_penalty;
        const int32_t *cnt = s->rep_count;
#pragma omp simd
        for (int i = 0; i < V; i++) {
            float pen = z[i] > 0.0f ? z[i] / r : z[i] * r;
            z[i] = cnt[i] > 0 ? pen : z[i];
        }
    }
    if (c->frequency_penalty != 0.0f || c->presence_penalty != 0.0f) {
        const float fr = c->frequency_penalty, pr = c->presence_penalty;
        const int32_t *cnt = s->out_count;
#pragma omp simd
        for (int i = 0; i < V; i++) z[i] -= cnt[i] > 0 ? (float)cnt[i] * fr + pr : 0.0f;
    }
}

// Lowest id among the largest values.
static int32_t argmax_of(const float *z, int n) {
    float m = max_of(z, n);
    int32_t i = 0;
    while (i < n - 1 && !(z[i] == m)) i++;
    return i;
}

// ---------------------------------------------------------------------------------------------
// Selection without a full sort. Order: larger value first, ties by lower id (a total order, so
// "the first k" and "the shortest prefix" are well defined and partitions have no equal keys).

static int before(cand_t a, cand_t b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static int cmp_cand(const void *pa, const void *pb) {
    cand_t a = *(const cand_t *)pa, b = *(const cand_t *)pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void swap_cand(cand_t *a, int i, int j) { cand_t t = a[i]; a[i] = a[j]; a[j] = t; }

static void sort_range(cand_t *a, int lo, int hi) {
    if (hi - lo > 32) { qsort(a + lo, (size_t)(hi - lo), sizeof *a, cmp_cand); return; }
    for (int i = lo + 1; i < hi; i++) {
        cand_t x = a[i];
        int j = i;
        for (; j > lo && before(x, a[j - 1]); j--) a[j] = a[j - 1];
        a[j] = x;
    }
}

// Partition a[lo, hi) (hi - lo >= 3) around a median-of-three pivot; returns its final index p:
// a[lo, p) come before the pivot, a(p, hi) after it.
static int partition(cand_t *a, int lo, int hi) {
    int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (before(a[mid], a[lo])) swap_cand(a, mid, lo);
    if (before(a[last], a[lo])) swap_cand(a, last, lo);
    if (before(a[last], a[mid])) swap_cand(a, last, mid);
    swap_cand(a, mid, last); // median to the end as the pivot
    cand_t pv = a[last];
    int p = lo;
    for (int i = lo; i < last; i++)
        if (before(a[i], pv)) swap_cand(a, i, p++);
    swap_cand(a, p, last);
    return p;
}

// Partition rounds before giving up and sorting the range (keeps the worst case O(n log n)).
static int select_budget(int n) {
    int b = 8;
    while (n > 1) { n >>= 1; b += 2; }
    return b;
}

// Rearrange a[0, n) so that a[0, k) are its first k elements in order (0 <= k <= n; not sorted).
static void select_first_k(cand_t *a, int n, int k) {
    if (k <= 0 || k >= n) return;
    int lo = 0, hi = n, budget = select_budget(n);
    while (hi - lo > 16 && budget-- > 0) {
        int p = partition(a, lo, hi);
        if (p == k || p == k - 1) return; // a[0, k) = the front part (+ the pivot)
        if (p > k) hi = p;
        else lo = p + 1;
    }
    sort_range(a, lo, hi);
}

static double sum_range(const cand_t *a, int lo, int hi) {
    double s = 0.0;
    for (int i = lo; i < hi; i++) s += a[i].v;
    return s;
}

// Values are masses (>= 0). Rearrange a[0, n) so that a[0, m) is the shortest prefix in order with
// mass >= need, and return m (n if rounding leaves the whole set short of need).
// Quickselect by mass: after each partition either the prefix lies in the front part (drop the
// rest) or the front part and the pivot are all kept (take their mass off what is needed).
static int select_mass(cand_t *a, int n, double need) {
    int lo = 0, hi = n, budget = select_budget(n); // a[0, lo) are kept
    while (hi - lo > 16 && budget-- > 0) {
        int p = partition(a, lo, hi);
        double front = sum_range(a, lo, p);
        if (front >= need) hi = p;
        else if (front + a[p].v >= need) return p + 1;
        else { need -= front + a[p].v; lo = p + 1; }
    }
    sort_range(a, lo, hi);
    double acc = 0.0;
    for (int i = lo; i < hi; i++) {
        acc += a[i].v;
        if (acc >= need) return i + 1;
    }
    return hi;
}

// ---------------------------------------------------------------------------------------------
// Histogram front end of the selections. Bucket = the float bits of e >> 20 (e in (0, 1]: bits
// are monotone in e; 8 buckets per binade, e = 1 in bucket 1016). One pass counts ids and sums
// mass per bucket; the boundary bucket is found by scanning buckets from the top; one more pass
// gathers the ids above it (all kept) and those in it (the only ones that need ordering), so
// partitions only ever see the boundary bucket.

static int bucket_of(float e) {
    uint32_t b;
    memcpy(&b, &e, sizeof b);
    return (int)(b >> 20);
}

static void histogram(dsv3_sampler *s, const float *e) {
    memset(s->hist_n, 0, sizeof s->hist_n);
    memset(s->hist_mass, 0, sizeof s->hist_mass);
    for (int i = 0; i < s->V; i++)
        if (e[i] > 0.0f) {
            int b = bucket_of(e[i]);
            s->hist_n[b]++;
            s->hist_mass[b] += e[i];
        }
}

// cand[0, na) = ids with e in buckets above B, and the ids in bucket B at cand[V - nb, V).
// Returns na; *nb set.
static int gather(dsv3_sampler *s, const float *e, int B, int *nb) {
    cand_t *c = s->cand;
    int na = 0, back = s->V;
    for (int32_t i = 0; i < s->V; i++) {
        if (!(e[i] > 0.0f)) continue;
        int b = bucket_of(e[i]);
        if (b > B) c[na++] = (cand_t){e[i], i};
        else if (b == B) c[--back] = (cand_t){e[i], i};
    }
    *nb = s->V - back;
    return na;
}

// Append the first m of the boundary region (already selected to its front) after the na kept.
static int append_region(dsv3_sampler *s, int na, int nb, int m) {
    memmove(s->cand + na, s->cand + (s->V - nb), (size_t)m * sizeof *s->cand);
    return na + m;
}

// The k first ids in order among those with e > 0 (all of them if fewer) into cand[0, n).
static int keep_top_k(dsv3_sampler *s, const float *e, int k) {
    int B = DSV3_SAMPLER_BUCKETS - 1, above = 0;
    for (; B > 0 && above + s->hist_n[B] < k; B--) above += s->hist_n[B];
    int nb, na = gather(s, e, B, &nb);
    DSV3_ASSERT(na == above);
    int m = k - above < nb ? k - above : nb;
    select_first_k(s->cand + (s->V - nb), nb, m);
    return append_region(s, na, nb, m);
}

// The shortest prefix in order of the ids with e > 0 whose mass is >= need, into cand[0, n).
static int keep_top_p(dsv3_sampler *s, const float *e, double need) {
    int B = DSV3_SAMPLER_BUCKETS - 1;
    double above = 0.0;
    for (; B > 0 && above + s->hist_mass[B] < need; B--) above += s->hist_mass[B];
    int nb, na = gather(s, e, B, &nb);
    int m = select_mass(s->cand + (s->V - nb), nb, need - above);
    return append_region(s, na, nb, m);
}

// ---------------------------------------------------------------------------------------------
// The distribution

static void one_hot(float *p, int V, int32_t id) {
    memset(p, 0, (size_t)V * sizeof *p);
    p[id] = 1.0f;
}

// In place: z -> e = exp((z - zmax) / T) = p_i / p_max, and 0 where min-p drops the id. An
// infinite zmax (every logit -inf, or some +inf) gives the ids equal to it e = 1, the rest 0.
static void tempered_min_p(float *z, int V, float zmax, float T, float min_p) {
    if (!isfinite(zmax)) {
        for (int i = 0; i < V; i++) z[i] = z[i] == zmax ? 1.0f : 0.0f;
        return;
    }
    const float floor = min_p > EXP_FLOOR ? min_p : EXP_FLOOR;
#pragma omp simd
    for (int i = 0; i < V; i++) {
        float e = exp_clamped((z[i] - zmax) / T);
        z[i] = e < floor ? 0.0f : e;
    }
}

// p = e / sum(e) over cand[0, n) (zero elsewhere).
static void scatter_normalised(const dsv3_sampler *s, int n, float *p) {
    double inv = 1.0 / sum_range(s->cand, 0, n);
    memset(p, 0, (size_t)s->V * sizeof *p);
    for (int i = 0; i < n; i++) p[s->cand[i].id] = (float)(s->cand[i].v * inv);
}

void dsv3_sampler_dist(dsv3_sampler *s, const float *logits, float *p) {
    const dsv3_sampling *c = &s->cfg;
    const int V = s->V;
    float *e = s->z;
    penalised_logits(s, logits, e);
    if (dsv3_sampler_is_greedy(s)) { one_hot(p, V, argmax_of(e, V)); return; }
    tempered_min_p(e, V, max_of(e, V), c->temperature, c->min_p);

    const int top_k = c->top_k > 0 && c->top_k < V, top_p = c->top_p < 1.0f;
    if (!top_k && !top_p) { // min-p at most: no ordering needed
        double inv = 1.0 / sum_of(e, V); // >= 1: the max has e = 1
#pragma omp simd
        for (int i = 0; i < V; i++) p[i] = (float)(e[i] * inv);
        return;
    }
    histogram(s, e);
    int n;
    if (top_k) {
        n = keep_top_k(s, e, c->top_k);
        if (top_p) n = select_mass(s->cand, n, (double)c->top_p * sum_range(s->cand, 0, n));
    } else {
        double total = 0.0;
        for (int b = 0; b < DSV3_SAMPLER_BUCKETS; b++) total += s->hist_mass[b];
        n = keep_top_p(s, e, (double)c->top_p * total);
    }
    DSV3_ASSERT(n >= 1);
    scatter_normalised(s, n, p);
}

// ---------------------------------------------------------------------------------------------
// Draws

// Inverse CDF in id order: the first id (with p > 0) whose cumulative mass exceeds u * sum(p).
// Mass is summed per block of DRAW_BLOCK ids (a SIMD loop) and the total is the sum of those
// block sums, so the walk skips whole blocks consistently and only scans inside one. Falls back
// to the last id with mass (rounding), or 0 when p has no mass.
static double block_mass(const float *p, int lo, int hi) {
    double m = 0.0;
#pragma omp simd reduction(+ : m)
    for (int i = lo; i < hi; i++) m += p[i] > 0.0f ? p[i] : 0.0f; // also drops NaN
    return m;
}

static int32_t inverse_cdf(dsv3_sampler *s, const float *p, double u) {
    const int V = s->V, nblk = (V + DRAW_BLOCK - 1) / DRAW_BLOCK;
    double total = 0.0;
    for (int b = 0; b < nblk; b++) {
        int lo = b * DRAW_BLOCK, hi = lo + DRAW_BLOCK < V ? lo + DRAW_BLOCK : V;
        s->block[b] = block_mass(p, lo, hi);
        total += s->block[b];
    }
    double t = u * total, acc = 0.0;
    int32_t last = -1;
    for (int b = 0; b < nblk; b++) {
        if (!(s->block[b] > 0.0)) continue;
        if (acc + s->block[b] <= t) { acc += s->block[b]; continue; }
        int lo = b * DRAW_BLOCK, hi = lo + DRAW_BLOCK < V ? lo + DRAW_BLOCK : V;
        double in = acc;
        for (int i = lo; i < hi; i++) {
            if (!(p[i] > 0.0f)) continue;
            in += p[i];
            last = i;
            if (in > t) return i;
        }
        acc += s->block[b]; // rounding put the crossing past this block: go on with the next
    }
    if (last < 0)
        for (int i = V - 1; i >= 0 && last < 0; i--)
            if (p[i] > 0.0f) last = i;
    return last >= 0 ? last : 0;
}

int32_t dsv3_sampler_draw(dsv3_sampler *s, const float *p) { return inverse_cdf(s, p, dsv3_sampler_uniform(s)); }

static int32_t argmax_penalised(dsv3_sampler *s, const float *logits) {
    penalised_logits(s, logits, s->z);
    return argmax_of(s->z, s->V);
}

int32_t dsv3_sampler_sample(dsv3_sampler *s, const float *logits) {
    if (dsv3_sampler_is_greedy(s)) return argmax_penalised(s, logits);
    dsv3_sampler_dist(s, logits, s->p);
    return dsv3_sampler_draw(s, s->p);
}

int32_t dsv3_sampler_verify(dsv3_sampler *s, const float *logits, int32_t draft, int *accepted) {
    DSV3_ASSERT(draft >= 0 && draft < s->V);
    if (dsv3_sampler_is_greedy(s)) {
        int32_t arg = argmax_penalised(s, logits);
        *accepted = arg == draft;
        return arg;
    }
    dsv3_sampler_dist(s, logits, s->p);
    double pd = s->p[draft], u = dsv3_sampler_uniform(s);
    // P(accept) = p(d); on a reject, a draw from p without d. Together: P(x) = p(x) for every x.
    if (u < pd || pd >= 1.0) { *accepted = 1; return draft; }
    *accepted = 0;
    s->p[draft] = 0.0f; // p is our scratch: remove d's mass, inverse_cdf renormalises
    return inverse_cdf(s, s->p, (u - pd) / (1.0 - pd));
}

// ---------------------------------------------------------------------------------------------
// Logprobs

static float finite_or_neg_inf(float z) { return isnan(z) ? -INFINITY : z; }

// Insert (z, id) into the descending list ids/zs of length *len (capacity cap) if it belongs there.
// Ids arrive in increasing order, so an equal value goes after the ones already present.
static void top_insert(int32_t *ids, float *zs, int *len, int cap, float z, int32_t id) {
    if (*len == cap && !(z > zs[cap - 1])) return;
    int j = *len < cap ? (*len)++ : cap - 1;
    for (; j > 0 && z > zs[j - 1]; j--) { zs[j] = zs[j - 1]; ids[j] = ids[j - 1]; }
    zs[j] = z;
    ids[j] = id;
}

// log p for logit z given the max m and, when m is finite, lse = m + log(sum exp(z - m)); when m is
// infinite the ids equal to it share the mass (n_at_max of them).
static double log_softmax_at(float z, float m, double lse, int n_at_max) {
    if (isinf(m)) return z == m ? -log((double)n_at_max) : -INFINITY;
    return (double)z - lse;
}

float dsv3_logprobs(const float *logits, int V, int32_t chosen, int top_n, int32_t *top_ids, float *top_lp) {
    DSV3_ASSERT(V >= 1 && chosen >= 0 && chosen < V && top_n >= 0);
    if (top_n > V) top_n = V;
    float m = max_of(logits, V); // NaN compares false: ignored
    double sum = 0.0, lse = 0.0;
    int n_at_max = 0;
    if (isinf(m)) {
        for (int i = 0; i < V; i++) n_at_max += finite_or_neg_inf(logits[i]) == m;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) sum += exp_clamped(finite_or_neg_inf(logits[i]) - m); // <= V e^-87 from -inf ids: nothing
        lse = (double)m + log(sum);
    }
    int len = 0;
    for (int i = 0; i < V && top_n; i++) top_insert(top_ids, top_lp, &len, top_n, finite_or_neg_inf(logits[i]), i);
    for (int j = 0; j < len; j++) top_lp[j] = (float)log_softmax_at(top_lp[j], m, lse, n_at_max);
    return (float)log_softmax_at(finite_or_neg_inf(logits[chosen]), m, lse, n_at_max);
}
