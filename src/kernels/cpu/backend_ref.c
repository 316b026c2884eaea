// The scalar reference backend (kernels/backend.h): plain C loops, one thread, dot products and row
// sums accumulated in double. It is the definition every fast backend is tested against
// (tests/test_backend_ops.c), so it favours obviousness over speed. Semantics follow HF transformers
// in fp32: RMSNorm r = 1/sqrt(mean(x²) + eps), y = w·(x·r) (as dsv3_rmsnorm); silu(z) = z/(1+e^−z);
// the RoPE rotation of dsv3_rope_apply; causal softmax attention with lse = max + log Σ exp(s − max).
#include "kernels/backend.h"
#include "core/error.h"
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

// ---- GEMM -------------------------------------------------------------------------------------

// The FP8 GEMM reference (numerics/fp8_gemm.c); beta 1 goes through a temporary. Arguments are the
// training code's own (shapes checked there), so a failure here is a programming error.
void dsv3_fp8_gemm_beta_ref(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, float *C, int ldc, float beta) {
    if (g->M == 0 || g->N == 0) return;
    if (beta == 0.0f) {
        DSV3_ASSERT(dsv3_fp8_gemm(g, acc, C, DSV3_F32, ldc) == 0);
        return;
    }
    float *t = dsv3_malloc(sizeof(float) * (size_t)g->M * g->N);
    DSV3_ASSERT(dsv3_fp8_gemm(g, acc, t, DSV3_F32, g->N) == 0);
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->N; j++) C[(size_t)i * ldc + j] += beta * t[(size_t)i * g->N + j];
    free(t);
}

static void gemm_ref(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * ldc + j];
            double v = (double)alpha * acc;
            if (beta != 0.0f) v += (double)beta * (double)*c;
            *c = (float)v;
        }
}

// ---- Attention --------------------------------------------------------------------------------

static double dot_d(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

// Scores of query row t of head h against keys 0..t, in double: s[j] = scale·q·k_j.
static void scores_ref(const dsv3_attn_args *a, int h, int t, double *s) {
    const float *q = a->q + (size_t)t * a->q_tok + (size_t)h * a->q_head;
    for (int j = 0; j <= t; j++)
        s[j] = (double)a->scale * dot_d(q, a->k + (size_t)j * a->k_tok + (size_t)h * a->k_head, a->dqk);
}

static double *scratch_ref(size_t n) {
    double *p = (double *)malloc(n * sizeof(double));
    if (!p) dsv3_panic(__FILE__, __LINE__, "attention ref: out of memory");
    return p;
}

static void attn_fwd_ref(const dsv3_attn_args *a) {
    int T = a->T;
    double *s = scratch_ref((size_t)T + (size_t)a->dv + 1), *acc = s + T;
    for (int h = 0; h < a->H; h++)
        for (int t = 0; t < T; t++) {
            scores_ref(a, h, t, s);
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= t; j++) if (s[j] > mx) mx = s[j];
            for (int d = 0; d < a->dv; d++) acc[d] = 0.0;
            for (int j = 0; j <= t; j++) {
                double p = exp(s[j] - mx);
                const float *vj = a->v + (size_t)j * a->v_tok + (size_t)h * a->v_head;
                sum += p;
                for (int d = 0; d < a->dv; d++) acc[d] += p * (double)vj[d];
            }
            float *o = a->o + (size_t)t * a->o_tok + (size_t)h * a->o_head;
            for (int d = 0; d < a->dv; d++) o[d] = (float)(acc[d] / sum);
            a->lse[(size_t)h * T + t] = (float)(mx + log(sum));
        }
    free(s);
}

// P = exp(S − lse) recomputed from the stored lse; D = dO·O; dS = P∘(dO·V − D);
// dq = scale·dS·K, dk += scale·dSᵀ·Q, dv += Pᵀ·dO.
static void attn_bwd_ref(const dsv3_attn_args *a, const float *dout, float *dq, float *dk, float *dv) {
    int T = a->T;
    double *s = scratch_ref((size_t)T + (size_t)a->dqk + 1), *acc = s + T;
    for (int h = 0; h < a->H; h++)
        for (int t = 0; t < T; t++) {
            const float *q = a->q + (size_t)t * a->q_tok + (size_t)h * a->q_head;
            const float *o = a->o + (size_t)t * a->o_tok + (size_t)h * a->o_head;
            const float *g = dout + (size_t)t * a->o_tok + (size_t)h * a->o_head;
            double lse = a->lse[(size_t)h * T + t];
            double D = dot_d(g, o, a->dv);
            scores_ref(a, h, t, s);
            for (int d = 0; d < a->dqk; d++) acc[d] = 0.0;
            for (int j = 0; j <= t; j++) {
                const float *kj = a->k + (size_t)j * a->k_tok + (size_t)h * a->k_head;
                const float *vj = a->v + (size_t)j * a->v_tok + (size_t)h * a->v_head;
                float *gk = dk + (size_t)j * a->k_tok + (size_t)h * a->k_head;
                float *gv = dv + (size_t)j * a->v_tok + (size_t)h * a->v_head;
                double p = exp(s[j] - lse);
                double ds = p * (dot_d(g, vj, a->dv) - D);
                for (int d = 0; d < a->dqk; d++) acc[d] += ds * (double)kj[d];
                for (int d = 0; d < a->dqk; d++) gk[d] = (float)((double)gk[d] + (double)a->scale * ds * (double)q[d]);
                for (int d = 0; d < a->dv; d++) gv[d] = (float)((double)gv[d] + p * (double)g[d]);
            }
            float *gq = dq + (size_t)t * a->q_tok + (size_t)h * a->q_head;
            for (int d = 0; d < a->dqk; d++) gq[d] = (float)((double)a->scale * acc[d]);
        }
    free(s);
}

