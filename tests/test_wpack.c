// The packed-weight cache (kernels/cpu/wpack.h) and the BF16 GEMM reading it (kernels/cpu/bgemm.c).
//
// 1. Policy, on the table alone: memory outside a region is never cached; a key is packed on its
//    second use within a version and read from then on; a new version of the region makes it stale
//    (first use of the new version packs per call again, the second rebuilds in the same buffer);
//    the budget bounds the bytes held; forgetting a region frees its packs.
// 2. The GEMM with a cached B (fwd form: B stored (N, K); dgrad form: B stored (K, N); a BF16 and an
//    FP8 weight matrix through dsv3_bgemm_mat) gives bit for bit the result of packing per call: the
//    cached pack is the same panels and the kernel runs the same sums in the same order. Shapes put
//    N past one 256-column block with a partial last panel, and K off the 32-multiple.
// 3. Versions: after B changes and the region gets a new version, the result follows the new B
//    (exactly the per-call result); when B changes *without* a new version the cached pack is what is
//    read (the old result): the contract the trainer's same_weights relies on, and proof that the
//    cache is used at all.
// 4. A trainer (bf16 backend): two steps with the weights changed in between give the same loss and
//    bit-identical gradients as with the cache off (budget 0), and the head (used over several row
//    chunks) is served from the cache.
// Runs at the avx512 level and above (the BF16 GEMM's hardware levels); below, it reports a skip.
#include "test.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/wpack.h"
#include "model/config.h"
#include "model/tmodel.h"
#include "model/train.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <stdint.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rndf(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)(((rng >> 40) & 0xFFFFFF) / 8388608.0 - 1.0);
}

static void policy(void) {
    static char region_mem[4096], outside[64];
    dsv3_wpack_set_budget(1 << 20);
    dsv3_wpack_reset_stats();
    int build;
    dsv3_wpack_key k_out = {outside, 1, 4, 4, 4};
    CHECK(dsv3_wpack_get(&k_out, 64, &build) == NULL && !build, "memory outside every region is not cached");
    CHECK(dsv3_wpack_get(&k_out, 64, &build) == NULL && !build, "... nor on its second use");
    dsv3_wpack_region(region_mem, sizeof region_mem);
    dsv3_wpack_key k = {region_mem + 128, 2, 32, 64, 64};
    void *p1 = dsv3_wpack_get(&k, 4096, &build);
    CHECK(p1 == NULL && !build, "first use in a version: pack per call");
    void *p2 = dsv3_wpack_get(&k, 4096, &build);
    CHECK(p2 != NULL && build == 1, "second use: a buffer to build (%p, build %d)", p2, build);
    int b2;
    CHECK(dsv3_wpack_get(&k, 4096, &b2) == NULL && !b2, "while another caller builds: per call");
    dsv3_wpack_done(p2);
    void *p3 = dsv3_wpack_get(&k, 4096, &build);
    CHECK(p3 == p2 && !build, "third use: the ready pack");
    dsv3_wpack_key k2 = k;
    k2.kind = 3; // another form of the same weight is another pack
    CHECK(dsv3_wpack_get(&k2, 4096, &build) == NULL, "another kind is another key");
    dsv3_wpack_stats s = dsv3_wpack_get_stats();
    CHECK(s.hits == 1 && s.builds == 1 && s.bytes == 4096, "stats: %ld hits, %ld builds, %zu bytes", s.hits, s.builds, s.bytes);
    dsv3_wpack_region(region_mem, sizeof region_mem); // new version
    CHECK(dsv3_wpack_get(&k, 4096, &build) == NULL && !build, "new version: the old pack is stale");
    void *p4 = dsv3_wpack_get(&k, 4096, &build);
    CHECK(p4 == p2 && build == 1, "second use of the new version rebuilds in the same buffer");
    dsv3_wpack_done(p4);
    // budget: a second 4096-byte pack does not fit in 6000 bytes
    dsv3_wpack_set_budget(6000);
    dsv3_wpack_key k3 = {region_mem + 256, 2, 32, 64, 64};
    dsv3_wpack_get(&k3, 4096, &build);
    CHECK(dsv3_wpack_get(&k3, 4096, &build) == NULL && !build, "over the budget: per call");
    dsv3_wpack_set_budget(1 << 20);
    dsv3_wpack_forget(region_mem);
    s = dsv3_wpack_get_stats();
    CHECK(s.bytes == 0, "forget frees the region's packs (%zu bytes held)", s.bytes);
    CHECK(dsv3_wpack_get(&k, 4096, &build) == NULL, "a forgotten region is not cached");
}

