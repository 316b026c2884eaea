#!/usr/bin/env python3
"""Decode / prefill benchmark, dsv3 vs llama.cpp (driven by bench/decode_bench.sh).

    decode_bench.py bytes MODEL_DIR|FILE.gguf [--ctx 64.5]      bytes read per decoded token, by part
    decode_bench.py run --models DIR --llama-bench BIN --dsv3 BIN --membw BIN --out results.json
                        [--rounds 5] [--llama-reps 3] [--threads 2]
    decode_bench.py write results.json [--perf docs/PERF.md] [--command "..."]

run: R rounds, each: membw (2 threads), then llama-bench (-p 512 -n 128 -r LLAMA_REPS -o json) on the GGUF
BF16, dsv3 generate on the BF16 folder, llama-bench on the GGUF Q8_0, dsv3 on the FP8 folder, llama-bench on
the Q8_0 GGUF with BF16 embedding + lm_head, so that the engines see the same load. dsv3 per model: prefill
(512 ids, --max-tokens 1), decode (1 id, --max-tokens 128 --ignore-eos --temperature 0), decode again with
OMP_WAIT_POLICY=active and with --speculative mtp. Every sample is kept; write reports medians and min-max.

Bytes per decoded token (the roofline numerator), read from the files themselves:
  every tensor of the main model, once, except: the embedding (one row), the routed experts (K of E per MoE
  layer: the expected number of distinct experts one token reads is K), MTP layers (not run in plain decode).
  dsv3 keeps kv_b_proj as an fp32 copy (absorbed attention: W_UK, W_UV), counted at 4 bytes per element.
  llama.cpp: the GGUF tensors (token_embd one row, *_exps K/E of each), router in F32 as stored.
  plus the latent KV cache at the mean context of the decode run: L x (kv_lora + rope) x bytes per element
  (llama.cpp f16 K cache, the V of MLA is a view of it; dsv3 --cache f32 default) x mean context (64.5 for
  128 tokens from an empty context). Activations, logits and the sampler are not counted.
roofline fraction = tok/s x bytes/token / (best membw GB/s over the run).
"""
import argparse
import datetime
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------------------
# bytes per decoded token

def st_tensors(d):
    """{name: (dtype, shape, nbytes)} of every *.safetensors in folder d (headers only)."""
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            h = json.loads(fh.read(n))
        for k, v in h.items():
            if k == "__metadata__":
                continue
            a, b = v["data_offsets"]
            out[k] = (v["dtype"], v["shape"], b - a)
    return out


def hf_bytes(d, ctx, kv_elem_bytes=4):
    c = json.load(open(os.path.join(d, "config.json")))
    L, V = c["num_hidden_layers"], c["vocab_size"]
    E, K = c.get("n_routed_experts") or 0, c.get("num_experts_per_tok") or 0
    parts = {"embedding row": 0, "lm_head": 0, "attention": 0, "dense MLP": 0, "router": 0, "shared experts": 0,
             "routed experts (K of E)": 0, "norms": 0}
    for name, (dt, shape, nb) in st_tensors(d).items():
        m = re.match(r"model\.layers\.(\d+)\.", name)
        if m and int(m.group(1)) >= L:
            continue  # MTP module: not run in plain decode
        if name == "model.embed_tokens.weight":
            parts["embedding row"] += nb / V
        elif name == "lm_head.weight":
            parts["lm_head"] += nb
        elif "norm" in name:
            parts["norms"] += nb
        elif ".self_attn." in name:
            if "kv_b_proj.weight" in name and not name.endswith("_scale_inv"):
                nb = 4 * shape[0] * shape[1]  # fp32 copy (dsv3_fwd_kvb)
            elif "kv_b_proj.weight_scale_inv" in name:
                nb = 0
            parts["attention"] += nb
        elif ".mlp.experts." in name:
            parts["routed experts (K of E)"] += nb * K / E
        elif ".mlp.shared_experts." in name:
            parts["shared experts"] += nb
        elif ".mlp.gate." in name:
            parts["router"] += nb
        elif ".mlp." in name:
            parts["dense MLP"] += nb
        else:
            raise SystemExit(f"decode_bench bytes: unclassified tensor {name}")
    parts["KV cache"] = L * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * kv_elem_bytes * ctx
    return parts


