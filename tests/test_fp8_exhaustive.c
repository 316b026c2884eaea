// Exhaustive check of the fast fp32 -> E4M3 / E5M2 / E5M6 encoders (src/numerics/fp8.h) over all 2^32
// float32 bit patterns, both overflow policies, against a slow reference derived independently from the
// definition of each format:
//   * the grid of representable magnitudes is built from the value formula (-1)^s 2^(e-bias) (1 + m/2^M)
//     / 2^(1-bias) m/2^M in double (not from the encoder, not from the decode tables);
//   * an input x lies between two grid neighbours lo <= x < hi; it rounds to lo if x < (lo+hi)/2, to hi
//     if x > (lo+hi)/2, and to the one with the even code on a tie. All of this is exact in double
//     (grid values have <= 7 significant bits, so the midpoint is exact; x is an fp32);
//   * one more grid point past the largest finite value (the value the next code would have) stands for
//     "overflow": rounding to it means overflow, then the policy decides (±max, or inf / NaN).
// The inputs are walked in increasing order so the neighbour search is a moving pointer.
// Runs on all cores with OpenMP (about 43 s of CPU, 22 s wall on 2 idle cores). Under `make sanitize`
// (DSV3_SANITIZE set) it checks every 64th block of 2^20 inputs instead, to keep the ASan run short.
#include "test.h"
#include "numerics/fp8.h"
#include <omp.h>
#include <stdint.h>

typedef struct {
    const char *name;
    int ebits, mbits, bias, signbit;
    int ieee;               // 1: top exponent is inf/NaN; 0: E4M3 "fn" (only S.1111.111 is NaN)
    uint32_t nancode, ovfcode;
} fmt_def;

typedef struct {
    int n;                  // grid points, the last one is the virtual overflow point
    double v[4097];         // v[n] = +inf: a sentinel for the neighbour walk
    double mid[4096];       // mid[i] = (v[i] + v[i+1]) / 2, exact in double
    uint32_t code[4096];
    uint32_t maxcode;
} grid;

static double value_of(const fmt_def *f, uint32_t e, uint32_t m) {
    if (e == 0) return ldexp((double)m, 1 - f->bias - f->mbits);
    return ldexp((double)((1u << f->mbits) + m), (int)e - f->bias - f->mbits);
}

static void build_grid(const fmt_def *f, grid *g) {
    g->n = 0;
    uint32_t emax = (1u << f->ebits) - 1, mmask = (1u << f->mbits) - 1;
    for (uint32_t e = 0; e <= emax; e++)
        for (uint32_t m = 0; m <= mmask; m++) {
            int finite = f->ieee ? e < emax : !(e == emax && m == mmask);
            if (!finite) continue;
            g->v[g->n] = value_of(f, e, m);
            g->code[g->n] = (e << f->mbits) | m;
            g->n++;
        }
    g->maxcode = g->code[g->n - 1];
    // virtual overflow point: the value the next code would have if the exponent range went on
    uint32_t nc = g->maxcode + 1;
    g->v[g->n] = value_of(f, nc >> f->mbits, nc & mmask);
    g->code[g->n] = nc;
    g->n++;
    g->v[g->n] = INFINITY;
    for (int i = 0; i + 1 < g->n; i++) g->mid[i] = 0.5 * (g->v[i] + g->v[i + 1]);
}

// Reference rounding of a positive finite x given the current grid index *pi (advanced monotonically):
// the code of the nearest grid point, ties to the even code; maxcode + 1 means overflow.
static inline uint32_t ref_round_pos(const grid *g, double x, int *pi) {
    int i = *pi;
    while (x >= g->v[i + 1]) i++;                      // v[n] = inf stops the walk
    *pi = i;
    if (i == g->n - 1) return g->code[i];              // at or beyond the overflow point
    double mid = g->mid[i];
    if (x < mid) return g->code[i];
    if (x > mid) return g->code[i + 1];
    return (g->code[i] & 1) ? g->code[i + 1] : g->code[i];
}

// got[k] = fast encode of the k-th input of the chunk, or all-ones if -x does not encode to the same
// code with the sign bit set. `omp simd` lets gcc -O2 vectorize it (the encoder is branch-free enough).
#define FAST_LOOP(ENC) do { \
        _Pragma("omp simd") \
        for (uint32_t k = 0; k < CHUNK; k++) { \
            uint32_t u = ch * CHUNK + k, un = u | 0x80000000u; \
            float x, nx; \
            memcpy(&x, &u, 4); \
            memcpy(&nx, &un, 4); \
            uint32_t a = ENC(x, p), b = ENC(nx, p); \
            got[k] = (b == (a | sgn)) ? a : 0xffffffffu; \
        } \
    } while (0)

