#!/usr/bin/env python3
"""Torch side of bench/train_bench.sh (docs/PERF.md, section train; issue 7 item 7).

    train_bench.py time CONFIG.json B T STEPS THREADS fp32|bf16 [--model DIR]
        The training loss of issue 7 (src/model/train.h: L_main + (λ/D)·Σ_k L^k + Σ_MoE mean_rows α·Σ f_i·P_i,
        λ = 0.3, α = 1e-4) on HF transformers DeepseekV3ForCausalLM (eager attention, eager experts) plus the
        MTP module(s) and the balance loss exactly as tools/ref/make_grad_fixtures.py assembles them (imported
        from there, not copied), torch CPU eager with THREADS threads. Random init like
        bench/train_bench.c (N(0, 0.006²) matrices, norm gains 1, biases and correction biases 0; torch's own
        RNG, so same distribution, not the same values), or the weights of DIR (bench/train_bench --export).
        The same B rows of T+1 ids as bench/train_bench.c (splitmix64, seed 42). One warm-up step, then STEPS
        timed steps of zero_grad (set_to_none) + forward + loss + backward (TRAIN_BENCH_FWD_ONLY=1: forward + loss
        only, under torch.no_grad); fp32, or bf16 autocast
        (torch.autocast("cpu", dtype=torch.bfloat16): fp32 master weights, bf16 matmuls). Prints one JSON line.
    train_bench.py loss DIR B T
        Loss (and its parts) at step 0 of the model in DIR on the same rows, in fp32 and float64 (the
        cross-check against the dsv3 loss of the same init). Prints one JSON line.

Timing as bench/matmul_torch.py: wall time and critical-path CPU time (the largest per-thread CPU time of
the process over the step, from the per-thread clocks of every task in /proc/self/task).
"""
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "ref"))
import make_grad_fixtures as mgf  # noqa: E402  (imports make_model_fixtures: offline / CPU environment first)
import make_model_fixtures as mmf  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM  # noqa: E402

INIT_STD, ROWS_SEED, LAMBDA, ALPHA = 0.006, 42, 0.3, 1e-4
M64 = (1 << 64) - 1


def rows(B, T, V):
    """B rows of T+1 ids: the splitmix64 stream of bench/train_bench.c, id = z mod V."""
    s, out = ROWS_SEED, []
    for _ in range(B * (T + 1)):
        s = (s + 0x9E3779B97F4A7C15) & M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out.append(z % V)
    return torch.tensor(out, dtype=torch.int64).view(B, T + 1)


def drop_unused_copies_(m):
    """The MTP module's own embedding / head copies are never used (mtp_depth uses the main model's)."""
    m.embed_tokens = nn.Embedding(1, m.enorm.weight.shape[0])
    m.shared_head.head = nn.Linear(m.enorm.weight.shape[0], 1, bias=False)


def build_random(config_path):
    raw = json.load(open(config_path))
    raw.pop("torch_dtype", None)
    cfg = DeepseekV3Config(**raw)
    D = raw.get("num_nextn_predict_layers", 0)
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(cfg).float().eval()
    mmf.set_eager(model)
    mtps = []
    for _ in range(D):
        m = mmf.MtpModule(model.config).float().eval()
        drop_unused_copies_(m)
        mtps.append(m)
    with torch.no_grad():
        for mod in [model] + mtps:
            for name, p in mod.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, INIT_STD)
            for name, b in mod.named_buffers():
                if name.endswith("e_score_correction_bias"):
                    b.zero_()
    return model, mtps


def load_export(d):
    """The model written by `train_bench --export`: HF loads the main model; the MTP layers model.layers.{N+k}.*
    (per-expert names) go into make_model_fixtures.MtpModule."""
    model = DeepseekV3ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    mmf.set_eager(model)
    N = model.config.num_hidden_layers
    D = json.load(open(os.path.join(d, "config.json"))).get("num_nextn_predict_layers", 0)
    st = load_file(os.path.join(d, "model.safetensors"))
    mtps = []
    for k in range(D):
        m = mmf.MtpModule(model.config).float().eval()
        drop_unused_copies_(m)
        pre = f"model.layers.{N + k}."
        own = ("enorm.", "hnorm.", "eh_proj.", "shared_head.norm.")
        split = {(r if r.startswith(own) else "layer." + r): v
                 for r, v in ((n[len(pre):], v) for n, v in st.items() if n.startswith(pre))}
        tmpl = {n: v for n, v in m.state_dict().items() if not n.startswith(("embed_tokens.", "shared_head.head."))}
        missing, unexpected = m.load_state_dict(mmf.fuse_split(split, tmpl), strict=False)
        assert not unexpected and all(n.startswith(("embed_tokens.", "shared_head.head.")) for n in missing), \
            (missing, unexpected)
        mtps.append(m)
    return model, mtps


