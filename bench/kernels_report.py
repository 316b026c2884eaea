"""Markdown for the `kernels` section of docs/PERF.md from bench/kernels_bench.sh's results.jsonl.
    kernels_report.py RESULTS.jsonl DATE THREADS"""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
date, th = sys.argv[2], sys.argv[3]
peaks = [r for r in rows if r["kind"] == "peak"]
isa = peaks[0]["isa"] if peaks else "?"
pk = {k: max(p[k] for p in peaks) for k in ("fp32_fma_ymm", "fp32_fma_zmm", "bf16_vdpbf16ps_zmm", "bf16_amx_tdpbf16ps")}
membw = max(r["best_gbps"] for r in rows if r["kind"] == "membw")
bf16_peak_name = "bf16_amx_tdpbf16ps" if pk["bf16_amx_tdpbf16ps"] > 0 else "bf16_vdpbf16ps_zmm"
bf16_peak = pk[bf16_peak_name]
f32_peak = pk["fp32_fma_zmm"] if pk["fp32_fma_zmm"] > 0 else pk["fp32_fma_ymm"]
out = []
w = out.append
w("## Kernels at the machine's limits (GEMM, GEMV, training step)")
w("")
w(f"Command: `bench/kernels_bench.sh` ({date}, {th} threads, OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=3000, level `{isa}`; raw results in "
  "`bench/out/kernels/results.jsonl`). Every figure is a median wall time of calls after a warm-up (0.5 s of calls), "
  "one engine at a time; the machine is shared, so the limits are measured in the same run (before and after the "
  "GEMMs, best of the two).")
w("")
w("**Limits measured in this run** (`dsv3 bench peak`: independent chains on every thread, no memory traffic; "
  "`bench/membw.c`: 4 streams per thread over 1 GiB):")
w("")
w("| limit | value |")
w("|---|---|")
for k, v in pk.items():
    w(f"| {k} | {v:.0f} GFLOP/s |" if v > 0 else f"| {k} | not available |")
w(f"| DRAM read ({th} threads) | {membw:.1f} GB/s |")
w("")
def get(kind, **kw):
    for r in rows:
        if r["kind"] == kind and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None
g = [r for r in rows if r["kind"] == "gemm" and r["impl"] == "dsv3"]
shapes = []
for r in g:
    key = (r["m"], r["n"], r["k"], r["form"])
    if key not in shapes:
        shapes.append(key)
w(f"**GEMM** GFLOP/s (training forms: fwd Y = X·Wᵀ, dgrad dX = dY·W, wgrad dW = dYᵀ·X; W [N, K]). bf16: dsv3's "
  f"BF16 GEMM (inputs rounded to bf16, fp32 sums; `--act bf16` for fwd), oneDNN's and torch's bf16 matmul "
  f"(torch's output is bf16). % of peak: of {bf16_peak_name} ({bf16_peak:.0f}) for bf16/fp8, of the fp32 FMA peak "
  f"({f32_peak:.0f}) for f32. fp8: dsv3 with E4M3 128x128-block weights (decoded to bf16 in the pack). Every engine "
  f"packs or reorders W inside each call (plain row-major operands), except the column \"bf16, W packed once\": dsv3 "
  f"reading W's pack from its packed-weight cache (`--pack cached`, kernels/cpu/wpack.h), the steady state of a loaded "
  f"model's prefill and of a weight used twice in a training step.")