int main(void) {
    static const fmt_def fmts[3] = {
        {"e4m3", 4, 3, 7, 7, 0, 0x7f, 0x7f},
        {"e5m2", 5, 2, 15, 7, 1, 0x7f, 0x7c},
        {"e5m6", 5, 6, 15, 11, 1, 0x7ff, 0x7c0},
    };
    static grid grids[3];
    for (int fi = 0; fi < 3; fi++) build_grid(&fmts[fi], &grids[fi]);
    // sanity of the reference grids against published maxima
    CHECK(grids[0].v[grids[0].n - 2] == 448.0 && grids[0].maxcode == 0x7e, "e4m3 grid max");
    CHECK(grids[1].v[grids[1].n - 2] == 57344.0 && grids[1].maxcode == 0x7b, "e5m2 grid max");
    CHECK(grids[2].v[grids[2].n - 2] == 65024.0 && grids[2].maxcode == 0x7bf, "e5m6 grid max");

    // The reference must tell RNE from truncation: on [1, 1 + 2^-3) E4M3 truncation differs from RNE
    // for about half of the inputs.
    {
        int gi = 0;
        long diff = 0;
        for (uint32_t u = 0x3f800000u; u < 0x3f800000u + (1u << 20); u++) {
            float x;
            memcpy(&x, &u, 4);
            uint32_t trunc_code = (u >> 20) - ((127u - 7u) << 3);
            diff += ref_round_pos(&grids[0], (double)x, &gi) != trunc_code;
        }
        CHECK(diff > (1 << 18), "reference vs a truncating encoder: only %ld differences", diff);
    }

    const uint32_t CHUNK = 1u << 20;
    const uint32_t nchunks = 0x80000000u / CHUNK; // all non-negative bit patterns 0 .. 0x7fffffff
    const uint32_t stride = getenv("DSV3_SANITIZE") ? 64 : 1;
    for (int fi = 0; fi < 3; fi++) {
        const fmt_def *f = &fmts[fi];
        const grid *g = &grids[fi];
        long long bad[2] = {0, 0};
        uint32_t first_bad[2] = {0, 0};
        #pragma omp parallel
        {
            uint32_t *ref = malloc(sizeof(uint32_t) * CHUNK), *got = malloc(sizeof(uint32_t) * CHUNK);
            #pragma omp for schedule(dynamic, 8)
            for (uint32_t ch = 0; ch < nchunks; ch += stride) {
                // 1. reference, before the overflow policy: the RNE grid code (maxcode + 1 = overflow)
                int gi = 0;
                for (uint32_t k = 0; k < CHUNK; k++) {
                    uint32_t u = ch * CHUNK + k;
                    float x;
                    memcpy(&x, &u, 4);
                    if (u > 0x7f800000u) ref[k] = UINT32_MAX;           // NaN
                    else if (u == 0x7f800000u) ref[k] = g->maxcode + 1; // inf overflows
                    else ref[k] = ref_round_pos(g, (double)x, &gi);
                }
                // 2. fast encoder, both policies and both signs, in simple loops the compiler can vectorize
                for (int sat = 0; sat < 2; sat++) {
                    dsv3_fp8_policy p = sat ? DSV3_FP8_SATURATE : DSV3_FP8_NONSAT;
                    uint32_t sgn = 1u << f->signbit;
                    if (fi == 0) FAST_LOOP(dsv3_f32_to_e4m3);
                    else if (fi == 1) FAST_LOOP(dsv3_f32_to_e5m2);
                    else FAST_LOOP(dsv3_f32_to_e5m6);
                    long long lbad = 0;
                    uint32_t lfirst = 0, ovf = sat ? g->maxcode : f->ovfcode, maxc = g->maxcode, nanc = f->nancode;
                    #pragma omp simd reduction(+ : lbad)
                    for (uint32_t k = 0; k < CHUNK; k++) {
                        uint32_t r = ref[k];
                        r = r == UINT32_MAX ? nanc : r > maxc ? ovf : r;
                        lbad += got[k] != r;
                    }
                    if (lbad)
                        for (uint32_t k = 0; k < CHUNK; k++) {
                            uint32_t r = ref[k];
                            r = r == UINT32_MAX ? nanc : r > maxc ? ovf : r;
                            if (got[k] != r) { lfirst = ch * CHUNK + k; break; }
                        }
                    if (lbad) {
                        #pragma omp critical
                        {
                            if (!bad[sat] || lfirst < first_bad[sat]) first_bad[sat] = lfirst;
                            bad[sat] += lbad;
                        }
                    }
                }
            }
            free(ref);
            free(got);
        }
        for (int sat = 0; sat < 2; sat++) {
            float fx;
            memcpy(&fx, &first_bad[sat], 4);
            CHECK(bad[sat] == 0, "%s %s: %lld of 2^32 inputs differ from the reference (first: bits 0x%08x = %.9g)",
                  f->name, sat ? "saturate" : "nonsat", bad[sat], first_bad[sat], fx);
        }
        printf("%s: %s x 2 policies checked\n", f->name, stride == 1 ? "all 2^32 inputs" : "1/64 of the inputs (sanitizer run)");
    }
    return test_report("test_fp8_exhaustive");
}
