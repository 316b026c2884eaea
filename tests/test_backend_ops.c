// The kernel-backend table (src/kernels/backend.h), ggml test-backend-ops style:
//  1. every op of each backend's backward against central finite differences of a double-precision
//     forward written here (so the reference itself is checked against calculus, not just against
//     another implementation);
//  2. every op of the fast CPU backend against the scalar reference backend, on many shapes
//     including edge sizes, on every instruction-set path this machine can run (amx, avx512, avx2,
//     scalar; a path it cannot run is printed as SKIP with its name), threaded and from inside a
//     parallel region, with canary floats around every output buffer checked after each call; the
//     BF16 GEMM at its hardware levels against its own reference;
//  3. dsv3_matmul (GEMV and GEMM for every weight dtype) at every level against dsv3_matmul_ref;
//  4. the inference forward's rmsnorm / swiglu / softmax (kernels/cpu/ops.h) at every level against
//     their scalar definitions. (The packed-weight cache's GEMM: tests/test_wpack.c.)
//
// Error bounds. u = 2^-24 is the fp32 unit roundoff. A length-n fp32 sum in any order has error
// ≤ (n−1)·u·Σ|terms| (Higham, Accuracy and Stability, §3.1), so two implementations that differ
// only in summation order (blocking, SIMD lanes, FMA) differ by at most ≈ 2·n·u·Σ|terms|. Where the
// test can form Σ|terms| exactly (GEMM: the product of |A| and |B|) it uses that elementwise
// bound; elsewhere it uses a normwise bound ‖x − x_ref‖∞ ≤ tol·‖x_ref‖∞ with tol = c·n·u and n the
// longest accumulation feeding one output, with the constant c stated at each use. These are
// worst-case bounds; a bug (a dropped, duplicated or misplaced term) produces an error of the size
// of a whole term (≈ 1/n of the total, ≫ n·u for every n used here), so the bounds still catch it.
#include "test.h"
#include "kernels/backend.h"
#include "kernels/cpu/bgemm.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <math.h>
#include <float.h>
#include <omp.h>
#include <stdint.h>

#define U ((double)FLT_EPSILON / 2) // fp32 unit roundoff, 2^-24

// ---- helpers ----------------------------------------------------------------------------------

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double rnd(void) { // uniform in [-1, 1)
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 52) - 1.0;
}
static void fill(float *x, size_t n, double amp) { for (size_t i = 0; i < n; i++) x[i] = (float)(amp * rnd()); }

// Guarded buffers: GUARD canary floats (a NaN bit pattern no kernel produces) before and after.
#define GUARD 16
static const uint32_t CANARY = 0x7FC0DEADu;
typedef struct { float *base, *p; size_t n; } gbuf;
static gbuf gb_new(size_t n) {
    gbuf b = {malloc((n + 2 * GUARD) * sizeof(float)), NULL, n};
    if (!b.base) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n + 2 * GUARD; i++) memcpy(&b.base[i], &CANARY, 4);
    b.p = b.base + GUARD;
    return b;
}
static int gb_intact(const gbuf *b) {
    for (size_t i = 0; i < GUARD; i++) {
        if (memcmp(&b->base[i], &CANARY, 4)) return 0;
        if (memcmp(&b->base[GUARD + b->n + i], &CANARY, 4)) return 0;
    }
    return 1;
}
static void gb_free(gbuf *b) { free(b->base); b->base = b->p = NULL; }
#define CHECK_GUARD(b, what) CHECK(gb_intact(&(b)), "%s: canary around the output buffer overwritten", what)

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

// ‖a − b‖∞ / max(‖b‖∞, floor): the normwise relative error of a against the reference b.
static double nerr(const float *a, const float *b, size_t n, double floor_) {
    double e = 0.0, m = floor_;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e) e = d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return e / m;
}
static double nerr_fd(const float *a, const double *b, size_t n, double floor_) {
    double e = 0.0, m = floor_ > 1e-30 ? floor_ : 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(a[i])) d = INFINITY;
        if (d > e) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / m;
}

// Central difference step for the double-precision forwards below: truncation error ≈ h²·f''' ≈
// 1e-10 and rounding ≈ 1e-16/h ≈ 1e-11 relative, both far below the fp32 tolerances used.
#define FD_H 1e-5
// Backward (fp32) vs finite differences (double): the fp32 backward's own normwise rounding error is
// ≤ c·n·u for accumulation length n (see the header); FD_TOL(n) allows c = 8 plus 1e-6 for the
// fp32 forward quantities (o, lse, rstd, rounded to u) the backward consumes.
#define FD_TOL(n) (8.0 * (double)(n) * U + 1e-6)

// ---- double-precision forwards ----------------------------------------------------------------

// L = Σ G ⊙ rmsnorm(x; w) over rows of n.
static double rms_loss_d(const double *x, const double *w, const double *G, int rows, int n, double eps) {
    double L = 0.0;
    for (int r = 0; r < rows; r++) {
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += x[r * n + i] * x[r * n + i];
        double rs = 1.0 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++) L += G[r * n + i] * (w ? w[i] : 1.0) * x[r * n + i] * rs;
    }
    return L;
}

// Causal attention in double; q, k, v, o laid out like dsv3_attn_args (strides in elements).
typedef struct {
    int T, H, dqk, dv;
    double scale;
    long q_tok, q_head, k_tok, k_head, v_tok, v_head, o_tok, o_head;
} attn_shape;
static void attn_fwd_d(const attn_shape *s, const double *q, const double *k, const double *v, double *o) {
    double *sc = dalloc(s->T);
    for (int h = 0; h < s->H; h++)
        for (int t = 0; t < s->T; t++) {
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= t; j++) {
                double d = 0.0;
                for (int e = 0; e < s->dqk; e++)
                    d += q[t * s->q_tok + h * s->q_head + e] * k[j * s->k_tok + h * s->k_head + e];
                sc[j] = s->scale * d;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j <= t; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
            for (int e = 0; e < s->dv; e++) {
                double acc = 0.0;
                for (int j = 0; j <= t; j++) acc += sc[j] * v[j * s->v_tok + h * s->v_head + e];
                o[t * s->o_tok + h * s->o_head + e] = acc / sum;
            }
        }
    free(sc);
}
static double attn_loss_d(const attn_shape *s, const double *q, const double *k, const double *v, const double *G,
                          size_t no) {
    double *o = dalloc(no), L = 0.0;
    attn_fwd_d(s, q, k, v, o);
    for (int h = 0; h < s->H; h++)
        for (int t = 0; t < s->T; t++)
            for (int e = 0; e < s->dv; e++) L += G[t * s->o_tok + h * s->o_head + e] * o[t * s->o_tok + h * s->o_head + e];
    free(o);
    return L;
}

static double xent_d(const double *l, const int32_t *tg, int rows, int V, double scale) {
    double L = 0.0;
    for (int r = 0; r < rows; r++) {
        if (tg[r] < 0) continue;
        double mx = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++) if (l[r * V + i] > mx) mx = l[r * V + i];
        for (int i = 0; i < V; i++) s += exp(l[r * V + i] - mx);
        L += scale * (mx + log(s) - l[r * V + tg[r]]);
    }
    return L;
}