w("")
w("| M | N x K | form | dsv3 bf16 | % peak | dsv3 bf16, W packed once | % peak | oneDNN bf16 | torch bf16 | dsv3 / oneDNN | dsv3 fp8 | dsv3 f32 | % peak | oneDNN f32 | torch f32 | dsv3 / oneDNN f32 | dsv3 paths |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
ratios_bf, ratios_f, fr_bf, fr_f, rt_bf, rt_f, fr_c, rc_bf = [], [], [], [], [], [], [], []
for (M, N, K, f) in shapes:
    db = get("gemm", impl="dsv3", dtype="bf16", m=M, n=N, k=K, form=f)
    dc = get("gemm", impl="dsv3", dtype="bf16c", m=M, n=N, k=K, form=f)
    df = get("gemm", impl="dsv3", dtype="f32", m=M, n=N, k=K, form=f)
    d8 = get("gemm", impl="dsv3", dtype="fp8", m=M, n=N, k=K, form=f)
    ob = get("gemm", impl="onednn", dtype="bf16", m=M, n=N, k=K, form=f)
    of = get("gemm", impl="onednn", dtype="f32", m=M, n=N, k=K, form=f)
    tb = get("gemm", impl="torch", dtype="bf16", m=M, n=N, k=K, form=f)
    tf = get("gemm", impl="torch", dtype="f32", m=M, n=N, k=K, form=f)
    c = lambda r: f"{r['gflops']:.0f}" if r else "–"
    rb = db["gflops"] / ob["gflops"] if db and ob else None
    rf = df["gflops"] / of["gflops"] if df and of else None
    if db and tb: rt_bf.append(db["gflops"] / tb["gflops"])
    if df and tf: rt_f.append(df["gflops"] / tf["gflops"])
    if rb: ratios_bf.append(rb)
    if rf: ratios_f.append(rf)
    if db: fr_bf.append(db["gflops"] / bf16_peak)
    if dc: fr_c.append(dc["gflops"] / bf16_peak)
    if dc and ob: rc_bf.append(dc["gflops"] / ob["gflops"])
    pc = f"{100 * dc['gflops'] / bf16_peak:.0f}%" if dc else "–"
    if df: fr_f.append(df["gflops"] / f32_peak)
    paths = ", ".join(sorted({r["path"] for r in (db, df, d8) if r}))
    w(f"| {M} | {N} x {K} | {f} | {c(db)} | {100 * db['gflops'] / bf16_peak:.0f}% | {c(dc)} | {pc} | {c(ob)} | {c(tb)} | "
      f"{(f'{rb:.2f}x' if rb else '–')} | {c(d8)} | {c(df)} | {100 * df['gflops'] / f32_peak:.0f}% | {c(of)} | {c(tf)} | "
      f"{(f'{rf:.2f}x' if rf else '–')} | {paths} |")
w("")
if ratios_bf:
    w(f"Medians over the table: dsv3 bf16 at {100 * statistics.median(fr_bf):.0f}% of the bf16 peak and "
      f"{statistics.median(ratios_bf):.2f}x oneDNN; dsv3 f32 at {100 * statistics.median(fr_f):.0f}% of the fp32 peak "
      f"and {statistics.median(ratios_f):.2f}x oneDNN. Against torch.matmul (its bundled oneDNN, newer than Debian's): "
      f"bf16 {statistics.median(rt_bf):.2f}x, f32 {statistics.median(rt_f):.2f}x (medians of the per-shape ratios)." +
      (f" With W packed once (fwd and dgrad cells): {100 * statistics.median(fr_c):.0f}% of the bf16 peak, "
       f"{statistics.median(rc_bf):.2f}x oneDNN (which reorders per call)." if fr_c and rc_bf else ""))
    w("")
gv = [r for r in rows if r["kind"] == "gemv" and r["impl"] == "dsv3"]
gshapes = []
for r in gv:
    if (r["n"], r["k"]) not in gshapes:
        gshapes.append((r["n"], r["k"]))
w(f"**GEMV** (M = 1, W read from DRAM: enough copies cycled that the working set is >= 256 MiB), GB/s of weights, "
  f"% of the DRAM read bandwidth ({membw:.1f} GB/s), and FP8 / BF16 in weights per second:")
w("")
w("| W (N x K) | dsv3 bf16 | % DRAM | dsv3 fp8 | % DRAM | fp8 / bf16 weights/s | dsv3 f32 | % DRAM | torch bf16 | torch f32 | path |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
for (N, K) in gshapes:
    b = get("gemv", impl="dsv3", weights="bf16", n=N, k=K)
    e = get("gemv", impl="dsv3", weights="fp8", n=N, k=K)
    f = get("gemv", impl="dsv3", weights="f32", n=N, k=K)
    tb = get("gemv", impl="torch", dtype="bf16", n=N, k=K)
    tf = get("gemv", impl="torch", dtype="f32", n=N, k=K)
    p = lambda r: f"{100 * r['gbps'] / membw:.0f}%"
    w(f"| {N} x {K} | {b['gbps']:.1f} | {p(b)} | {e['gbps']:.1f} | {p(e)} | {e['weights_per_s'] / b['weights_per_s']:.2f}x | "
      f"{f['gbps']:.1f} | {p(f)} | {tb['gbps'] if tb else '–'} | {tf['gbps'] if tf else '–'} | {b['path']} |")
w("")
st = {(r["impl"], r["prec"], r.get("cfg", "tiny"), int(r.get("fwd_only", 0))): r for r in rows if r["kind"] == "step"}
if st:
    w("**Training step** (B x T tokens; forward + backward without the optimizer, and forward + loss alone; dsv3 "
      "`bench/train_bench` with the fp32 backend or the bf16 one of `--precision bf16`, torch `bench/train_bench.py` "
      "(HF DeepseekV3ForCausalLM + MTP, eager) fp32 or bf16 autocast; best step by critical-path CPU time, wall in "
      "brackets):")
    w("")
    w("| config | B x T | precision | pass | dsv3 s / step | torch s / step | dsv3 / torch |")
    w("|---|---|---|---|---|---|---|")
    for cfg in ("tiny", "small"):
        for p in ("fp32", "bf16"):
            for fo in (0, 1):
                d, t = st.get(("dsv3", p, cfg, fo)), st.get(("torch", p, cfg, fo))
                if d and t:
                    w(f"| {cfg} | {d['B']} x {d['T']} | {p} | {'forward' if fo else 'forward + backward'} | "
                      f"{d['step_s_cpu_best']:.3f} ({d['step_s_wall_best']:.3f}) | {t['step_s_cpu_best']:.3f} "
                      f"({t['step_s_wall_best']:.3f}) | {t['step_s_cpu_best'] / d['step_s_cpu_best']:.2f}x |")
    w("")
print("\n".join(out))
