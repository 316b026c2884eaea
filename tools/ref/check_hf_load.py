#!/usr/bin/env python3
"""Load a checkpoint folder written by `./dsv3 train` in HF transformers and compare its logits with
`./dsv3 logits` on the same ids.

    python3 tools/ref/check_hf_load.py RUN_DIR [--ids 1,5,17,...] [--dsv3 ./dsv3] [--tol-abs A --tol-rel R]

Loads DeepseekV3ForCausalLM.from_pretrained(RUN_DIR, dtype=float32, attn_implementation="eager") on CPU
with eager experts, and checks:
  - transformers accepts config.json and reports no MISSING weights (every parameter and every
    e_score_correction_bias buffer comes from the file) and no UNEXPECTED weights other than the MTP
    layers model.layers.{N..N+D-1}.* (HF has no MTP module and drops them, as it does for DeepSeek's
    own release);
  - the MTP layers' copies of the embedding and head equal model.embed_tokens / lm_head byte for byte;
  - the logits of HF (fp32, on the weights as stored, BF16 / FP8 dequantized) and of `dsv3 logits`
    agree: |d| <= tol_abs + tol_rel * |ref| everywhere (default 1e-5 + 1e-4 |ref|, the tolerance of
    the oracle tests, docs/ORACLE.md).
Exit status 0 when everything holds, 1 on a mismatch or a refusal (the reason is printed).
FP8 checkpoints: transformers' CPU fallback derives the block size from weight.shape / scale.shape
(docs/ORACLE.md section 6), which is right only when every FP8 weight is at most 128 x 128 or an exact
multiple of 128 in both dimensions; the script says so when that does not hold.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import DeepseekV3ForCausalLM


def fail(msg):
    print(f"check_hf_load: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def stored_tensors(d):
    """name -> (file, dtype string, shape) of every tensor in the checkpoint."""
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), "pt") as h:
            for k in h.keys():
                out[k] = f
    return out


def load_tensor(d, where, name):
    with safe_open(os.path.join(d, where[name]), "pt") as h:
        return h.get_tensor(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--ids", default=None, help="comma-separated ids (default: 12 ids spread over the vocabulary)")
    ap.add_argument("--dsv3", default=os.environ.get("DSV3", "./dsv3"))
    ap.add_argument("--tol-abs", type=float, default=1e-5)
    ap.add_argument("--tol-rel", type=float, default=1e-4)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    V, N, D = cfg["vocab_size"], cfg["num_hidden_layers"], cfg.get("num_nextn_predict_layers", 0) or 0
    if a.ids:
        ids = [int(x) for x in a.ids.split(",")]
    else:
        ids = [(7 + 37 * i) % V for i in range(12)]
    if any(not 0 <= x < V for x in ids):
        fail(f"ids must be in [0, {V})")

    where = stored_tensors(a.dir)
    mtp_prefixes = tuple(f"model.layers.{N + k}." for k in range(D))

    # MTP copies equal the shared tensors (DeepSeek's layout: each MTP layer stores both)
    for k in range(D):
        for copy, main in ((f"model.layers.{N + k}.embed_tokens.weight", "model.embed_tokens.weight"),
                           (f"model.layers.{N + k}.shared_head.head.weight", "lm_head.weight")):
            if copy not in where:
                fail(f"{copy} is not in the checkpoint")
            if not torch.equal(load_tensor(a.dir, where, copy), load_tensor(a.dir, where, main)):
                fail(f"{copy} differs from {main}")

    # transformers' own warnings (config keys it does not know, weights it drops) go to stderr as they are
    logging.basicConfig()
    try:
        model, info = DeepseekV3ForCausalLM.from_pretrained(a.dir, dtype=torch.float32, attn_implementation="eager",
                                                            output_loading_info=True)
    except Exception as e:  # a refusal: print what transformers said
        fail(f"transformers {transformers.__version__} refused {a.dir}: {type(e).__name__}: {e}")
    for fn in ("set_attn_implementation", "set_experts_implementation"):
        if hasattr(model, fn):
            getattr(model, fn)("eager")
    model.eval()
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(info.get("unexpected_keys", []))
    mismatched = sorted(str(x) for x in info.get("mismatched_keys", []))
    bad_unexpected = [k for k in unexpected if not k.startswith(mtp_prefixes)]
    if missing:
        fail(f"transformers reports {len(missing)} MISSING weights (left at random init): {missing[:8]}")
    if mismatched:
        fail(f"transformers reports shape-mismatched weights: {mismatched[:8]}")
    if bad_unexpected:
        fail(f"transformers reports UNEXPECTED weights outside the MTP layers: {bad_unexpected[:8]}")
    n_bias = sum(1 for k, _ in model.named_buffers() if k.endswith("e_score_correction_bias"))
    n_bias_file = sum(1 for k in where if k.endswith("e_score_correction_bias") and not k.startswith(mtp_prefixes))
    if n_bias != n_bias_file:
        fail(f"{n_bias_file} e_score_correction_bias tensors in the file, {n_bias} in the HF model")
    # the biases were loaded, not left at zero (a trained model has moved them)
    for k, b in model.named_buffers():
        if k.endswith("e_score_correction_bias"):
            ref = load_tensor(a.dir, where, k).float()
            if not torch.equal(b.float(), ref):
                fail(f"{k}: the HF buffer differs from the stored tensor")

    fp8 = (cfg.get("quantization_config") or {}).get("quant_method") == "fp8"
    if fp8:
        for k in where:
            if k.endswith("weight_scale_inv") and not k.startswith(mtp_prefixes):
                w = k[: -len("_scale_inv")]
                with safe_open(os.path.join(a.dir, where[w]), "pt") as h:
                    r, c = h.get_slice(w).get_shape()
                if not ((r <= 128 and c <= 128) or (r % 128 == 0 and c % 128 == 0)):
                    print(f"check_hf_load: note: {w} [{r}, {c}] is not a whole number of 128x128 blocks; "
                          "transformers' CPU FP8 fallback dequantizes it with another block size", file=sys.stderr)

    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()

    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "logits.npy")
        r = subprocess.run([a.dsv3, "logits", "--model", a.dir, "--ids", ",".join(map(str, ids)), "--out", out,
                            "--threads", "1"], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{a.dsv3} logits exited {r.returncode}: {r.stderr.strip()}")
        got = np.load(out)
    if got.shape != ref.shape:
        fail(f"dsv3 logits shape {got.shape}, HF {ref.shape}")
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    lim = a.tol_abs + a.tol_rel * np.abs(ref)
    worst = float(d.max())
    nbad = int((d > lim).sum())
    dtypes = {}
    for k in where:
        with safe_open(os.path.join(a.dir, where[k]), "pt") as h:
            dt = str(h.get_slice(k).get_dtype())
        dtypes[dt] = dtypes.get(dt, 0) + 1
    print(f"check_hf_load: {a.dir}: transformers {transformers.__version__}, torch {torch.__version__}; "
          f"tensors {dict(sorted(dtypes.items()))}; HF dropped {len(unexpected)} MTP tensors; "
          f"T={len(ids)} x V={V}: max |logit| {float(np.abs(ref).max()):.4g}, max |d| {worst:.3g} "
          f"(tolerance {a.tol_abs:g} + {a.tol_rel:g}|ref|)")
    if nbad:
        fail(f"{nbad} of {d.size} logits differ beyond the tolerance (max |d| {worst:.3g})")
    print("check_hf_load: OK")


if __name__ == "__main__":
    main()
