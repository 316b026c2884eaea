// The kernel interface the model's training forward/backward (and, later, inference) calls. One
// table of function pointers per backend: `dsv3_backend_ref()` is the plain scalar C reference (the
// definition every fast path is tested against, tests/test_backend_ops.c), `dsv3_backend_cpu()` the
// fast CPU path (OpenMP threads, AVX2/FMA where the CPU has it, chosen at run time). A CUDA backend
// plugs in by filling the same table. All tensors are fp32, row-major.
//
// Threading contract: every op may use OpenMP threads internally when called outside a parallel
// region; called from inside one (omp_in_parallel()), it runs on the calling thread only.
#pragma once
#include <stdint.h>
#include "numerics/fp8_gemm.h"

// Causal multi-head attention over one sequence of T tokens (queries attend to keys 0..t).
// Element j of head h at token t of q lives at q[t*q_tok + h*q_head + j]; likewise k, v, o.
// A head stride of 0 for k and v means one key/value row shared by every head (the absorbed MLA
// form: keys [c | k_pe], values c). Scores are scale·q·k; the softmax is taken in fp32.
typedef struct {
    int T, H;              // tokens, heads
    int dqk, dv;           // head dims of q/k and of v/o
    float scale;           // softmax scale (1/sqrt(qk) · YaRN mscale²)
    const float *q; long q_tok, q_head;
    const float *k; long k_tok, k_head;  // k_head may be 0 (shared)
    const float *v; long v_tok, v_head;  // v_head may be 0 (shared)
    float *o; long o_tok, o_head;        // output, written
    float *lse;            // (H, T): log-sum-exp (natural log) of the scaled scores of each query row;
                           //   written by forward, read by backward
} dsv3_attn_args;

typedef struct dsv3_backend {
    const char *name;

    // C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C (beta = 0: C is not read, may be NaN).
    // op(A) = A stored (M, K) with row stride lda when transA = 0, Aᵀ with A stored (K, M) when 1;
    // op(B) = B stored (K, N) with ldb when transB = 0, Bᵀ with B stored (N, K) when 1.
    // The three training forms with W (out, in) as HF stores it:
    //   fprop  Y = X·Wᵀ:     gemm(0, 1, M, out, in, 1, X, in, W, in, 0, Y, out)
    //   dgrad  dX (+)= dY·W: gemm(0, 0, M, in, out, 1, dY, out, W, in, beta, dX, in)
    //   wgrad  dW += dYᵀ·X:  gemm(1, 0, out, in, M, 1, dY, out, X, in, 1, dW, in)
    void (*gemm)(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

    // FP8 block-scaled GEMM (numerics/fp8_gemm.h: E4M3 codes, 1x128 / 128x128 or 1x128 scales) under
    // the accumulator model acc: beta 0 writes C (fp32, row stride ldc), beta 1 adds to it. The ref
    // backend runs dsv3_fp8_gemm; the cpu backends run dsv3_fp8_bgemm (AMX / AVX512_BF16) for the
    // promoted fp32 model where the CPU has it, else the reference.
    void (*fp8_gemm)(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, float *C, int ldc, float beta);

    // Attention forward: writes a->o and a->lse.
    void (*attn_fwd)(const dsv3_attn_args *a);
    // Attention backward from dO (strides of o): dq written (strides of q); dk and dv ACCUMULATED
    // (+=) with the strides of k and v (so a shared key/value row gathers the sum over heads). Reads
    // q, k, v, o, lse of `a` as left by attn_fwd.
    void (*attn_bwd)(const dsv3_attn_args *a, const float *dout, float *dq, float *dk, float *dv);

    // RMSNorm over rows of n: y = w ⊙ x · r with r = 1/sqrt(mean(x²) + eps); rstd[rows] = r.
    // w may be NULL (gain 1). y must not alias x.
    void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
    // dx (written) and dw (ACCUMULATED, may be NULL) from dy, given x, w, rstd of the forward.
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                        int rows, int n);
    // a = silu(g) ⊙ u over n elements.
    void (*swiglu_fwd)(float *a, const float *g, const float *u, long n);
    // dg, du (written) from da, given g, u.
    void (*swiglu_bwd)(float *dg, float *du, const float *da, const float *g, const float *u, long n);
    // Rotate rows of x in place: `rows` rows, each holding `heads` rope slices of 2·n_pairs values at
    // offset `off` with head stride `hstride` (row stride `ld`); row r uses cos/sin row pos[r] of the
    // tables (n_pairs wide). inverse = 1 applies the transpose (the backward of the rotation).
    void (*rope)(float *x, int rows, long ld, int heads, long hstride, int off, const float *cos_t,
                 const float *sin_t, const int32_t *pos, int n_pairs, int interleave, int inverse);
    // Cross-entropy of each row of logits (rows, V) against target[r] (target < 0: ignored, no loss,
    // zero gradient). Returns Σ CE over counted rows (double); writes dlogits = scale·(softmax − onehot)
    // (may alias logits; NULL: no gradient).
    double (*xent)(const float *logits, const int32_t *target, int rows, int V, float scale, float *dlogits);
} dsv3_backend;

const dsv3_backend *dsv3_backend_ref(void);
const dsv3_backend *dsv3_backend_cpu(void);
// dsv3_backend_cpu() with bf16-input GEMMs (inputs rounded to bf16, fp32 accumulation: AMX /
// AVX512_BF16 where the CPU has them, kernels/cpu/bgemm.h): the bf16 training precision.
const dsv3_backend *dsv3_backend_cpu_bf16(void);
