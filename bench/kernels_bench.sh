#!/usr/bin/env bash
# Kernel benchmark of issue 12, all in one run: the machine's limits (`dsv3 bench peak`, bench/membw.c),
# GEMM GFLOP/s at training shapes for dsv3 (`dsv3 bench gemm`), oneDNN (bench/dnnl_matmul.c, Debian's
# libdnnl-dev) and torch.matmul (bench/kernels_torch.py), GEMV GB/s for dsv3 and torch, and the tiny
# config's forward+backward step for dsv3 (bench/train_bench, fp32 and bf16) against PyTorch
# (bench/train_bench.py, fp32 and bf16 autocast). Writes the `kernels` section of docs/PERF.md.
#   usage: bench/kernels_bench.sh   env: THREADS (2), MS ("256 1024 4096"), SHAPES, GV (NxK lists), STEP_PRECISIONS
#          ("fp32 bf16"; empty: no step), STEP_CFGS ("tiny:8:256:3 small:2:256:1": config:B:T:steps),
#          NO_WRITE=1 (print only)
# Every engine runs one process at a time, with OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=3000, the same thread count, and the
# same timing rule (one warm-up call, then calls until 0.5 s, median); the limits are measured in the same
# run, before the GEMMs and again after them, and the best of the two is the denominator.
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${THREADS:-2}
MS=${MS:-"256 1024 4096"}
# dsv3's default waiting (apps/dsv3.c): passive after a short spin; every engine gets the same
export OMP_NUM_THREADS=$TH OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-3000}
OUT=bench/out/kernels
mkdir -p "$OUT"
make -s -j2 dsv3 build/bench/train_bench >/dev/null
gcc -O2 -march=native -pthread bench/membw.c -o "$OUT/membw"
DNNL=""
if echo '#include <dnnl.h>' | gcc -E - >/dev/null 2>&1; then
  gcc -O2 -Wall bench/dnnl_matmul.c -ldnnl -o "$OUT/dnnl_matmul" && DNNL="$OUT/dnnl_matmul"
else
  echo "kernels_bench: oneDNN headers not found (apt-get install libdnnl-dev); its rows are skipped" >&2