static double *to_d(const float *x, size_t n) {
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// ---- 1. backward vs finite differences ---------------------------------------------------------

static void fd_rmsnorm(const dsv3_backend *be, int rows, int n, int with_w) {
    const float eps = 1e-6f;
    float *x = malloc(sizeof(float) * rows * n), *w = malloc(sizeof(float) * n), *G = malloc(sizeof(float) * rows * n);
    float *y = malloc(sizeof(float) * rows * n), *rstd = malloc(sizeof(float) * rows);
    float *dx = malloc(sizeof(float) * rows * n), *dw = malloc(sizeof(float) * n);
    fill(x, (size_t)rows * n, 2.0); fill(G, (size_t)rows * n, 1.0);
    for (int i = 0; i < n; i++) w[i] = (float)(1.0 + 0.5 * rnd());
    for (int i = 0; i < n; i++) dw[i] = 0.25f; // dw accumulates: start from a known non-zero value
    be->rmsnorm_fwd(y, rstd, x, with_w ? w : NULL, rows, n, eps);
    be->rmsnorm_bwd(dx, with_w ? dw : NULL, G, x, with_w ? w : NULL, rstd, rows, n);
    double *xd = to_d(x, (size_t)rows * n), *wd = to_d(w, n), *Gd = to_d(G, (size_t)rows * n);
    double *gx = dalloc((size_t)rows * n), *gw = dalloc(n);
    for (int i = 0; i < rows * n; i++) {
        double s = xd[i];
        xd[i] = s + FD_H; double lp = rms_loss_d(xd, with_w ? wd : NULL, Gd, rows, n, eps);
        xd[i] = s - FD_H; double lm = rms_loss_d(xd, with_w ? wd : NULL, Gd, rows, n, eps);
        xd[i] = s; gx[i] = (lp - lm) / (2 * FD_H);
    }
    // dx = r·w⊙dy − c·x cancels (completely for n = 1, where dx ∝ eps): measure the error against
    // the size of the first term, max |r·w·dy|, the scale of the fp32 rounding.
    double term = 0;
    for (int i = 0; i < rows * n; i++) term = fmax(term, fabs(rstd[i / n] * (with_w ? w[i % n] : 1.0f) * G[i]));
    double e = nerr_fd(dx, gx, (size_t)rows * n, term);
    CHECK(e <= FD_TOL(n), "%s rmsnorm_bwd dx vs FD rows=%d n=%d w=%d: err %.3g > %.3g", be->name, rows, n, with_w, e, FD_TOL(n));
    if (with_w) {
        for (int i = 0; i < n; i++) {
            double s = wd[i];
            wd[i] = s + FD_H; double lp = rms_loss_d(xd, wd, Gd, rows, n, eps);
            wd[i] = s - FD_H; double lm = rms_loss_d(xd, wd, Gd, rows, n, eps);
            wd[i] = s; gw[i] = (lp - lm) / (2 * FD_H) + 0.25;
        }
        e = nerr_fd(dw, gw, n, 0);
        CHECK(e <= FD_TOL(rows), "%s rmsnorm_bwd dw vs FD rows=%d n=%d: err %.3g", be->name, rows, n, e);
    }
    free(x); free(w); free(G); free(y); free(rstd); free(dx); free(dw); free(xd); free(wd); free(Gd); free(gx); free(gw);
}

static void fd_swiglu(const dsv3_backend *be, long n) {
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n), *da = malloc(sizeof(float) * n);
    float *dg = malloc(sizeof(float) * n), *du = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n);
    fill(g, n, 6.0); fill(u, n, 2.0); fill(da, n, 1.0);
    be->swiglu_fwd(a, g, u, n);
    be->swiglu_bwd(dg, du, da, g, u, n);
    double eg = 0, eu = 0, ea = 0;
    for (long i = 0; i < n; i++) {
        double z = g[i], sil = z / (1 + exp(-z));
        double fa = sil * u[i];
        double fp = (z + FD_H) / (1 + exp(-(z + FD_H))), fm = (z - FD_H) / (1 + exp(-(z - FD_H)));
        double rg = da[i] * u[i] * (fp - fm) / (2 * FD_H), ru = da[i] * sil;
        // elementwise relative: fp32 expf/divide/multiply chains, a few ulps each
        ea = fmax(ea, fabs(a[i] - fa) / (fabs(fa) + 1e-30));
        eg = fmax(eg, fabs(dg[i] - rg) / (fabs(da[i] * u[i]) * 1.1 + 1e-30)); // |silu'| ≤ 1.1
        eu = fmax(eu, fabs(du[i] - ru) / (fabs(ru) + 1e-30));
    }
    // 16u: expf (≤ 1 ulp), 1+e, divide, 2 multiplies, each ≤ u relative; doubled for safety.
    CHECK(ea <= 16 * U, "%s swiglu_fwd vs double n=%ld: rel err %.3g", be->name, n, ea);
    CHECK(eg <= 16 * U + 1e-9, "%s swiglu_bwd dg vs FD n=%ld: err %.3g", be->name, n, eg);
    CHECK(eu <= 16 * U, "%s swiglu_bwd du vs FD n=%ld: err %.3g", be->name, n, eu);
    free(g); free(u); free(da); free(dg); free(du); free(a);
}

// Rope tables like dsv3_rope_tables (θ = 10000, no attention factor).
static void rope_tables(float *c, float *s, int P, int n_pairs) {
    float inv[512];
    for (int i = 0; i < n_pairs; i++) inv[i] = (float)pow(10000.0, -2.0 * i / (2.0 * n_pairs));
    dsv3_rope_tables(c, s, inv, n_pairs, 0, P, 1.0f);
}

// Rotation: ⟨R x, y⟩ = ⟨x, Rᵀ y⟩, Rᵀ R x = x, and the forward equals dsv3_rope_apply of ops.c.
static void fd_rope(const dsv3_backend *be, int rows, int heads, int n_pairs, int interleave) {
    int off = 3, hstride = 2 * n_pairs + 5, ld = heads * hstride + 7;
    size_t N = (size_t)rows * ld;
    int P = 97;
    float *c = malloc(sizeof(float) * P * n_pairs), *s = malloc(sizeof(float) * P * n_pairs);
    rope_tables(c, s, P, n_pairs);
    int32_t *pos = malloc(sizeof(int32_t) * rows);
    for (int r = 0; r < rows; r++) pos[r] = (r * 37 + 11) % P;
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *Rx = malloc(sizeof(float) * N),
          *Rty = malloc(sizeof(float) * N), *x1 = malloc(sizeof(float) * N);
    fill(x, N, 1.0); fill(y, N, 1.0);
    memcpy(Rx, x, N * 4); memcpy(Rty, y, N * 4);
    be->rope(Rx, rows, ld, heads, hstride, off, c, s, pos, n_pairs, interleave, 0);
    be->rope(Rty, rows, ld, heads, hstride, off, c, s, pos, n_pairs, interleave, 1);
    double a = 0, b = 0, m = 0;
    for (size_t i = 0; i < N; i++) { a += (double)Rx[i] * y[i]; b += (double)x[i] * Rty[i]; m += fabs(x[i]) * fabs(y[i]); }
    // Each rotated value has error ≤ 2u(|x0|+|x1|)·max(|c|,|s|) (two products, one sum); the two
    // inner products therefore differ by ≤ 8u·Σ|x||y| (the double sums add nothing at this level).
    CHECK(fabs(a - b) <= 8 * U * m, "%s rope <Rx,y> vs <x,R^T y> rows=%d heads=%d np=%d il=%d: %.3g vs %.3g",
          be->name, rows, heads, n_pairs, interleave, a, b);
    memcpy(x1, Rx, N * 4);
    be->rope(x1, rows, ld, heads, hstride, off, c, s, pos, n_pairs, interleave, 1);
    // Rᵀ R = (c² + s²)·I with the fp32 tables: |c² + s² − 1| ≤ 3u, plus two rotations' rounding.
    double e = 0;
    for (size_t i = 0; i < N; i++) e = fmax(e, fabs(x1[i] - x[i]));
    CHECK(e <= 12 * U * 2, "%s rope inverse(forward(x)) != x: %.3g", be->name, e); // |x| ≤ 1, pairs sum ≤ 2
    // Untouched values (outside the rope slices) must be bit-identical.
    int untouched_ok = 1, ops_ok = 1;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < ld; i++) {
            int h = i / hstride, j = i % hstride - off;
            int inside = i < heads * hstride && j >= 0 && j < 2 * n_pairs;
            size_t k = (size_t)r * ld + i;
            if (!inside && memcmp(&Rx[k], &x[k], 4)) untouched_ok = 0;
            (void)h;
        }
    // Against dsv3_rope_apply (the forward's existing op): same products and sums, ≤ 2u·(|x0|+|x1|).
    memcpy(x1, x, N * 4);
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++)
            dsv3_rope_apply(x1 + (size_t)r * ld + (size_t)h * hstride + off, c + (size_t)pos[r] * n_pairs,
                            s + (size_t)pos[r] * n_pairs, n_pairs, interleave);
    for (size_t i = 0; i < N; i++) if (fabs(x1[i] - Rx[i]) > 4 * U) ops_ok = 0;
    CHECK(untouched_ok, "%s rope wrote outside the rope slices", be->name);
    CHECK(ops_ok, "%s rope forward differs from dsv3_rope_apply (il=%d)", be->name, interleave);
    free(c); free(s); free(pos); free(x); free(y); free(Rx); free(Rty); free(x1);
}

