#!/usr/bin/env python3
"""Torch side of bench/forward_bench.sh (docs/PERF.md, section forward).

    forward_bench.py make CONFIG OUT_DIR       random HF checkpoint (fp32 safetensors) for CONFIG
    forward_bench.py time OUT_DIR T REPS THREADS
        HF transformers DeepseekV3ForCausalLM, fp32, eager attention + eager experts, torch CPU with
        THREADS threads, forward over the same T token ids as bench/forward_bench.c (same LCG), logits
        for every position; prints "T=<T> min_s=<s> median_s=<s> tok_s=<t/s>" (tok/s from the fastest run).
"""
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM


def ids_like_c(T, V):
    s, out = 12345, []
    for _ in range(T):
        s = (s * 1103515245 + 12345) & 0xFFFFFFFF
        out.append(3 + ((s >> 8) % (V - 3)))
    return torch.tensor([out])


def make(config_path, out_dir):
    torch.manual_seed(0)
    raw = json.load(open(config_path))
    raw["num_nextn_predict_layers"] = 0  # HF has no MTP; the main model is what is timed
    raw.pop("torch_dtype", None)
    cfg = DeepseekV3Config(**raw)
    model = DeepseekV3ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
        for L in model.model.layers[cfg.first_k_dense_replace:]:
            L.mlp.gate.weight.normal_(0, 0.3)
            L.mlp.gate.e_score_correction_bias.uniform_(0, 0.1)
    model.save_pretrained(out_dir)
    gc = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)


def timeit(out_dir, T, reps, threads):
    torch.set_num_threads(threads)
    model = DeepseekV3ForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                  attn_implementation="eager").eval()
    if hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation("eager")
    ids = ids_like_c(T, model.config.vocab_size)
    ts = []
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            ts.append(time.perf_counter() - t0)
    ts.sort()
    med = ts[len(ts) // 2]
    print(f"T={T} min_s={ts[0]:.4f} median_s={med:.4f} tok_s={T / ts[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        timeit(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