fi
R=$OUT/results.jsonl
: >"$R"
log() { echo "[kernels_bench $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)] $*" >&2; }
tag() { python3 -c 'import json,sys; t=json.loads(sys.argv[1]); [print(json.dumps(dict(json.loads(l), **t))) for l in sys.stdin if l.startswith("{")]' "$1"; }
limits() {
  ./dsv3 bench peak --json | tag "{\"kind\":\"peak\",\"when\":\"$1\"}" >>"$R"
  "$OUT/membw" --threads "$TH" --json | tag "{\"kind\":\"membw\",\"when\":\"$1\"}" >>"$R"
}
log "limits (before)"
limits before
# DeepSeek-V3-small layer shapes (configs/small.json, d = 1024): W [N, K] = dense MLP up (2816 x 1024),
# down (1024 x 2816), attention o_proj / kv_b (1024 x 1024), a routed expert's up (512 x 1024).
SHAPES=${SHAPES:-"2816x1024 1024x2816 1024x1024 512x1024"}
for M in $MS; do
  for s in $SHAPES; do
    N=${s%x*}; K=${s#*x}
    log "gemm M=$M N=$N K=$K"
    for f in fwd dgrad wgrad; do
      if [ $f = fwd ]; then act="--act bf16"; else act=""; fi
      ./dsv3 bench gemm --m $M --n $N --k $K --weights bf16 $act --form $f --json | tag '{"kind":"gemm","impl":"dsv3","dtype":"bf16"}' >>"$R"
      if [ $f != wgrad ]; then # W's pack read from the packed-weight cache (a loaded model; a weight reused in a step)
        ./dsv3 bench gemm --m $M --n $N --k $K --weights bf16 $act --form $f --pack cached --json | tag '{"kind":"gemm","impl":"dsv3","dtype":"bf16c"}' >>"$R"
      fi
      ./dsv3 bench gemm --m $M --n $N --k $K --weights f32 --form $f --json | tag '{"kind":"gemm","impl":"dsv3","dtype":"f32"}' >>"$R"
      if [ $f = fwd ]; then
        ./dsv3 bench gemm --m $M --n $N --k $K --weights fp8 --act bf16 --json | tag '{"kind":"gemm","impl":"dsv3","dtype":"fp8"}' >>"$R"
      fi
      if [ -n "$DNNL" ]; then
        for dt in bf16 f32; do "$DNNL" --m $M --n $N --k $K --dtype $dt --form $f | tag '{"kind":"gemm","impl":"onednn"}' >>"$R"; done
      fi
    done
    python3 bench/kernels_torch.py gemm $M $N $K bf16 fwd $M $N $K bf16 dgrad $M $N $K bf16 wgrad \
      $M $N $K f32 fwd $M $N $K f32 dgrad $M $N $K f32 wgrad | tag '{"kind":"gemm","impl":"torch"}' >>"$R"
  done
done
log "gemv"
GV=${GV:-"2048x7168 7168x2048 18432x7168"}
for s in $GV; do
  N=${s%x*}; K=${s#*x}
  for w in bf16 fp8 f32; do ./dsv3 bench gemv --n $N --k $K --weights $w --json | tag '{"kind":"gemv","impl":"dsv3"}' >>"$R"; done
  python3 bench/kernels_torch.py gemv $N $K bf16 $N $K f32 | tag '{"kind":"gemv","impl":"torch"}' >>"$R"
done
log "limits (after)"
limits after
# Training step: forward + backward, and forward + loss alone, per config (name:B:T:timed steps).
for spec in ${STEP_CFGS:-tiny:8:256:3 small:2:256:1}; do
  IFS=: read -r name B T steps <<<"$spec"
  for p in ${STEP_PRECISIONS-fp32 bf16}; do
    log "training step, $name ($B x $T), $p"
    TRAIN_BENCH_PRECISION=$p ./build/bench/train_bench configs/$name.json "$B" "$T" "$steps" naive,fwd |
      tag "{\"kind\":\"step\",\"impl\":\"dsv3\",\"prec\":\"$p\",\"cfg\":\"$name\"}" >>"$R"
    python3 bench/train_bench.py time configs/$name.json "$B" "$T" "$steps" "$TH" $p 2>/dev/null |
      tag "{\"kind\":\"step\",\"impl\":\"torch\",\"prec\":\"$p\",\"cfg\":\"$name\"}" >>"$R"
    TRAIN_BENCH_FWD_ONLY=1 python3 bench/train_bench.py time configs/$name.json "$B" "$T" "$steps" "$TH" $p 2>/dev/null |
      tag "{\"kind\":\"step\",\"impl\":\"torch\",\"prec\":\"$p\",\"cfg\":\"$name\"}" >>"$R"
  done
done
log "report"
python3 bench/kernels_report.py "$R" "$(date -u +%Y-%m-%d)" "$TH" >"$OUT/section.md"
[ "${NO_WRITE:-0}" = 1 ] && { cat "$OUT/section.md"; exit 0; }
python3 - "$OUT/section.md" <<'PY'
import sys
body = open(sys.argv[1]).read().rstrip() + "\n"
p = "docs/PERF.md"
s = open(p).read()
begin, end = "<!-- section: kernels (bench/kernels_bench.sh) -->", "<!-- end: kernels -->"
if begin not in s:
    s = s.rstrip() + "\n\n" + begin + "\n" + end + "\n"
i, j = s.index(begin) + len(begin), s.index(end)
notes = ""
k = s.find("<!-- notes (hand-written, kept by kernels_bench.sh) -->", i, j)
if k >= 0:
    notes = s[k:j].rstrip() + "\n"
s = s[:i] + "\n" + body + ("\n" + notes if notes else "") + s[j:]
open(p, "w").write(s)
print("wrote the kernels section of", p, file=sys.stderr)
PY
