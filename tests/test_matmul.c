// dsv3_matmul (SIMD GEMV, packed GEMM and the portable scalar path) against dsv3_matmul_ref, the
// scalar definition, for every weight dtype, M from 1 to 200 and odd shapes (cols 1, 7, 129, 200,
// 576, 600; rows that are not multiples of the 4-row / 16-row / 128-row tiles; partial F8 blocks;
// block shapes that are not multiples of the SIMD width).
//
// Tolerance: both sides compute each y = sum_c x[c] * w[c] in fp32 and differ in summation order
// and in where the F8 block scale's rounding falls (reference: fl(x * fl(w * s)); GEMV path:
// fl(w/256) * fl(x * 256 s) with w/256 exact, i.e. each product within 2 roundings, 2^-23
// relative, of the exact x*w*s either way). Each ordering's summation error is at most
// gamma_K * sum|x*w| (gamma_K ~= K * 2^-24, Higham Thm 3.1), so |fast - ref| <=
// (2K + 4) * 2^-24 * sum|x*w|. That bound is still tight enough to catch a missing or doubled term for
// the K used here (one term is ~sum|x*w| / K, far above it). A second set of inputs makes every
// product and partial sum exactly representable (small integers, power-of-two scales), where any
// order gives the exact answer: there results must match bit for bit.
// Guard words after y catch overruns; y starts as NaN so an unwritten element fails.
#include "test.h"
#include "kernels/cpu/matmul.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <stdint.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 16); }
static float rndf(void) { return (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0); } // [-1, 1)
static int rndi(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }

// IEEE half bit pattern of a small integer (|v| < 2048): exponent from the top bit, mantissa below it.
static uint16_t f16_from_int(int v) {
    unsigned a = (unsigned)abs(v);
    if (a == 0) return 0;
    int e = 31 - __builtin_clz(a);
    uint16_t h = (uint16_t)(((15 + e) << 10) | ((a << (10 - e)) & 0x3ff));
    return v < 0 ? (uint16_t)(h | 0x8000) : h;
}

typedef struct { dsv3_mat m; void *data; float *scale; } owned_mat;

// exact = 1: small-integer weights and power-of-two F8 scales (every product and sum exact).
static owned_mat make_mat(dsv3_dtype t, int rows, int cols, int br, int bc, int exact) {
    owned_mat o = {0};
    size_t n = (size_t)rows * cols, es = dsv3_dtype_size(t);
    o.data = malloc(n * es > 0 ? n * es : 1);
    for (size_t i = 0; i < n; i++) {
        float v = exact ? (float)rndi(-8, 8) : rndf();
        switch (t) {
        case DSV3_F32: ((float *)o.data)[i] = v; break;
        case DSV3_BF16: ((uint16_t *)o.data)[i] = dsv3_f32_to_bf16(v); break;
        case DSV3_F16: { // exact: the integer's f16 pattern; else any finite pattern, subnormals too
            uint16_t h;
            if (exact) h = f16_from_int((int)v);
            else do h = (uint16_t)rnd(); while (((h >> 10) & 0x1f) == 0x1f || ((h >> 10) & 0x1f) > 20);
            ((uint16_t *)o.data)[i] = h; break;
        }
        case DSV3_F8_E4M3: { // exact: integers; else any code except NaN (subnormals included)
            uint8_t b;
            if (exact) b = dsv3_f32_to_e4m3(v, DSV3_FP8_SATURATE);
            else do b = (uint8_t)rnd(); while ((b & 0x7f) == 0x7f);
            ((uint8_t *)o.data)[i] = b; break;
        }
        default: break;
        }
    }
    o.m = (dsv3_mat){.dtype = t, .data = o.data, .rows = rows, .cols = cols, .block_rows = br, .block_cols = bc};
    if (t == DSV3_F8_E4M3) {
        int nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
        o.scale = malloc(sizeof(float) * (size_t)nbr * nbc);
        for (int i = 0; i < nbr * nbc; i++)
            o.scale[i] = exact ? ldexpf(1.0f, rndi(-1, 1)) : (0.001f + 0.01f * (rndf() + 1.0f));
        o.m.scale = o.scale;
    }
    return o;
}