static void fd_xent(const dsv3_backend *be, int rows, int V, float scale) {
    float *l = malloc(sizeof(float) * rows * V), *d = malloc(sizeof(float) * rows * V);
    int32_t *tg = malloc(sizeof(int32_t) * rows);
    fill(l, (size_t)rows * V, 4.0);
    for (int r = 0; r < rows; r++) tg[r] = r % 3 == 1 ? -1 : (r * 7919) % V;
    double L = be->xent(l, tg, rows, V, scale, d);
    double *ld_ = to_d(l, (size_t)rows * V), *gd = dalloc((size_t)rows * V);
    double Lr = xent_d(ld_, tg, rows, V, 1.0);
    // Loss: per row lse − l_t with the exp-sum of length V: ≤ (V + 8)·u relative to (|lse| + |l_t|) ≤ 2·(4 + log V + 4).
    CHECK(fabs(L - Lr) <= (V + 8) * U * 40 * rows, "%s xent loss rows=%d V=%d: %.9g vs %.9g", be->name, rows, V, L, Lr);
    for (int i = 0; i < rows * V; i++) {
        double s = ld_[i];
        ld_[i] = s + FD_H; double lp = xent_d(ld_, tg, rows, V, scale);
        ld_[i] = s - FD_H; double lm = xent_d(ld_, tg, rows, V, scale);
        ld_[i] = s; gd[i] = (lp - lm) / (2 * FD_H);
    }
    double e = nerr_fd(d, gd, (size_t)rows * V, 0);
    CHECK(e <= FD_TOL(V), "%s xent dlogits vs FD rows=%d V=%d: err %.3g", be->name, rows, V, e);
    int zero = 1;
    for (int r = 0; r < rows; r++)
        if (tg[r] < 0) for (int i = 0; i < V; i++) if (d[(size_t)r * V + i] != 0.0f) zero = 0;
    CHECK(zero, "%s xent: ignored rows must get a zero gradient", be->name);
    // In place (dlogits aliases logits) gives the same numbers; NULL dlogits the same loss.
    float *l2 = malloc(sizeof(float) * rows * V);
    memcpy(l2, l, sizeof(float) * rows * V);
    double L2 = be->xent(l2, tg, rows, V, scale, l2);
    double L3 = be->xent(l, tg, rows, V, scale, NULL);
    CHECK(L2 == L && L3 == L, "%s xent in place / no-grad loss differs", be->name);
    CHECK(!memcmp(l2, d, sizeof(float) * rows * V), "%s xent in-place gradient differs", be->name);
    free(l); free(d); free(tg); free(ld_); free(gd); free(l2);
}

// Attention with optional shared keys/values (k_head = v_head = 0), dq/dk/dv against FD of L = Σ G⊙O.
static void fd_attn(const dsv3_backend *be, int T, int H, int dqk, int dv, int shared) {
    attn_shape s = {T, H, dqk, dv, 1.0 / sqrt((double)dqk) * 1.3, 0, 0, 0, 0, 0, 0, 0, 0};
    s.q_head = dqk + 1; s.q_tok = H * s.q_head + 2;               // padded strides
    s.k_head = shared ? 0 : dqk; s.k_tok = (shared ? 1 : H) * dqk + 3;
    s.v_head = shared ? 0 : dv + 2; s.v_tok = (shared ? 1 : H) * (dv + 2);
    s.o_head = dv; s.o_tok = H * dv + 1;
    size_t nq = (size_t)T * s.q_tok, nk = (size_t)T * s.k_tok, nv = (size_t)T * s.v_tok, no = (size_t)T * s.o_tok;
    float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nv), *o = malloc(4 * no), *G = malloc(4 * no);
    float *lse = malloc(4 * (size_t)H * T), *dq = malloc(4 * nq), *dk = malloc(4 * nk), *dvv = malloc(4 * nv);
    fill(q, nq, 1.5); fill(k, nk, 1.5); fill(v, nv, 1.0); fill(G, no, 1.0);
    for (size_t i = 0; i < nk; i++) dk[i] = 0.5f; // dk, dv accumulate
    for (size_t i = 0; i < nv; i++) dvv[i] = -0.5f;
    for (size_t i = 0; i < nq; i++) dq[i] = NAN; // written (padding lanes stay NaN, not compared)
    dsv3_attn_args a = {T, H, dqk, dv, (float)s.scale, q, s.q_tok, s.q_head, k, s.k_tok, s.k_head,
                        v, s.v_tok, s.v_head, o, s.o_tok, s.o_head, lse};
    be->attn_fwd(&a);
    be->attn_bwd(&a, G, dq, dk, dvv);
    double *qd = to_d(q, nq), *kd = to_d(k, nk), *vd = to_d(v, nv), *Gd = to_d(G, no);
    // Forward against the double forward (errors ≤ (dqk + T)·u relative, c = 8).
    double *od = dalloc(no);
    attn_fwd_d(&s, qd, kd, vd, od);
    double eo = 0, mo = 1e-30;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int e = 0; e < dv; e++) {
                size_t i = (size_t)t * s.o_tok + (size_t)h * s.o_head + e;
                eo = fmax(eo, fabs(o[i] - od[i])); mo = fmax(mo, fabs(od[i]));
            }
    CHECK(eo / mo <= 8 * (dqk + T) * U, "%s attn_fwd vs double T=%d H=%d shared=%d: err %.3g", be->name, T, H, shared, eo / mo);
    // FD over the used elements; for large inputs a deterministic subsample.
    struct { const char *name; double *x; float *g; size_t n; long tok, head; int d, nh; float init; } V[3] = {
        {"dq", qd, dq, nq, s.q_tok, s.q_head, dqk, H, 0.0f},
        {"dk", kd, dk, nk, s.k_tok, s.k_head, dqk, shared ? 1 : H, 0.5f},
        {"dv", vd, dvv, nv, s.v_tok, s.v_head, dv, shared ? 1 : H, -0.5f}};
    for (int w = 0; w < 3; w++) {
        size_t cnt = (size_t)T * V[w].nh * V[w].d, stride = cnt > 150 ? cnt / 149 : 1; // a deterministic subsample keeps the test fast
        double e = 0, m = 1e-30;
        for (size_t idx = 0; idx < cnt; idx += stride) {
            int t = idx / ((size_t)V[w].nh * V[w].d), h = idx / V[w].d % V[w].nh, j = idx % V[w].d;
            size_t i = (size_t)t * V[w].tok + (size_t)h * V[w].head + j;
            double sv = V[w].x[i];
            V[w].x[i] = sv + FD_H; double lp = attn_loss_d(&s, qd, kd, vd, Gd, no);
            V[w].x[i] = sv - FD_H; double lm = attn_loss_d(&s, qd, kd, vd, Gd, no);
            V[w].x[i] = sv;
            double fd = (lp - lm) / (2 * FD_H), got = (double)V[w].g[i] - V[w].init;
            e = fmax(e, fabs(got - fd)); m = fmax(m, fabs(fd));
        }
        // accumulation length: T keys · (dqk + dv) per score gradient, times H for shared rows
        double tol = FD_TOL((size_t)(shared ? H : 1) * T + dqk + dv);
        CHECK(e / m <= tol, "%s attn_bwd %s vs FD T=%d H=%d dqk=%d dv=%d shared=%d: err %.3g > %.3g",
              be->name, V[w].name, T, H, dqk, dv, shared, e / m, tol);
    }
    free(q); free(k); free(v); free(o); free(G); free(lse); free(dq); free(dk); free(dvv);
    free(qd); free(kd); free(vd); free(Gd); free(od);
}

