#!/usr/bin/env python3
"""Write the training-run fixtures that `dsv3 train` (issue 8) is checked against.

    python3 tools/ref/make_train_fixtures.py --out tests/fixtures/train [--only a_v3_groups_mtp,...]

Each case directory holds the starting checkpoint (config.json + model.safetensors, HF format, built with the
functions of make_model_fixtures.py / make_grad_fixtures.py), rows.npy (int64 [steps·B, T+1], one row per draw,
used in order), args.json (the `dsv3 train` options of the run) and the result of the same run in PyTorch,
float64: expected.json (per optimizer step: the loss and its parts, the gradient norm before clipping, lr, λ, γ,
MaxVio per MoE layer, routing margins, bias-update ties) and expected.safetensors (the final weights and every
e_score_correction_bias, F32, HF names, per expert). The recipe is issue 8's, written out in docs/ORACLE.md §10:

  - the loss of make_grad_fixtures.forward_loss (main CE + λ/D·Σ_k L^k + α·sequence-wise balance), with
    λ = 0.3 for τ < 0.6757 then 0.1, where τ = tokens consumed before step k / tokens of the run;
  - micro-batches: the step's gradient is the mean of the micro-batch gradients (the loss the mean of theirs);
  - torch.nn.utils.clip_grad_norm_ at `clip` (scale min(1, clip/(norm + 1e-6)));
  - torch.optim.AdamW (β 0.9/0.95, eps 1e-8, decoupled weight decay 0.1 on tensors with ≥ 2 dims — per expert
    that is every matrix; 1-D norm gains and biases get none), lr_k = η·k/W for k ≤ W, then the V3 shape;
  - after each step, per MoE layer (MTP block included): c_i = tokens routed to expert i (the biased, grouped
    routing actually used) over all micro-batches of the step, b_i ← b_i + γ·sign(c̄ − c_i) with γ = 1e-3 for
    τ < 0.9662 then 0, computed in fp32 (the buffer's dtype, as the C side and the released checkpoints keep it).

The run is repeated in torch float32; both runs must route every token identically at every step, and every
routing decision of every step (groups, biased top-K, the balance loss' unbiased top-K) is at least MARGIN_MIN
from a tie: before each step the token ids of that step's rows are resampled at the first position a near-tie
depends on (those rows have not been used yet, so earlier steps never change). The float32-vs-float64 differences
are recorded in expected.json: they are what an fp32 implementation is expected to reach.

CPU only, one thread, deterministic algorithms, fixed seeds: reruns give identical files on the same machine.
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as mmf  # noqa: E402  (sets the offline / CPU environment before importing torch)
import make_grad_fixtures as mgf  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

F64 = torch.float64
MARGIN_MIN = mmf.MARGIN_MIN

# the recipe of issue 8 (flags of `dsv3 train` override them; the fixtures keep these defaults)
BETAS, EPS, WEIGHT_DECAY, CLIP = (0.9, 0.95), 1e-8, 0.1, 1.0
TAU_DECAY, TAU_COS_LEN, TAU_TAIL1, TAU_TAIL2 = 0.6757, 0.2905, 0.9662, 0.9887


def lr_at(eta, k, warmup, tau):
    if warmup > 0 and k <= warmup:
        return eta * k / warmup
    if tau < TAU_DECAY:
        return eta
    if tau < TAU_TAIL1:
        return 0.1 * eta + 0.45 * eta * (1.0 + math.cos(math.pi * (tau - TAU_DECAY) / TAU_COS_LEN))
    if tau < TAU_TAIL2:
        return 0.1 * eta
    return 0.0332 * eta


def mtp_weight_at(tau):
    return 0.3 if tau < TAU_DECAY else 0.1


def bias_speed_at(tau):
    return 1e-3 if tau < TAU_TAIL1 else 0.0


# Each case: make_grad_fixtures case keys (seed, arch, spelling, layout, bias, mtp, copies, cfg, alpha) plus
#   B rows per step, micro rows per micro-batch, T, steps, tokens (the run's budget: with tokens < steps·B·T the
#   last steps reach the tail of the schedule), lr η, warmup W.
CASES = {
    # V3: sigmoid + bias, 4 groups keep 2, top-4 of 16, q_lora, YaRN, 1 dense + 1 MoE layer, MTP depth 1 (copies
    # not stored); the default recipe (α 1e-4, clip 1: every step is clipped). 8 steps over a budget of 7.1
    # steps' tokens: τ_k = 64(k-1)/455: warmup (k ≤ 2), constant, λ 0.3 -> 0.1 and the cosine at k = 6
    # (τ 0.703), 0.1η and γ = 0 at k = 8 (τ 0.985).
    "a_v3_groups_mtp": dict(
        seed=31000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=1, copies=False, alpha=1e-4,
        B=4, micro=4, T=16, steps=8, tokens=455, lr=1e-2, warmup=2, clip=CLIP,
        cfg=dict(mgf.SMALL, num_nextn_predict_layers=1)),
    # V3 with 2 micro-batches of 2 rows per step (gradient = their mean; the bias update counts both), 8 experts in
    # 2 groups keep 1, top-2, 2 MoE layers, no MTP, α 0.01, v4 spelling, clip 2.3 (some steps clipped, some not).
    # Budget 7.06 steps: the last step is at τ 0.991 (lr 0.0332η, γ 0).
    "b_v3_micro2": dict(
        seed=32000, arch="v3", spelling="v4", layout="single", bias="pos", mtp=0, copies=False, alpha=1e-2,
        B=4, micro=2, T=16, steps=8, tokens=452, lr=1e-2, warmup=3, clip=2.3,
        cfg=dict(mgf.SMALL, vocab_size=64, first_k_dense_replace=0, n_routed_experts=8, n_group=2,
                 topk_group=1, num_experts_per_tok=2, num_nextn_predict_layers=0)),
}


def case_args(case):
    """The `dsv3 train` options of the run (besides --model, --data and --out)."""
    a = ["--batch", case["B"], "--micro-batch", case["micro"], "--tokens", case["tokens"], "--steps", case["steps"],
         "--lr", case["lr"], "--warmup", case["warmup"], "--seq-aux", case["alpha"]]
    if case["clip"] != CLIP:
        a += ["--clip", case["clip"]]
    return [str(x) for x in a]


# ----------------------------------------------------------------------------------------------
# the run

def trainable(model, mtps):
    """The unique trainable parameters (the MTP modules' embedding / head copies are the main tensors: excluded),
    and HF name (per expert) -> (parameter, slicer) of every one, without the copies' alias names."""
    names = {k: v for k, v in mgf.param_name_map(model, mtps).items()
             if not (k.endswith(".embed_tokens.weight") and k != "model.embed_tokens.weight")
             and not k.endswith(".shared_head.head.weight")}
    seen, params = set(), []
    for p, _ in names.values():
        if id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params, names


def routers(model, mtps):
    cfg = model.config
    out = [(f"layer{i}", model.model.layers[i].mlp.gate, f"model.layers.{i}.mlp.gate")
           for i in range(cfg.first_k_dense_replace, cfg.num_hidden_layers)]
    out += [(f"mtp{k + 1}", m.layer.mlp.gate, f"model.layers.{cfg.num_hidden_layers + k}.mlp.gate")
            for k, m in enumerate(mtps)]
    return out


def run_training(model, mtps, rows, case, dtype, repair_gen=None, log=None):
    """Trains copies of (model, mtps) in `dtype` on rows (modified in place by the margin repair when repair_gen is
    given). Returns (per-step records, final HF-named tensors, routing per step, final fp32 biases)."""
    m = copy.deepcopy(model).to(dtype)
    ms = [copy.deepcopy(x).to(dtype) for x in mtps]
    params, names = trainable(m, ms)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=WEIGHT_DECAY), dict(params=no_decay, weight_decay=0.0)],
                            lr=case["lr"], betas=BETAS, eps=EPS, foreach=False)
    rts = routers(m, ms)
    arch = case["arch"]
    E = m.config.n_routed_experts
    bias32 = {key: g.e_score_correction_bias.detach().float().clone() for key, g, _ in rts} if arch == "v3" else {}
    B, micro, T = case["B"], case["micro"], case["T"]
    nm = B // micro
    total = case["tokens"]
    done, draw, k = 0, 0, 0
    steps, routing_log, n_fixed = [], [], 0
    while done < total and k < case["steps"]:
        k += 1
        tau = done / total
        lam = mtp_weight_at(tau) if case["mtp"] else 0.0
        gamma = bias_speed_at(tau)
        lr = lr_at(case["lr"], k, case["warmup"], tau)
        c = dict(case, lam=lam)
        for p in params:
            p.grad = None
        counts = {key: torch.zeros(E, dtype=torch.int64) for key, _, _ in rts}
        acc = dict(loss=0.0, main=0.0, mtp=0.0, balance=0.0)
        mins = {"group": math.inf, "expert": math.inf, "unbiased_topk": math.inf}
        step_routing = {}
        for mb in range(nm):
            r0 = draw + mb * micro
            if repair_gen is not None:  # no decision of this micro-batch within MARGIN_MIN of a tie
                for it in range(5000):
                    ids = torch.from_numpy(rows[r0:r0 + micro])
                    with torch.no_grad():
                        _, _, routing = mgf.forward_loss(m, ms, ids, c)
                        _, bad = mgf.routing_margins(m, ms, c, routing)
                    if not bad:
                        break
                    p0 = min(pos for _, pos in bad)
                    for r in sorted({r for r, pos in bad if pos == p0}):
                        rows[r0 + r, p0] = int(torch.randint(3, m.config.vocab_size, (1,), generator=repair_gen))
                    n_fixed += 1
                else:
                    raise RuntimeError("could not repair the routing margins")
            ids = torch.from_numpy(rows[r0:r0 + micro].copy())
            loss, parts, routing = mgf.forward_loss(m, ms, ids, c)
            (loss / nm).backward()
            mn, bad = mgf.routing_margins(m, ms, c, routing)
            if bad and dtype == F64:
                raise RuntimeError(f"step {k}: routing within {MARGIN_MIN} of a tie")
            for kk in mins:
                mins[kk] = min(mins[kk], mn[kk])
            for kk in acc:
                acc[kk] += float((parts[kk] if kk != "loss" else loss).detach()) / nm
            for key, _, _ in rts:
                rl, Tl, idx = routing[key]
                counts[key] += torch.bincount(idx.flatten(), minlength=E)
                u = rl.detach().topk(m.config.num_experts_per_tok, -1)[1].sort(-1)[0]
                step_routing[(key, mb)] = (idx.sort(-1)[0].clone(), u, mgf.scores_of(arch, rl.detach().double()))
        draw += B
        for p in params:  # every parameter is stepped every step (m, v decay; weight decay), as in C
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, case["clip"], foreach=False))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        maxvio, ties = {}, 0
        for key, gate, _ in rts:
            cnt = counts[key]
            mean = cnt.double().mean()
            maxvio[key] = float((cnt.max().double() - mean) / mean)
            if arch == "v3":
                diff = mean - cnt.double()
                ties += int((diff == 0).sum())
                sgn = torch.sign(diff).float()
                b = bias32[key]
                bias32[key] = b + torch.tensor(gamma, dtype=torch.float32) * sgn  # fp32, as the buffer
                with torch.no_grad():
                    gate.e_score_correction_bias.copy_(bias32[key].to(dtype))
        done += B * T
        steps.append(dict(step=k, tokens=done, tau=tau, lr=lr, mtp_weight=lam, bias_speed=gamma, grad_norm=gnorm,
                          clipped=gnorm > case["clip"], bias_ties=ties, maxvio=[maxvio[key] for key, _, _ in rts],
                          counts=[counts[key].tolist() for key, _, _ in rts],
                          min_routing_margin={kk: (v if math.isfinite(v) else None) for kk, v in mins.items()},
                          **acc))
        routing_log.append(step_routing)
    final = {name: p[sl].detach().clone() for name, (p, sl) in names.items()}
    for key, _, prefix in rts:
        if arch == "v3":
            final[prefix + ".e_score_correction_bias"] = bias32[key].clone()
    if log and repair_gen is not None:
        log(f"  ids resampled for margins: {n_fixed}")
    return steps, final, routing_log, n_fixed


