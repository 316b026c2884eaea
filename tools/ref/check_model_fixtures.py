#!/usr/bin/env python3
"""Independent re-check of tests/fixtures/model: recompute every case from the files on disk with a plain-torch
float64 implementation of the semantics written in docs/ORACLE.md (no transformers), and compare with the
HF-generated expected.safetensors at the C tolerance |d| <= 1e-5 + 1e-4*|ref|.

    python3 tools/ref/check_model_fixtures.py tests/fixtures/model [--only CASE,...]

This reads config.json the way the C reader has to (v4 and v5 spellings, q_lora_rank null, deepseek_v2),
the weights the way the C loader has to (single file / shards + index, per-expert or fused experts, BF16,
F8_E4M3 + weight_scale_inv 128x128 blocks, MTP layer N = num_hidden_layers), so a pass means the fixture files
carry everything the C side needs, and that HF's fp32 result agrees with exact math to the C tolerance.
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

D = torch.float64

# --self-test: deliberately wrong semantics; each one must make at least one fixture fail (the fixtures discriminate)
MUTATIONS = {
    "no_mscale_sq": "softmax scale without the yarn m^2 factor",
    "rope_rotate_half": "RoPE pairs (x[i], x[i+d/2]) instead of interleaved (x[2i], x[2i+1])",
    "no_rope_attention_factor": "cos/sin not multiplied by the yarn attention_factor",
    "no_yarn_freq": "plain RoPE frequencies under yarn",
    "qkv_norm_config_eps": "q_a/kv_a norms use rms_norm_eps instead of 1e-6",
    "main_norm_eps_1e6": "layer/final norms use 1e-6 instead of rms_norm_eps",
    "zero_fill": "dropped groups filled with 0.0 instead of -inf (pre PR #45441)",
    "no_group_limit": "no group-limited routing",
    "biased_weights": "routing weights taken from the biased scores",
    "always_normalize": "normalise the top-k weights even with norm_topk_prob false",
    "no_routed_scale": "routed_scaling_factor ignored",
    "v2_group_top2_sum": "V2 group score = sum of top-2 instead of max",
    "v2_sigmoid": "V2 scored with sigmoid instead of softmax",
    "mtp_hidden_first": "MTP concat [hnorm(h), enorm(emb)]",
    "mtp_prenorm_hidden": "MTP fed the hidden state before model.norm",
    "mtp_same_token": "MTP embeds t_i instead of t_{i+1}",
    "fp8_ignore_scale": "FP8 weights used without weight_scale_inv",
}
MUT = set()


def read_config(d):
    c = json.load(open(os.path.join(d, "config.json")))
    if "rope_parameters" in c and c["rope_parameters"] is not None:  # transformers-5 spelling
        rp = dict(c["rope_parameters"])
        rope_type = rp.pop("rope_type", rp.pop("type", "default"))
        theta = rp.pop("rope_theta")
    else:  # transformers-4 spelling
        theta = c.get("rope_theta", 10000.0)
        rs = c.get("rope_scaling") or {}
        rp = dict(rs)
        rope_type = rp.pop("rope_type", None) or rp.pop("type", None) or "default"
        rp.pop("type", None)
    c["_rope"] = dict(type=rope_type, theta=float(theta), **rp)
    return c


def read_weights(d, c):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    raw = {}
    for f in files:
        raw.update(load_file(os.path.join(d, f)))
    qc = c.get("quantization_config")
    W = {}
    for k, v in raw.items():
        if k.endswith("weight_scale_inv"):
            continue
        if v.dtype == torch.float8_e4m3fn:
            assert qc and qc["quant_method"] == "fp8" and qc["weight_block_size"] == [128, 128]
            s = raw[k[: -len("weight")] + "weight_scale_inv"]
            assert list(s.shape) == [math.ceil(v.shape[0] / 128), math.ceil(v.shape[1] / 128)], (k, s.shape)
            full = s.to(D).repeat_interleave(128, 0).repeat_interleave(128, 1)[: v.shape[0], : v.shape[1]]
            W[k] = v.to(torch.float32).to(D) * (1.0 if "fp8_ignore_scale" in MUT else full)
        elif k.endswith("mlp.experts.gate_up_proj"):  # transformers-5 fused experts [E, 2*Im, H]
            base = k[: -len("gate_up_proj")]
            im = v.shape[1] // 2
            for e in range(v.shape[0]):
                W[f"{base}{e}.gate_proj.weight"] = v[e, :im].to(D)
                W[f"{base}{e}.up_proj.weight"] = v[e, im:].to(D)
        elif k.endswith("mlp.experts.down_proj"):  # [E, H, Im]
            base = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                W[f"{base}{e}.down_proj.weight"] = v[e].to(D)
        else:
            W[k] = v.to(D)
    return W


def rmsnorm(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def yarn_mscale(f, m):
    return 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0


def rope_tables(c, T):
    r = c["_rope"]
    dim = c["qk_rope_head_dim"]
    i = torch.arange(dim // 2, dtype=D)
    inv = r["theta"] ** (-2 * i / dim)
    att = 1.0
    mscale_sq = 1.0
    if r["type"] == "yarn":
        f = r["factor"]
        orig = r["original_max_position_embeddings"]
        bf, bs = r.get("beta_fast") or 32, r.get("beta_slow") or 1

        def corr(n):
            return dim * math.log(orig / (n * 2 * math.pi)) / (2 * math.log(r["theta"]))

        if r.get("truncate", True):
            lo, hi = max(math.floor(corr(bf)), 0), min(math.ceil(corr(bs)), dim - 1)
        else:
            lo, hi = max(corr(bf), 0), min(corr(bs), dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = ((i - lo) / (hi - lo)).clamp(0, 1)
        if "no_yarn_freq" not in MUT:
            inv = inv / f * ramp + inv * (1 - ramp)
        ms, msa = r.get("mscale"), r.get("mscale_all_dim")
        att = r.get("attention_factor") or (yarn_mscale(f, ms) / yarn_mscale(f, msa) if (ms and msa) else yarn_mscale(f, 1))
        if msa and "no_mscale_sq" not in MUT:
            mscale_sq = yarn_mscale(f, msa) ** 2
        if "no_rope_attention_factor" in MUT:
            att = 1.0
    elif r["type"] != "default":
        raise SystemExit(f"rope type {r['type']} not handled")
    ang = torch.arange(T, dtype=D)[:, None] * inv[None]
    return torch.cos(ang) * att, torch.sin(ang) * att, inv, mscale_sq


def rope_interleaved(x, cos, sin, halfsplit=False):
    """x [..., T, dim]: pairs (x[2i], x[2i+1]) rotate by angle i (DeepSeek layout), output in the same layout.
    halfsplit (rope_interleave false): pairs (x[i], x[i + dim/2]), HF's plain rotate_half."""
    if halfsplit != ("rope_rotate_half" in MUT):
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def mlp(x, W, p):
    g = x @ W[p + "gate_proj.weight"].T
    u = x @ W[p + "up_proj.weight"].T
    return (torch.nn.functional.silu(g) * u) @ W[p + "down_proj.weight"].T