static void free_mat(owned_mat *o) { free(o->data); free(o->scale); }

#define GUARD 16
static const uint32_t GUARD_BITS = 0xDEADBEEFu;

static int n_cases;

// The reference for one dsv3_matmul call: xr and wr (N x K fp32) are the activations and weights
// the call works on, and yr = dsv3_matmul_ref on them. Where the call runs the BF16 GEMM (BF16/FP8
// weights, M > 24, avx512 level and up: dsv3_matmul_uses_bf16_gemm) both are rounded to bf16 first,
// that path's contract; elsewhere they are x and the weights as stored.
static void reference(const dsv3_mat *w, const float *x, int M, float *yr, float *xr, float *wr) {
    int N = w->rows, K = w->cols, bf = dsv3_matmul_uses_bf16_gemm(w, M);
    for (size_t i = 0; i < (size_t)M * K; i++) xr[i] = bf ? dsv3_bf16_to_f32(dsv3_f32_to_bf16(x[i])) : x[i];
    for (int r = 0; r < N; r++) {
        dsv3_mat_row_f32(w, r, wr + (size_t)r * K);
        if (bf) for (int c = 0; c < K; c++) wr[(size_t)r * K + c] = dsv3_bf16_to_f32(dsv3_f32_to_bf16(wr[(size_t)r * K + c]));
    }
    if (!bf) { dsv3_matmul_ref(yr, x, w, M); return; }
    dsv3_mat f = {.dtype = DSV3_F32, .data = wr, .rows = N, .cols = K};
    dsv3_matmul_ref(yr, xr, &f, M);
}

// One comparison of dsv3_matmul with the reference on random x; returns number of bad elements.
static void run_case(const owned_mat *o, int M, int exact, const char *what) {
    const dsv3_mat *w = &o->m;
    int N = w->rows, K = w->cols;
    float *x = malloc(sizeof(float) * ((size_t)M * K + 1));
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = exact ? (float)rndi(-4, 4) : rndf();
    size_t ny = (size_t)M * N;
    float *y = malloc(sizeof(float) * (ny + GUARD)), *yr = malloc(sizeof(float) * (ny + 1));
    for (size_t i = 0; i < ny; i++) y[i] = NAN;
    for (int i = 0; i < GUARD; i++) memcpy(&y[ny + i], &GUARD_BITS, 4);
    float *xr = malloc(sizeof(float) * ((size_t)M * K + 1)), *wr = malloc(sizeof(float) * ((size_t)N * K + 1));
    reference(w, x, M, yr, xr, wr);
    dsv3_matmul(y, x, w, M);
    int guard_ok = 1;
    for (int i = 0; i < GUARD; i++) guard_ok &= memcmp(&y[ny + i], &GUARD_BITS, 4) == 0;
    int bad = 0; double worst = 0;
    for (int r = 0; r < N && bad < 3; r++) {
        const float *row = wr + (size_t)r * K;
        for (int m = 0; m < M; m++) {
            double sabs = 0;
            for (int c = 0; c < K; c++) sabs += fabs((double)xr[(size_t)m * K + c] * row[c]);
            double tol = exact ? 0.0 : (2.0 * K + 4.0) * ldexp(1.0, -24) * sabs;
            double a = y[(size_t)m * N + r], b = yr[(size_t)m * N + r];
            double err = fabs(a - b);
            if (!(err <= tol)) {
                if (bad++ < 3) fprintf(stderr, "  %s: y[%d,%d] = %.9g, ref %.9g, |diff| %.3g > tol %.3g\n", what, m, r, a, b, err, tol);
            }
            if (tol > 0 && err / tol > worst) worst = err / tol;
        }
    }
    CHECK(bad == 0, "%s %s %dx%d M=%d: %d elements outside tolerance", what, dsv3_dtype_name(w->dtype), N, K, M, bad);
    CHECK(guard_ok, "%s %s %dx%d M=%d: wrote past the end of y", what, dsv3_dtype_name(w->dtype), N, K, M);
    n_cases++;
    free(xr); free(wr); free(x); free(y); free(yr);
}

