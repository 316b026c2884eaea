#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for SECONDS (default 120).
#   fuzz/run.sh [SECONDS]
# Corpora live in build/fuzz/corpus-* (seeded from tests/fixtures/tokenizer); crashes are written
# to build/fuzz/crash-*. Prints libFuzzer's final stats (executions) per harness. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}
OUT=build/fuzz
mkdir -p $OUT
CC=${CC:-clang}
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -Isrc"
SRC="$(ls src/tokenizer/*.c | grep -v /bpe_train) src/core/error.c src/core/fileio.c"
for h in load encode; do
  $CC $FLAGS -o $OUT/fuzz_tokenizer_$h fuzz/fuzz_tokenizer_$h.c $SRC -lcjson -lonig
done

# seeds
mkdir -p $OUT/corpus-load $OUT/corpus-encode
cp tests/fixtures/tokenizer/gpt2-style/tokenizer*.json $OUT/corpus-load/ 2>/dev/null || true
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel","use_regex":true}}' > $OUT/corpus-load/min.json
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\\\p{N}{1,3}"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},"added_tokens":[{"id":3,"content":"<s>","special":true}],"decoder":{"type":"ByteLevel"}}' > $OUT/corpus-load/seq.json
python3 - <<'PY'
import json, os
out = "build/fuzz/corpus-encode"
for i, line in enumerate(open("tests/fixtures/tokenizer/deepseek-v3-cases.jsonl", encoding="utf-8")):
    t = json.loads(line)["text"].encode()
    if len(t) <= 4096:
        open(os.path.join(out, f"seed{i:04d}"), "wb").write(t)
PY

for h in load encode; do
  echo "== fuzz_tokenizer_$h ($SECS s)"
  dict=""
  [ $h = load ] && dict="-dict=fuzz/tokenizer_json.dict"
  $OUT/fuzz_tokenizer_$h $OUT/corpus-$h -max_total_time=$SECS -max_len=65536 -timeout=20 -rss_limit_mb=3072 \
      -print_final_stats=1 -artifact_prefix=$OUT/crash-$h- $dict 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done|crash-" || true
done
ls $OUT/crash-* 2>/dev/null && { echo "CRASHES FOUND"; exit 1; } || echo "no crashes"