// GEMM via the three training forms: Y = X·Wᵀ (fprop), dX = G·W (dgrad), dW += Gᵀ·X (wgrad) are the
// gradients of L = Σ G⊙Y; checked against FD of the double forward (exact for a bilinear L).
static void fd_gemm(const dsv3_backend *be, int M, int out, int in) {
    float *X = malloc(4 * (size_t)M * in), *W = malloc(4 * (size_t)out * in), *G = malloc(4 * (size_t)M * out);
    float *Y = malloc(4 * (size_t)M * out), *dX = malloc(4 * (size_t)M * in), *dW = malloc(4 * (size_t)out * in);
    fill(X, (size_t)M * in, 1); fill(W, (size_t)out * in, 1); fill(G, (size_t)M * out, 1);
    for (size_t i = 0; i < (size_t)out * in; i++) dW[i] = 1.0f;
    for (size_t i = 0; i < (size_t)M * in; i++) dX[i] = NAN; // beta = 0: not read
    be->gemm(0, 1, M, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
    be->gemm(0, 0, M, in, out, 1.0f, G, out, W, in, 0.0f, dX, in);
    be->gemm(1, 0, out, in, M, 1.0f, G, out, X, in, 1.0f, dW, in);
    double ey = 0, my = 1e-30, ex = 0, mx = 1e-30, ew = 0, mw = 1e-30;
    for (int i = 0; i < M; i++)
        for (int o = 0; o < out; o++) {
            double y = 0;
            for (int c = 0; c < in; c++) y += (double)X[(size_t)i * in + c] * W[(size_t)o * in + c];
            ey = fmax(ey, fabs(Y[(size_t)i * out + o] - y)); my = fmax(my, fabs(y));
        }
    // L is bilinear, so the central difference is exact up to rounding: ∂L/∂X[i,c] = Σ_o G[i,o] W[o,c].
    for (int i = 0; i < M; i++)
        for (int c = 0; c < in; c++) {
            double g = 0;
            for (int o = 0; o < out; o++) g += (double)G[(size_t)i * out + o] * W[(size_t)o * in + c];
            ex = fmax(ex, fabs(dX[(size_t)i * in + c] - g)); mx = fmax(mx, fabs(g));
        }
    for (int o = 0; o < out; o++)
        for (int c = 0; c < in; c++) {
            double g = 1.0;
            for (int i = 0; i < M; i++) g += (double)G[(size_t)i * out + o] * X[(size_t)i * in + c];
            ew = fmax(ew, fabs(dW[(size_t)o * in + c] - g)); mw = fmax(mw, fabs(g));
        }
    // Random ±1 inputs: |Σ| ~ √n·… while Σ|terms| ~ n/4, so normwise ≤ 2n·u·(n/4)/√n; use 2n·u·√n.
    CHECK(ey / my <= 2 * in * U * sqrt(in), "%s gemm fprop M=%d out=%d in=%d: err %.3g", be->name, M, out, in, ey / my);
    CHECK(ex / mx <= 2 * out * U * sqrt(out), "%s gemm dgrad M=%d out=%d in=%d: err %.3g", be->name, M, out, in, ex / mx);
    CHECK(ew / mw <= 2 * M * U * sqrt(M), "%s gemm wgrad M=%d out=%d in=%d: err %.3g", be->name, M, out, in, ew / mw);
    // And the training identity itself, by a true central difference on one X and one W element.
    int ci = M / 2, cc = in / 3, co = out / 2;
    double *Xd = to_d(X, (size_t)M * in), *Wd = to_d(W, (size_t)out * in);
    double fdx = 0, fdw = 0;
    for (int sgn = -1; sgn <= 1; sgn += 2) {
        double L = 0;
        Xd[(size_t)ci * in + cc] += sgn * FD_H;
        for (int i = 0; i < M; i++) for (int o = 0; o < out; o++) {
            double y = 0; for (int c = 0; c < in; c++) y += Xd[(size_t)i * in + c] * Wd[(size_t)o * in + c];
            L += G[(size_t)i * out + o] * y; }
        Xd[(size_t)ci * in + cc] -= sgn * FD_H;
        fdx += sgn * L / (2 * FD_H);
        L = 0;
        Wd[(size_t)co * in + cc] += sgn * FD_H;
        for (int i = 0; i < M; i++) for (int o = 0; o < out; o++) {
            double y = 0; for (int c = 0; c < in; c++) y += Xd[(size_t)i * in + c] * Wd[(size_t)o * in + c];
            L += G[(size_t)i * out + o] * y; }
        Wd[(size_t)co * in + cc] -= sgn * FD_H;
        fdw += sgn * L / (2 * FD_H);
    }
    CHECK(t_close(dX[(size_t)ci * in + cc], fdx, 1e-5 * sqrt(out), 1e-5), "%s gemm dgrad vs FD: %g vs %g", be->name, dX[(size_t)ci * in + cc], fdx);
    CHECK(t_close(dW[(size_t)co * in + cc] - 1.0, fdw, 1e-5 * sqrt(M), 1e-5), "%s gemm wgrad vs FD: %g vs %g", be->name, dW[(size_t)co * in + cc] - 1.0, fdw);
    free(X); free(W); free(G); free(Y); free(dX); free(dW); free(Xd); free(Wd);
}

static void fd_all(const dsv3_backend *be) {
    fd_rmsnorm(be, 3, 17, 1);
    fd_rmsnorm(be, 2, 8, 0);
    fd_rmsnorm(be, 1, 1, 1);
    fd_swiglu(be, 1037);
    fd_rope(be, 5, 3, 4, 1);
    fd_rope(be, 4, 2, 5, 0);
    fd_rope(be, 3, 1, 16, 0);
    fd_rope(be, 3, 1, 16, 1);
    fd_xent(be, 4, 23, 0.25f);
    fd_xent(be, 2, 1, 1.0f);
    fd_attn(be, 1, 2, 3, 2, 0);
    fd_attn(be, 7, 3, 5, 4, 0);
    fd_attn(be, 7, 3, 5, 4, 1);
    fd_attn(be, 40, 2, 9, 6, 1);
    fd_attn(be, 66, 2, 12, 8, 0); // > one 64-key block
    fd_gemm(be, 13, 7, 11);
    fd_gemm(be, 1, 1, 1);
    fd_gemm(be, 37, 29, 50);
}

// ---- 2. fast backend vs reference --------------------------------------------------------------
// GEMM: elementwise bound |C − C_ref| ≤ 2(K + 4)·u·(|alpha|·|op(A)|·|op(B)| + |beta|·|C0|) + tiny,
// the Higham bound for a length-K fp32 dot product in any order plus the alpha/beta roundings;
// the bound matrix is formed by the reference itself on the absolute values. Padding columns of C
// (ldc > N) and the canaries must be untouched.
static void cmp_gemm(const dsv3_backend *ref, const dsv3_backend *cpu, int tA, int tB, int M, int N, int K,
                     float alpha, float beta, int pad) {
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(tA ? K : M) * lda, nb = (size_t)(tB ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(4 * (na + 1)), *B = malloc(4 * (nb + 1)), *aA = malloc(4 * (na + 1)), *aB = malloc(4 * (nb + 1));
    gbuf C = gb_new(nc), Cr = gb_new(nc);
    float *C0 = malloc(4 * (nc + 1)), *bound = malloc(4 * (nc + 1));
    fill(A, na, 1); fill(B, nb, 1); fill(C0, nc, 1);
    for (size_t i = 0; i < na; i++) aA[i] = fabsf(A[i]);
    for (size_t i = 0; i < nb; i++) aB[i] = fabsf(B[i]);
    for (size_t i = 0; i < nc; i++) {
        int col = i % ldc;
        float init = beta == 0.0f ? NAN : C0[i]; // beta = 0: C must not be read
        if (col >= N) memcpy(&init, &CANARY, 4);
        C.p[i] = Cr.p[i] = init;
        bound[i] = fabsf(C0[i]);
    }
    ref->gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, Cr.p, ldc);
    cpu->gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C.p, ldc);
    ref->gemm(tA, tB, M, N, K, fabsf(alpha), aA, lda, aB, ldb, fabsf(beta), bound, ldc);
    int bad = 0, pad_ok = 1;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t k = (size_t)i * ldc + j;
            if (j >= N) { if (memcmp(&C.p[k], &CANARY, 4)) pad_ok = 0; continue; }
            double tol = 2.0 * (K + 4) * U * bound[k] + 1e-30, e = fabs((double)C.p[k] - Cr.p[k]);
            if (!(e <= tol)) bad++;
            if (tol > 0 && e / tol > worst) worst = e / tol;
        }
    CHECK(!bad, "%s gemm tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: %d elements out of bound (worst %.2f x bound)",
          cpu->name, tA, tB, M, N, K, alpha, beta, pad, bad, worst);
    CHECK(pad_ok, "%s gemm wrote into the ldc padding (M=%d N=%d)", cpu->name, M, N);
    CHECK_GUARD(C, "gemm C");
    free(A); free(B); free(aA); free(aB); free(C0); free(bound); gb_free(&C); gb_free(&Cr);
}

static void cmp_gemm_all(const dsv3_backend *ref, const dsv3_backend *cpu) {
    static const int shapes[][3] = {{1, 1, 1},   {1, 17, 5},   {7, 1, 13},  {6, 16, 8},  {12, 32, 256}, {5, 3, 300},
                                    {97, 61, 131}, {13, 29, 257}, {131, 77, 530}, {2, 500, 3}, {67, 263, 19}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                cmp_gemm(ref, cpu, tA, tB, M, N, K, 1.0f, 0.0f, 0);
                cmp_gemm(ref, cpu, tA, tB, M, N, K, -0.75f, 1.0f, 3);
                if (s % 3 == 0) cmp_gemm(ref, cpu, tA, tB, M, N, K, 2.0f, 0.5f, 1);
            }
    // The three training forms at a size where every blocking loop (MC rows, KC depth) has a tail.
    cmp_gemm(ref, cpu, 0, 1, 250, 70, 300, 1.0f, 0.0f, 0); // fprop
    cmp_gemm(ref, cpu, 0, 0, 250, 300, 70, 1.0f, 1.0f, 0); // dgrad, accumulate
    cmp_gemm(ref, cpu, 1, 0, 70, 300, 250, 1.0f, 1.0f, 0); // wgrad
    // Degenerate: K = 0 (an expert with no tokens: C = beta·C), M = 0, N = 0 (nothing written).
    cmp_gemm(ref, cpu, 1, 0, 9, 20, 0, 1.0f, 1.0f, 2);
    cmp_gemm(ref, cpu, 0, 1, 9, 20, 0, 1.0f, 0.0f, 0);
    cmp_gemm(ref, cpu, 0, 0, 0, 20, 5, 1.0f, 0.0f, 0);
    cmp_gemm(ref, cpu, 0, 0, 4, 0, 5, 1.0f, 0.0f, 0);
}

