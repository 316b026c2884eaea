#!/usr/bin/env python3
"""Helper of bench/train_run_bench.sh (docs/PERF.md, "Training run (tiny, dsv3 vs PyTorch)"; issue 8 item 8).

    train_run_bench.py rows SHARD_DIR|- N T OUT.npy
        N rows of T+1 ids as int32 [N, T+1]: the first N rows of the train shards in SHARD_DIR (64-byte header,
        then rows x (T+1) uint32, docs/DATA.md), or (SHARD_DIR "-") random ids in [3, 8192) (seed 1).
    train_run_bench.py torch CONFIG.json ROWS.npy STEPS B LR WARMUP INIT_STD THREADS
        The same run in PyTorch fp32: tools/ref/make_train_fixtures.run_training (torch.optim.AdamW,
        clip_grad_norm_, the V3 lr / lambda / gamma schedules, the bias update; imported, not copied) on
        HF DeepseekV3ForCausalLM + MTP module (bench/train_bench.build_random: N(0, INIT_STD^2) matrices,
        gains 1, biases 0; torch's own RNG), rows in order. The fixture-only routing-tie check
        (make_grad_fixtures.routing_margins, a second routing pass) is stubbed out: not part of the recipe.
        Prints one JSON line: wall time, tok/s, per-step losses.
"""
import glob
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def rows_cmd(src, n, t, out):
    n, t = int(n), int(t)
    if src != "-" and os.path.isdir(src):
        got = []
        for f in sorted(glob.glob(os.path.join(src, "*-train-*.bin"))):
            a = np.fromfile(f, dtype=np.uint32, offset=64)
            got.append(a.reshape(-1, t + 1))
            if sum(len(x) for x in got) >= n:
                break
        r = np.concatenate(got)[:n].astype(np.int32)
        kind = "shards " + src
    else:
        r = np.random.default_rng(1).integers(3, 8192, size=(n, t + 1), dtype=np.int64).astype(np.int32)
        kind = "random"
    assert r.shape == (n, t + 1), r.shape
    np.save(out, r)
    print(json.dumps({"rows": n, "T": t, "source": kind, "max_id": int(r.max())}))


def torch_cmd(cfg_path, rows_path, steps, B, lr, warmup, init_std, threads):
    steps, B, warmup, threads = int(steps), int(B), int(warmup), int(threads)
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "tools", "ref"))
    import train_bench as tb  # bench/train_bench.py: build_random (imports make_grad_fixtures first)
    import make_grad_fixtures as mgf
    import make_train_fixtures as mtf
    import torch
    torch.set_num_threads(threads)
    tb.INIT_STD = float(init_std)
    mgf.routing_margins = lambda *a, **k: ({"group": math.inf, "expert": math.inf, "unbiased_topk": math.inf}, set())
    rows = np.load(rows_path).astype(np.int64)
    T = rows.shape[1] - 1
    assert rows.shape[0] >= steps * B
    model, mtps = tb.build_random(cfg_path)
    D = len(mtps)
    case = dict(arch="v3", mtp=D, alpha=1e-4, B=B, micro=B, T=T, steps=steps, tokens=steps * B * T,
                lr=float(lr), warmup=warmup, clip=mtf.CLIP)
    t0 = time.perf_counter()
    recs, _, _, _ = mtf.run_training(model, mtps, rows, case, torch.float32)
    wall = time.perf_counter() - t0
    tok = steps * B * T
    print(json.dumps({"impl": "torch", "torch": torch.__version__, "threads": threads, "steps": len(recs),
                      "tokens": tok, "wall_s": wall, "tok_s": tok / wall,
                      "loss": [r["loss"] for r in recs], "main": [r["main"] for r in recs],
                      "mtp": [r["mtp"] for r in recs]}))


if __name__ == "__main__":
    {"rows": rows_cmd, "torch": torch_cmd}[sys.argv[1]](*sys.argv[2:])