static void sweep(const char *isa) {
    static const dsv3_dtype types[] = {DSV3_F32, DSV3_BF16, DSV3_F16, DSV3_F8_E4M3};
    // rows, cols, F8 block shape
    static const int shapes[][4] = {
        {1, 1, 128, 128},   {3, 7, 128, 128},   {5, 129, 128, 128}, {37, 200, 128, 128},
        {130, 576, 128, 128}, {17, 600, 128, 128}, {300, 264, 128, 128},
        {45, 200, 16, 24},  {23, 61, 7, 5},     // odd block shapes, bc not a multiple of 8
    };
    // GEMV tiles: 4 weight rows x 1 or 2 x rows, 2 x 4 for M >= 4 (M = 5, 6, 7 mix them); the
    // GEMV/GEMM switch is tested on both sides; 200 > the GEMM's 96-row M block.
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 13, DSV3_MATMUL_GEMV_MAX_M, DSV3_MATMUL_GEMV_MAX_M + 1, 64, 200};
    char what[64];
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const int *s = shapes[si];
            if (types[ti] != DSV3_F8_E4M3 && si >= 7) continue; // block shape only matters for F8
            for (int exact = 0; exact <= 1; exact++) {
                owned_mat o = make_mat(types[ti], s[0], s[1], s[2], s[3], exact);
                for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                    // keep the reference cost bounded (the whole binary runs in a few seconds)
                    if ((double)Ms[mi] * s[0] * s[1] > 8e6) continue;
                    snprintf(what, sizeof what, "%s%s", isa, exact ? " exact" : "");
                    run_case(&o, Ms[mi], exact, what);
                }
                free_mat(&o);
            }
        }
}

// A NaN weight code (E4M3 S.1111.111) makes its output row NaN, as in the reference.
static void nan_code(const char *isa) {
    static const int Ms[] = {1, 3, 20, 40}; // 40: the packed GEMM / BF16 GEMM
    for (int mi = 0; mi < 4; mi++) {
        owned_mat o = make_mat(DSV3_F8_E4M3, 20, 150, 128, 128, 0);
        ((uint8_t *)o.data)[5 * 150 + 131] = 0x7f;
        ((uint8_t *)o.data)[9 * 150 + 2] = 0xff;
        int M = Ms[mi];
        float *x = malloc(sizeof(float) * (size_t)M * 150), *y = malloc(sizeof(float) * (size_t)M * 20);
        for (int i = 0; i < M * 150; i++) x[i] = rndf();
        dsv3_matmul(y, x, &o.m, M);
        int ok = 1;
        for (int m = 0; m < M; m++)
            for (int r = 0; r < 20; r++) ok &= (r == 5 || r == 9) ? isnan(y[m * 20 + r]) : isfinite(y[m * 20 + r]);
        CHECK(ok, "%s M=%d: F8 NaN codes give NaN in exactly their rows", isa, M);
        free(x); free(y); free_mat(&o);
    }
}

