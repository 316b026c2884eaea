// FP8 Linear layers for training: DeepSeek-V3's fine-grained recipe (train.h has the contract,
// docs/FP8_TRAINING.md the design). The three GEMMs of a Linear all run in the "NT" form of
// numerics/fp8_gemm.h (both operands K-contiguous), on the backend's fp8_gemm:
//   Fprop  A = X (N, in) 1×128 codes,      B = W (out, in) 128×128 codes            -> Y (N, out)
//   Dgrad  A = dY (N, out) 1×128 codes,    B = Wᵀ (in, out): W's codes transposed   -> dX (N, in)
//   Wgrad  A = dYᵀ (out, N) 1×128 codes,   B = Xᵀ (in, N) 1×128 codes (b_block_n 1) -> dW (out, in) +=
// Weight codes are made once per step (dsv3_fp8_new_step bumps a generation; the first use in the
// step quantizes), the transposed copy on the first backward use. Activation codes live in the
// training arena (dsv3_xq, train_impl.h): the first Fprop reading an input in the step makes them,
// the other Linears on that input and its Wgrad reuse them (without them: quantized into scratch).
// Quantization scratch is per thread (the routed experts run their Linears on OpenMP threads) and
// grows on first use only.
#include "model/train_impl.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned gen, gen_t;  // step generation of q / qt (0: never)
    int rows, cols;       // (out, in)
    uint8_t *q, *qt;      // (out, in) codes, (in, out) transposed codes
    float *s, *st;        // (ceil out, ceil in) block scales, transposed (ceil in, ceil out)
} wcache;

typedef struct { size_t cap, off; char *p; } arena;

struct dsv3_fp8_state {
    dsv3_fp8_recipe r;
    unsigned gen;
    int nm;               // matrices in the table
    long *off;            // (nm) their arena offsets, ascending
    wcache *w;            // (nm)
    int nthr;
    arena *scr;           // (nthr) per-thread scratch
};

static int ceil128(int n) { return (n + DSV3_QUANT_TILE - 1) / DSV3_QUANT_TILE; }

// ---- recipe -------------------------------------------------------------------------------------

void dsv3_fp8_recipe_default(dsv3_fp8_recipe *r) {
    memset(r, 0, sizeof *r);
    r->scale_fmt = DSV3_SCALE_AMAX;
    r->blocks = DSV3_FP8_B_ALL;
    r->acc = (dsv3_fp8_acc){DSV3_FP8_ACC_FP32, 0, DSV3_FP8_ACC_DEFAULT_BITS, DSV3_FP8_ACC_DEFAULT_GROUP, DSV3_FP8_ROUND_FLOOR};
}

int dsv3_fp8_blocks_parse(const char *s, unsigned *blocks) {
    static const char *names[] = {"attn", "mlp", "experts", "mtp"};
    if (!strcmp(s, "all")) { *blocks = DSV3_FP8_B_ALL; return 0; }
    unsigned b = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(names[i]) == n && !strncmp(p, names[i], n)) k = i;
        if (k < 0) return dsv3_errorf("--fp8-blocks: '%s' is not all or a comma list of attn, mlp, experts, mtp", s);
        b |= 1u << k;
        p += n + (e ? 1 : 0);
        if (e && !*p) return dsv3_errorf("--fp8-blocks: '%s' ends with a comma", s);
    }
    if (!b) return dsv3_errorf("--fp8-blocks: empty list");
    *blocks = b;
    return 0;
}

int dsv3_fp8_accum_parse(const char *s, dsv3_fp8_acc *acc) {
    *acc = (dsv3_fp8_acc){DSV3_FP8_ACC_FP32, 0, DSV3_FP8_ACC_DEFAULT_BITS, DSV3_FP8_ACC_DEFAULT_GROUP, DSV3_FP8_ROUND_FLOOR};
    if (!strcmp(s, "exact")) return 0;
    acc->mode = DSV3_FP8_ACC_LIMITED;
    if (!strcmp(s, "hopper14")) return 0;
    if (!strncmp(s, "promote:", 8)) {
        char *end;
        long n = strtol(s + 8, &end, 10);
        if (s[8] && !*end && n >= 32 && n <= 4096 && n % 32 == 0) {
            acc->nc = (int)n;
            return 0;
        }
    }
    return dsv3_errorf("--fp8-accum: '%s' is not exact, hopper14 or promote:N (N a multiple of 32 in 32..4096)", s);
}

const char *dsv3_fp8_accum_name(const dsv3_fp8_acc *acc, char *buf, int n) {
    if (acc->mode == DSV3_FP8_ACC_FP32) snprintf(buf, (size_t)n, "exact");
    else if (acc->nc == 0) snprintf(buf, (size_t)n, "hopper14");
    else snprintf(buf, (size_t)n, "promote:%d", acc->nc);
    return buf;
}

