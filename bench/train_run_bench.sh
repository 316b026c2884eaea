#!/usr/bin/env bash
# Training-run speed (issue 8 item 8): `dsv3 train` on configs/tiny.json against the same recipe in PyTorch fp32
# (tools/ref/make_train_fixtures.run_training via bench/train_run_bench.py), same rows in the same order, same
# steps, batch, lr, warmup, init distribution and threads, one after the other. Records wall time, tok/s and the
# final training loss (mean of the last 5 steps). Writes the section "Training run (tiny, dsv3 vs PyTorch)" of
# docs/PERF.md (text after its `<!-- notes` marker survives reruns); raw results in bench/out/train_run/.
#   usage: bench/train_run_bench.sh      (env: STEPS=40 B=8 LR=2e-3 WARMUP=5 INIT_STD=0.02 THREADS=2 CFG=configs/tiny.json,
#                                         SHARDS=data/shards-tiny (random ids if absent), NO_DOC=1 to skip docs/PERF.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
STEPS=${STEPS:-40}; B=${B:-8}; LR=${LR:-2e-3}; WARMUP=${WARMUP:-5}; INIT_STD=${INIT_STD:-0.02}; TH=${THREADS:-2}
CFG=${CFG:-configs/tiny.json}; SHARDS=${SHARDS:-data/shards-tiny}
export OMP_NUM_THREADS=$TH
OUT=bench/out/train_run
mkdir -p "$OUT"
[ -x ./dsv3 ] || make -s -j2 dsv3
T=256
[ -d "$SHARDS" ] || SHARDS=-
RES=$OUT/results.jsonl
: >"$RES"
echo "{\"tag\": \"load0\", \"uptime\": \"$(uptime)\"}" >>"$RES"
python3 bench/train_run_bench.py rows "$SHARDS" $((STEPS * B)) $T "$OUT/rows.npy" | sed 's/^{/{"tag": "rows", /' >>"$RES"
rm -rf "$OUT/dsv3-run"
t0=$(date +%s.%N)
./dsv3 train --config "$CFG" --data "$OUT/rows.npy" --steps "$STEPS" --batch "$B" --lr "$LR" --warmup "$WARMUP" \
  --init-std "$INIT_STD" --threads "$TH" --quiet --out "$OUT/dsv3-run" 2>"$OUT/dsv3.stderr"
t1=$(date +%s.%N)
echo "{\"tag\": \"dsv3\", \"wall_s\": $(echo "$t1 - $t0" | bc)}" >>"$RES"
echo "{\"tag\": \"load_mid\", \"uptime\": \"$(uptime)\"}" >>"$RES"
t0=$(date +%s.%N)
python3 bench/train_run_bench.py torch "$CFG" "$OUT/rows.npy" "$STEPS" "$B" "$LR" "$WARMUP" "$INIT_STD" "$TH" \
  2>"$OUT/torch.stderr" | sed 's/^{/{"tag": "torch", /' >>"$RES"
t1=$(date +%s.%N)
echo "{\"tag\": \"torch_proc\", \"wall_s\": $(echo "$t1 - $t0" | bc)}" >>"$RES"
echo "{\"tag\": \"load1\", \"uptime\": \"$(uptime)\", \"date\": \"$(date -u +%Y-%m-%d)\"}" >>"$RES"
[ "${NO_DOC:-0}" = 1 ] && exit 0

python3 - "$RES" "$OUT" "$STEPS" "$B" "$LR" "$WARMUP" "$INIT_STD" "$TH" "$CFG" <<'PY'
import json, statistics, sys
res, out, steps, B, lr, warmup, std, th, cfg = sys.argv[1:]
R = {}
for l in open(res):
    r = json.loads(l); R[r["tag"]] = r