def initial_named(model, mtps):
    _, names = trainable(model, mtps)
    out = {name: p[sl].detach().float().clone() for name, (p, sl) in names.items()}
    if model.config.model_type == "deepseek_v3":
        for key, gate, prefix in routers(model, mtps):
            out[prefix + ".e_score_correction_bias"] = gate.e_score_correction_bias.detach().float().clone()
    return out


def save_model(d, case, model, mtps):
    """config.json + model.safetensors the way make_grad_fixtures writes a single-file F32 case."""
    model.save_pretrained(d)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    path = os.path.join(d, "model.safetensors")
    tensors = {k: v.clone() for k, v in load_file(path).items()}
    want = mmf.expected_keys(model.config, case["arch"], fused=False, with_bias=(case["arch"] == "v3"))
    assert set(tensors) == want, sorted(set(tensors) ^ want)[:8]
    N = model.config.num_hidden_layers
    for k, m in enumerate(mtps):
        extra = mgf.mtp_layer_dict(m, N + k)
        if case.get("copies"):
            extra[f"model.layers.{N + k}.embed_tokens.weight"] = model.model.embed_tokens.weight.detach().clone()
            extra[f"model.layers.{N + k}.shared_head.head.weight"] = model.lm_head.weight.detach().clone()
        tensors.update(extra)
    mmf.write_safetensors(path, tensors, {"format": "pt"})
    if case["spelling"] == "v4":
        mmf.to_v4_spelling(d, rope_key="rope_type" if case["arch"] == "v2" else "type")
    else:
        mmf.write_json(os.path.join(d, "config.json"), json.load(open(os.path.join(d, "config.json"))))
    # what is on disk is what the runs start from
    disk = load_file(path)
    for name, v in initial_named(model, mtps).items():
        assert torch.equal(disk[name], v), name


