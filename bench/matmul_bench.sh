#!/usr/bin/env bash
# Matmul benchmark: builds the library (make, into $BUILD, default build/) and bench/matmul_bench.c,
# runs it and bench/matmul_torch.py (PyTorch on the same shapes, same threads, same timing method),
# and writes the results into the `matmul` section of docs/PERF.md.
# Usage: bench/matmul_bench.sh [quick]     (quick: shorter timing loops; numbers noisier)
# Env: BUILD (default build), OMP_NUM_THREADS (default 2), NO_WRITE=1 to print only.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=PASSIVE # a thread waiting at a join sleeps: its CPU time is its own work
make -s BUILD="$BUILD" "$BUILD/libdsv3.a" >&2
gcc -O2 -march=native -std=c11 -D_GNU_SOURCE -Wall -fopenmp -Isrc bench/matmul_bench.c \
    "$BUILD/libdsv3.a" -lcjson -lonig -lm -o "$BUILD/matmul_bench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  echo "Command: \`bench/matmul_bench.sh${1:+ $1}\` ($(date -u +%Y-%m-%d), OMP_NUM_THREADS=$OMP_NUM_THREADS)."
  echo
  echo "### dsv3_matmul"
  echo
  "$BUILD/matmul_bench" "$@"
  echo
  echo "### PyTorch, same shapes and timing"
  echo
  python3 bench/matmul_torch.py "$@"
} | tee "$out"
[ "${NO_WRITE:-0}" = 1 ] && exit 0
python3 - "$out" <<'PY'
import re, sys
body = open(sys.argv[1]).read().rstrip() + "\n"
notes = open("bench/matmul_notes.md").read().rstrip() + "\n"
p = "docs/PERF.md"
s = open(p).read()
begin, end = "<!-- section: matmul (bench/matmul_bench) -->", "<!-- end: matmul -->"
if begin not in s:
    s = s.rstrip() + "\n\n" + begin + "\n" + end + "\n"
i, j = s.index(begin) + len(begin), s.index(end)
s = s[:i] + "\n## matmul\n\n" + body + "\n" + notes + s[j:]
open(p, "w").write(s)
print("wrote the matmul section of", p, file=sys.stderr)
PY