// ---- RMSNorm ----------------------------------------------------------------------------------

static void rmsnorm_fwd_ref(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double ss = dot_d(xr, xr, n);
        float var = (float)(ss / n);
        float rs = (float)(1.0 / sqrt((double)(var + eps)));
        for (int i = 0; i < n; i++) {
            float v = xr[i] * rs;
            yr[i] = w ? w[i] * v : v;
        }
        if (rstd) rstd[r] = rs;
    }
}

// y_i = w_i x_i r, r = (mean x² + eps)^(-1/2), ∂r/∂x_j = −r³ x_j / n:
// dx_j = r w_j dy_j − (r³/n) x_j Σ_i w_i dy_i x_i;  dw_i += dy_i x_i r.
static void rmsnorm_bwd_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                            int rows, int n) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *gr = dy + (size_t)r * n;
        float *dr = dx + (size_t)r * n;
        double rs = rstd[r], c = 0.0;
        for (int i = 0; i < n; i++) c += (double)(w ? w[i] : 1.0f) * (double)gr[i] * (double)xr[i];
        c *= rs * rs * rs / n;
        for (int i = 0; i < n; i++)
            dr[i] = (float)(rs * (double)(w ? w[i] : 1.0f) * (double)gr[i] - c * (double)xr[i]);
    }
    if (dw)
        for (int i = 0; i < n; i++) {
            double acc = 0.0;
            for (int r = 0; r < rows; r++)
                acc += (double)dy[(size_t)r * n + i] * (double)x[(size_t)r * n + i] * (double)rstd[r];
            dw[i] = (float)((double)dw[i] + acc);
        }
}

// ---- SwiGLU -----------------------------------------------------------------------------------

static void swiglu_fwd_ref(float *a, const float *g, const float *u, long n) {
    for (long i = 0; i < n; i++) a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// silu'(z) = σ(z)·(1 + z·(1 − σ(z))).
static void swiglu_bwd_ref(float *dg, float *du, const float *da, const float *g, const float *u, long n) {
    for (long i = 0; i < n; i++) {
        double z = g[i], sg = 1.0 / (1.0 + exp(-z));
        double d = da[i];
        double ui = u[i]; // everything read before writing
        dg[i] = (float)(d * ui * sg * (1.0 + z * (1.0 - sg)));
        du[i] = (float)(d * z * sg);
    }
}

// ---- RoPE -------------------------------------------------------------------------------------

static void rope_ref(float *x, int rows, long ld, int heads, long hstride, int off, const float *cos_t,
                     const float *sin_t, const int32_t *pos, int n_pairs, int interleave, int inverse) {
    for (int r = 0; r < rows; r++) {
        const float *c = cos_t + (size_t)pos[r] * n_pairs, *s = sin_t + (size_t)pos[r] * n_pairs;
        for (int h = 0; h < heads; h++) {
            float *xs = x + (size_t)r * ld + (size_t)h * hstride + off;
            for (int i = 0; i < n_pairs; i++) {
                float *pa = interleave ? &xs[2 * i] : &xs[i];
                float *pb = interleave ? &xs[2 * i + 1] : &xs[i + n_pairs];
                float x0 = *pa, x1 = *pb;
                if (!inverse) { *pa = x0 * c[i] - x1 * s[i]; *pb = x1 * c[i] + x0 * s[i]; }
                else          { *pa = x0 * c[i] + x1 * s[i]; *pb = x1 * c[i] - x0 * s[i]; }
            }
        }
    }
}

// ---- Cross-entropy ----------------------------------------------------------------------------

static double xent_ref(const float *logits, const int32_t *target, int rows, int V, float scale, float *dlogits) {
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *l = logits + (size_t)r * V;
        float *d = dlogits ? dlogits + (size_t)r * V : NULL;
        int t = target[r];
        if (t < 0) {
            if (d) for (int i = 0; i < V; i++) d[i] = 0.0f;
            continue;
        }
        double mx = -INFINITY;
        for (int i = 0; i < V; i++) if (l[i] > mx) mx = l[i];
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
        double lse = mx + log(sum);
        total += lse - (double)l[t];
        if (d)
            for (int i = 0; i < V; i++) { // d may alias l: l[i] is read before d[i] is written
                double p = exp((double)l[i] - lse);
                d[i] = (float)((double)scale * (p - (i == t ? 1.0 : 0.0)));
            }
    }
    return total;
}

static const dsv3_backend g_ref = {
    .name = "ref",
    .gemm = gemm_ref,
    .fp8_gemm = dsv3_fp8_gemm_beta_ref,
    .attn_fwd = attn_fwd_ref,
    .attn_bwd = attn_bwd_ref,
    .rmsnorm_fwd = rmsnorm_fwd_ref,
    .rmsnorm_bwd = rmsnorm_bwd_ref,
    .swiglu_fwd = swiglu_fwd_ref,
    .swiglu_bwd = swiglu_bwd_ref,
    .rope = rope_ref,
    .xent = xent_ref,
};

const dsv3_backend *dsv3_backend_ref(void) { return &g_ref; }