// Attention: fast vs reference. Normwise bounds: o and lse accumulate T keys of (dqk + dv)-long
// products, o: 8·(dqk + T)·u; gradients accumulate T queries (dk, dv; times H for shared rows) or
// T keys (dq) of products of length dqk + dv: 8·(H·T + dqk + dv)·u. Also: run-to-run bitwise
// determinism, and canaries after o, lse, dq, dk, dv.
static void cmp_attn(const dsv3_backend *ref, const dsv3_backend *cpu, int T, int H, int dqk, int dv, int shk,
                     int shv) {
    long q_head = dqk, q_tok = (long)H * dqk + 1;
    long k_head = shk ? 0 : dqk + 1, k_tok = shk ? dqk + 2 : (long)H * (dqk + 1);
    long v_head = shv ? 0 : dv, v_tok = shv ? dv : (long)H * dv + 3;
    long o_head = dv + 1, o_tok = (long)H * (dv + 1);
    size_t nq = (size_t)T * q_tok, nk = (size_t)T * k_tok, nv = (size_t)T * v_tok, no = (size_t)T * o_tok, nl = (size_t)H * T;
    float *q = malloc(4 * nq + 4), *k = malloc(4 * nk + 4), *v = malloc(4 * nv + 4), *G = malloc(4 * no + 4);
    fill(q, nq, 2.0); fill(k, nk, 2.0); fill(v, nv, 1.0); fill(G, no, 1.0);
    gbuf o = gb_new(no), orf = gb_new(no), l = gb_new(nl), lr = gb_new(nl);
    gbuf dq = gb_new(nq), dqr = gb_new(nq), dk = gb_new(nk), dkr = gb_new(nk), dvv = gb_new(nv), dvr = gb_new(nv);
    float scale = 1.0f / sqrtf((float)dqk);
    dsv3_attn_args a = {T, H, dqk, dv, scale, q, q_tok, q_head, k, k_tok, k_head, v, v_tok, v_head, o.p, o_tok, o_head, l.p};
    dsv3_attn_args ar = a;
    ar.o = orf.p; ar.lse = lr.p;
    memset(o.p, 0, 4 * no); memset(orf.p, 0, 4 * no); // padding lanes are not outputs
    ref->attn_fwd(&ar);
    cpu->attn_fwd(&a);
    double eo = nerr(o.p, orf.p, no, 1e-30), el = nerr(l.p, lr.p, nl, 1.0);
    CHECK(eo <= 8 * (dqk + T) * U, "%s attn_fwd o T=%d H=%d dqk=%d dv=%d shared=%d%d: err %.3g", cpu->name, T, H, dqk, dv, shk, shv, eo);
    CHECK(el <= 8 * (dqk + T) * U, "%s attn_fwd lse T=%d H=%d: err %.3g", cpu->name, T, H, el);
    for (size_t i = 0; i < nk; i++) dk.p[i] = dkr.p[i] = 0.5f;
    for (size_t i = 0; i < nv; i++) dvv.p[i] = dvr.p[i] = -0.25f;
    memset(dq.p, 0, 4 * nq); memset(dqr.p, 0, 4 * nq);
    ref->attn_bwd(&ar, G, dqr.p, dkr.p, dvr.p);
    cpu->attn_bwd(&a, G, dq.p, dk.p, dvv.p);
    double tol = 8.0 * ((shk || shv ? H : 1) * T + dqk + dv) * U;
    // dq floor: one term's size, scale·|dO|·|v|·|k|·… ~ scale (T = 1: dq is exactly 0, pure rounding)
    double e1 = nerr(dq.p, dqr.p, nq, scale), e2 = nerr(dk.p, dkr.p, nk, 1e-30), e3 = nerr(dvv.p, dvr.p, nv, 1e-30);
    CHECK(e1 <= tol && e2 <= tol && e3 <= tol, "%s attn_bwd T=%d H=%d dqk=%d dv=%d shared=%d%d: dq %.3g dk %.3g dv %.3g (tol %.3g)",
          cpu->name, T, H, dqk, dv, shk, shv, e1, e2, e3, tol);
    // Deterministic: a second backward from the same start gives the same bits.
    float *dk2 = malloc(4 * nk + 4), *dv2 = malloc(4 * nv + 4), *dq2 = malloc(4 * nq + 4);
    for (size_t i = 0; i < nk; i++) dk2[i] = 0.5f;
    for (size_t i = 0; i < nv; i++) dv2[i] = -0.25f;
    memcpy(dq2, dq.p, 4 * nq);
    cpu->attn_bwd(&a, G, dq2, dk2, dv2);
    CHECK(!memcmp(dq2, dq.p, 4 * nq) && !memcmp(dk2, dk.p, 4 * nk) && !memcmp(dv2, dvv.p, 4 * nv),
          "%s attn_bwd not deterministic (T=%d H=%d shared=%d%d)", cpu->name, T, H, shk, shv);
    CHECK_GUARD(o, "attn o"); CHECK_GUARD(l, "attn lse"); CHECK_GUARD(dq, "attn dq"); CHECK_GUARD(dk, "attn dk");
    CHECK_GUARD(dvv, "attn dv");
    free(q); free(k); free(v); free(G); free(dk2); free(dv2); free(dq2);
    gb_free(&o); gb_free(&orf); gb_free(&l); gb_free(&lr); gb_free(&dq); gb_free(&dqr); gb_free(&dk); gb_free(&dkr);
    gb_free(&dvv); gb_free(&dvr);
}

// RMSNorm: y, rstd: row sums of n squares (double in both, so ≈ u), products: 8·u + n·u allowance
// for a float sum order; dx: normwise per tensor 8·(n + 8)·u; dw: accumulation over rows 8·(rows + 8)·u.
static void cmp_rmsnorm(const dsv3_backend *ref, const dsv3_backend *cpu, int rows, int n, int with_w) {
    size_t N = (size_t)rows * n;
    float *x = malloc(4 * N + 4), *w = malloc(4 * n + 4), *G = malloc(4 * N + 4);
    fill(x, N, 3.0); fill(G, N, 1.0);
    for (int i = 0; i < n; i++) w[i] = (float)(1 + 0.5 * rnd());
    gbuf y = gb_new(N), yr = gb_new(N), rs = gb_new(rows), rsr = gb_new(rows);
    gbuf dx = gb_new(N), dxr = gb_new(N), dw = gb_new(n), dwr = gb_new(n);
    ref->rmsnorm_fwd(yr.p, rsr.p, x, with_w ? w : NULL, rows, n, 1e-6f);
    cpu->rmsnorm_fwd(y.p, rs.p, x, with_w ? w : NULL, rows, n, 1e-6f);
    CHECK(nerr(y.p, yr.p, N, 1e-30) <= (n + 8) * U && nerr(rs.p, rsr.p, rows, 1e-30) <= (n + 8) * U,
          "%s rmsnorm_fwd rows=%d n=%d: y %.3g rstd %.3g", cpu->name, rows, n, nerr(y.p, yr.p, N, 1e-30), nerr(rs.p, rsr.p, rows, 1e-30));
    for (int i = 0; i < n; i++) dw.p[i] = dwr.p[i] = 0.125f;
    ref->rmsnorm_bwd(dxr.p, with_w ? dwr.p : NULL, G, x, with_w ? w : NULL, rsr.p, rows, n);
    cpu->rmsnorm_bwd(dx.p, with_w ? dw.p : NULL, G, x, with_w ? w : NULL, rsr.p, rows, n);
    double term = 0; // dx = r·w⊙dy − c·x cancels (fully for n = 1): error relative to max |r·w·dy|
    for (size_t i = 0; i < N; i++) term = fmax(term, fabs(rsr.p[i / n] * (with_w ? w[i % n] : 1.0f) * G[i]));
    double e = nerr(dx.p, dxr.p, N, term), ew = with_w ? nerr(dw.p, dwr.p, n, 1e-30) : 0;
    CHECK(e <= 8 * (n + 8) * U, "%s rmsnorm_bwd dx rows=%d n=%d: %.3g", cpu->name, rows, n, e);
    CHECK(ew <= 8 * (rows + 8) * U, "%s rmsnorm_bwd dw rows=%d n=%d: %.3g", cpu->name, rows, n, ew);
    if (!with_w) CHECK(dw.p[0] == 0.125f, "%s rmsnorm_bwd touched dw with dw = NULL", cpu->name);
    CHECK_GUARD(y, "rmsnorm y"); CHECK_GUARD(rs, "rmsnorm rstd"); CHECK_GUARD(dx, "rmsnorm dx"); CHECK_GUARD(dw, "rmsnorm dw");
    free(x); free(w); free(G);
    gb_free(&y); gb_free(&yr); gb_free(&rs); gb_free(&rsr); gb_free(&dx); gb_free(&dxr); gb_free(&dw); gb_free(&dwr);
}

