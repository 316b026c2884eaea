"""PyTorch CPU matmul on the shapes of bench/matmul_bench.c, timed the same way (critical-path
CPU time: the largest per-thread on-CPU time over a batch of calls, per-thread CPU clocks read for
every task in /proc/self/task; run with OMP_WAIT_POLICY=PASSIVE). y = x @ W.T with W [out, in];
bf16 rows use bf16 x and W (torch's bf16 GEMM; output bf16). Prints markdown table rows."""
import os
import sys
import time

import torch


def snap():
    out = {}
    for t in os.listdir('/proc/self/task'):
        tid = int(t)
        try:
            out[tid] = time.clock_gettime(((~tid) << 3) | 6)  # Linux per-thread CPU clock
        except OSError:
            pass
    return out


def crit(a, b):
    return max((v - a.get(k, 0.0)) for k, v in b.items())


def time_calls(fn, ncopy, min_s):
    fn(0)
    best, t_end, i, batches = 1e30, time.time() + min_s, 0, 0
    n = max(3, ncopy)
    while time.time() < t_end or batches < 2:
        s0 = snap()
        for _ in range(n):
            fn(i)
            i = (i + 1) % ncopy
        s1 = snap()
        best = min(best, crit(s0, s1) / n)
        batches += 1
    return best


def main():
    quick = len(sys.argv) > 1 and sys.argv[1] == 'quick'
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("GEMV (M = 1), weights read from DRAM (same copies scheme as the C bench):\n")
    print("| W (out x in) | dtype | weight MB | ms / call | GB/s | G weights/s |\n|---|---|---|---|---|---|")
    for n, k in [(2048, 7168), (7168, 2048), (18432, 7168)]:
        for dt, name in [(torch.bfloat16, 'BF16'), (torch.float32, 'F32')]:
            mb = n * k * (2 if dt == torch.bfloat16 else 4) / 1e6
            ncopy = max(1, int(128.0 / mb + 0.999))
            ws = [torch.rand(n, k, dtype=dt) - 0.5 for _ in range(ncopy)]
            x = torch.rand(1, k, dtype=dt)
            with torch.no_grad():
                t = time_calls(lambda i: x @ ws[i].T, ncopy, 0.2 if quick else 1.0)
            print(f"| {n} x {k} | {name} | {mb:.1f} | {t * 1e3:.3f} | {mb / 1e3 / t:.1f} | {n * k / t / 1e9:.2f} |", flush=True)
            del ws
    print("\nGEMM, W 2048 x 7168 (out x in), x M x 7168:\n")
    print("| M | dtype | ms / call | GFLOP/s |\n|---|---|---|---|")
    n, k = 2048, 7168
    for dt, name in [(torch.bfloat16, 'BF16'), (torch.float32, 'F32')]:
        w = torch.rand(n, k, dtype=dt) - 0.5
        for m in [64, 256, 1024]:
            x = torch.rand(m, k, dtype=dt)
            with torch.no_grad():
                t = time_calls(lambda i: x @ w.T, 1, 0.2 if quick else 1.0)
            print(f"| {m} | {name} | {t * 1e3:.2f} | {2.0 * m * n * k / t / 1e9:.1f} |", flush=True)


if __name__ == '__main__':
    main()
