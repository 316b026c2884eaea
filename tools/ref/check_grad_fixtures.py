#!/usr/bin/env python3
"""Independent re-check of tests/fixtures/grad: rebuild the training loss of issue 7 (docs/ORACLE.md §9) from the
files on disk alone (config.json, model*.safetensors, rows.npy) with the plain-torch float64 model of
check_model_fixtures.py (no transformers), take its autograd gradients, and compare them with grads.safetensors
and the loss parts with expected.json.

    python3 tools/ref/check_grad_fixtures.py tests/fixtures/grad [--only CASE,...]

The RoPE table is built the way HF and the C side build it (fp32 inverse frequencies and angles, fp32 cos/sin),
so the two float64 computations agree to rounding: measured loss |Δ| <= 6e-10 (fp32 inverse frequencies may differ
by an ulp) and gradient ‖Δ‖/‖ref‖ <= 9e-8 (the stored gradients are F32). Pass: loss parts within 1e-8 absolute,
every gradient within 1e-6 relative. --self-test checks that each of a list of wrong loss conventions (L^k over
T-k, hidden-first concat, a stop-gradient into the trunk, depth 2 fed h^0, P_i without s/Σs, rows summed, the MTP
block's balance over T) fails on some fixture.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import check_model_fixtures as cmf  # noqa: E402

D = torch.float64

# --self-test: deliberately wrong loss conventions; each must make some fixture fail
MUTATIONS = {
    "mtp_over_T_minus_k": "L^k divided by B*(T-k) instead of B*T",
    "mtp_hidden_first": "MTP concat [hnorm(h); enorm(emb)]",
    "mtp_stop_grad": "stop-gradient on the trunk hidden state fed to MTP",
    "mtp_depth2_from_trunk": "depth k > 1 fed the trunk's h^0 instead of h^{k-1}",
    "bal_no_score_norm": "P_i from the raw scores instead of s / sum_j s",
    "bal_sum_rows": "balance loss summed over rows instead of averaged",
    "bal_full_T_in_mtp": "MTP block's f_i and P_i over T instead of the T-k routed tokens",
}
MUT = set()
# WRAP(W) -> W': an optional view of the weight dict the loss is computed through (after the leaves are made).
# make_fp8_train_fixtures.py uses it to run every Linear as an emulated FP8 GEMM; values that are not plain
# tensors must expose .grad (the leaf's).
WRAP = None


def fp32_dequant_(W, d, c):
    """FP8 weights as the model computes with them: one fp32 multiply (check_model_fixtures does it in float64)."""
    if not c.get("quantization_config"):
        return
    raw = load_file(os.path.join(d, "model.safetensors"))
    for k, v in raw.items():
        if v.dtype == torch.float8_e4m3fn:
            s = raw[k[: -len("weight")] + "weight_scale_inv"]
            full = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[: v.shape[0], : v.shape[1]]
            W[k] = (v.float() * full).to(D)


def rope_fp32(c, T):
    """cos/sin exactly as HF computes them: fp32 inv_freq, fp32 angles pos*inv_freq, fp32 cos/sin x factor."""
    _, _, inv, msq = cmf.rope_tables(c, T)
    inv32 = inv.float()
    r = c["_rope"]
    att = 1.0
    if r["type"] == "yarn":
        f = r["factor"]
        ms, msa = r.get("mscale"), r.get("mscale_all_dim")
        att = r.get("attention_factor") or (cmf.yarn_mscale(f, ms) / cmf.yarn_mscale(f, msa) if (ms and msa)
                                            else cmf.yarn_mscale(f, 1))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv32[None]
    return (ang.cos() * att).to(D), (ang.sin() * att).to(D), msq


def compute_case(d):
    """The loss of issue 7 on case directory d and its autograd gradients: (exp, loss, main, mtp, balance,
    bal per layer, grads {name: float64 tensor} for every trainable tensor under both names of the MTP copies,
    the main logits [T, V] of each row)."""
    c = cmf.read_config(d)
    W = cmf.read_weights(d, c)
    fp8_dequant = c.get("quantization_config")
    fp32_dequant_(W, d, c)
    exp = json.load(open(os.path.join(d, "expected.json")))
    ref = load_file(os.path.join(d, "grads.safetensors"))
    rows = torch.from_numpy(np.load(os.path.join(d, "rows.npy")))
    assert rows.dtype == torch.int64 and rows.dim() == 2
    B, T = rows.shape[0], rows.shape[1] - 1
    assert (B, T) == (exp["B"], exp["T"]) and exp["tokens"] == B * T
    N = c["num_hidden_layers"]
    nm = c.get("num_nextn_predict_layers", 0) or 0
    if c["model_type"] == "deepseek_v2":
        nm = 0
    lam, alpha = exp["mtp_weight"], exp["seq_aux"]
    E, K = c.get("n_routed_experts"), c.get("num_experts_per_tok")
    # leaves; the MTP copies of the embedding / head are the main tensors (asserted equal when stored)
    P = {k: v.clone().requires_grad_(True) for k, v in W.items() if not k.endswith("e_score_correction_bias")}
    W = dict(W, **P)
    for k in range(nm):
        for copy, main in ((f"model.layers.{N + k}.embed_tokens.weight", "model.embed_tokens.weight"),
                           (f"model.layers.{N + k}.shared_head.head.weight", "lm_head.weight")):
            if copy in W:
                assert torch.equal(W[copy].detach(), W[main].detach()), f"{copy} differs from {main}"
                del P[copy]
            W[copy] = W[main]
    if WRAP is not None:
        W = WRAP(W)
    cos, sin, msq = rope_fp32(c, T)
    eps = c["rms_norm_eps"]
    recorded = []
    orig_route = cmf.route

    def route(x, W_, p, c_):
        recorded.append(x @ W_[p + "gate.weight"].T)
        return orig_route(x, W_, p, c_)

    cmf.route = route
    try:
        main = 0.0
        logits_rows = []
        mtp_terms = [0.0] * nm
        bal = {}
        for r in range(B):
            ids = rows[r]
            recorded.clear()
            h = W["model.embed_tokens.weight"][ids[:T]]
            for i in range(N):
                h = cmf.layer(h, W, i, c, cos, sin, msq, [])
            hf = cmf.rmsnorm(h, W["model.norm.weight"], eps)
            lg = hf @ W["lm_head.weight"].T
            logits_rows.append(lg.detach())
            main = main + -lg.log_softmax(-1).gather(1, ids[1:, None]).sum()
            keys = [f"layer{i}" for i in range(c.get("first_k_dense_replace", 0), N)]
            hk = hf
            for k in range(1, nm + 1):
                L = N + k - 1
                p = f"model.layers.{L}."
                Tk = T - k
                e = W[p + "embed_tokens.weight"][ids[k:k + Tk]]
                if "mtp_stop_grad" in MUT and k == 1:
                    hk = hk.detach()
                if "mtp_depth2_from_trunk" in MUT:
                    hk = hf
                parts = [cmf.rmsnorm(e, W[p + "enorm.weight"], eps), cmf.rmsnorm(hk[:Tk], W[p + "hnorm.weight"], eps)]
                x = torch.cat(parts[::-1] if "mtp_hidden_first" in MUT else parts, -1) @ W[p + "eh_proj.weight"].T
                x = cmf.layer(x, W, L, dict(c, first_k_dense_replace=0), cos[:Tk], sin[:Tk], msq, [])
                hk = cmf.rmsnorm(x, W[p + "shared_head.norm.weight"], eps)
                lk = hk @ W[p + "shared_head.head.weight"].T
                mtp_terms[k - 1] = mtp_terms[k - 1] + -lk.log_softmax(-1).gather(1, ids[k + 1:k + 1 + Tk, None]).sum()
                keys.append(f"mtp{k}")
            assert len(keys) == len(recorded), (keys, len(recorded))
            for key, rl in zip(keys, recorded):
                s = rl.softmax(-1) if c["model_type"] == "deepseek_v2" else rl.sigmoid()
                Tl = s.shape[0]
                f = torch.zeros(E, dtype=D).index_add_(0, s.detach().topk(K, -1)[1].flatten(),
                                                       torch.ones(Tl * K, dtype=D)) * (E / (K * Tl))
                sn = s if "bal_no_score_norm" in MUT else s / s.sum(-1, keepdim=True)
                Pi = sn.mean(0)
                if "bal_full_T_in_mtp" in MUT and Tl != T:
                    f, Pi = f * Tl / T, Pi * Tl / T
                term = alpha * (f * Pi).sum() / (1 if "bal_sum_rows" in MUT else B)
                bal[key] = bal.get(key, 0.0) + term
    finally:
        cmf.route = orig_route
    main = main / (B * T)
    mtp_terms = [m / (B * (T - k - 1 if "mtp_over_T_minus_k" in MUT else T)) for k, m in enumerate(mtp_terms)]
    mtp = (lam / nm) * sum(mtp_terms) if nm and lam else torch.zeros((), dtype=D)
    balance = sum(bal.values()) if bal else torch.zeros((), dtype=D)
    loss = main + mtp + balance
    loss.backward()
    names = set(P) | {f"model.layers.{N + k}.{s}" for k in range(nm) for s in ("embed_tokens.weight",
                                                                                 "shared_head.head.weight")}
    grads = {k: (W[k].grad if W[k].grad is not None else torch.zeros_like(P[k] if k in P else W[k].detach()))
             for k in sorted(names)}
    return exp, c, loss, main, mtp, balance, bal, grads, logits_rows


def check_case(d):
    exp, c, loss, main, mtp, balance, bal, grads, _ = compute_case(d)
    ref = load_file(os.path.join(d, "grads.safetensors"))
    fp8_dequant = c.get("quantization_config")
    report = {}
    for name, got, want in (("loss", loss, exp["loss"]), ("main", main, exp["main"]), ("mtp", mtp, exp["mtp"]),
                            ("balance", balance, exp["balance"])):
        dd = abs(float(torch.as_tensor(got).detach()) - want)
        report[name] = (dd <= 1e-8, dd)
    for k, v in exp["balance_per_layer"].items():
        dd = abs(float(bal[k].detach()) - v)
        report[f"balance[{k}]"] = (dd <= 1e-8, dd)
    # gradients: every trainable tensor, both names of the shared embedding / head
    assert set(ref) == set(grads), sorted(set(ref) ^ set(grads))[:8]
    worst, wname = 0.0, None
    for k, g in grads.items():
        rn = ref[k].to(D).norm().item()
        rel = (g - ref[k].to(D)).norm().item() / rn if rn > 0 else (0.0 if g.norm().item() == 0 else math.inf)
        if rel > worst:
            worst, wname = rel, k
    report["grads"] = (worst <= 1e-6, worst)
    return report, wname, bool(fp8_dequant)


def self_test(root):
    names = [n for n in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, n))]
    missed = []
    for mut, what in MUTATIONS.items():
        MUT.clear()
        MUT.add(mut)
        caught = []
        for n in names:
            rep, _, _ = check_case(os.path.join(root, n))
            fails = [k for k, v in rep.items() if not v[0]]
            if fails:
                caught.append(f"{n}({','.join(fails)})")
        print(f"{'caught' if caught else 'MISSED'} {mut:22s} ({what}): {' '.join(caught) or '-'}")
        if not caught:
            missed.append(mut)
    MUT.clear()
    print("every mutation is caught by some fixture" if not missed else f"undetected: {missed}")
    return 1 if missed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="fixture root, e.g. tests/fixtures/grad")
    ap.add_argument("--only", default="")
    ap.add_argument("--self-test", action="store_true",
                    help="check that each deliberately wrong loss convention fails on some fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.self_test:
        return self_test(args.root)
    bad = 0
    for name in sorted(os.listdir(args.root)):
        d = os.path.join(args.root, name)
        if not os.path.isdir(d) or (args.only and name not in args.only.split(",")):
            continue
        rep, wname, _ = check_case(d)
        ok = all(v[0] for v in rep.values())
        bad += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {name}: " + ", ".join(f"{k} {'ok' if v[0] else 'BAD'} {v[1]:.1e}"
                                                                for k, v in rep.items()) + f" (worst grad {wname})")
    print("all grad fixtures agree with the independent float64 re-implementation" if not bad
          else f"{bad} case(s) FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