def attention(x, W, p, c, cos, sin, mscale_sq):
    T = x.shape[0]
    nH, dn, dr, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qkv_eps = c["rms_norm_eps"] if "qkv_norm_config_eps" in MUT else 1e-6
    bias = lambda n: W.get(p + n + ".bias", 0.0)  # attention_bias: q_a, kv_a, o (absent: 0)
    if c.get("q_lora_rank"):
        q = rmsnorm(x @ W[p + "q_a_proj.weight"].T + bias("q_a_proj"), W[p + "q_a_layernorm.weight"], qkv_eps) \
            @ W[p + "q_b_proj.weight"].T
    else:
        q = x @ W[p + "q_proj.weight"].T
    q = q.view(T, nH, dn + dr).transpose(0, 1)
    kv = x @ W[p + "kv_a_proj_with_mqa.weight"].T + bias("kv_a_proj_with_mqa")
    ckv, kpe = kv[:, : c["kv_lora_rank"]], kv[:, c["kv_lora_rank"]:]
    ckv = rmsnorm(ckv, W[p + "kv_a_layernorm.weight"], qkv_eps)  # q_a/kv_a norms: eps 1e-6 always
    kvb = (ckv @ W[p + "kv_b_proj.weight"].T).view(T, nH, dn + dv).transpose(0, 1)
    k_nope, v = kvb[..., :dn], kvb[..., dn:]
    half = c["model_type"] == "deepseek_v3" and not c.get("rope_interleave", True)
    q_pe = rope_interleaved(q[..., dn:], cos, sin, half)
    k_pe = rope_interleaved(kpe, cos, sin, half)[None].expand(nH, T, dr)
    scale = (dn + dr) ** -0.5 * mscale_sq
    s = (q[..., :dn] @ k_nope.transpose(1, 2) + q_pe @ k_pe.transpose(1, 2)) * scale
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.softmax(s, -1) @ v  # [nH, T, dv]
    return o.transpose(0, 1).reshape(T, nH * dv) @ W[p + "o_proj.weight"].T + bias("o_proj")