// ---- state --------------------------------------------------------------------------------------

void dsv3_fp8_state_free(dsv3_fp8_state *s) {
    if (!s) return;
    for (int i = 0; i < s->nm; i++) { free(s->w[i].q); free(s->w[i].qt); free(s->w[i].s); free(s->w[i].st); }
    for (int t = 0; t < s->nthr; t++) free(s->scr[t].p);
    free(s->w); free(s->off); free(s->scr);
    free(s);
}

void dsv3_fp8_new_step(dsv3_fp8_state *s) {
    if (++s->gen == 0) { // wrapped: invalidate everything
        for (int i = 0; i < s->nm; i++) s->w[i].gen = s->w[i].gen_t = 0;
        s->gen = 1;
    }
}

int dsv3_train_set_fp8(dsv3_train *tr, const dsv3_fp8_recipe *r) {
    if (r && r->acc.mode == DSV3_FP8_ACC_LIMITED && (r->acc.bits < 2 || r->acc.bits > 40 || r->acc.group < 1 || r->acc.nc < 0))
        return dsv3_errorf("fp8 recipe: bad accumulator settings (bits %d, group %d, nc %d)", r->acc.bits, r->acc.group, r->acc.nc);
    if (dsv3_t_replan(tr, r) < 0) return -1;
    dsv3_fp8_state_free(tr->fp8);
    tr->fp8 = NULL;
    if (!r) return 0;
    const dsv3_param_table *tab = &tr->tm->tab;
    dsv3_fp8_state *s = dsv3_calloc(1, sizeof *s);
    s->r = *r;
    s->off = dsv3_malloc(sizeof(long) * (size_t)(tab->n ? tab->n : 1));
    s->w = dsv3_calloc((size_t)(tab->n ? tab->n : 1), sizeof *s->w);
    // the distinct 2-D tensors (aliases share their target's storage), sorted by arena offset
    for (int i = 0; i < tab->n; i++) {
        const dsv3_param *p = &tab->p[i];
        if (p->ndim != 2 || (p->flags & DSV3_PF_ALIAS)) continue;
        int j = s->nm++;
        for (; j > 0 && s->off[j - 1] > (long)p->offset; j--) { s->off[j] = s->off[j - 1]; s->w[j] = s->w[j - 1]; }
        s->off[j] = (long)p->offset;
        s->w[j].rows = (int)p->rows;
        s->w[j].cols = (int)p->cols;
    }
    s->nthr = omp_get_max_threads();
    s->scr = dsv3_calloc((size_t)s->nthr, sizeof *s->scr);
    s->gen = 1;
    tr->fp8 = s;
    tr->fp8_blocks = r->blocks;
    return 0;
}

// The cache slot of the matrix W points at.
static wcache *slot_of(dsv3_train *tr, const float *W, int out, int in) {
    dsv3_fp8_state *s = tr->fp8;
    const long o = (long)(W - tr->tm->params);
    int lo = 0, hi = s->nm - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->off[mid] <= o) lo = mid; else hi = mid - 1;
    }
    DSV3_ASSERT(s->nm > 0 && s->off[lo] == o && s->w[lo].rows == out && s->w[lo].cols == in);
    return &s->w[lo];
}

static wcache *weight_codes(dsv3_train *tr, const float *W, int out, int in, int transposed) {
    dsv3_fp8_state *s = tr->fp8;
    wcache *c = slot_of(tr, W, out, in);
    const size_t n = (size_t)out * in, nb = (size_t)ceil128(out) * ceil128(in);
    if (c->gen != s->gen) {
        if (!c->q) { c->q = dsv3_malloc(n ? n : 1); c->s = dsv3_malloc(sizeof(float) * (nb ? nb : 1)); }
        dsv3_quant_128x128_e4m3(c->q, c->s, W, out, in, s->r.scale_fmt);
        c->gen = s->gen;
    }
    if (transposed && c->gen_t != s->gen) {
        if (!c->qt) { c->qt = dsv3_malloc(n ? n : 1); c->st = dsv3_malloc(sizeof(float) * (nb ? nb : 1)); }
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++) c->qt[(size_t)i * out + o] = c->q[(size_t)o * in + i];
        const int bo = ceil128(out), bi = ceil128(in);
        for (int a = 0; a < bo; a++)
            for (int b = 0; b < bi; b++) c->st[(size_t)b * bo + a] = c->s[(size_t)a * bi + b];
        c->gen_t = s->gen;
    }
    return c;
}

