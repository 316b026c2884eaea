#!/usr/bin/env bash
# Training-step speed (issue 7 item 7): one forward + backward step of the pinned training loss
# (src/model/train.h; lambda 0.3, alpha 1e-4) over B rows of T tokens, dsv3 (C, fp32, dsv3_backend_cpu, naive and
# absorbed attention) against PyTorch eager on CPU (HF transformers modules + the MTP module and balance loss of
# tools/ref/make_grad_fixtures.py; fp32 and bf16 autocast), same threads, same B and T, in one run, one process
# at a time. Also: this machine's fp32 FMA peak (bench/train_bench --peak), the step-0 loss cross-check
# (dsv3 init exported to safetensors, loaded by torch), and a `perf record` profile of the dsv3 step.
# Writes the section "Training step (forward + backward)" of docs/PERF.md; raw JSON lines in bench/out/train/.
#   usage: bench/train_bench.sh            (env: THREADS, TINY_CFG, SMALL_CFG, TINY_B, TINY_T, SMALL_B, SMALL_T, STEPS, SMALL_STEPS,
#                                           BF16_STEPS, SMALL_BF16_STEPS, PERF=0 to skip the profiles,
#                                           REPORT_ONLY=1 to rewrite the section from the last results.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # sleep at OpenMP barriers (see bench/forward_bench.sh)
TH=${THREADS:-2}
export OMP_NUM_THREADS=$TH
TINY_B=${TINY_B:-8}; TINY_T=${TINY_T:-256}
SMALL_B=${SMALL_B:-1}; SMALL_T=${SMALL_T:-128}
TINY_CFG=${TINY_CFG:-configs/tiny.json}; SMALL_CFG=${SMALL_CFG:-configs/small.json}  # (override for a dry run)
STEPS=${STEPS:-3}; SMALL_STEPS=${SMALL_STEPS:-1}
# torch's bf16 matmuls are 10-100x slower than fp32 on this AVX2-only CPU (see the section): fewer timed steps
BF16_STEPS=${BF16_STEPS:-1}; SMALL_BF16_STEPS=${SMALL_BF16_STEPS:-1}
PERF=${PERF:-1}
OUT=bench/out/train
BUILD=${BUILD:-build/bench-train}
BIN=$BUILD/bench/train_bench
mkdir -p "$OUT"
make -s -j2 BUILD=$BUILD DSV3_BIN=$BUILD/dsv3 $BIN >/dev/null
RES=$OUT/results.jsonl
log() { echo "[train_bench $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)] $*" >&2; }
run() { # tag, command...: appends the JSON line(s) with "tag" added
  local tag=$1; shift
  log "$tag: $*"
  "$@" 2>>"$OUT/stderr.log" | while read -r l; do
    [[ $l == \{* ]] && echo "{\"tag\": \"$tag\", ${l#\{}" | tee -a "$RES" >&2
  done
}
dsv3run() { # tag, config, B, T, steps: the dsv3 modes in one process (one init); with PERF=1 under `perf record`,
  # sampling exactly the timed steps of the first mode (naive): the bench drives perf's control fifo
  local tag=$1 cfg=$2 b=$3 t=$4 n=$5 ctl=$OUT/perf.ctl ack=$OUT/perf.ack
  if [ "$PERF" != 1 ]; then run "$tag" "$BIN" "$cfg" "$b" "$t" "$n" naive,absorb,fwd; return; fi
  rm -f "$ctl" "$ack"; mkfifo "$ctl" "$ack"
  TRAIN_BENCH_PERF_CTL=$ctl run "$tag" perf record -q -D -1 --control "fifo:$ctl,$ack" -F 499 -o "$OUT/perf.$tag.data" \
    "$BIN" "$cfg" "$b" "$t" "$n" naive,absorb,fwd
  perf report -i "$OUT/perf.$tag.data" --no-children --sort symbol --stdio 2>/dev/null |
    sed -n 's/^ *\([0-9.]*\)% *\[[.k]\] *\([^ ]*\).*/\1 \2/p' >"$OUT/perf.$tag.txt"
  rm -f "$ctl" "$ack"
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then  # REPORT_ONLY=1: rewrite the section from the last run's results.jsonl
: >"$RES"
echo "{\"tag\": \"load0\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$RES"
run peak "$BIN" --peak "$TH"
# step-0 loss cross-check: the same seeded init in both
"$BIN" --export "$TINY_CFG" "$OUT/tiny-init" 2>>"$OUT/stderr.log"
run xcheck python3 bench/train_bench.py loss "$OUT/tiny-init" "$TINY_B" "$TINY_T"

dsv3run tiny "$TINY_CFG" "$TINY_B" "$TINY_T" "$STEPS"
run tiny python3 bench/train_bench.py time "$TINY_CFG" "$TINY_B" "$TINY_T" "$STEPS" "$TH" fp32
run tiny python3 bench/train_bench.py time "$TINY_CFG" "$TINY_B" "$TINY_T" "$BF16_STEPS" "$TH" bf16
dsv3run small "$SMALL_CFG" "$SMALL_B" "$SMALL_T" "$SMALL_STEPS"
run small python3 bench/train_bench.py time "$SMALL_CFG" "$SMALL_B" "$SMALL_T" "$SMALL_STEPS" "$TH" fp32
run small python3 bench/train_bench.py time "$SMALL_CFG" "$SMALL_B" "$SMALL_T" "$SMALL_BF16_STEPS" "$TH" bf16
echo "{\"tag\": \"load1\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"date\": \"$(date -u +%Y-%m-%d)\"}" >>"$RES"
fi

python3 - "$RES" "$OUT" "$TH" "$STEPS" "$SMALL_STEPS" "$BF16_STEPS" "$SMALL_BF16_STEPS" <<'PY'
import json, os, re, sys, datetime
res, out, th, steps, ssteps, bsteps, sbsteps = sys.argv[1:]
R = [json.loads(l) for l in open(res)]
load0 = next((r["load"] for r in R if r["tag"] == "load0"), "?")
load1 = next((r["load"] for r in R if r["tag"] == "load1"), "?")
date = next((r["date"] for r in R if r["tag"] == "load1"), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))

def g(x):  # 3 significant digits at most, no exponent
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"
peak = next(r for r in R if r["tag"] == "peak")["peak_gflops"]
xc = next(r for r in R if r["tag"] == "xcheck")
def nsteps(tag, **kw):
    r = get(tag, **kw)
    return r["steps"] if r else "?"

def get(tag, **kw):
    for r in R:
        if r["tag"] == tag and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None

rows, notes = [], []
for cfg in ("tiny", "small"):
    n = get(cfg, impl="dsv3", attn="naive", fwd_only=0)
    a = get(cfg, impl="dsv3", attn="absorb", fwd_only=0)
    f = get(cfg, impl="dsv3", fwd_only=1)
    t32 = get(cfg, impl="torch", prec="fp32")
    t16 = get(cfg, impl="torch", prec="bf16")
    if not (n and a and t32 and t16):
        continue
    gf = n["train_gflop_per_step"]
    tgf = lambda r: gf / r["step_s_cpu_best"]
    rows.append(f"| {cfg} | {n['B']}x{n['T']} = {n['B'] * n['T']} | {gf:.1f} | {g(n['tok_s'])} | {g(a['tok_s'])} | "
                f"{g(t32['tok_s'])} | {g(t16['tok_s'])} | {n['tok_s'] / t32['tok_s']:.2f}x | "
                f"{g(n['tok_s'] / t16['tok_s'])}x | {n['gflops']:.1f} ({100 * n['gflops'] / peak:.0f}%) | "
                f"{tgf(t32):.1f} ({100 * tgf(t32) / peak:.0f}%) | {g(tgf(t16))} |")
    wall = (f"wall-clock tok/s (same runs, shared machine): dsv3 naive {g(n['tok_s_wall'])}, absorb {g(a['tok_s_wall'])}, "
            f"torch fp32 {g(t32['tok_s_wall'])}, bf16 {g(t16['tok_s_wall'])}")
    fw = f["step_s_cpu_best"] if f else float("nan")
    notes.append(f"- **{cfg}** ({n['params'] / 1e6:.1f} M trainable parameters, both sides; activations planned "
                 f"{n['act_mb']:.0f} MB + workspace {n['ws_mb']:.0f} MB, {n['allocs_in_steps']} allocations in the timed "
                 f"steps): step {n['step_s_cpu_best']:.3f} s (median {n['step_s_cpu_median']:.3f}); forward + loss alone "
                 f"{fw:.3f} s ({100 * fw / n['step_s_cpu_best']:.0f}% of the step, {f['gflops'] if f else 0:.1f} GFLOP/s), "
                 f"so the backward is {n['step_s_cpu_best'] - fw:.3f} s ({(n['step_s_cpu_best'] - fw) / fw:.1f}x the "
                 f"forward for 2x its FLOPs); zeroing the gradients {n['zero_grads_s']:.3f} s. torch fp32 step "
                 f"{t32['step_s_cpu_best']:.3f} s, bf16 {t16['step_s_cpu_best']:.2f} s. Step-0 loss dsv3 {n['loss0']:.6f}, "
                 f"torch fp32 {t32['loss0']:.6f} (torch's own random init, same distribution), bf16 autocast "
                 f"{t16['loss0']:.4f}. {wall}." +
                 (f" Optimizer after the step (dsv3_grad_norm + dsv3_clip_grads + dsv3_adamw_step, fp32 moments): "
                  f"{n['opt_s_cpu_best']:.3f} s; full step {n['full_step_s_cpu_best']:.3f} s = "
                  f"{g(n['full_tok_s'])} tok/s." if 'opt_s_cpu_best' in n else ""))

def top(tag, k=5):
    p = os.path.join(out, f"perf.{tag}.txt")
    if not os.path.exists(p):
        return None
    ent = [(float(a), b) for a, b in (l.split() for l in open(p) if l.strip())]
    g = sum(s for s, n in ent if n.startswith("dsv3_sg") or n.startswith("dsv3_sgemm"))
    at = sum(s for s, n in ent if "attn" in n)
    t5 = ", ".join(f"`{n}` {s:.1f}%" for s, n in ent[:k])
    return t5, g, at

prof = []
for tag in ("tiny", "small"):
    t = top(tag)
    if t and t[0]:
        prof.append(f"- {tag}: {t[0]}. All SGEMM symbols (`dsv3_sg*`: micro-kernel, packing, the threaded driver) "
                    f"{t[1]:.0f}%, attention (`*attn*`) {t[2]:.0f}%.")

isa = get("tiny", impl="dsv3", attn="naive", fwd_only=0)
xd = get("tiny", impl="dsv3", attn="naive", fwd_only=0)
body = f"""## Training step (forward + backward)

Command: `bench/train_bench.sh` ({date}, {th} threads, OMP_WAIT_POLICY=passive for both sides; load average
{load0} at start, {load1} at the end: the machine is shared, so the times are critical-path CPU times, as in the
matmul section: per step, the largest per-thread CPU time of the process, best of the timed steps; wall-clock
figures are listed under the table). One process at a time. Each side: random init, one warm-up step, then
{nsteps('tiny', impl='dsv3')} timed steps for tiny and {nsteps('small', impl='dsv3')} for small ({nsteps('tiny', prec='bf16')} / {nsteps('small', prec='bf16')} for torch bf16, which is more than 10x slower; fewer
steps can only make its best step slower, never faster).

- **dsv3**: `bench/train_bench` — `dsv3_tmodel_init_random` (N(0, 0.006²) matrices, gains 1, seed 1, the config's MTP
  layer), then `dsv3_tmodel_zero_grads` + `dsv3_train_step` (λ = 0.3, α = 1e-4) per step on `dsv3_backend_cpu()`
  ({isa['backend']} backend, isa {isa['isa']}: the packed AVX2/FMA SGEMM of `sgemm.c`/`sgemm_avx2.c` for every matmul,
  `attention_cpu.c` with its AVX2 dot/accumulate kernels, the AVX2 element-wise ops of `ops_train_avx2.c`), fp32 throughout.
  "naive" decompresses K/V per head; "absorb" attends in the latent space.
- **torch**: `bench/train_bench.py` — HF transformers DeepseekV3ForCausalLM (eager attention, eager experts) + the MTP
  module and the balance loss of `tools/ref/make_grad_fixtures.py` (imported), the same loss; `zero_grad` (set to
  None) + forward + loss + `backward()` per step, `torch.set_num_threads({th})`; fp32, and bf16 autocast
  (`torch.autocast("cpu", dtype=torch.bfloat16)`, fp32 master weights). torch {get('tiny', impl='torch', prec='fp32')['torch']}.
- Same B rows of T+1 ids on both sides (splitmix64, seed 42).
- **FLOPs** per step: 6·B·(T·M_main + Σ_k (T−k)·M_mtp) + 3·2·H·(qk+v)·B·(L·T(T+1)/2 + Σ_k (T−k)(T−k+1)/2), with
  M_main the active matmul parameters per token (`dsv3 info`'s rule: MLA projections, dense or shared + top-K
  routed experts, router, lm_head), M_mtp the MTP module's (eh_proj 2d², its decoder block, the shared head), and
  2·H·(qk+v) the forward attention FLOPs per causal (query, key) pair and layer (the backward costs twice the
  forward). The same count for both attention paths and for torch ("useful" FLOPs).
- **Peak**: {peak:.1f} GFLOP/s fp32 FMA, measured in the same run (`train_bench --peak {th}`: 10 independent 8-lane FMA
  chains per thread, each thread timed by its own CPU clock).

| config | B x T = tokens | GFLOP / step | dsv3 naive tok/s | dsv3 absorb tok/s | torch fp32 tok/s | torch bf16 tok/s | dsv3 / torch fp32 | dsv3 / torch bf16 | dsv3 GFLOP/s (% of peak) | torch fp32 GFLOP/s (% of peak) | torch bf16 GFLOP/s |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Ratios and GFLOP/s use dsv3's naive path (the default of `dsv3 grad`).

{chr(10).join(notes)}

**Step-0 loss cross-check** (same weights on both sides: the dsv3 init of tiny exported with `train_bench --export`
to safetensors, loaded by transformers + the MTP module; the same {xc['B']} x {xc['T']}+1 rows): dsv3
{xd['loss0']:.7f} (main {xd['main0']:.7f}, MTP {xd['mtp0']:.7f}, balance {xd['balance0']:.6g}); torch fp32 {xc['loss32']:.7f}
(main {xc['main32']:.7f}, MTP {xc['mtp32']:.7f}, balance {xc['balance32']:.6g}); torch float64 {xc['loss64']:.7f};
|dsv3 − torch float64| = {abs(xd['loss0'] - xc['loss64']):.1e}.

**Hot spots** of the dsv3 step (`perf record -F 499`, naive attention, sampling only the timed steps: the bench enables
perf through its control fifo after the init and the warm-up step; share of all samples of the process, both threads):

{chr(10).join(prof) if prof else "(not profiled in this run: PERF=0)"}
"""
open(os.path.join(out, "section.md"), "w").write(body)
PY
# Into docs/PERF.md: the generated part replaces the section; a hand-written tail of the section (from the
# "notes (hand-written ...)" marker on: what stands in the way) is kept.
python3 - "$OUT/section.md" <<'PY'
import sys
p = "docs/PERF.md"
s = open(p).read()
body = open(sys.argv[1]).read().rstrip() + "\n"
start = "<!-- section: train (bench/train_bench.sh) -->"
end = "<!-- end: train -->"
if start not in s:
    s = s.rstrip() + "\n\n" + start + "\n" + end + "\n"
a = s.index(start) + len(start)
b = s.index(end, a)
old = s[a:b]
keep = ""
k = old.find("<!-- notes (hand-written, kept by train_bench.sh) -->")
if k >= 0:
    keep = "\n" + old[k:].rstrip() + "\n"
s = s[:a] + "\n" + body + keep + s[b:]
open(p, "w").write(s)
PY
log "wrote docs/PERF.md (train section)"