// Tiny activations (|x| ~ 2^-90, as far from fp32's subnormals as 1.0 is from 2^-36): every
// product x * w * s is a normal fp32 (>= 2^-107), so the reference keeps full precision and the
// fast path must too (the same tolerance as run_case). Caught the E4M3 GEMV folding a fixed 2^64
// into x, which pushed the products of such rows through fp32 subnormals (errors of 600%).
static void tiny_x(const char *isa) {
    static const int Ms[] = {1, 3, 6, 30};
    for (int mi = 0; mi < 4; mi++) {
        int M = Ms[mi], N = 9, K = 200;
        owned_mat o = make_mat(DSV3_F8_E4M3, N, K, 128, 128, 0);
        float *x = malloc(sizeof(float) * (size_t)M * K), *y = malloc(sizeof(float) * (size_t)M * N);
        float *yr = malloc(sizeof(float) * (size_t)M * N), *xr = malloc(sizeof(float) * (size_t)M * K);
        float *wr = malloc(sizeof(float) * (size_t)N * K);
        for (int i = 0; i < M * K; i++) x[i] = ldexpf(rndf(), -90);
        dsv3_matmul(y, x, &o.m, M);
        reference(&o.m, x, M, yr, xr, wr);
        int bad = 0;
        for (int r = 0; r < N; r++) {
            const float *row = wr + (size_t)r * K;
            for (int m = 0; m < M; m++) {
                double sabs = 0;
                for (int c = 0; c < K; c++) sabs += fabs((double)xr[m * K + c] * row[c]);
                bad += !(fabs((double)y[m * N + r] - yr[m * N + r]) <= (2.0 * K + 4.0) * ldexp(1.0, -24) * sabs);
            }
        }
        CHECK(bad == 0, "%s M=%d: %d outputs off for tiny activations", isa, M, bad);
        free(x); free(y); free(yr); free(xr); free(wr); free_mat(&o);
    }
}

int main(void) {
    // DSV3_NO_SIMD is read at the first use: it must select the scalar path.
    setenv("DSV3_NO_SIMD", "1", 1);
    CHECK(dsv3_matmul_get_isa() == DSV3_ISA_SCALAR, "DSV3_NO_SIMD=1 selects the scalar path");
    CHECK(dsv3_matmul_set_isa((dsv3_isa)7) == -1, "unknown ISA rejected");
    sweep("scalar");
    nan_code("scalar");
    tiny_x("scalar");
    if (dsv3_matmul_set_isa(DSV3_ISA_AVX2) == 0) {
        CHECK(dsv3_matmul_get_isa() == DSV3_ISA_AVX2, "AVX2 path selected");
        sweep("avx2");
        nan_code("avx2");
        tiny_x("avx2");
    } else {
        printf("note: this CPU has no AVX2/FMA/F16C; only the scalar path was tested\n");
    }
    // The BF16 GEMM levels: BF16/FP8 weights at M > 24 go through bgemm (checked against the
    // bf16-rounded reference, see reference()); everything else must still match the fp32 reference.
    static const dsv3_isa bf_levels[] = {DSV3_ISA_AVX512, DSV3_ISA_AMX};
    for (int l = 0; l < 2; l++) {
        const char *nm = dsv3_isa_name(bf_levels[l]);
        if (dsv3_matmul_set_isa(bf_levels[l]) != 0) { printf("SKIP matmul: %s path (%s)\n", nm, dsv3_error()); continue; }
        owned_mat o = make_mat(DSV3_BF16, 40, 64, 128, 128, 0);
        for (int act = 0; act < 2; act++) { // fp32 activations (the default), then bf16
            dsv3_matmul_set_act_bf16(act);
            char what[48];
            snprintf(what, sizeof what, "%s act=%s", nm, act ? "bf16" : "f32");
            CHECK(dsv3_matmul_uses_bf16_gemm(&o.m, 25) == act && !dsv3_matmul_uses_bf16_gemm(&o.m, 24),
                  "%s: BF16 GEMM above M = 24 exactly when bf16 activations are on", what);
            sweep(what);
            nan_code(what);
            tiny_x(what);
        }
        dsv3_matmul_set_act_bf16(0);
        free_mat(&o);
    }
    printf("%d matmul comparisons\n", n_cases);
    return test_report("matmul");
}