// Per-thread scratch: reserve `bytes` (64-byte aligned pieces follow with take()).
static arena *scratch(dsv3_train *tr, size_t bytes) {
    dsv3_fp8_state *s = tr->fp8;
    const int t = omp_in_parallel() ? omp_get_thread_num() : 0;
    DSV3_ASSERT(t < s->nthr);
    arena *a = &s->scr[t];
    if (a->cap < bytes) {
        free(a->p);
        a->p = dsv3_malloc(bytes);
        a->cap = bytes;
    }
    a->off = 0;
    return a;
}
static void *take(arena *a, size_t bytes) {
    size_t o = (a->off + 63) & ~(size_t)63;
    a->off = o + bytes;
    DSV3_ASSERT(a->off <= a->cap);
    return a->p + o;
}
#define SZ(n) ((((size_t)(n)) + 63) & ~(size_t)63) // bytes reserved for a piece of n bytes

static dsv3_scale_fmt in_fmt(const dsv3_fp8_state *s, dsv3_lin_role role) {
    return (role == DSV3_LIN_FP8_EXPIN || s->r.scale_fmt == DSV3_SCALE_UE8M0) ? DSV3_SCALE_UE8M0 : DSV3_SCALE_AMAX;
}
static dsv3_scale_fmt grad_fmt(const dsv3_fp8_state *s, dsv3_lin_role role) {
    return (role == DSV3_LIN_FP8_EXPOUT || s->r.scale_fmt == DSV3_SCALE_UE8M0) ? DSV3_SCALE_UE8M0 : DSV3_SCALE_AMAX;
}

// y = bf16(y) in place: dsv3_f32_to_bf16 (RNE, NaN kept quiet) on the bits, branch-free so it vectorizes.
static void round_bf16(float *y, size_t n) {
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, y + i, 4);
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        r = (u & 0x7fffffffu) > 0x7f800000u ? ((u & 0xffff0000u) | 0x00400000u) : r;
        memcpy(y + i, &r, 4);
    }
}


void dsv3_fp8_quant_input(dsv3_train *tr, dsv3_lin_role role, dsv3_xq *xq, const float *x, int N, int in) {
    dsv3_quant_1x128_e4m3(xq->q, xq->s, x, N, in, in_fmt(tr->fp8, role));
    xq->ready = 1;
}

// ---- the three GEMMs ----------------------------------------------------------------------------

void dsv3_fp8_linear_fwd(dsv3_train *tr, dsv3_lin_role role, float *y, const float *x, dsv3_xq *xq, int N, const float *W, int out,
                         int in) {
    dsv3_fp8_state *s = tr->fp8;
    const int nk = ceil128(in);
    wcache *w = weight_codes(tr, W, out, in, 0);
    dsv3_xq tmp;
    if (!xq || !xq->q) { // not kept: quantize into scratch
        arena *a = scratch(tr, SZ((size_t)N * in) + SZ(4 * (size_t)N * nk));
        tmp.q = take(a, (size_t)N * in); tmp.s = take(a, 4 * (size_t)N * nk); tmp.ready = 0;
        xq = &tmp;
    }
    if (!xq->ready) dsv3_fp8_quant_input(tr, role, xq, x, N, in);
    dsv3_fp8_gemm_args g = {.M = N, .N = out, .K = in, .a = xq->q, .lda = in, .sa = xq->s, .sa_stride_m = nk, .sa_stride_k = 1,
                            .b = w->q, .ldb = in, .sb = w->s, .b_block_n = 128};
    tr->be->fp8_gemm(&g, &s->r.acc, y, out, 0.0f);
    round_bf16(y, (size_t)N * out);
}

// dY (N, K) quantized along K for the Dgrad A operand: 1×128 tiles, or 128×128 blocks whose scales
// are then repeated per row (the A operand's scale layout is per row).
static void quant_dy(const dsv3_fp8_state *s, uint8_t *q, float *sc, float *blk, const float *dy, int N, int K,
                     dsv3_scale_fmt f) {
    const int nk = ceil128(K);
    if (!s->r.dgrad_block) {
        dsv3_quant_1x128_e4m3(q, sc, dy, N, K, f);
        return;
    }
    dsv3_quant_128x128_e4m3(q, blk, dy, N, K, f);
    for (int m = 0; m < N; m++)
        for (int kb = 0; kb < nk; kb++) sc[(size_t)m * nk + kb] = blk[(size_t)(m / 128) * nk + kb];
}