def gguf_bytes(path, ctx, kv_elem_bytes=2):
    sys.path.insert(0, os.environ.get("GGUF_PY", "/work/peers/llama.cpp/gguf-py"))
    from gguf import GGUFReader
    r = GGUFReader(path)

    def field(suffix):
        for k, f in r.fields.items():
            if k.endswith(suffix):
                return int(f.parts[f.data[0]][0])
        raise SystemExit(f"decode_bench bytes: {path}: no {suffix}")

    L, E, K = field(".block_count"), field(".expert_count"), field(".expert_used_count")
    kvl, rope = field(".attention.kv_lora_rank"), field(".rope.dimension_count")
    parts = {"embedding row": 0, "lm_head": 0, "attention": 0, "dense MLP": 0, "router": 0, "shared experts": 0,
             "routed experts (K of E)": 0, "norms": 0}
    for t in r.tensors:
        n, nb = t.name, int(t.n_bytes)
        if n == "token_embd.weight":
            parts["embedding row"] += nb / int(t.shape[1])
        elif n == "output.weight":
            parts["lm_head"] += nb
        elif "norm" in n:
            parts["norms"] += nb
        elif ".attn_" in n:
            parts["attention"] += nb
        elif "_exps" in n:
            parts["routed experts (K of E)"] += nb * K / E
        elif "_shexp" in n:
            parts["shared experts"] += nb
        elif "ffn_gate_inp" in n or "exp_probs_b" in n:
            parts["router"] += nb
        elif ".ffn_" in n:
            parts["dense MLP"] += nb
        else:
            raise SystemExit(f"decode_bench bytes: unclassified tensor {n}")
    parts["KV cache"] = L * (kvl + rope) * kv_elem_bytes * ctx
    return parts


def bytes_per_token(path, ctx):
    p = gguf_bytes(path, ctx) if path.endswith(".gguf") else hf_bytes(path, ctx)
    return sum(p.values()), p


# ---------------------------------------------------------------------------------------------------------
# run

