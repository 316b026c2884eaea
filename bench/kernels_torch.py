"""PyTorch side of bench/kernels_bench.sh: the GEMM forms and the GEMV of `dsv3 bench gemm/gemv`,
timed the same way (one warm-up call, then calls until 0.5 s, at least 5; the median wall time).

    kernels_torch.py gemm M N K f32|bf16 fwd|dgrad|wgrad ...   (groups of 5 arguments)
    kernels_torch.py gemv N K f32|bf16 ...                     (groups of 3)

gemm: fwd Y = X @ W.T (W [N, K]), dgrad dX = dY @ W, wgrad dW = dY.T @ X, operands in the named
dtype (bf16 outputs are bf16: torch's bf16 matmul). gemv: y = W @ x for enough copies of W that the
cycle is >= 256 MiB (each call reads W from DRAM), GB/s = bytes of W / time. Threads:
torch.set_num_threads(OMP_NUM_THREADS or 2). Prints one JSON line per case."""
import json
import os
import sys
import time

import torch


def timed(fn):
    fn(0)
    ts, t_end, i = [], time.perf_counter() + 0.5, 1
    while len(ts) < 5 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t0)
        i += 1
        if len(ts) >= 4096:
            break
    ts.sort()
    return ts[len(ts) // 2]


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    kind, a = sys.argv[1], sys.argv[2:]
    g = torch.Generator().manual_seed(1)
    if kind == "gemm":
        for i in range(0, len(a), 5):
            M, N, K, dt, form = int(a[i]), int(a[i + 1]), int(a[i + 2]), a[i + 3], a[i + 4]
            d = torch.bfloat16 if dt == "bf16" else torch.float32
            r = lambda *s: (torch.rand(*s, generator=g) - 0.5).to(d)
            if form == "fwd":
                X, W = r(M, K), r(N, K)
                fn = lambda _: X @ W.T
            elif form == "dgrad":
                dY, W = r(M, N), r(N, K)
                fn = lambda _: dY @ W
            else:
                dY, X = r(M, N), r(M, K)
                fn = lambda _: dY.T @ X
            with torch.no_grad():
                sec = timed(fn)
            print(json.dumps({"gflops": round(2.0 * M * N * K / sec / 1e9, 3), "seconds": sec, "m": M, "n": N, "k": K,
                              "dtype": dt, "form": form, "torch": torch.__version__}), flush=True)
    else:
        for i in range(0, len(a), 3):
            N, K, dt = int(a[i]), int(a[i + 1]), a[i + 2]
            d = torch.bfloat16 if dt == "bf16" else torch.float32
            wbytes = N * K * (2 if dt == "bf16" else 4)
            copies = (256 << 20) // wbytes + 1
            Ws = [(torch.rand(N, K, generator=g) - 0.5).to(d) for _ in range(copies)]
            x = torch.rand(K, generator=g).to(d)
            with torch.no_grad():
                sec = timed(lambda j: Ws[j % copies] @ x)
            print(json.dumps({"gbps": round(wbytes / sec / 1e9, 3), "weights_per_s": N * K / sec, "seconds": sec, "n": N,
                              "k": K, "dtype": dt, "copies": copies, "torch": torch.__version__}), flush=True)
            del Ws


if __name__ == "__main__":
    main()
