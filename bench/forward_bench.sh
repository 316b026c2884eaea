#!/usr/bin/env bash
# Forward-pass speed: dsv3 (C, fp32 activations, absorbed MLA) vs HF transformers (torch CPU, fp32,
# eager attention + eager experts, same thread count), full forward with logits at every position
# over T = 64 and T = 256 random tokens, for configs/tiny.json and configs/small.json with random
# weights (fp32 safetensors written once into bench/out/forward/, gitignored).
# Writes the table into the `forward` section of docs/PERF.md.
#   usage: bench/forward_bench.sh [THREADS (default "1 2")] [REPS (default 5)]
set -euo pipefail
cd "$(dirname "$0")/.."
# Sleep rather than spin at OpenMP barriers (both dsv3 and torch read this at start-up). On this shared
# 2-core machine, with spinning waiters a forward with 2 threads ran 40x slower whenever a third process
# held a core (each fork/join waited for a scheduler time slice); passive waiting removes the cliff.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
THREADS=${1:-1 2}
REPS=${2:-5}
OUT=bench/out/forward
B=build/bench-forward
mkdir -p "$OUT"
make -s -j2 BUILD=$B DSV3_BIN=$B/dsv3 $B/libdsv3.a >/dev/null
gcc -O2 -march=native -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -o $B/forward_bench bench/forward_bench.c $B/libdsv3.a \
    -lcjson -lonig -lm -fopenmp
for cfg in tiny small; do
  [ -f "$OUT/$cfg/model.safetensors" ] || python3 bench/forward_bench.py make configs/$cfg.json "$OUT/$cfg" 2>/dev/null
done

GHZ=$($B/forward_bench --ghz)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=""
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
for th in $THREADS; do
for cfg in tiny small; do
  for T in 64 256; do
    c=$(OMP_NUM_THREADS=$th $B/forward_bench "$OUT/$cfg" $T $REPS absorb)
    n=$(OMP_NUM_THREADS=$th $B/forward_bench "$OUT/$cfg" $T $REPS naive)
    p=$(python3 bench/forward_bench.py time "$OUT/$cfg" $T $REPS $th 2>/dev/null)
    echo "threads $th $cfg T=$T | C absorb: $c | C naive: $n | torch: $p" >&2
    ct=$(field tok_s "$c"); nt=$(field tok_s "$n"); pt=$(field tok_s "$p"); gf=$(field gflops "$c")
    ROWS+=$(awk -v cfg=$cfg -v T=$T -v ct=$ct -v nt=$nt -v pt=$pt -v gf=$gf -v ghz=$GHZ -v th=$th \
      'BEGIN{peak=th*32*ghz; printf "| %d | %s | %d | %.0f | %.0f | %.0f | %.2fx | %.1f | %.1f%% |\\n", th, cfg, T, ct, nt, pt, ct/pt, gf, 100*gf/peak}')
  done
done
done

SECTION=$(cat <<EOT
Command: \`bench/forward_bench.sh "$THREADS" $REPS\` ($(date -u +%Y-%m-%d), threads: $THREADS, best of $REPS runs after one warm-up;
load average at start: $LOAD; this machine is shared with other jobs, so the minimum is reported;
OMP_WAIT_POLICY=$OMP_WAIT_POLICY for both sides).
Full forward over T random tokens at positions 0..T-1 with logits for every position; random fp32 weights
(\`bench/forward_bench.py make\`). dsv3 runs fp32 throughout (fp32 weights through dsv3_matmul); torch is
HF transformers DeepseekV3ForCausalLM in fp32, eager attention, eager experts, the same thread count
(\`torch.set_num_threads\`).
GFLOP/s counts 2 x active matmul params per token (\`dsv3 info\` rule, lm_head included) plus
2·L·H·(qk+v) per causal (query, key) pair. fp32 peak = threads x 2 FMA pipes x 8 lanes x 2 flops x clock
= threads x 32 x $GHZ GHz (clock measured by a dependent integer-add chain in \`forward_bench --ghz\`;
under load this reads low, which overstates the % of peak). dsv3/torch and GFLOP/s use the absorbed path.

| threads | config | T | dsv3 absorb tok/s | dsv3 naive tok/s | torch tok/s | dsv3/torch | dsv3 GFLOP/s | % of fp32 peak |
|---|---|---|---|---|---|---|---|---|
$(printf '%b' "$ROWS")

Notes: the lm_head GEMM (vocab 129280 x d 1024) is about half of small's FLOPs. The second thread adds
little here because other jobs share the two cores. With OpenMP's default spin-waiting, a 2-thread forward
ran up to 40x slower whenever a third process held a core (each fork/join waited a time slice); the
forward therefore forks once per layer for all heads and once for all experts, and runs are best
with OMP_WAIT_POLICY=passive on a shared machine.
EOT
)
python3 - "$SECTION" <<'PY'
import re, sys
p = "docs/PERF.md"
s = open(p).read()
body = sys.argv[1].rstrip() + "\n"
start = "<!-- section: forward (bench/forward_bench.sh) -->"
end = "<!-- end: forward -->"
if start not in s:
    s = s.rstrip() + "\n\n" + start + "\n" + end + "\n"
a = s.index(start) + len(start)
b = s.index(end, a)
s = s[:a] + "\n" + body + s[b:]
open(p, "w").write(s)
PY
echo "wrote docs/PERF.md (forward section)" >&2