// SwiGLU: elementwise, expf vs a polynomial exp (≤ 2 ulp) and a few roundings: 16u relative to the
// size of the terms (|u| for a, |da·u| for dg, |da·g| for du) — a relative-to-result bound would
// be meaningless where silu(g) underflows. Inputs include ±30 and ±100 (saturated sigmoid).
static void cmp_swiglu(const dsv3_backend *ref, const dsv3_backend *cpu, long n) {
    float *g = malloc(4 * n + 4), *u = malloc(4 * n + 4), *da = malloc(4 * n + 4);
    fill(g, n, 8.0); fill(u, n, 2.0); fill(da, n, 1.0);
    if (n > 4) { g[0] = 30; g[1] = -30; g[2] = 100; g[3] = -100; g[4] = 0; }
    gbuf a = gb_new(n), ar = gb_new(n), dg = gb_new(n), dgr = gb_new(n), du = gb_new(n), dur = gb_new(n);
    ref->swiglu_fwd(ar.p, g, u, n); cpu->swiglu_fwd(a.p, g, u, n);
    ref->swiglu_bwd(dgr.p, dur.p, da, g, u, n); cpu->swiglu_bwd(dg.p, du.p, da, g, u, n);
    int bad = 0;
    for (long i = 0; i < n; i++) {
        double ta = 16 * U * fabs(u[i] * g[i]) + 1e-37, tg = 16 * U * fabs(da[i] * u[i]) * (1 + fabs(g[i])) + 1e-37,
               tu = 16 * U * fabs(da[i] * g[i]) + 1e-37;
        if (!(fabs(a.p[i] - ar.p[i]) <= ta) || !(fabs(dg.p[i] - dgr.p[i]) <= tg) || !(fabs(du.p[i] - dur.p[i]) <= tu)) bad++;
    }
    CHECK(!bad, "%s swiglu n=%ld: %d elements out of bound", cpu->name, n, bad);
    CHECK_GUARD(a, "swiglu a"); CHECK_GUARD(dg, "swiglu dg"); CHECK_GUARD(du, "swiglu du");
    free(g); free(u); free(da); gb_free(&a); gb_free(&ar); gb_free(&dg); gb_free(&dgr); gb_free(&du); gb_free(&dur);
}

// RoPE: the same two products and a sum per value: ≤ 4u·(|x0| + |x1|) apart (FMA contraction).
static void cmp_rope(const dsv3_backend *ref, const dsv3_backend *cpu, int rows, int heads, int n_pairs, int il, int inv) {
    int off = 1, hstride = 2 * n_pairs + 3, ld = heads * hstride + 2, P = 50;
    size_t N = (size_t)rows * ld;
    float *c = malloc(4 * P * n_pairs), *s = malloc(4 * P * n_pairs);
    rope_tables(c, s, P, n_pairs);
    int32_t *pos = malloc(4 * rows);
    for (int r = 0; r < rows; r++) pos[r] = (r * 13 + 5) % P;
    gbuf x = gb_new(N), xr = gb_new(N);
    fill(x.p, N, 1.0);
    memcpy(xr.p, x.p, 4 * N);
    ref->rope(xr.p, rows, ld, heads, hstride, off, c, s, pos, n_pairs, il, inv);
    cpu->rope(x.p, rows, ld, heads, hstride, off, c, s, pos, n_pairs, il, inv);
    double e = nerr(x.p, xr.p, N, 1.0);
    CHECK(e <= 8 * U, "%s rope rows=%d heads=%d np=%d il=%d inv=%d: %.3g", cpu->name, rows, heads, n_pairs, il, inv, e);
    CHECK_GUARD(x, "rope x");
    free(c); free(s); free(pos); gb_free(&x); gb_free(&xr);
}

// Cross-entropy: loss ≤ (V + 8)·u·rows·(|lse| + |l_t|) apart (exp-sum of V terms, ≤ 2 ulp exp);
// dlogits elementwise ≤ |scale|·(V + 2·|lse| + 16)·u·(p + u) — the exponent error |l − lse|·u and
// the sum's (V·u relative) both scale p.
static void cmp_xent(const dsv3_backend *ref, const dsv3_backend *cpu, int rows, int V, float scale) {
    size_t N = (size_t)rows * V;
    float *l = malloc(4 * N + 4);
    int32_t *tg = malloc(4 * rows);
    fill(l, N, 6.0);
    for (int r = 0; r < rows; r++) tg[r] = r % 4 == 3 ? -1 : (int)(((long)r * 104729) % V);
    gbuf d = gb_new(N), dr = gb_new(N);
    double Lr = ref->xent(l, tg, rows, V, scale, dr.p), L = cpu->xent(l, tg, rows, V, scale, d.p);
    double mag = 0;
    for (int r = 0; r < rows; r++) if (tg[r] >= 0) mag += 2 * (6 + log((double)V) + 6);
    CHECK(fabs(L - Lr) <= (V + 8) * U * mag + 1e-12, "%s xent loss rows=%d V=%d: %.10g vs %.10g", cpu->name, rows, V, L, Lr);
    int bad = 0, zero = 1;
    double lsemax = 6 + log((double)V) + 6;
    for (size_t i = 0; i < N; i++) {
        int r = i / V;
        if (tg[r] < 0) { if (d.p[i] != 0.0f) zero = 0; continue; }
        double p = fabs(dr.p[i] / scale) + ((int)(i % V) == tg[r] ? 1 : 0);
        double tol = fabs(scale) * (V + 2 * lsemax + 16) * U * (p + U);
        if (!(fabs(d.p[i] - dr.p[i]) <= tol)) bad++;
    }
    CHECK(!bad, "%s xent dlogits rows=%d V=%d: %d elements out of bound", cpu->name, rows, V, bad);
    CHECK(zero, "%s xent: ignored rows must get zero gradient", cpu->name);
    double L0 = cpu->xent(l, tg, rows, V, scale, NULL);
    CHECK(L0 == L, "%s xent without gradient: different loss", cpu->name);
    CHECK_GUARD(d, "xent dlogits");
    free(l); free(tg); gb_free(&d); gb_free(&dr);
}

static void cmp_ops(const dsv3_backend *ref, const dsv3_backend *cpu) {
    cmp_gemm_all(ref, cpu);
    // attention: T = 1, tails of the 32-query / 64-key blocks, T = 300+ (many blocks), shared k/v
    cmp_attn(ref, cpu, 1, 1, 8, 8, 0, 0);
    cmp_attn(ref, cpu, 5, 3, 7, 5, 0, 0);
    cmp_attn(ref, cpu, 33, 2, 16, 9, 1, 1);
    cmp_attn(ref, cpu, 97, 3, 24, 17, 0, 1);
    cmp_attn(ref, cpu, 131, 2, 40, 32, 1, 0);
    cmp_attn(ref, cpu, 317, 4, 36, 32, 0, 0);
    cmp_attn(ref, cpu, 317, 5, 40, 32, 1, 1); // the absorbed MLA form: keys [c | k_pe], values c, shared
    cmp_attn(ref, cpu, 150, 4, 80, 64, 1, 1); // tiny's absorbed form (64 + 16 key dims, 64 value dims)
    cmp_attn(ref, cpu, 70, 2, 112, 100, 0, 0); // head dims past one 96-column accumulator chunk
    cmp_attn(ref, cpu, 40, 2, 192, 128, 0, 1); // DeepSeek-V3's naive head dims (128 + 64, 128)
    cmp_rmsnorm(ref, cpu, 1, 1, 1);
    cmp_rmsnorm(ref, cpu, 3, 7, 0);
    cmp_rmsnorm(ref, cpu, 17, 129, 1);
    cmp_rmsnorm(ref, cpu, 300, 257, 1); // above the threading threshold
    cmp_rmsnorm(ref, cpu, 200, 300, 0);
    cmp_swiglu(ref, cpu, 1);
    cmp_swiglu(ref, cpu, 13);
    cmp_swiglu(ref, cpu, 100003); // threaded, odd tail
    for (int il = 0; il < 2; il++)
        for (int inv = 0; inv < 2; inv++) {
            cmp_rope(ref, cpu, 1, 1, 1, il, inv);
            cmp_rope(ref, cpu, 7, 3, 5, il, inv);
            cmp_rope(ref, cpu, 300, 16, 32, il, inv); // threaded
        }
    cmp_xent(ref, cpu, 1, 1, 1.0f);
    cmp_xent(ref, cpu, 5, 37, 0.5f);
    cmp_xent(ref, cpu, 7, 1001, 1.0f / 7);
    cmp_xent(ref, cpu, 40, 3001, 0.025f); // threaded
}

