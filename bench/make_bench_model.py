#!/usr/bin/env python3
"""Write a Hugging Face DeepSeek-V3 checkpoint folder with seeded random weights, for speed benchmarks.

    python3 bench/make_bench_model.py --out DIR [--config configs/small.json] [--fp8] [--seed 0]
                                      [--std 0.02] [--no-mtp] [--no-mtp-copies] [--shard-mb 1024] [--check]

Weights: every matrix N(0, std^2) (std defaults to the config's initializer_range, 0.02), every norm gain 1,
router e_score_correction_bias 0 (F32, as in the official checkpoint). The fp32 draws are seeded per tensor
name (seed, crc32(name)), so the bf16 folder and the --fp8 folder hold the same underlying weights:

  default  every tensor BF16 (except e_score_correction_bias, F32).
  --fp8    the layout of the official DeepSeek-V3 release: every 2-D Linear weight of attention, dense MLP,
           shared and routed experts is F8_E4M3 with `<name>_scale_inv` F32 [ceil(out/128), ceil(in/128)]
           (scale = max(amax, 1e-4) / 448 per 128x128 block, edge blocks partial, round-to-nearest-even as
           torch's cast; the same rule as tools/ref/make_model_fixtures.py quant_fp8_block). Embeddings,
           lm_head, norms, the router gate (mlp.gate.weight) and the MTP eh_proj stay BF16; config.json gets
           quantization_config {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
           "weight_block_size": [128, 128]}.

MTP: num_nextn_predict_layers modules as model.layers.{N+i}.* (enorm, hnorm, eh_proj, a full MoE decoder
block, shared_head.norm) plus, unless --no-mtp-copies, the copies shared_head.head.weight = lm_head.weight
and embed_tokens.weight = model.embed_tokens.weight that the official checkpoint stores.
Routed experts are stored per expert (model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight), in shards
of about --shard-mb with model.safetensors.index.json. tokenizer.json / tokenizer_config.json are copied
from models/deepseek-v3/ (the converter of llama.cpp needs the real tokenizer and vocab >= 128815).

--check loads the folder in transformers' DeepseekV3ForCausalLM (bf16 folders: no missing or unexpected
weights outside the MTP layers) and, when ./dsv3 exists, runs `dsv3 logits` on 8 ids and checks the
logits are finite (and, for bf16, agree with transformers within 1e-2 + 1e-2|ref|: bf16 weights, fp32 math).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP8_MAX = 448.0
BLOCK = 128


def tensor_specs(c, mtp=True, mtp_copies=True):
    """[(name, shape, kind)] in file order; kind: mat (Linear, FP8-able), mat16 (matrix kept BF16),
    norm (gain 1), bias0 (F32 zeros: e_score_correction_bias), zero16 (BF16 zeros: attention biases),
    copy:<name> (an exact copy of another tensor)."""
    d, V = c["hidden_size"], c["vocab_size"]
    H = c["num_attention_heads"]
    nope, rope, vd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    ql, kvl = c.get("q_lora_rank"), c["kv_lora_rank"]
    L = c["num_hidden_layers"]
    kdense = c.get("first_k_dense_replace", 0)
    E = c.get("n_routed_experts") or 0
    Im, I = c["moe_intermediate_size"], c["intermediate_size"]
    Ish = Im * (c.get("n_shared_experts") or 0)
    if (c.get("moe_layer_freq") or 1) != 1:
        raise SystemExit("make_bench_model: moe_layer_freq != 1 is not supported")
    bias = bool(c.get("attention_bias"))
    n_mtp = (c.get("num_nextn_predict_layers") or 0) if mtp else 0
    tied = bool(c.get("tie_word_embeddings"))
    S = [("model.embed_tokens.weight", (V, d), "mat16"), ("model.norm.weight", (d,), "norm")]
    if not tied:
        S.append(("lm_head.weight", (V, d), "mat16"))

    def layer(l):
        p = f"model.layers.{l}."
        out = [(p + "input_layernorm.weight", (d,), "norm"), (p + "post_attention_layernorm.weight", (d,), "norm")]
        a = p + "self_attn."
        if ql:
            out += [(a + "q_a_proj.weight", (ql, d), "mat"), (a + "q_a_layernorm.weight", (ql,), "norm"),
                    (a + "q_b_proj.weight", (H * (nope + rope), ql), "mat")]
            if bias:
                out.append((a + "q_a_proj.bias", (ql,), "zero16"))
        else:
            out.append((a + "q_proj.weight", (H * (nope + rope), d), "mat"))
        out += [(a + "kv_a_proj_with_mqa.weight", (kvl + rope, d), "mat"), (a + "kv_a_layernorm.weight", (kvl,), "norm"),
                (a + "kv_b_proj.weight", (H * (nope + vd), kvl), "mat"), (a + "o_proj.weight", (d, H * vd), "mat")]
        if bias:
            out += [(a + "kv_a_proj_with_mqa.bias", (kvl + rope,), "zero16"), (a + "o_proj.bias", (d,), "zero16")]
        m = p + "mlp."
        if l < kdense:
            out += [(m + "gate_proj.weight", (I, d), "mat"), (m + "up_proj.weight", (I, d), "mat"),
                    (m + "down_proj.weight", (d, I), "mat")]
        else:
            out += [(m + "gate.weight", (E, d), "mat16"), (m + "gate.e_score_correction_bias", (E,), "bias0")]
            if Ish:
                out += [(m + "shared_experts.gate_proj.weight", (Ish, d), "mat"),
                        (m + "shared_experts.up_proj.weight", (Ish, d), "mat"),
                        (m + "shared_experts.down_proj.weight", (d, Ish), "mat")]
            for e in range(E):
                out += [(m + f"experts.{e}.gate_proj.weight", (Im, d), "mat"),
                        (m + f"experts.{e}.up_proj.weight", (Im, d), "mat"),
                        (m + f"experts.{e}.down_proj.weight", (d, Im), "mat")]
        return out

    for l in range(L):
        S += layer(l)
    for i in range(n_mtp):
        l = L + i
        p = f"model.layers.{l}."
        S += [(p + "enorm.weight", (d,), "norm"), (p + "hnorm.weight", (d,), "norm"),
              (p + "eh_proj.weight", (d, 2 * d), "mat16")]
        S += layer(l)
        S.append((p + "shared_head.norm.weight", (d,), "norm"))
        if mtp_copies:
            S.append((p + "embed_tokens.weight", (V, d), "copy:model.embed_tokens.weight"))
            S.append((p + "shared_head.head.weight", (V, d), "copy:" + ("model.embed_tokens.weight" if tied else "lm_head.weight")))
    return S


def draw(name, shape, seed, std):
    g = torch.Generator().manual_seed((seed * 1000003 + zlib.crc32(name.encode())) % (1 << 63))
    return torch.randn(shape, generator=g, dtype=torch.float32).mul_(std)


def quant_fp8_block(w):
    """w [out,in] fp32 -> (F8_E4M3 [out,in], F32 scales [ceil(out/128), ceil(in/128)]); partial edge blocks."""
    o, i = w.shape
    bo, bi = -(-o // BLOCK), -(-i // BLOCK)
    pad = torch.zeros(bo * BLOCK, bi * BLOCK, dtype=torch.float32)
    pad[:o, :i] = w
    blocks = pad.view(bo, BLOCK, bi, BLOCK)
    s = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-4) / FP8_MAX
    q = (blocks / s[:, None, :, None]).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.view(bo * BLOCK, bi * BLOCK)[:o, :i].contiguous(), s.contiguous()


def nbytes_on_disk(shape, kind, fp8):
    n = math.prod(shape)
    if kind == "bias0":
        return 4 * n
    if kind == "mat" and fp8:
        return n + 4 * (-(-shape[0] // BLOCK)) * (-(-shape[1] // BLOCK))
    return 2 * n


def write_model(a):
    c = json.load(open(a.config))
    std = a.std if a.std is not None else c.get("initializer_range", 0.02)
    specs = tensor_specs(c, mtp=not a.no_mtp, mtp_copies=not a.no_mtp_copies)
    # shard plan (deterministic from the shapes)
    limit = a.shard_mb << 20
    shards, cur, size = [], [], 0
    for s in specs:
        b = nbytes_on_disk(s[1], s[2], a.fp8)
        if cur and size + b > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(s)
        size += b
    if cur:
        shards.append(cur)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(a.out, f))
    n = len(shards)
    weight_map, total, t0 = {}, 0, time.time()
    cache = {}  # tensors a later copy: refers to (embed / head), kept until written
    copy_src = {k.split(":", 1)[1] for _, _, k in specs if k.startswith("copy:")}
    counts = {"F8_E4M3": 0, "BF16": 0, "F32": 0}
    for si, shard in enumerate(shards):
        fname = "model.safetensors" if n == 1 else f"model-{si + 1:05d}-of-{n:05d}.safetensors"
        tensors = {}
        for name, shape, kind in shard:
            if kind.startswith("copy:"):
                tensors[name] = cache[kind[5:]].clone()
            elif kind == "norm":
                tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
            elif kind == "zero16":
                tensors[name] = torch.zeros(shape, dtype=torch.bfloat16)
            elif kind == "bias0":
                tensors[name] = torch.zeros(shape, dtype=torch.float32)
            elif kind == "mat" and a.fp8:
                q, s = quant_fp8_block(draw(name, shape, a.seed, std))
                tensors[name] = q
                tensors[name[: -len("weight")] + "weight_scale_inv"] = s
            else:  # mat, mat16
                tensors[name] = draw(name, shape, a.seed, std).to(torch.bfloat16)
            if name in copy_src:
                cache[name] = tensors[name]
        for k, v in tensors.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
            counts[{torch.float8_e4m3fn: "F8_E4M3", torch.bfloat16: "BF16", torch.float32: "F32"}[v.dtype]] += 1
        save_file(tensors, os.path.join(a.out, fname), metadata={"format": "pt"})
        print(f"make_bench_model: {fname}: {len(tensors)} tensors ({time.time() - t0:.1f} s)", file=sys.stderr)
        del tensors
    if n > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    cfg = dict(c)
    cfg["torch_dtype"] = "bfloat16"
    cfg.pop("quantization_config", None)
    if a.fp8:
        cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                      "weight_block_size": [BLOCK, BLOCK]}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tok = os.path.join(ROOT, "models", "deepseek-v3")
    for t in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tok, t), os.path.join(a.out, t))
    with open(os.path.join(a.out, "bench_model.json"), "w") as f:
        json.dump({"generator": "bench/make_bench_model.py", "config": os.path.relpath(a.config, ROOT)
                   if os.path.abspath(a.config).startswith(ROOT) else a.config, "seed": a.seed, "std": std,
                   "fp8": a.fp8, "mtp": not a.no_mtp, "mtp_copies": not a.no_mtp_copies,
                   "bytes": total, "tensors": counts}, f, indent=2)
        f.write("\n")
    print(f"make_bench_model: {a.out}: {sum(counts.values())} tensors {counts}, {total / 1e9:.3f} GB, "
          f"{n} shard(s), {time.time() - t0:.1f} s", file=sys.stderr)


def check(a):
    import numpy as np
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import DeepseekV3ForCausalLM
    cfg = json.load(open(os.path.join(a.out, "config.json")))
    N = cfg["num_hidden_layers"]
    D = cfg.get("num_nextn_predict_layers") or 0
    mtp_prefixes = tuple(f"model.layers.{N + k}." for k in range(D))
    fp8 = "quantization_config" in cfg
    ids = [(7 + 9973 * i) % cfg["vocab_size"] for i in range(8)]
    ref = None
    if not fp8:
        torch.set_num_threads(2)
        model, info = DeepseekV3ForCausalLM.from_pretrained(a.out, dtype=torch.float32, output_loading_info=True)
        missing = sorted(info.get("missing_keys", []))
        unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(mtp_prefixes)]
        mism = info.get("mismatched_keys", [])
        if missing or unexpected or mism:
            raise SystemExit(f"make_bench_model --check: transformers missing {missing[:5]} unexpected {unexpected[:5]} "
                             f"mismatched {list(mism)[:5]}")
        model.eval()
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        print(f"make_bench_model --check: transformers {transformers.__version__} loads {a.out} "
              f"(no missing / unexpected weights; {len(info.get('unexpected_keys', []))} MTP tensors dropped)",
              file=sys.stderr)
        del model
    dsv3 = os.path.join(ROOT, "dsv3")
    if os.path.exists(dsv3):
        with tempfile.TemporaryDirectory() as t:
            out = os.path.join(t, "l.npy")
            r = subprocess.run([dsv3, "logits", "--model", a.out, "--ids", ",".join(map(str, ids)), "--out", out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"make_bench_model --check: dsv3 logits failed: {r.stderr.strip()}")
            got = np.load(out)
        if not np.isfinite(got).all():
            raise SystemExit("make_bench_model --check: dsv3 logits not finite")
        msg = f"dsv3 logits OK, shape {got.shape}, max |logit| {np.abs(got).max():.4g}"
        if ref is not None:
            d = np.abs(got.astype(np.float64) - ref)
            bad = int((d > 1e-2 + 1e-2 * np.abs(ref)).sum())
            msg += f", max |dsv3 - transformers| {d.max():.3g}"
            if bad:
                raise SystemExit(f"make_bench_model --check: {bad} logits differ from transformers ({msg})")
        print(f"make_bench_model --check: {msg}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "small.json"))
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=None)
    ap.add_argument("--no-mtp", action="store_true")
    ap.add_argument("--no-mtp-copies", action="store_true")
    ap.add_argument("--shard-mb", type=int, default=1024)
    ap.add_argument("--check", action="store_true", help="after writing, load in transformers / dsv3")
    ap.add_argument("--check-only", action="store_true", help="only run the checks on an existing --out")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if not a.check_only:
        write_model(a)
    if a.check or a.check_only:
        check(a)


if __name__ == "__main__":
    main()