def rel_err(a, b):
    n = b.double().norm().item()
    d = (a.double() - b.double()).norm().item()
    return d / n if n > 0 else (0.0 if d == 0 else math.inf)


def build_case(name, case, out_dir, log):
    seed = case["seed"]
    for attempt in range(20):
        model, mtps, gen = mgf.build_models(case, seed)
        V = model.config.vocab_size
        rows = torch.randint(3, V, (case["steps"] * case["B"], case["T"] + 1), generator=gen).numpy().astype(np.int64)
        try:
            s64, w64, r64, n_fix = run_training(model, mtps, rows, case, F64, repair_gen=gen)
            s32, w32, r32, _ = run_training(model, mtps, rows, case, torch.float32)
        except RuntimeError as e:
            log(f"  {name}: seed {seed}: {e}; reseeding")
            seed += 1
            continue
        same = all(torch.equal(r64[i][key][j], r32[i][key][j]) for i in range(len(r64)) for key in r64[i]
                   for j in range(2))
        score_drift = max(float((r64[i][key][2] - r32[i][key][2]).abs().max()) for i in range(len(r64))
                          for key in r64[i])
        if not same:
            log(f"  {name}: seed {seed}: fp32 routing differs from float64; reseeding")
            seed += 1
            continue
        break
    else:
        raise RuntimeError(f"{name}: no usable seed")
    assert len(s64) == case["steps"], "the budget must allow exactly `steps` steps"
    w0 = initial_named(model, mtps)

    # float32 torch vs float64 torch: what an fp32 implementation of the same run lands at
    fp32 = {}
    for kk in ("loss", "main", "mtp", "balance"):
        fp32[f"{kk}_abs_diff_max"] = max(abs(a[kk] - b[kk]) for a, b in zip(s32, s64))
    fp32["grad_norm_rel_diff_max"] = max(abs(a["grad_norm"] - b["grad_norm"]) / b["grad_norm"] for a, b in zip(s32, s64))
    fp32["router_score_abs_diff_max"] = score_drift
    fp32["maxvio_identical"] = all(a["maxvio"] == b["maxvio"] for a, b in zip(s32, s64))
    fp32["counts_identical"] = all(a["counts"] == b["counts"] for a, b in zip(s32, s64))
    biases = [n for n in w64 if n.endswith("e_score_correction_bias")]
    fp32["biases_identical"] = all(torch.equal(w32[n], w64[n]) for n in biases)
    assert fp32["counts_identical"] and fp32["biases_identical"]
    wn = [n for n in w64 if n not in biases]
    rel_w = {n: rel_err(w32[n], w64[n]) for n in wn}
    rel_d = {n: rel_err(w32[n].double() - w0[n].double(), w64[n].double() - w0[n].double()) for n in wn}
    fp32["weight_rel_err_max"] = max(rel_w.values())
    fp32["weight_rel_err_max_tensor"] = max(rel_w, key=rel_w.get)
    fp32["weight_rel_err_median"] = float(np.median(list(rel_w.values())))
    fp32["update_rel_err_max"] = max(rel_d.values())
    fp32["update_rel_err_max_tensor"] = max(rel_d, key=rel_d.get)
    fp32["update_rel_err_median"] = float(np.median(list(rel_d.values())))
    # how far the weights moved (the check is meaningful only if they did)
    moved = {n: rel_err(w64[n], w0[n]) for n in wn}

    d = os.path.join(out_dir, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    save_model(d, case, model, mtps)
    np.save(os.path.join(d, "rows.npy"), rows)
    mmf.write_json(os.path.join(d, "args.json"), {
        "args": case_args(case),
        "usage": "dsv3 train --model CASE_DIR --data CASE_DIR/rows.npy --out OUT <args>"})
    meta = {"case": name, "generator": "tools/ref/make_train_fixtures.py", "torch": torch.__version__,
            "transformers": transformers.__version__, "reference": "float64 torch run, stored as F32"}
    mmf.write_safetensors(os.path.join(d, "expected.safetensors"),
                          {k: v.float().contiguous() for k, v in w64.items()}, meta)
    layers = [key for key, _, _ in routers(model, mtps)]
    exp = {
        "steps": s64, "moe_layers": layers, "B": case["B"], "micro_batch": case["micro"], "T": case["T"],
        "tokens_budget": case["tokens"], "lr_peak": case["lr"], "warmup": case["warmup"], "seq_aux": case["alpha"],
        "mtp_depth": case["mtp"], "recipe": {"beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS,
                                             "weight_decay": WEIGHT_DECAY, "clip": case["clip"]},
        "fp32_vs_float64": fp32,
        "weights_moved_rel_min": min(moved.values()), "weights_moved_rel_median": float(np.median(list(moved.values()))),
        "weight_tensors": len(wn), "bias_tensors": len(biases),
        "bias_ties_total": sum(s["bias_ties"] for s in s64),
        "min_routing_margin": {kk: min((s["min_routing_margin"][kk] for s in s64
                                        if s["min_routing_margin"][kk] is not None), default=None)
                               for kk in ("group", "expert", "unbiased_topk")},
        "routing_margin_min_required": MARGIN_MIN,
        "ids_resampled_for_margins": n_fix, "seed": seed,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "generator": "tools/ref/make_train_fixtures.py",
    }
    mmf.write_json(os.path.join(d, "expected.json"), exp)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    log(f"{name}: seed {seed}, {size / 1024:.0f} KiB, losses {[round(s['loss'], 4) for s in s64]}, "
        f"grad norms {[round(s['grad_norm'], 3) for s in s64]}, lr {['%.3g' % s['lr'] for s in s64]}, "
        f"bias ties {exp['bias_ties_total']}, margins {exp['min_routing_margin']}, ids resampled {n_fix}")
    log(f"  fp32 vs float64: router scores {score_drift:.1e}, loss {fp32['loss_abs_diff_max']:.2e}, grad norm {fp32['grad_norm_rel_diff_max']:.2e}, "
        f"weights max {fp32['weight_rel_err_max']:.2e} ({fp32['weight_rel_err_max_tensor']}), "
        f"update max {fp32['update_rel_err_max']:.2e} ({fp32['update_rel_err_max_tensor']}) "
        f"median {fp32['update_rel_err_median']:.2e}; weights moved ≥ {exp['weights_moved_rel_min']:.3f}")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (one sub-directory per case)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    mgf.install_f64_patches()
    names = [n for n in CASES if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(CASES) - {""}
    if unknown:
        sys.exit(f"unknown case(s): {sorted(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for n in names:
        total += build_case(n, CASES[n], args.out, lambda s: print(s, file=sys.stderr, flush=True))
    print(f"wrote {len(names)} case(s), {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