void dsv3_fp8_linear_bwd(dsv3_train *tr, dsv3_lin_role role, float *dx, int acc, float *dW, const float *dy, const float *x,
                         dsv3_xq *xq, const float *W, int N, int out, int in) {
    dsv3_fp8_state *s = tr->fp8;
    const int no = ceil128(out), ni = ceil128(in), nt = ceil128(N);
    const dsv3_scale_fmt fx = in_fmt(s, role), fg = grad_fmt(s, role);
    const size_t Nin = (size_t)N * in, Nout = (size_t)N * out;
    size_t bytes = SZ(Nout) + SZ(4 * (size_t)N * no) + SZ(4 * (size_t)nt * no)   // dY codes, scales, block scales
                 + SZ(4 * Nin)                                                    // dgrad temporary (acc)
                 + SZ(4 * Nout) + SZ(Nout) + SZ(4 * (size_t)out * nt)              // dYᵀ, its codes, scales
                 + SZ(Nin) + SZ(4 * (size_t)N * ni)                               // X codes (re-tiling source)
                 + SZ(Nin) + SZ(4 * (size_t)in * nt)                              // Xᵀ codes, scales
                 + SZ(4 * Nin) + SZ(2 * Nin) * 2 + SZ(4 * (size_t)in * nt)        // Xᵀ fp32, E5M6 codes ×2
                 + SZ(4 * Nin);                                                   // dequantized X
    arena *a = scratch(tr, bytes);
    if (dx) {
        wcache *w = weight_codes(tr, W, out, in, 1);
        uint8_t *qd = take(a, Nout);
        float *sd = take(a, 4 * (size_t)N * no), *blk = take(a, 4 * (size_t)nt * no);
        quant_dy(s, qd, sd, blk, dy, N, out, fg);
        float *t = acc ? take(a, 4 * Nin) : dx;
        dsv3_fp8_gemm_args g = {.M = N, .N = in, .K = out, .a = qd, .lda = out, .sa = sd, .sa_stride_m = no, .sa_stride_k = 1,
                                .b = w->qt, .ldb = out, .sb = w->st, .b_block_n = 128};
        tr->be->fp8_gemm(&g, &s->r.acc, t, in, 0.0f);
        round_bf16(t, Nin);
        if (acc) {
            #pragma omp parallel for schedule(static) if (Nin > 65536)
            for (size_t i = 0; i < Nin; i++) dx[i] += t[i];
        }
        a->off = 0; // the dgrad pieces are dead: reuse the scratch
    }
    // Wgrad: A = dYᵀ in 1×128 tiles along tokens
    uint8_t *qdt = take(a, Nout);
    float *sdt = take(a, 4 * (size_t)out * nt);
    dsv3_quant_1x128_t_e4m3(qdt, sdt, dy, N, out, fg);
    // B = Xᵀ in 1×128 tiles along tokens
    uint8_t *qxt = take(a, Nin);
    float *sxt = take(a, 4 * (size_t)in * nt);
    if (role == DSV3_LIN_FP8_OPROJ) { // from the E5M6 copy: UE8M0 1×128 -> 128×1 is exact, then E4M3
        uint16_t *q16 = take(a, 2 * Nin), *q16t = take(a, 2 * Nin);
        float *s16 = take(a, 4 * (size_t)N * ni), *s16t = take(a, 4 * (size_t)in * nt), *xt = take(a, 4 * Nin);
        dsv3_quant_1x128_e5m6(q16, s16, x, N, in, DSV3_SCALE_UE8M0);
        dsv3_quant_retile_1x128_t_e5m6(q16t, s16t, q16, s16, N, in, DSV3_SCALE_UE8M0);
        dsv3_dequant_1x128_e5m6(xt, q16t, s16t, in, N);
        dsv3_quant_1x128_e4m3(qxt, sxt, xt, in, N, fx);
    } else if (s->r.wgrad_x_high) {
        dsv3_quant_1x128_t_e4m3(qxt, sxt, x, N, in, fx);
    } else { // re-tile the Fprop's codes: their values, quantized again along the tokens
        dsv3_xq tmp;
        if (!xq || !xq->q || !xq->ready) { // not kept: the Fprop's codes again, from the fp32 input
            DSV3_ASSERT(x != NULL);
            tmp.q = take(a, Nin); tmp.s = take(a, 4 * (size_t)N * ni);
            dsv3_fp8_quant_input(tr, role, &tmp, x, N, in);
            xq = &tmp;
        }
        dsv3_quant_retile_fused_1x128_t_e4m3(qxt, sxt, xq->q, xq->s, N, in, fx);
    }
    dsv3_fp8_gemm_args g = {.M = out, .N = in, .K = N, .a = qdt, .lda = N, .sa = sdt, .sa_stride_m = nt, .sa_stride_k = 1,
                            .b = qxt, .ldb = N, .sb = sxt, .b_block_n = 1};
    tr->be->fp8_gemm(&g, &s->r.acc, dW, in, 1.0f);
}
