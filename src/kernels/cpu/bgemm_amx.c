// AMX kernel of the BF16 GEMM (bgemm.h): C blocks of 32 x 32 in four fp32 accumulator tiles
// (tmm0..3, 16 rows x 16 columns each), fed by two A tiles (tmm4, 5: 16 rows x 32 bf16 of the packed
// A rows) and two B tiles (tmm6, 7: 16 K pairs x 16 columns, one VNNI panel each) per 32 K values:
// four TDPBF16PS per pair of A and B loads. The accumulators start from the fp32 scratch (or zero)
// and go back to it after kc K values. Call only at the amx level (the tile state is granted by
// dsv3_cpu_max_isa()).
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl")
#include "kernels/cpu/bgemm.h"
#include <immintrin.h>
#include <string.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

// Every tile is 16 rows x 64 bytes. The configuration is per thread; it is (re)loaded per call.
static void config_tiles(void) {
    _Alignas(64) tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.colsb[t] = 64; c.rows[t] = 16; }
    _tile_loadconfig(&c);
}

void dsv3_bg_block_amx(const uint16_t *a, long lda, int mt, const uint16_t *b, long pstride, int nt, int kc,
                       float *S, long lds, int first) {
    config_tiles();
    const long as = lda * 2, ss = lds * 4; // strides in bytes
    for (int j = 0; j < nt; j++) {
        const uint16_t *p0 = b + (size_t)(2 * j) * pstride, *p1 = p0 + pstride;
        for (int i = 0; i < mt; i++) {
            float *s = S + (size_t)i * 32 * lds + 32 * j;
            const uint16_t *ai = a + (size_t)i * 32 * lda;
            if (first) { _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); }
            else {
                _tile_loadd(0, s, ss); _tile_loadd(1, s + 16, ss);
                _tile_loadd(2, s + 16 * lds, ss); _tile_loadd(3, s + 16 * lds + 16, ss);
            }
            for (int k = 0; k < kc; k += 32) {
                // loads interleaved with the products that need them (each load can overlap the
                // product before it)
                _tile_loadd(4, ai + k, as);
                _tile_loadd(6, p0 + (size_t)k * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_loadd(7, p1 + (size_t)k * 16, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_loadd(5, ai + 16 * lda + k, as);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, s, ss); _tile_stored(1, s + 16, ss);
            _tile_stored(2, s + 16 * lds, ss); _tile_stored(3, s + 16 * lds + 16, ss);
        }
    }
    _tile_release();
}