def route(x, W, p, c):
    E, K = c["n_routed_experts"], c["num_experts_per_tok"]
    logits = x @ W[p + "gate.weight"].T
    if c["model_type"] == "deepseek_v2":
        s = torch.sigmoid(logits) if "v2_sigmoid" in MUT else torch.softmax(logits, -1)
        sel = s
        method = c.get("topk_method", "greedy")
        if method == "group_limited_greedy" and "no_group_limit" not in MUT:
            G = c["n_group"]
            gs = (sel.view(-1, G, E // G).topk(2, -1)[0].sum(-1) if "v2_group_top2_sum" in MUT
                  else sel.view(-1, G, E // G).max(-1).values)
            keep = torch.zeros_like(gs).scatter_(1, gs.topk(c["topk_group"], -1)[1], 1).bool()
            sel = sel.masked_fill(~keep.repeat_interleave(E // G, 1), float("-inf"))
        else:
            assert method == "greedy", method
        idx = sel.topk(K, -1)[1]
        w = s.gather(1, idx)
        if c.get("norm_topk_prob") or "always_normalize" in MUT:  # never true in our V2 fixture (HF V2 ignores it)
            w = w / w.sum(-1, keepdim=True)
    else:
        s = torch.sigmoid(logits)
        sel = s + W[p + "gate.e_score_correction_bias"]
        G = c["n_group"]
        gs = sel.view(-1, G, E // G).topk(2, -1)[0].sum(-1)
        keep = torch.zeros_like(gs).scatter_(1, gs.topk(c["topk_group"], -1)[1], 1).bool()
        if "no_group_limit" not in MUT:
            sel = sel.masked_fill(~keep.repeat_interleave(E // G, 1), 0.0 if "zero_fill" in MUT else float("-inf"))
        idx = sel.topk(K, -1)[1]
        w = (s + W[p + "gate.e_score_correction_bias"] if "biased_weights" in MUT else s).gather(1, idx)
        if c.get("norm_topk_prob") or "always_normalize" in MUT:
            w = w / w.sum(-1, keepdim=True)
    if "no_routed_scale" not in MUT:
        w = w * c["routed_scaling_factor"]
    order = idx.argsort(-1)
    return idx.gather(1, order), w.gather(1, order)


def moe(x, W, p, c):
    idx, w = route(x, W, p, c)
    y = mlp(x, W, p + "shared_experts.")
    for t in range(x.shape[0]):
        for j in range(idx.shape[1]):
            y[t] += w[t, j] * mlp(x[t:t + 1], W, p + f"experts.{int(idx[t, j])}.")[0]
    return y, idx, w


def layer(h, W, i, c, cos, sin, msq, routing):
    p = f"model.layers.{i}."
    eps = 1e-6 if "main_norm_eps_1e6" in MUT else c["rms_norm_eps"]
    h = h + attention(rmsnorm(h, W[p + "input_layernorm.weight"], eps), W, p + "self_attn.", c, cos, sin, msq)
    x = rmsnorm(h, W[p + "post_attention_layernorm.weight"], eps)
    if i < c["first_k_dense_replace"]:
        return h + mlp(x, W, p + "mlp.")
    y, idx, w = moe(x, W, p + "mlp.", c)
    routing.append((idx, w))
    return h + y


def check_case(d, tol_a=1e-5, tol_r=1e-4):
    c = read_config(d)
    assert c["model_type"] in ("deepseek_v3", "deepseek_v2"), c["model_type"]
    W = read_weights(d, c)
    if c.get("tie_word_embeddings"):
        assert "lm_head.weight" not in W
        W["lm_head.weight"] = W["model.embed_tokens.weight"]
    exp = load_file(os.path.join(d, "expected.safetensors"))
    ids = exp["input_ids"].long()
    T = ids.shape[0]
    cos, sin, inv, msq = rope_tables(c, T)
    h = W["model.embed_tokens.weight"][ids]
    routing, per_layer = [], []
    for i in range(c["num_hidden_layers"]):
        h = layer(h, W, i, c, cos, sin, msq, routing)
        per_layer.append(h)
    hf = rmsnorm(h, W["model.norm.weight"], 1e-6 if "main_norm_eps_1e6" in MUT else c["rms_norm_eps"])
    logits = hf @ W["lm_head.weight"].T
    report = {}

    def cmp(name, got, ref):
        ref = ref.to(D)
        dd = (got - ref).abs()
        ok = bool((dd <= tol_a + tol_r * ref.abs()).all())
        report[name] = (ok, dd.max().item())

    cmp("logits", logits, exp["logits"])
    cmp("layer_hidden", torch.stack(per_layer), exp["layer_hidden"])
    cmp("final_hidden", hf, exp["final_hidden"])
    cmp("rope_inv_freq", inv, exp["rope_inv_freq"])
    ri = torch.stack([r[0] for r in routing]).to(torch.int32)
    rw = torch.stack([r[1] for r in routing])
    report["router_experts"] = (bool(torch.equal(ri, exp["router_experts"])), 0.0)
    cmp("router_weights", rw, exp["router_weights"])
    nm = c.get("num_nextn_predict_layers", 0) or 0
    if nm:
        N = c["num_hidden_layers"]
        p = f"model.layers.{N}."
        eps = c["rms_norm_eps"]
        assert torch.equal(W[p + "embed_tokens.weight"], W["model.embed_tokens.weight"])
        assert torch.equal(W[p + "shared_head.head.weight"], W["lm_head.weight"])
        e = W[p + "embed_tokens.weight"][ids[:-1] if "mtp_same_token" in MUT else ids[1:]]
        hm = h if "mtp_prenorm_hidden" in MUT else hf
        parts = [rmsnorm(e, W[p + "enorm.weight"], eps), rmsnorm(hm[:-1], W[p + "hnorm.weight"], eps)]
        x = torch.cat(parts[::-1] if "mtp_hidden_first" in MUT else parts, -1)
        x = x @ W[p + "eh_proj.weight"].T
        cos1, sin1 = cos[: T - 1], sin[: T - 1]
        mr = []
        x = layer(x, W, N, dict(c, first_k_dense_replace=0), cos1, sin1, msq, mr)
        ml = rmsnorm(x, W[p + "shared_head.norm.weight"], eps) @ W[p + "shared_head.head.weight"].T
        cmp("mtp_logits", ml, exp["mtp_logits"])
        report["mtp_router_experts"] = (bool(torch.equal(mr[0][0].to(torch.int32), exp["mtp_router_experts"])), 0.0)
    return report


def self_test(root):
    names = [n for n in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, n))]
    undetected = []
    for mut, what in MUTATIONS.items():
        MUT.clear()
        MUT.add(mut)
        caught = []
        for n in names:
            try:
                rep = check_case(os.path.join(root, n))
                if not all(v[0] for v in rep.values()):
                    caught.append(n)
            except (AssertionError, RuntimeError, IndexError) as e:  # a crash also counts as detected
                caught.append(f"{n}(error {type(e).__name__})")
        print(f"{'caught' if caught else 'MISSED'} {mut:26s} ({what}): {', '.join(caught) or '-'}")
        if not caught:
            undetected.append(mut)
    MUT.clear()
    print("every mutation is caught by some fixture" if not undetected else f"undetected: {undetected}")
    return 1 if undetected else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="fixture root, e.g. tests/fixtures/model")
    ap.add_argument("--only", default="")
    ap.add_argument("--self-test", action="store_true",
                    help="also check that each deliberately wrong variant of the semantics fails on some fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.self_test:
        return self_test(args.root)
    bad = 0
    for name in sorted(os.listdir(args.root)):
        d = os.path.join(args.root, name)
        if not os.path.isdir(d) or (args.only and name not in args.only.split(",")):
            continue
        rep = check_case(d)
        ok = all(v[0] for v in rep.values())
        bad += not ok
        print(f"{'OK  ' if ok else 'FAIL'} {name}: " + ", ".join(
            f"{k} {'ok' if v[0] else 'BAD'}" + (f" {v[1]:.1e}" if v[1] else "") for k, v in rep.items()))
    print("all fixtures agree with the float64 re-implementation" if not bad else f"{bad} case(s) FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