// Inside a parallel region every op must run on the calling thread only (the threading contract):
// two threads run independent gemms and attentions; each result must equal the outside-call result.
static void cmp_inside_parallel(const dsv3_backend *cpu) {
    int M = 70, N = 90, K = 110;
    float *A = malloc(4 * M * K), *B = malloc(4 * K * N), *C1 = malloc(4 * M * N), *C2 = malloc(4 * 2 * M * N);
    fill(A, (size_t)M * K, 1); fill(B, (size_t)K * N, 1);
    cpu->gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
    int ok = 1;
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        cpu->gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C2 + (size_t)t * M * N, N);
    }
    for (int t = 0; t < 2; t++) {
        // single-threaded blocking may split differently from the threaded one: same bound as cmp_gemm
        for (int i = 0; i < M * N; i++) if (!(fabs(C2[(size_t)t * M * N + i] - C1[i]) <= 2.0 * (K + 4) * U * K)) ok = 0;
    }
    CHECK(ok, "%s gemm called inside a parallel region differs", cpu->name);
    free(A); free(B); free(C1); free(C2);
}

// Every instruction-set level of the CPU backend against the reference (a level the CPU lacks is
// reported as SKIP by name): amx and avx512 run the 12 x 32 AVX-512 SGEMM micro-kernel, avx2 the
// 6 x 16 one, scalar the portable C.
static void cmp_all(const dsv3_backend *ref, const dsv3_backend *cpu) {
    if (cpu == ref) return;
    static const dsv3_isa levels[] = {DSV3_ISA_AMX, DSV3_ISA_AVX512, DSV3_ISA_AVX2, DSV3_ISA_SCALAR};
    dsv3_isa restore = dsv3_matmul_get_isa();
    for (int l = 0; l < 4; l++) {
        if (dsv3_matmul_set_isa(levels[l]) != 0) {
            printf("SKIP backend_ops: %s path vs ref (%s)\n", dsv3_isa_name(levels[l]), dsv3_error());
            continue;
        }
        cmp_ops(ref, cpu);
        cmp_inside_parallel(cpu);
    }
    dsv3_matmul_set_isa(restore);
    if (omp_get_max_threads() < 2) printf("SKIP backend_ops: multi-threaded paths (OMP max threads = 1)\n");
}

// The BF16 GEMM (bgemm.h) at each hardware level against its scalar reference dsv3_bgemm_ref
// (inputs rounded to bf16, fp32 sums): the same shapes, transposes, alpha/beta, padding and
// canaries as the fp32 GEMM, with the same bound (products of bf16 values are exact in fp32, so
// the difference is only the summation order: 2·(K + 4)·u·Σ|a||b|, the bound matrix from the
// reference on |A|, |B|). Plus shapes past every blocking loop (MC = 128 rows, NC = 256
// columns, KC = 512 deep) in the three training forms, and calls from inside a parallel region.
static void bgemm_paths(const dsv3_backend *ref) {
    static dsv3_backend bref, bfast;
    bref = *ref; bref.name = "bgemm-ref"; bref.gemm = dsv3_bgemm_ref;
    static const dsv3_isa levels[] = {DSV3_ISA_AVX512, DSV3_ISA_AMX};
    static const char *names[] = {"bgemm-avx512bf16", "bgemm-amx"};
    dsv3_isa restore = dsv3_matmul_get_isa();
    for (int l = 0; l < 2; l++) {
        if (dsv3_matmul_set_isa(levels[l]) != 0) { printf("SKIP backend_ops: %s (%s)\n", names[l], dsv3_error()); continue; }
        bfast = *ref; bfast.name = names[l]; bfast.gemm = dsv3_bgemm;
        cmp_gemm_all(&bref, &bfast);
        cmp_gemm(&bref, &bfast, 0, 1, 140, 300, 1100, 1.0f, 0.0f, 0); // fprop: MC, NC and KC tails
        cmp_gemm(&bref, &bfast, 0, 0, 140, 1100, 300, 1.0f, 1.0f, 1); // dgrad, accumulate
        cmp_gemm(&bref, &bfast, 1, 0, 300, 270, 600, 1.0f, 1.0f, 0);  // wgrad, accumulate
        cmp_gemm(&bref, &bfast, 1, 1, 64, 512, 520, 0.5f, 0.25f, 2);
        cmp_inside_parallel(&bfast);
    }
    // Below the avx512 level: rounded copies through the fp32 SGEMM (and its scalar twin).
    static const dsv3_isa low[] = {DSV3_ISA_AVX2, DSV3_ISA_SCALAR};
    static const char *low_names[] = {"bgemm-fallback-avx2", "bgemm-fallback-scalar"};
    for (int l = 0; l < 2; l++) {
        if (dsv3_matmul_set_isa(low[l]) != 0) { printf("SKIP backend_ops: %s (%s)\n", low_names[l], dsv3_error()); continue; }
        bfast = *ref; bfast.name = low_names[l]; bfast.gemm = dsv3_bgemm;
        cmp_gemm(&bref, &bfast, 0, 1, 140, 300, 200, 1.0f, 0.0f, 0);
        cmp_gemm(&bref, &bfast, 0, 0, 40, 100, 300, 1.0f, 1.0f, 1);
        cmp_gemm(&bref, &bfast, 1, 0, 30, 70, 100, -0.5f, 0.5f, 0);
        cmp_gemm(&bref, &bfast, 1, 1, 13, 17, 19, 2.0f, 0.0f, 3);
    }
    dsv3_matmul_set_isa(restore);
}

// ---- 3. dsv3_matmul, the model's Linear, at every level ---------------------------------------------
// y = x·Wᵀ for W in F32, BF16, F16 and F8_E4M3 (128x128 and odd block scales) against dsv3_matmul_ref,
// M on both sides of the GEMV/GEMM switch (the AVX-512 GEMV's 8-row and 4 x 4 tiles, its 64-column
// main loop and masked tails; the packed SGEMM/GEMM above), elementwise bound (2K + 4)·u·Σ|x||w| (a
// K-long fp32 dot product in another order), canaries around y. With bf16 activations (avx512 and
// amx, BF16 weights, M > 24) against dsv3_bgemm_ref on the same operands: bf16 products are exact in
// fp32, so the same bound holds. test_matmul has the long sweep; this is the per-level census.
static void matmul_case(const char *lv, dsv3_dtype dt, int N, int K, int br, int bc, int M, int act_bf16) {
    float *wf = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)M * K);
    fill(x, (size_t)M * K, 1.0);
    void *data = NULL;
    float *scale = NULL;
    if (dt == DSV3_F32) { data = wf; fill(wf, (size_t)N * K, 1.0); }
    else if (dt == DSV3_BF16 || dt == DSV3_F16) {
        uint16_t *h = malloc(2 * (size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) {
            if (dt == DSV3_BF16) h[i] = dsv3_f32_to_bf16((float)rnd());
            else h[i] = (uint16_t)(((g_rng >> 3) & 0x8000) | ((10 + (rnd() > 0 ? 5 : 3)) << 10) | ((uint64_t)((rnd() + 1) * 511) & 0x3ff));
            wf[i] = dt == DSV3_BF16 ? dsv3_bf16_to_f32(h[i]) : dsv3_f16_to_f32(h[i]);
        }
        data = h;
    } else {
        uint8_t *q = malloc((size_t)N * K);
        int nbr = (N + br - 1) / br, nbc = (K + bc - 1) / bc;
        scale = malloc(sizeof(float) * (size_t)nbr * nbc);
        for (int i = 0; i < nbr * nbc; i++) scale[i] = (float)(0.5 + 0.5 * (rnd() + 1.0)) / 448.0f;
        for (size_t i = 0; i < (size_t)N * K; i++) {
            uint8_t c = (uint8_t)(g_rng >> 17);
            g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
            if ((c & 0x7f) == 0x7f) c = 0x3f; // no NaN codes here (test_matmul checks them)
            q[i] = c;
            int r = (int)(i / K), k = (int)(i % K);
            wf[i] = dsv3_e4m3_to_f32(c) * scale[(size_t)(r / br) * nbc + k / bc];
        }
        data = q;
    }
    dsv3_mat w = {dt, data, scale, N, K, br, bc};
    gbuf y = gb_new((size_t)M * N);
    float *yr = malloc(sizeof(float) * (size_t)M * N), *bound = malloc(sizeof(float) * (size_t)M * N);
    float *ax = malloc(sizeof(float) * (size_t)M * K), *aw = malloc(sizeof(float) * (size_t)N * K);
    for (size_t i = 0; i < (size_t)M * K; i++) ax[i] = fabsf(act_bf16 ? dsv3_bf16_to_f32(dsv3_f32_to_bf16(x[i])) : x[i]);
    for (size_t i = 0; i < (size_t)N * K; i++) aw[i] = fabsf(wf[i]);
    dsv3_matmul_set_act_bf16(act_bf16);
    int uses = dsv3_matmul_uses_bf16_gemm(&w, M);
    dsv3_matmul(y.p, x, &w, M);
    dsv3_matmul_set_act_bf16(0);
    if (act_bf16) dsv3_bgemm_ref(0, 1, M, N, K, 1.0f, x, K, wf, K, 0.0f, yr, N);
    else dsv3_matmul_ref(yr, x, &w, M);
    for (int m = 0; m < M; m++) // Σ|x||w| (x bf16-rounded under bf16 activations), in double
        for (int n = 0; n < N; n++) {
            double sacc = 0.0;
            for (int k = 0; k < K; k++) sacc += (double)ax[(size_t)m * K + k] * aw[(size_t)n * K + k];
            bound[(size_t)m * N + n] = (float)sacc;
        }
    int bad = 0;
    for (size_t i = 0; i < (size_t)M * N; i++)
        if (!(fabs((double)y.p[i] - yr[i]) <= (2.0 * K + 4.0) * U * bound[i] + 1e-30)) bad++;
    CHECK(!bad && (!act_bf16 || uses), "%s matmul %s %dx%d (blocks %dx%d) M=%d act=%s path %s: %d outputs out of bound",
          lv, dsv3_dtype_name(dt), N, K, br, bc, M, act_bf16 ? "bf16" : "f32", dsv3_matmul_path(&w, M), bad);
    CHECK_GUARD(y, "matmul y");
    free(wf); free(x); if (data != wf) free(data); free(scale); free(yr); free(bound); free(ax); free(aw); gb_free(&y);
}