static size_t ndiff(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(a + i, b + i, 4) != 0;
    return d;
}

// fp32 B in both stored layouts through dsv3_bgemm.
static void gemm_forms(void) {
    const int M = 70, N = 300, K = 200; // N: two blocks, last panel partial; K % 32 != 0
    const size_t nb = (size_t)N * K;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * nb);
    float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) A[i] = rndf();
    for (int trans = 0; trans < 2; trans++) {
        for (size_t i = 0; i < nb; i++) B[i] = rndf();
        int ldb = trans ? K : N;
        const char *form = trans ? "fwd (B stored (N, K))" : "dgrad (B stored (K, N))";
        dsv3_wpack_forget(B);
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C0, N); // not a region: per call
        dsv3_wpack_region(B, sizeof(float) * nb);
        dsv3_wpack_reset_stats();
        size_t d = 0;
        for (int call = 0; call < 4; call++) {
            for (int i = 0; i < M * N; i++) C1[i] = NAN;
            dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C1, N);
            d += ndiff(C0, C1, (size_t)M * N);
        }
        dsv3_wpack_stats s = dsv3_wpack_get_stats();
        CHECK(d == 0 && s.builds == 1 && s.hits == 2, "%s: 4 calls in one version: %zu elements differ from per-call packing, "
              "%ld builds, %ld hits (want 0, 1, 2)", form, d, s.builds, s.hits);
        // beta = 1 accumulation reads the same pack
        for (int i = 0; i < M * N; i++) C1[i] = C0[i];
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 1.0f, C1, N);
        float *C2 = malloc(sizeof(float) * M * N);
        memcpy(C2, C0, sizeof(float) * M * N);
        dsv3_wpack_forget(B);
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 1.0f, C2, N);
        CHECK(ndiff(C1, C2, (size_t)M * N) == 0, "%s: beta 1 with the cached pack == per call", form);
        // changed B: without a new version the cached pack is read; with one, the new B
        dsv3_wpack_region(B, sizeof(float) * nb);
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C1, N);
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C1, N); // builds
        for (size_t i = 0; i < nb; i++) B[i] = rndf();
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C1, N);
        CHECK(ndiff(C0, C1, (size_t)M * N) == 0, "%s: B changed without a new version: the cached (old) pack is read", form);
        dsv3_wpack_forget(B);
        dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C0, N); // per call, new B
        dsv3_wpack_region(B, sizeof(float) * nb);
        size_t dn = 0;
        for (int call = 0; call < 3; call++) {
            dsv3_bgemm(0, trans, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C1, N);
            dn += ndiff(C0, C1, (size_t)M * N);
        }
        CHECK(dn == 0, "%s: after a new version the result follows the new B (%zu differ)", form, dn);
        dsv3_wpack_forget(B);
        free(C2);
    }
    free(A); free(B); free(C0); free(C1);
}

// BF16 and FP8 (128x128 scales) weight matrices through dsv3_bgemm_mat (the inference GEMM).
static void mat_forms(void) {
    const int M = 40, N = 290, K = 260;
    float *x = malloc(sizeof(float) * M * K), *y0 = malloc(sizeof(float) * M * N), *y1 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) x[i] = rndf();
    uint16_t *wb = malloc(2 * (size_t)N * K);
    uint8_t *w8 = malloc((size_t)N * K);
    int sr = (N + 127) / 128, sc = (K + 127) / 128;
    float *sc8 = malloc(sizeof(float) * sr * sc);
    for (size_t i = 0; i < (size_t)N * K; i++) { wb[i] = dsv3_f32_to_bf16(rndf()); w8[i] = dsv3_f32_to_e4m3(rndf() * 200.0f, DSV3_FP8_SATURATE); }
    for (int i = 0; i < sr * sc; i++) sc8[i] = 0.01f * (1 + i);
    dsv3_mat mats[2] = {{DSV3_BF16, wb, NULL, N, K, 128, 128}, {DSV3_F8_E4M3, w8, sc8, N, K, 128, 128}};
    const char *names[2] = {"BF16 weight", "FP8 weight"};
    for (int t = 0; t < 2; t++) {
        const dsv3_mat *w = &mats[t];
        size_t bytes = t ? (size_t)N * K : 2 * (size_t)N * K;
        dsv3_bgemm_mat(y0, x, w, M); // not a region
        dsv3_wpack_region(w->data, bytes);
        dsv3_wpack_reset_stats();
        size_t d = 0;
        for (int call = 0; call < 3; call++) {
            for (int i = 0; i < M * N; i++) y1[i] = NAN;
            dsv3_bgemm_mat(y1, x, w, M);
            d += ndiff(y0, y1, (size_t)M * N);
        }
        dsv3_wpack_stats s = dsv3_wpack_get_stats();
        CHECK(d == 0 && s.builds == 1 && s.hits == 1, "%s: 3 calls: %zu differ from per-call packing; %ld builds, %ld hits", names[t],
              d, s.builds, s.hits);
        dsv3_wpack_forget(w->data);
    }
    free(x); free(y0); free(y1); free(wb); free(w8); free(sc8);
}

