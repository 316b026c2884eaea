// The fast CPU backend (kernels/backend.h): packed AVX2/FMA SGEMM (sgemm.c), flash-style attention
// (attention_cpu.c) and vectorized, row-threaded elementwise ops (ops_train_cpu.c). Every op falls
// back to portable C when dsv3_matmul_get_isa() is not AVX2 (no AVX2/FMA, or DSV3_NO_SIMD=1).
#include "kernels/backend.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/bgemm.h"
#include "kernels/cpu/attention_cpu.h"
#include "kernels/cpu/ops_train_cpu.h"

static dsv3_backend g_cpu;

void dsv3_fp8_gemm_beta_ref(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, float *C, int ldc, float beta);

// The promoted fp32 model on the bf16 kernels where the CPU has them (same sums, another order inside
// each 128-wide group); the limited-accumulator models and older CPUs run the reference.
static void fp8_gemm_cpu(const dsv3_fp8_gemm_args *g, const dsv3_fp8_acc *acc, float *C, int ldc, float beta) {
    if (acc->mode == DSV3_FP8_ACC_FP32 && dsv3_matmul_get_isa() >= DSV3_ISA_AVX512 && (beta == 0.0f || beta == 1.0f))
        dsv3_fp8_bgemm(g, C, ldc, beta);
    else
        dsv3_fp8_gemm_beta_ref(g, acc, C, ldc, beta);
}

const dsv3_backend *dsv3_backend_cpu(void) {
    static int init;
    if (!__atomic_load_n(&init, __ATOMIC_ACQUIRE)) {
        dsv3_backend b = *dsv3_backend_ref();
        b.name = "cpu";
        b.gemm = dsv3_sgemm;
        b.fp8_gemm = fp8_gemm_cpu;
        b.attn_fwd = dsv3_attn_fwd_cpu;
        b.attn_bwd = dsv3_attn_bwd_cpu;
        b.rmsnorm_fwd = dsv3_rmsnorm_fwd_cpu;
        b.rmsnorm_bwd = dsv3_rmsnorm_bwd_cpu;
        b.swiglu_fwd = dsv3_swiglu_fwd_cpu;
        b.swiglu_bwd = dsv3_swiglu_bwd_cpu;
        b.rope = dsv3_rope_cpu;
        b.xent = dsv3_xent_cpu;
        g_cpu = b; // every thread racing here writes the same bytes
        __atomic_store_n(&init, 1, __ATOMIC_RELEASE);
    }
    return &g_cpu;
}

// The bf16 training backend: the cpu backend with every GEMM bf16 × bf16 → fp32 (dsv3_bgemm), the
// `--precision bf16` recipe (masters, gradients, attention core, norms and losses stay fp32).
const dsv3_backend *dsv3_backend_cpu_bf16(void) {
    static dsv3_backend g_bf;
    static int init;
    if (!__atomic_load_n(&init, __ATOMIC_ACQUIRE)) {
        dsv3_backend b = *dsv3_backend_cpu();
        b.name = "cpu-bf16";
        b.gemm = dsv3_bgemm;
        g_bf = b;
        __atomic_store_n(&init, 1, __ATOMIC_RELEASE);
    }
    return &g_bf;
}