static void matmul_paths(void) {
    static const dsv3_isa levels[] = {DSV3_ISA_AMX, DSV3_ISA_AVX512, DSV3_ISA_AVX2, DSV3_ISA_SCALAR};
    static const dsv3_dtype types[] = {DSV3_F32, DSV3_BF16, DSV3_F16, DSV3_F8_E4M3};
    static const int shapes[][4] = {{37, 200, 128, 128}, {130, 576, 128, 128}, {17, 130, 7, 24}}; // N, K, block
    static const int Ms[] = {1, 3, 4, 7, 16, 24, 25, 70};
    dsv3_isa restore = dsv3_matmul_get_isa();
    for (int l = 0; l < 4; l++) {
        if (dsv3_matmul_set_isa(levels[l]) != 0) {
            printf("SKIP backend_ops: matmul at %s (%s)\n", dsv3_isa_name(levels[l]), dsv3_error());
            continue;
        }
        const char *lv = dsv3_isa_name(levels[l]);
        for (int t = 0; t < 4; t++)
            for (int s = 0; s < 3; s++) {
                if (s == 2 && types[t] != DSV3_F8_E4M3) continue; // odd blocks matter only for F8
                for (int mi = 0; mi < 8; mi++) matmul_case(lv, types[t], shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], Ms[mi], 0);
            }
        if (levels[l] >= DSV3_ISA_AVX512) {
            matmul_case(lv, DSV3_BF16, 37, 200, 128, 128, 25, 1);
            matmul_case(lv, DSV3_BF16, 130, 576, 128, 128, 70, 1);
        }
    }
    dsv3_matmul_set_isa(restore);
}

// ---- 4. the forward pass's ops (kernels/cpu/ops.h) at every level -------------------------------
// The vector paths of rmsnorm / swiglu / softmax (ops.c) at every level this CPU runs, against
// the same functions at the scalar level (ops.c's scalar definitions; tests/test_ops.c checks those
// against exact math), and the property the inference
// relies on: a row's (element's) result does not depend on how many rows (elements) share the call.
// Tolerances: rmsnorm sums x² in double in another order (the float result moves by <= 1 ulp of
// the rounding of var and r: rtol 3e-7); swiglu and softmax use a vector exp within 2 ulp of expf,
// then one division (swiglu: rtol 4 ulp = 5e-7); softmax also sums n exps in fp32 partials rather
// than double (relative error <= n·2^-24 of the sum for n = 300: rtol 2e-5), and a mistake (a missing
// or doubled element, a wrong max) moves a probability by far more.
static uint64_t rs_ops = 0x1234567;
static float rnd_ops(void) { rs_ops ^= rs_ops << 13; rs_ops ^= rs_ops >> 7; rs_ops ^= rs_ops << 17; return (float)((rs_ops >> 40) / 16777216.0 * 2 - 1); }

static void forward_ops_levels(void) {
    enum { R = 9, N = 300, NS = 1000 };
    static float x[R * N], w[N], y0[R * N], y1[R * N], g[NS], u[NS], g0[NS], g1[NS], sm[N], s0[N], s1[N];
    for (int i = 0; i < R * N; i++) x[i] = 4 * rnd_ops();
    for (int i = 0; i < N; i++) { w[i] = 1 + rnd_ops(); sm[i] = 20 * rnd_ops(); }
    for (int i = 0; i < NS; i++) { g[i] = 12 * rnd_ops(); u[i] = rnd_ops(); }
    dsv3_isa top = dsv3_cpu_max_isa(), was = dsv3_matmul_get_isa();
    dsv3_matmul_set_isa(DSV3_ISA_SCALAR);
    dsv3_rmsnorm_rows(y0, x, w, R, N, 1e-6f);
    memcpy(g0, g, sizeof g);
    dsv3_swiglu(g0, u, NS);
    memcpy(s0, sm, sizeof sm);
    dsv3_softmax(s0, N);
    const dsv3_isa levels[3] = {DSV3_ISA_AVX2, DSV3_ISA_AVX512, DSV3_ISA_AMX};
    for (int l = 0; l < 3; l++) {
        if (levels[l] > top || dsv3_matmul_set_isa(levels[l]) != 0) {
            printf("SKIP backend_ops: forward ops at %s (this CPU tops out at %s)\n", dsv3_isa_name(levels[l]), dsv3_isa_name(top));
            continue;
        }
        const char *lv = dsv3_isa_name(levels[l]);
        dsv3_rmsnorm_rows(y1, x, w, R, N, 1e-6f);
        int bad = 0;
        for (int i = 0; i < R * N; i++) bad += !t_close(y1[i], y0[i], 0, 3e-7);
        CHECK(bad == 0, "%s rmsnorm_rows vs scalar: %d of %d outside rtol 3e-7", lv, bad, R * N);
        float one[N];
        dsv3_rmsnorm(one, x + 4 * N, w, N, 1e-6f);
        CHECK(!memcmp(one, y1 + 4 * N, sizeof one), "%s rmsnorm: one row alone == the same row among %d", lv, R);
        memcpy(g1, g, sizeof g);
        dsv3_swiglu(g1, u, NS);
        bad = 0;
        for (int i = 0; i < NS; i++) bad += !t_close(g1[i], g0[i], 1e-30, 5e-7);
        CHECK(bad == 0, "%s swiglu vs scalar: %d of %d outside rtol 5e-7", lv, bad, NS);
        int moved = 0; // every prefix length and offset: the same element, the same value
        for (int off = 0; off < 9; off++)
            for (int n = 1; n <= 19; n++) {
                float gg[19];
                memcpy(gg, g + off, sizeof(float) * n);
                dsv3_swiglu(gg, u + off, n);
                moved += memcmp(gg, g1 + off, sizeof(float) * n) != 0;
            }
        CHECK(moved == 0, "%s swiglu: %d of 171 short calls differ from the long call (tail not lane-identical)", lv, moved);
        memcpy(s1, sm, sizeof sm);
        dsv3_softmax(s1, N);
        bad = 0;
        double tot = 0;
        for (int i = 0; i < N; i++) { bad += !t_close(s1[i], s0[i], 1e-30, 2e-5); tot += s1[i]; }
        CHECK(bad == 0 && fabs(tot - 1) < 1e-5, "%s softmax vs scalar: %d of %d outside rtol 2e-5, sum %.9f", lv, bad, N, tot);
        float m3[3] = {-INFINITY, -INFINITY, -INFINITY};
        dsv3_softmax(m3, 3);
        CHECK(m3[0] == 0 && m3[2] == 0, "%s softmax of an all-masked row is zero", lv);
    }
    dsv3_matmul_set_isa(was);
}

int main(void) {
    const dsv3_backend *ref = dsv3_backend_ref(), *cpu = dsv3_backend_cpu();
    CHECK(ref && ref->name && !strcmp(ref->name, "ref"), "reference backend present");
    CHECK(cpu && cpu->name, "cpu backend present");
    fd_all(ref);
    if (cpu != ref) {
        int have_avx2 = dsv3_matmul_set_isa(DSV3_ISA_AVX2) == 0;
        if (have_avx2) fd_all(cpu);
        else printf("SKIP backend_ops: avx2 path (this CPU lacks AVX2/FMA)\n");
        dsv3_matmul_set_isa(DSV3_ISA_SCALAR);
        fd_all(cpu);
        if (have_avx2) dsv3_matmul_set_isa(DSV3_ISA_AVX2);
    } else printf("SKIP backend_ops: fast cpu backend (dsv3_backend_cpu() returns the reference)\n");
    cmp_all(ref, cpu);
    bgemm_paths(ref);
    matmul_paths();
    forward_ops_levels();
    return test_report("backend_ops");
}
