#!/usr/bin/env bash
# FP8-vs-BF16 twin runs (issue 9, docs/FP8_TRAINING.md): configs/tiny.json (MLA + DeepSeekMoE + MTP,
# 12.3M parameters with the MTP module) on the main job's corpus (data/shards-tiny, built by `make run` / scripts/main.sh),
# identical init and data order for every precision, then bench/fp8_train_report.py writes the tables
# and plots into docs/FP8_TRAINING.md.
#
#   bash bench/fp8_train_bench.sh [RUNS_DIR]     (default data/runs/fp8; about 2 h on 2 cores)
#
# Loss runs: fp32, bf16, fp8 and the two failing fp8 variants from seed 1, and bf16 + fp8 pairs from
# seeds 2 and 3 (the seed sets the init and the data order: the pairs give the gap's spread over seeds,
# bf16 vs bf16 across seeds the noise floor). Speed runs (speed-*): SPEED_STEPS steps per precision,
# nothing else running, for the step-time table (the loss runs' own step times are reported too, but
# only the speed runs are meant to be quiet).
# Runs already complete in RUNS_DIR are kept (delete a folder to rerun it). Knobs: STEPS (default 200),
# SPEED_STEPS (default 12), PHASE (all | loss | speed | xeval | report; default all),
# HOPPER_STEPS (default 16: the hopper14 accumulator runs on the scalar emulation, ~50x slower; it
# follows the same schedule and stops early), THREADS (default 2), DSV3 (the binary, default ./dsv3).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-data/runs/fp8}
STEPS=${STEPS:-200}
HOPPER_STEPS=${HOPPER_STEPS:-16}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
DSV3=${DSV3:-./dsv3}
[ -x "$DSV3" ] || make -j"$(nproc)" dsv3
[ -s data/shards-tiny/manifest.json ] || { echo "fp8_train_bench: data/shards-tiny is missing: run 'make run' (or scripts/main.sh) first" >&2; exit 2; }
mkdir -p "$RUNS"
COMMON=(--config configs/tiny.json --data data/shards-tiny --steps "$STEPS" --batch 8 --micro-batch 8 --lr 2e-3 --warmup 20
        --init-std 0.02 --eval-every 25 --eval-rows 64 --log-every 25 --threads "$THREADS")
run() { # name, stop step, options...
  local name=$1 stop=$2; shift 2
  local out=$RUNS/$name
  if [ -s "$out/metrics.jsonl" ] && [ "$(grep -c '"step":' "$out/metrics.jsonl")" -ge "$stop" ] && [ -s "$out/model.safetensors" ]; then
    echo "== $name: complete in $out (kept)" >&2; return 0
  fi
  rm -rf "$out"
  local extra=(); [ "$stop" -lt "$STEPS" ] && extra=(--stop-at "$stop")
  echo "== $name: ./dsv3 train ${COMMON[*]} $* ${extra[*]} --out $out" >&2
  printf '%s\n' "./dsv3 train ${COMMON[*]} $* ${extra[*]} --out $out" > "$RUNS/$name.cmd"
  "$DSV3" train "${COMMON[@]}" "$@" "${extra[@]}" --out "$out" 2> "$RUNS/$name.log"
}
PHASE=${PHASE:-all}
if [ "$PHASE" = all ] || [ "$PHASE" = loss ]; then
  run fp8 "$STEPS" --precision fp8
  run bf16 "$STEPS" --precision bf16
  run fp32 "$STEPS" --precision fp32
  run bf16-seed2 "$STEPS" --precision bf16 --seed 2
  run fp8-dgrad-block "$STEPS" --precision fp8 --fp8-dgrad block
  run fp8-hopper14 "$HOPPER_STEPS" --precision fp8 --fp8-accum hopper14
  run fp8-seed2 "$STEPS" --precision fp8 --seed 2
  run bf16-seed3 "$STEPS" --precision bf16 --seed 3
  run fp8-seed3 "$STEPS" --precision fp8 --seed 3
  run fp8-moments-f32 "$STEPS" --precision fp8 --moments f32   # which part of the recipe moves the loss
  run fp8-only-attn "$STEPS" --precision fp8 --fp8-blocks attn        # which Linears move the loss:
  run fp8-only-experts "$STEPS" --precision fp8 --fp8-blocks experts  #   FP8 in one kind of block,
  run fp8-only-mlp-mtp "$STEPS" --precision fp8 --fp8-blocks mlp,mtp  #   the rest in bf16
  run bf16-to$HOPPER_STEPS "$HOPPER_STEPS" --precision bf16     # the baselines of the short hopper14 run
  run fp8-to$HOPPER_STEPS "$HOPPER_STEPS" --precision fp8
fi
if [ "$PHASE" = all ] || [ "$PHASE" = speed ]; then
  SPEED_STEPS=${SPEED_STEPS:-12}
  for p in fp32 bf16 fp8; do
    out=$RUNS/speed-$p
    rm -rf "$out"
    cmd=(train --config configs/tiny.json --data data/shards-tiny --steps "$SPEED_STEPS" --batch 8 --micro-batch 8 --lr 2e-3
         --warmup 20 --init-std 0.02 --eval-rows 8 --threads "$THREADS" --precision "$p" --out "$out")
    echo "== speed-$p: ./dsv3 ${cmd[*]}" >&2
    printf '%s\n' "./dsv3 ${cmd[*]}" > "$RUNS/speed-$p.cmd"
    if [ -x /usr/bin/time ]; then # peak resident memory of the whole process, for the memory table
      /usr/bin/time -f 'peak RSS %M KiB' "$DSV3" "${cmd[@]}" 2> "$RUNS/speed-$p.log"
    else
      "$DSV3" "${cmd[@]}" 2> "$RUNS/speed-$p.log"
    fi
  done
fi
if [ "$PHASE" = all ] || [ "$PHASE" = xeval ]; then
  # every final model evaluated in every precision on the trainer's 64 validation rows (the first rows
  # of the val shard: a 64-byte header, then rows of seq_len + 1 uint32 ids): does the validation gap
  # come from the weights or from the precision of the evaluation?
  python3 - "$RUNS/val64.npy" <<'PY'
import json, sys
import numpy as np
m = json.load(open("data/shards-tiny/manifest.json"))
f = "data/shards-tiny/" + m["val"]["shards"][0]["file"]
rows = np.fromfile(f, dtype=np.uint32, offset=64).reshape(-1, m["row_tokens"])[:64].astype(np.int32)
np.save(sys.argv[1], rows)
PY
  : > "$RUNS/xeval.jsonl"
  for m in fp32 bf16 fp8 fp8-dgrad-block fp8-moments-f32 fp8-only-attn fp8-only-experts fp8-only-mlp-mtp bf16-seed2 fp8-seed2 bf16-seed3 fp8-seed3; do
    [ -s "$RUNS/$m/model.safetensors" ] || continue
    for p in fp32 bf16 fp8; do
      r=$("$DSV3" grad --model "$RUNS/$m" --rows "$RUNS/val64.npy" --out "$RUNS/xeval.tmp" --precision "$p" --json --threads "$THREADS")
      printf '{"model": "%s", "eval_precision": "%s", "result": %s}\n' "$m" "$p" "$r" >> "$RUNS/xeval.jsonl"
    done
  done
  rm -f "$RUNS/xeval.tmp"
fi
python3 bench/fp8_train_report.py "$RUNS"