def case_of(mtps):
    return dict(arch="v3", lam=LAMBDA if mtps else 0.0, alpha=ALPHA)


def snap():
    out = {}
    for t in os.listdir("/proc/self/task"):
        tid = int(t)
        try:
            out[tid] = time.clock_gettime(((~tid) << 3) | 6)  # Linux per-thread CPU clock
        except OSError:
            pass
    return out


def crit(a, b):
    return max((v - a.get(k, 0.0)) for k, v in b.items())


def timeit(config_path, B, T, steps, threads, prec, model_dir):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, mtps = load_export(model_dir) if model_dir else build_random(config_path)
    init_s = time.perf_counter() - t0
    ids = rows(B, T, model.config.vocab_size)
    case = case_of(mtps)
    params = [p for m in [model] + mtps for p in m.parameters()]

    fwd_only = os.environ.get("TRAIN_BENCH_FWD_ONLY") == "1"  # forward + loss only, under no_grad

    def step():
        for p in params:
            p.grad = None
        with torch.no_grad() if fwd_only else contextlib.nullcontext():
            if prec == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss, parts, _ = mgf.forward_loss(model, mtps, ids, case)
            else:
                loss, parts, _ = mgf.forward_loss(model, mtps, ids, case)
        if not fwd_only:
            loss.backward()
        return loss.item(), parts

    loss0, parts0 = step()  # warm-up
    wall, cpu = [], []
    for _ in range(steps):
        s0, w0 = snap(), time.perf_counter()
        loss, _ = step()
        wall.append(time.perf_counter() - w0)
        cpu.append(crit(s0, snap()))
    wall.sort()
    cpu.sort()
    n_params = sum(p.numel() for p in params if p.requires_grad) - sum(
        m.embed_tokens.weight.numel() + m.shared_head.head.weight.numel() for m in mtps)
    print(json.dumps({
        "impl": "torch", "prec": prec, "config": os.path.splitext(os.path.basename(config_path))[0], "B": B, "T": T,
        "threads": torch.get_num_threads(), "steps": steps, "fwd_only": int(fwd_only), "loss0": round(loss0, 7),
        "main0": round(float(parts0["main"]), 7), "mtp0": round(float(parts0["mtp"]), 7),
        "balance0": float(parts0["balance"]), "loss_last": round(loss, 7), "params": n_params,
        "step_s_cpu_best": round(cpu[0], 4), "step_s_cpu_median": round(cpu[steps // 2], 4),
        "step_s_wall_best": round(wall[0], 4), "step_s_wall_median": round(wall[steps // 2], 4),
        "tok_s": round(B * T / cpu[0], 1), "tok_s_wall": round(B * T / wall[0], 1), "init_s": round(init_s, 2),
        "weights": model_dir or "random", "torch": torch.__version__}), flush=True)


def loss_of(model_dir, B, T):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model, mtps = load_export(model_dir)
    ids = rows(B, T, model.config.vocab_size)
    case = case_of(mtps)
    out = {"B": B, "T": T}
    with torch.no_grad():
        loss, parts, _ = mgf.forward_loss(model, mtps, ids, case)
        out.update(loss32=loss.item(), main32=float(parts["main"]), mtp32=float(parts["mtp"]),
                   balance32=float(parts["balance"]))
        mgf.install_f64_patches()
        m64, ms64 = model.double(), [m.double() for m in mtps]
        loss, parts, _ = mgf.forward_loss(m64, ms64, ids, case)
        out.update(loss64=loss.item(), main64=float(parts["main"]), mtp64=float(parts["mtp"]),
                   balance64=float(parts["balance"]))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "time" and len(a) in (7, 9):
        timeit(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6], a[8] if len(a) == 9 and a[7] == "--model" else None)
    elif a and a[0] == "loss" and len(a) == 4:
        loss_of(a[1], int(a[2]), int(a[3]))
    else:
        sys.exit(__doc__)
