#!/usr/bin/env bash
# dsv3 data prepare end to end on tests/fixtures/data with the real DeepSeek-V3 tokenizer:
# usage errors, deterministic bytes, shard layout, manifest contents.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
FX=tests/fixtures/data
T=models/deepseek-v3/tokenizer.json

expect_exit 0 "--help" "$D" data prepare --help
expect_exit 0 "data --help" "$D" data --help
expect_exit 2 "no subcommand" "$D" data
expect_exit 2 "unknown subcommand" "$D" data cook
expect_exit 2 "no inputs" "$D" data prepare --tokenizer $T --out "$tmp/x"
expect_exit 2 "no tokenizer" "$D" data prepare --out "$tmp/x" $FX/plain.txt
expect_exit 2 "bad fim rate" "$D" data prepare --tokenizer $T --out "$tmp/x" --fim-rate 1.5 $FX/plain.txt
expect_exit 2 "bad seq len" "$D" data prepare --tokenizer $T --out "$tmp/x" --seq-len 0 $FX/plain.txt
expect_exit 2 "bad packing" "$D" data prepare --tokenizer $T --out "$tmp/x" --packing tight $FX/plain.txt
expect_exit 2 "missing tokenizer" "$D" data prepare --tokenizer "$tmp/none.json" --out "$tmp/x" $FX/plain.txt
expect_exit 2 "missing input" "$D" data prepare --tokenizer $T --out "$tmp/x" "$tmp/none.jsonl"
err=$("$D" data prepare --tokenizer $T --out "$tmp/x" $FX/plain.txt $FX/bad-json.jsonl 2>&1)
check "bad jsonl names file:line" grep -q "bad-json.jsonl:3" <<<"$err"
check "no manifest after failure" test ! -e "$tmp/x/manifest.json"

args=(--tokenizer $T --seq-len 128 --fim-rate 0.2 --val-fraction 0.1 --seed 5 --shard-rows 16 --quiet)
"$D" data prepare "${args[@]}" --threads 1 --out "$tmp/a" $FX/devil-sample.jsonl $FX/plain.txt
"$D" data prepare "${args[@]}" --threads 2 --out "$tmp/b" $FX/devil-sample.jsonl $FX/plain.txt
check "same files" diff <(cd "$tmp/a" && ls) <(cd "$tmp/b" && ls)
for f in "$tmp"/a/*; do check "$(basename "$f") identical" cmp -s "$f" "$tmp/b/$(basename "$f")"; done
"$D" data prepare "${args[@]/--seed/--seed}" --seed 6 --out "$tmp/c" $FX/devil-sample.jsonl $FX/plain.txt
check "another seed changes the data" bash -c "! cmp -s '$tmp/a/train-00000.bin' '$tmp/c/train-00000.bin'"

m="$tmp/a/manifest.json"
num() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" "$m" | head -1; }
check "manifest format" grep -q '"format":[[:space:]]*"dsv3-token-shards"' "$m"
check "manifest seq_len" test "$(num seq_len)" = 128
check "manifest fim_rate" test "$(num fim_rate)" = 0.2
check "manifest seed" grep -q '"seed":[[:space:]]*"5"' "$m"
check "manifest packing" grep -q '"packing":[[:space:]]*"bestfit"' "$m"
check "manifest documents" test "$(num documents)" = 64
check "tokenizer sha256" grep -q "\"sha256\":[[:space:]]*\"$(sha256sum $T | cut -d' ' -f1)\"" "$m"
check "vocab size" test "$(num vocab_size)" = 128815
check "fim ids" grep -q '"fim_begin_id":[[:space:]]*128801' "$m"

# Shard layout: 64-byte header, magic, then rows x 129 uint32.
s="$tmp/a/train-00000.bin"
check "magic" test "$(head -c 8 "$s")" = DSV3TOKS
rows=$(od -An -t u8 -j 24 -N 8 "$s" | tr -d ' ')
seq=$(od -An -t u4 -j 20 -N 4 "$s" | tr -d ' ')
check "header seq_len" test "$seq" = 128
check "shard rows <= 16" test "$rows" -ge 1 -a "$rows" -le 16
check "shard size" test "$(stat -c %s "$s")" = $(( 64 + 4 * rows * 129 ))
# First row starts with BOS (id 0): best-fit puts the longest chunk first in a new row.
first=$(od -An -t u4 -j 64 -N 4 "$s" | tr -d ' ')
check "row starts with BOS ($first)" test "$first" = 0
total=0; for f in "$tmp"/a/train-*.bin; do total=$(( total + $(od -An -t u8 -j 24 -N 8 "$f" | tr -d ' ') )); done
check "rows in shards = manifest train rows" grep -q "\"rows\":[[:space:]]*$total," "$m"

# concat packing: no padding, rows overlap by one token
"$D" data prepare --tokenizer $T --seq-len 64 --packing concat --val-fraction 0 --quiet --out "$tmp/d" $FX/devil-sample.jsonl
check "concat: no pad id" test "$(od -An -t x4 -j 40 -N 4 "$tmp/d/train-00000.bin" | tr -d ' ')" = ffffffff
r0_last=$(od -An -t u4 -j $(( 64 + 4 * 64 )) -N 4 "$tmp/d/train-00000.bin" | tr -d ' ')
r1_first=$(od -An -t u4 -j $(( 64 + 4 * 65 )) -N 4 "$tmp/d/train-00000.bin" | tr -d ' ')
check "concat: rows overlap by one token" test "$r0_last" = "$r1_first"
# a run that fails on its inputs leaves an earlier output directory untouched
"$D" data prepare --tokenizer $T --seq-len 64 --quiet --out "$tmp/e" $FX/plain.txt
cp -r "$tmp/e" "$tmp/e0"
expect_exit 2 "failing rerun" "$D" data prepare --tokenizer $T --quiet --out "$tmp/e" $FX/plain.txt $FX/bad-field.jsonl
check "earlier output untouched after a failed rerun" diff -r "$tmp/e" "$tmp/e0"
check "concat: empty val split" grep -q '"shards":[[:space:]]*\[\]' "$tmp/d/manifest.json"
finish
