#!/usr/bin/env bash
# Training GEMM benchmark: builds the library (into $BUILD, default build/) and bench/sgemm_bench.c,
# runs it and writes the "Training GEMM (fp32)" section of docs/PERF.md.
# Usage: bench/sgemm_bench.sh [quick]
# Env: BUILD (default build), OMP_NUM_THREADS (default 2), NO_WRITE=1 to print only.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=PASSIVE
make -s BUILD="$BUILD" "$BUILD/libdsv3.a" >&2
gcc -O2 -march=native -std=c11 -D_GNU_SOURCE -Wall -fopenmp -Isrc bench/sgemm_bench.c \
    "$BUILD/libdsv3.a" -lcjson -lonig -lm -o "$BUILD/sgemm_bench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
  echo "Command: \`bench/sgemm_bench.sh${1:+ $1}\` ($(date -u +%Y-%m-%d), OMP_NUM_THREADS=$OMP_NUM_THREADS)."
  echo "dsv3_backend_cpu()->gemm, best of 10 timed calls after a warm-up call; the peak is a"
  echo "register-only FMA loop (10 independent 8-lane chains per thread) on the same threads."
  echo
  "$BUILD/sgemm_bench" "$@"
} | tee "$out"
[ "${NO_WRITE:-0}" = 1 ] && exit 0
python3 - "$out" <<'PY'
import re, sys
body = open(sys.argv[1]).read().rstrip() + "\n"
path = "docs/PERF.md"
doc = open(path).read()
begin, end = "<!-- section: sgemm (bench/sgemm_bench.sh) -->", "<!-- end: sgemm -->"
sec = begin + "\n## Training GEMM (fp32)\n\n" + body + "\n" + end
if begin in doc:
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: sec, doc, flags=re.S)
else:
    doc = doc.rstrip() + "\n\n" + sec + "\n"
open(path, "w").write(doc)
PY
