#!/usr/bin/env bash
# Decode and prefill speed, dsv3 vs llama.cpp, on the same models and threads (issue #10 item 7):
# configs/small.json (0.87B total parameters) with seeded random weights, bf16 and 8-bit (our FP8 blocks vs
# llama.cpp Q8_0 of the same bf16 weights), prefill of 512 tokens and decode of 128 tokens, plus the DRAM
# roofline fraction of decode. Writes the tables between the decode-bench markers of docs/PERF.md.
#
#   usage: bench/decode_bench.sh [ROUNDS (default 5)] [LLAMA_REPS (default 3)]
#   env:   PEERS=/work/peers        folder outside the repository for llama.cpp and the models (never committed)
#          LLAMA_CPP_PY=0.3.36      llama-cpp-python source package whose vendor/llama.cpp is built
#          THREADS=2                threads of both engines and of membw
#          NO_WRITE=1               measure only (results JSON in bench/out/decode/), leave PERF.md alone
#
# Steps (each skipped when its output exists):
#  1. llama.cpp source: the full tree ships in the PyPI sdist of llama-cpp-python (the GitHub repository is too
#     large to fetch here; /work/shared/notes/peers.md): pip download it into $PEERS/sdist, copy out
#     vendor/llama.cpp to $PEERS/llama.cpp.
#  2. build llama-bench and llama-quantize (cmake -DGGML_NATIVE=ON -DLLAMA_CURL=OFF; about 6.5 min on 2 cores).
#  3. gguf-py + sentencepiece for the converter (pip install -e, not its requirements file: it pins old torch).
#  4. models in $PEERS/models: small-bf16/ and small-fp8/ (bench/make_bench_model.py), small-bf16.gguf and
#     small-q8_0.gguf (llama.cpp's convert_hf_to_gguf.py on small-bf16/), small-q8_0-bf16head.gguf (llama-quantize
#     of small-bf16.gguf to Q8_0 keeping embedding + lm_head BF16, the split of the FP8 checkpoint). About 8 GB.
#  5. dsv3 (make, only when out of date) and bench/membw.c.
#  6. bench/decode_bench.py run (alternating rounds) and write (PERF.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
LLAMA_REPS=${2:-3}
PEERS=${PEERS:-/work/peers}
VER=${LLAMA_CPP_PY:-0.3.36}
THREADS=${THREADS:-2}
LL=$PEERS/llama.cpp
M=$PEERS/models
B=build/bench-decode
OUT=bench/out/decode
mkdir -p "$PEERS" "$M" "$B" "$OUT"
case "$(realpath "$PEERS")/" in "$(realpath .)"/*) echo "decode_bench: PEERS must be outside the repository" >&2; exit 2;; esac
# OpenMP waiting: dsv3 runs with OMP_WAIT_POLICY=passive (DSV3_OMP_WAIT_POLICY; see forward_bench.sh), llama.cpp
# with its default environment (LLAMA_OMP_WAIT_POLICY to override); decode_bench.py sets them per process.

# 1. source
if [ ! -f "$LL/CMakeLists.txt" ]; then
  mkdir -p "$PEERS/sdist"
  pip download --no-deps --no-binary :all: -d "$PEERS/sdist" "llama-cpp-python==$VER"
  tar -xzf "$PEERS/sdist/llama_cpp_python-$VER.tar.gz" -C "$PEERS/sdist"
  cp -r "$PEERS/sdist/llama_cpp_python-$VER/vendor/llama.cpp" "$LL"
fi
# 2. build
if [ ! -x "$LL/build/bin/llama-bench" ] || [ ! -x "$LL/build/bin/llama-quantize" ]; then
  (cd "$LL" && { [ -f build/CMakeCache.txt ] ||
                 cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >"$PEERS/cmake.log"; } &&
   cmake --build build -j2 --target llama-bench llama-quantize >"$PEERS/build.log")
fi
GGML_VER=$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$LL/ggml/CMakeLists.txt" | paste -sd.)
LL_COMMIT=$(sed -n "/^## \[$VER\]/,/^## /s/.*ggml-org\/llama.cpp@\([0-9a-f]*\).*/\1/p" \
            "$PEERS/sdist/llama_cpp_python-$VER/CHANGELOG.md" 2>/dev/null | head -1)
LL_VERSION="ggml $GGML_VER, llama.cpp ${LL_COMMIT:-unknown commit} (vendored in llama-cpp-python $VER)"
# 3. converter dependencies
python3 -c "import gguf, sentencepiece" 2>/dev/null || pip install -e "$LL/gguf-py" sentencepiece
# 4. models
[ -f "$M/small-bf16/bench_model.json" ] || python3 bench/make_bench_model.py --out "$M/small-bf16" --config configs/small.json
[ -f "$M/small-fp8/bench_model.json" ] || python3 bench/make_bench_model.py --out "$M/small-fp8" --config configs/small.json --fp8
for q in bf16 q8_0; do
  g=$M/small-$q.gguf
  if [ ! -f "$g" ] || [ "$M/small-bf16/bench_model.json" -nt "$g" ]; then
    python3 "$LL/convert_hf_to_gguf.py" "$M/small-bf16" --outtype $q --outfile "$g.tmp" >"$OUT/convert-$q.log" 2>&1
    mv "$g.tmp" "$g"
  fi
done
g=$M/small-q8_0-bf16head.gguf
if [ ! -f "$g" ] || [ "$M/small-bf16.gguf" -nt "$g" ]; then
  "$LL/build/bin/llama-quantize" --token-embedding-type bf16 --output-tensor-type bf16 "$M/small-bf16.gguf" "$g.tmp" Q8_0 \
    "$THREADS" >"$OUT/quantize-q8_0-bf16head.log" 2>&1
  mv "$g.tmp" "$g"
fi
# 5. dsv3 and membw
make -q dsv3 2>/dev/null || make -s -j2 dsv3
gcc -O2 -march=native -pthread -o $B/membw bench/membw.c
# 6. measure and write
RES=$OUT/results.json
python3 bench/decode_bench.py run --models "$M" --llama-bench "$LL/build/bin/llama-bench" --dsv3 ./dsv3 \
  --membw $B/membw --out $RES --rounds "$ROUNDS" --llama-reps "$LLAMA_REPS" --threads "$THREADS"
if [ -z "${NO_WRITE:-}" ]; then
  python3 bench/decode_bench.py write $RES --command "bench/decode_bench.sh $ROUNDS $LLAMA_REPS" \
    --llama-version "$LL_VERSION" ${NOTES:+--notes "$NOTES"}
fi