// A bf16 trainer over two steps, weights changed in between: the cache gives the same numbers as no cache.
static void trainer(void) {
    dsv3_config c;
    if (dsv3_config_load(&c, "configs/tiny.json") != 0) { CHECK(0, "config: %s", dsv3_error()); return; }
    c.num_hidden_layers = 2;
    c.vocab_size = 512;
    const int B = 8, T = 64; // 512 rows: the head runs over 2 row chunks (of 256) in the main model and 2 in MTP
    dsv3_tmodel tm;
    if (dsv3_tmodel_init_random(&tm, &c, 1, 0.02f, 7) != 0) { CHECK(0, "init: %s", dsv3_error()); return; }
    dsv3_train *tr = dsv3_train_new(&tm, B, T, dsv3_backend_cpu_bf16(), 0);
    CHECK(tr != NULL, "train_new: %s", dsv3_error());
    if (!tr) { dsv3_tmodel_free(&tm); return; }
    int32_t *rows = malloc(sizeof(int32_t) * B * (T + 1));
    for (int i = 0; i < B * (T + 1); i++) rows[i] = (int32_t)((i * 2654435761u) % (unsigned)c.vocab_size);
    const size_t ng = tm.tab.total;
    float *p0 = malloc(sizeof(float) * ng), *g[2];
    memcpy(p0, tm.params, sizeof(float) * ng);
    double loss[2][2];
    long hits[2] = {0, 0};
    for (int run = 0; run < 2; run++) { // run 0: cache off; run 1: on
        dsv3_wpack_set_budget(run ? -1 : 0);
        dsv3_wpack_reset_stats();
        memcpy(tm.params, p0, sizeof(float) * ng);
        g[run] = malloc(sizeof(float) * ng);
        for (int step = 0; step < 2; step++) {
            dsv3_train_opts o = {.mtp_weight = 0.3f, .seq_aux = 1e-4f, .attn = DSV3_ATTN_ABSORB};
            dsv3_loss_parts l;
            dsv3_tmodel_zero_grads(&tm);
            int ok = dsv3_train_step(tr, rows, &o, &l) == 0;
            CHECK(ok, "step: %s", dsv3_error());
            loss[run][step] = l.loss;
            if (step == 0) // change every weight (the optimizer's job between steps)
                for (size_t i = 0; i < ng; i++) tm.params[i] -= 0.01f * tm.grads[i];
        }
        memcpy(g[run], tm.grads, sizeof(float) * ng);
        hits[run] = dsv3_wpack_get_stats().hits;
    }
    CHECK(loss[0][0] == loss[1][0] && loss[0][1] == loss[1][1] && loss[0][1] != loss[0][0],
          "losses, cache off / on: %.9g %.9g / %.9g %.9g", loss[0][0], loss[0][1], loss[1][0], loss[1][1]);
    size_t d = ndiff(g[0], g[1], ng);
    CHECK(d == 0, "second-step gradients with the cache differ in %zu of %zu elements", d, ng);
    CHECK(hits[0] == 0 && hits[1] > 0, "cache hits: off %ld, on %ld (the head's chunks should hit)", hits[0], hits[1]);
    printf("wpack trainer: losses %.6f -> %.6f, gradients identical with the cache (%ld pack reads)\n", loss[1][0], loss[1][1],
           hits[1]);
    dsv3_wpack_set_budget(-1);
    free(g[0]); free(g[1]); free(p0); free(rows);
    dsv3_train_free(tr);
    dsv3_tmodel_free(&tm);
}

int main(void) {
    policy();
    if (dsv3_matmul_get_isa() < DSV3_ISA_AVX512) {
        printf("SKIP wpack: bf16 GEMM with cached packs (needs the avx512 level; this CPU: %s)\n",
               dsv3_isa_name(dsv3_matmul_get_isa()));
    } else {
        gemm_forms();
        mat_forms();
        trainer();
    }
    return test_report("wpack");
}