M = [json.loads(l) for l in open(f"{out}/dsv3-run/metrics.jsonl") if '"step"' in l]
M = [m for m in M if "loss" in m and "tok_s" in m]
tr = R["torch"]
tok = tr["tokens"]
last = lambda xs: sum(xs[-5:]) / len(xs[-5:])
d_loss = last([m["loss"] for m in M]); d_main = last([m["main"] for m in M])
t_loss = last(tr["loss"]); t_main = last(tr["main"])
d_step_tok_s = statistics.median(m["tok_s"] for m in M)
d_wall = R["dsv3"]["wall_s"]
rows = [
    f"| dsv3 (C, fp32) | {d_step_tok_s:.0f} | {tok / d_wall:.0f} | {d_wall:.1f} | {M[0]['loss']:.4f} | {d_loss:.4f} | {d_main:.4f} |",
    f"| PyTorch {tr['torch']} fp32 eager | – | {tr['tok_s']:.0f} | {tr['wall_s']:.1f} (process {R['torch_proc']['wall_s']:.1f}) | {tr['loss'][0]:.4f} | {t_loss:.4f} | {t_main:.4f} |",
]
body = f"""## Training run (tiny, dsv3 vs PyTorch)

Command: `bench/train_run_bench.sh` ({R['load1']['date']}; STEPS={steps} B={B} LR={lr} WARMUP={warmup}
INIT_STD={std} THREADS={th}, OMP_WAIT_POLICY=passive; raw results in `bench/out/train_run/`). The two runs are
one after the other, never concurrent. Rows: {R['rows']['source']}, the first {R['rows']['rows']} rows x
{R['rows']['T'] + 1} ids, saved once as `rows.npy` and read in order by both sides ({tok} training tokens each).

- **dsv3**: `./dsv3 train --config {cfg} --data bench/out/train_run/rows.npy --steps {steps} --batch {B} --lr {lr}
  --warmup {warmup} --init-std {std} --threads {th} --quiet --out bench/out/train_run/dsv3-run`. The full recipe:
  forward + backward, clipping, AdamW, the schedules, the bias update, metrics, and the checkpoint at the end.
- **PyTorch**: `bench/train_run_bench.py torch ...`. It calls `run_training` of
  `tools/ref/make_train_fixtures.py` (imported) on HF DeepseekV3ForCausalLM plus the MTP module, in fp32 eager
  with `torch.set_num_threads({th})`. That function uses `torch.optim.AdamW` (foreach=False), `clip_grad_norm_`,
  the same lr / λ / γ schedules and the same bias update. Its init is its own random one with the same
  distribution: N(0, {std}²) matrices, norm gains 1, biases 0. The fixture-only routing-tie check is stubbed
  out. The per-step routing bookkeeping of `run_training` is kept (bincounts, a top-k per MoE layer; small).
- **Columns**: "step tok/s" is the median of the per-step `tok_s` in dsv3's `metrics.jsonl`. "run tok/s" is
  tokens / wall time of the training. For dsv3 that is the whole process, including init and writing the
  checkpoint. For torch it is the `run_training` call; the whole process, including the Python and torch
  imports, is given in brackets. "final loss" is the mean of the last 5 steps' training loss:
  L_main + λ·L_MTP + balance.

| side | step tok/s (median) | run tok/s | wall time (s) | loss at step 1 | final loss (last 5) | final main loss (last 5) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

dsv3 / torch run tok/s: {(tok / d_wall) / tr['tok_s']:.2f}x.

Machine load (`uptime`): start `{R['load0']['uptime'].strip()}`; between the runs `{R['load_mid']['uptime'].strip()}`;
end `{R['load1']['uptime'].strip()}`. The machine has 2 cores and is shared, so the wall times are upper bounds.
"""
open(f"{out}/section.md", "w").write(body)
PY
python3 - "$OUT/section.md" <<'PY'
import sys
p = "docs/PERF.md"
s = open(p).read()
body = open(sys.argv[1]).read().rstrip() + "\n"
start = "<!-- section: train-run (bench/train_run_bench.sh) -->"
end = "<!-- end: train-run -->"
if start not in s:
    s = s.rstrip() + "\n\n" + start + "\n" + end + "\n"
a = s.index(start) + len(start)
b = s.index(end, a)
old = s[a:b]
k = old.find("<!-- notes")
keep = ("\n" + old[k:].rstrip() + "\n") if k >= 0 else ""
s = s[:a] + "\n" + body + keep + s[b:]
open(p, "w").write(s)
PY
echo "wrote docs/PERF.md (train-run section)" >&2
