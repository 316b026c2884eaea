// In-register throughput limits of this CPU, the denominators of the kernel benchmarks: each runs
// independent accumulator chains with no memory traffic on every thread at once (OpenMP), the
// whole region timed by the wall clock, best of several short repetitions (the shared machines
// are noisy; the best repetition is the least disturbed one).
#pragma once

typedef enum {
    DSV3_PEAK_FMA_YMM,   // fp32 FMA on 8 lanes (AVX2)
    DSV3_PEAK_FMA_ZMM,   // fp32 FMA on 16 lanes (AVX-512)
    DSV3_PEAK_DPBF16,    // vdpbf16ps on zmm (AVX512_BF16): 32 bf16 products summed in pairs into 16 fp32
    DSV3_PEAK_AMX_BF16,  // TDPBF16PS on 16 x 16 fp32 tiles (AMX-BF16)
} dsv3_peak_kind;

// GFLOP/s (1 FMA = 2 flops) over `threads` threads (0: OpenMP's default), or -1 if the CPU lacks
// the instructions (at the current dsv3_matmul_get_isa() level).
double dsv3_peak_gflops(dsv3_peak_kind kind, int threads);
const char *dsv3_peak_name(dsv3_peak_kind kind);