def sh(cmd, env=None):
    # errors="replace": dsv3 generate --json has printed invalid UTF-8 in "text" (a byte-level token cut in
    # the middle of a character); the numbers are all we read.
    r = subprocess.run(cmd, capture_output=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"decode_bench: {' '.join(cmd[:3])}... failed ({r.returncode}):\n"
                         f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r.stdout.decode(errors="replace")


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


LLAMA = [("BF16", "small-bf16.gguf"), ("Q8_0", "small-q8_0.gguf"), ("Q8_0+BF16 head", "small-q8_0-bf16head.gguf")]
DSV3 = [("BF16", "small-bf16"), ("FP8", "small-fp8")]
# (llama.cpp weights, dsv3 weights, label) compared in the table
PAIRS = [("BF16", "BF16", "BF16 vs BF16"), ("Q8_0", "FP8", "8-bit: Q8_0 vs FP8"),
         ("Q8_0+BF16 head", "FP8", "8-bit: Q8_0 with BF16 embedding + lm_head vs FP8")]


def run(a):
    # dsv3: OMP_WAIT_POLICY=passive (sleeping OpenMP waiters; see forward_bench.sh). llama.cpp: its own default
    # environment (ggml's OpenMP threads spin-wait; passive costs it 15-25 % of decode speed here), unless
    # LLAMA_OMP_WAIT_POLICY is set.
    denv = dict(os.environ)
    denv["OMP_WAIT_POLICY"] = os.environ.get("DSV3_OMP_WAIT_POLICY", "passive")
    lenv = dict(os.environ)
    lenv.pop("OMP_WAIT_POLICY", None)
    if os.environ.get("LLAMA_OMP_WAIT_POLICY"):
        lenv["OMP_WAIT_POLICY"] = os.environ["LLAMA_OMP_WAIT_POLICY"]
    cfg = json.load(open(os.path.join(a.models, "small-bf16", "config.json")))
    prompt = ",".join(str((7 + 9973 * i) % 128000) for i in range(512))
    res = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "threads": a.threads, "rounds": a.rounds, "llama_reps": a.llama_reps, "vocab": cfg["vocab_size"],
           "dsv3_omp_wait_policy": denv["OMP_WAIT_POLICY"], "llama_omp_wait_policy": lenv.get("OMP_WAIT_POLICY", "(unset)"),
           "membw": [], "load": [], "samples": {}, "mtp": {}}

    def add(key, v):
        res["samples"].setdefault(key, []).append(v)
        print(f"  {key}: {v:.2f}", file=sys.stderr)

    def dsv3(model, ids, n, *extra, env=denv):
        return json.loads(sh([a.dsv3, "generate", "--model", model, "--ids", ids, "--max-tokens", str(n), "--ignore-eos",
                              "--temperature", "0", "--json", "--quiet", "--threads", str(a.threads), *extra], env))

    def llama(w, gguf):
        out = sh([a.llama_bench, "-m", os.path.join(a.models, gguf), "-t", str(a.threads), "-p", "512", "-n", "128",
                  "-r", str(a.llama_reps), "-o", "json"], lenv)
        for t in json.loads(out):
            kind = "prefill" if t["n_prompt"] else "decode"
            for ts in t["samples_ts"]:
                add(f"llama.cpp {w} {kind}", ts)
            res.setdefault("llama_build", {k: t.get(k) for k in ("build_commit", "cpu_info", "type_k", "type_v",
                                                                  "n_batch", "n_ubatch", "flash_attn", "poll")})

    def ours(w, hf):
        model = os.path.join(a.models, hf)
        add(f"dsv3 {w} prefill", dsv3(model, prompt, 1)["prefill_tokens_per_second"])
        add(f"dsv3 {w} decode", dsv3(model, "5", 128)["tokens_per_second"])
        add(f"dsv3 {w} decode active", dsv3(model, "5", 128, env=dict(denv, OMP_WAIT_POLICY="active"))["tokens_per_second"])
        o = dsv3(model, "5", 128, "--speculative", "mtp")
        add(f"dsv3 {w} decode mtp", o["tokens_per_second"])
        res["mtp"].setdefault(w, []).append([o["accepted"], o["drafted"]])

    for r in range(a.rounds):
        res["load"].append(loadavg())
        print(f"decode_bench: round {r + 1}/{a.rounds} (load {res['load'][-1]:.2f})", file=sys.stderr)
        mb = json.loads(sh([a.membw, "--threads", str(a.threads), "--reps", "5", "--json"]))
        res["membw"].append(mb)
        print(f"  membw: best {mb['best_gbps']:.2f} median {mb['median_gbps']:.2f} GB/s", file=sys.stderr)
        llama(*LLAMA[0])
        ours(*DSV3[0])
        llama(*LLAMA[1])
        ours(*DSV3[1])
        llama(*LLAMA[2])
    res["load"].append(loadavg())
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    res["bytes_per_token"] = {}
    for eng, lst in (("llama.cpp", LLAMA), ("dsv3", DSV3)):
        for w, f in lst:
            tot, parts = bytes_per_token(os.path.join(a.models, f), a.ctx)
            res["bytes_per_token"][f"{eng} {w}"] = {"total": tot, "parts": parts}
    json.dump(res, open(a.out, "w"), indent=1)
    print(f"decode_bench: wrote {a.out}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# write

def med(x):
    return statistics.median(x)


def fmt(x):
    return f"{x:.0f}" if x >= 20 else f"{x:.1f}"


def write(a):
    res = json.load(open(a.results))
    S, B = res["samples"], res["bytes_per_token"]
    bw = max(m["best_gbps"] for m in res["membw"])
    bw_lo = min(m["median_gbps"] for m in res["membw"])
    bw_hi = max(m["median_gbps"] for m in res["membw"])

    def cell(k):
        m = med(S[k])
        f = (lambda x: f"{x:.0f}") if m >= 100 else (lambda x: f"{x:.1f}")
        return f"{f(m)} ({f(min(S[k]))}–{f(max(S[k]))})"

    rows = []
    for kind, test in (("prefill", "pp512"), ("decode", "tg128")):
        for lw, dw, label in PAIRS:
            kl, kd = f"llama.cpp {lw} {kind}", f"dsv3 {dw} {kind}"
            ml, md = med(S[kl]), med(S[kd])
            row = f"| {test} | {label} | {cell(kl)} | {cell(kd)} | {md / ml:.2f}x |"
            if kind == "decode":
                bl, bd = B[f"llama.cpp {lw}"]["total"], B[f"dsv3 {dw}"]["total"]
                row += (f" {bl / 1e6:.0f} / {bd / 1e6:.0f} | {ml * bl / 1e9:.1f} / {md * bd / 1e9:.1f} |"
                        f" {100 * ml * bl / 1e9 / bw:.0f}% / {100 * md * bd / 1e9 / bw:.0f}% |")
            else:
                row += " | | |"
            rows.append(row)
    extra = []
    for w in ("BF16", "FP8"):
        acc = res["mtp"][w]
        a_, d_ = sum(x[0] for x in acc), sum(x[1] for x in acc)
        extra.append(f"- dsv3 {w}, decode with `--speculative mtp` (1 draft per step): {cell(f'dsv3 {w} decode mtp')} tok/s, "
                     f"{a_} of {d_} drafts accepted ({100 * a_ / max(d_, 1):.0f}%).")
    for w in ("BF16", "FP8"):
        extra.append(f"- dsv3 {w}, decode with OMP_WAIT_POLICY=active (spinning waiters, as llama.cpp runs): "
                     f"{cell(f'dsv3 {w} decode active')} tok/s (passive: {med(S[f'dsv3 {w} decode']):.1f}).")
    cols = [("llama.cpp BF16", "llama.cpp BF16"), ("dsv3 BF16", "dsv3 BF16"), ("llama.cpp Q8_0", "llama.cpp Q8_0"),
            ("llama.cpp Q8_0+BF16 head", "llama.cpp Q8_0 + BF16 head"), ("dsv3 FP8", "dsv3 FP8")]
    parts_tab = ["| part | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for p in list(B["dsv3 BF16"]["parts"].keys()) + ["total"]:
        v = [B[k]["total"] if p == "total" else B[k]["parts"][p] for k, _ in cols]
        parts_tab.append(f"| {p} | " + " | ".join(f"{x / 1e6:.2f}" for x in v) + " |")
    n_l, n_d = len(S["llama.cpp BF16 decode"]), len(S["dsv3 BF16 decode"])
    loads = res["load"]
    text = f"""Command: `{a.command}` (run {res['started'][:10]} {res['started'][11:16]}–{res['finished'][11:16]} UTC).
llama.cpp: {a.llama_version}, built from source with `cmake -DGGML_NATIVE=ON -DLLAMA_CURL=OFF` (AVX2/FMA,
OpenMP); `llama-bench -t {res['threads']} -p 512 -n 128 -r {res['llama_reps']} -o json` (each test after llama-bench's warm-up
run; K/V cache {res['llama_build'].get('type_k')}, n_ubatch {res['llama_build'].get('n_ubatch')}), OMP_WAIT_POLICY {res['llama_omp_wait_policy']}.
dsv3: `dsv3 generate --threads {res['threads']} --temperature 0 --ignore-eos --json` (latent KV cache f32, one fresh process per
sample): prefill = 512 prompt ids with `--max-tokens 1` (`prefill_tokens_per_second`), decode = 1 prompt id with
`--max-tokens 128` (`tokens_per_second`: 127 decode steps / their time; llama-bench's tg128 also starts from
an empty context), OMP_WAIT_POLICY={res['dsv3_omp_wait_policy']}. {res["rounds"]} round{"s" if res["rounds"] != 1 else ""}, each: membw, llama.cpp BF16, dsv3 BF16,
llama.cpp Q8_0, dsv3 FP8, llama.cpp Q8_0+BF16 head, so every engine sees the same mix of load ({n_l} llama.cpp
and {n_d} dsv3 samples per cell; load average {min(loads):.1f}–{max(loads):.1f}, the benchmark's own 2 threads included).
Model: configs/small.json (0.87B total parameters, vocab 129280, 12 layers, 32 routed experts top-4, 1 MTP layer),
seeded random weights from `bench/make_bench_model.py` (std 0.02). BF16: the BF16 folder, and the GGUF BF16
that llama.cpp's `convert_hf_to_gguf.py --outtype bf16` makes of it. 8-bit: our FP8 folder (same underlying
weights, the official DeepSeek-V3 layout: e4m3 with 128x128 block scales, embedding + lm_head + router BF16)
against `convert_hf_to_gguf.py --outtype q8_0` of the BF16 folder (every matrix Q8_0, embedding and lm_head
included), and against `llama-quantize --token-embedding-type bf16 --output-tensor-type bf16` of the GGUF BF16
to Q8_0 (the FP8 checkpoint's split: BF16 embedding + lm_head, 8-bit elsewhere; 390 vs 392 MB per token).

Cells: median tok/s (min–max). dsv3/llama.cpp: ratio of the medians. MB/token: what one decoded token reads
(table below). Effective GB/s = median tok/s × bytes/token. Roofline = that / {bw:.1f} GB/s, the best 2-thread
streaming read of `bench/membw.c` (4 streams per thread, 1 GiB) over the run; its per-round medians ranged
{bw_lo:.1f}–{bw_hi:.1f} GB/s (other tenants of the host).

| test | weights (llama.cpp vs dsv3) | llama.cpp tok/s | dsv3 tok/s | dsv3/llama.cpp | MB/token (llama.cpp / dsv3) | effective GB/s | DRAM roofline |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(extra)}

Bytes read per decoded token (MB, 1 MB = 1e6 bytes), from the files' tensor sizes (`bench/decode_bench.py bytes
FILE`): the embedding is one row, routed experts K = 4 of E = 32 per MoE layer (the expected number of distinct
experts one token reads), the MTP layer is not run by plain decode, dsv3 counts kv_b_proj as the fp32 copy
its absorbed attention reads, llama.cpp's router is F32 as stored; KV cache = 12 layers × 288 latent values ×
(llama.cpp f16: 2, dsv3 f32: 4 bytes) × 64.5 (mean context of 128 tokens from an empty context):

{chr(10).join(parts_tab)}
"""
    if a.notes and os.path.exists(a.notes):
        text += "\n" + open(a.notes).read().strip() + "\n"
    p = a.perf
    s = open(p).read()
    start, end = "<!-- decode-bench:begin -->", "<!-- decode-bench:end -->"
    if start not in s:
        s = s.rstrip() + "\n\n## Decode and prefill vs llama.cpp\n\n" + start + "\n" + end + "\n"
    i = s.index(start) + len(start)
    j = s.index(end, i)
    s = s[:i] + "\n" + text + s[j:]
    open(p, "w").write(s)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bytes")
    b.add_argument("path")
    b.add_argument("--ctx", type=float, default=64.5)
    r = sub.add_parser("run")
    r.add_argument("--models", required=True)
    r.add_argument("--llama-bench", required=True)
    r.add_argument("--dsv3", default=os.path.join(ROOT, "dsv3"))
    r.add_argument("--membw", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--llama-reps", type=int, default=3)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--ctx", type=float, default=64.5)
    w = sub.add_parser("write")
    w.add_argument("results")
    w.add_argument("--perf", default=os.path.join(ROOT, "docs", "PERF.md"))
    w.add_argument("--command", default="bench/decode_bench.sh")
    w.add_argument("--llama-version", default="unknown")
    w.add_argument("--notes", default=None, help="a Markdown file appended after the tables")
    a = ap.parse_args()
    if a.cmd == "bytes":
        tot, parts = bytes_per_token(a.path, a.ctx)
        for k, v in parts.items():
            print(f"{k:28s} {v / 1e6:10.3f} MB")
        print(f"{'total':28s} {tot / 1e6:10.3f} MB")
    elif a.cmd == "run":
        run(a)
    else:
        write(a)


if __name__ == "__main__":
    main()
