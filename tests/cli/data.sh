#!/usr/bin/env bash
# dsv3 data prepare / verify end to end on tests/fixtures/data with the real DeepSeek-V3 tokenizer:
# usage errors, bad inputs, deterministic bytes, shard layout, manifest contents, verification of
# mixed and corrupted sets. (Kills, concurrent writers: data_faults.sh.)
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
check "no output after failure" test ! -e "$tmp/x"
err=$("$D" data prepare --tokenizer $T --out "$tmp/x" $FX 2>&1); rc=$?
check "a directory as input: exit 2 ($rc)" test $rc -eq 2
check "... says it is a directory: $err" grep -q "$FX: is a directory" <<<"$err"
touch "$tmp/afile"
err=$("$D" data prepare --tokenizer $T --out "$tmp/afile" $FX/plain.txt 2>&1); rc=$?
check "--out naming a file: exit 2 ($rc)" test $rc -eq 2
check "... says so: $err" grep -q "afile: exists and is not a directory" <<<"$err"
printf '\n   \n' > "$tmp/blank.jsonl"; : > "$tmp/empty.txt"
for f in "$tmp/blank.jsonl" "$tmp/empty.txt"; do
  err=$("$D" data prepare --tokenizer $T --quiet --out "$tmp/x" "$f" 2>&1); rc=$?
  check "no documents ($(basename "$f")): exit 2 ($rc)" test $rc -eq 2
  check "... says so: $err" grep -q "no documents" <<<"$err"
done
check "nothing written for empty input" test ! -e "$tmp/x"
expect_exit 2 "no rows (concat, fewer tokens than a row)" "$D" data prepare --tokenizer $T --quiet --packing concat \
  --seq-len 100000 --out "$tmp/x" $FX/plain.txt
expect_exit 2 "bad shuffle buffer" "$D" data prepare --tokenizer $T --out "$tmp/x" --shuffle-buffer -1 $FX/plain.txt

args=(--tokenizer $T --seq-len 128 --fim-rate 0.2 --val-fraction 0.1 --seed 5 --shard-rows 16 --quiet)
"$D" data prepare "${args[@]}" --threads 1 --out "$tmp/a" $FX/devil-sample.jsonl $FX/plain.txt
"$D" data prepare "${args[@]}" --threads 2 --out "$tmp/b" $FX/devil-sample.jsonl $FX/plain.txt
check "same files" diff <(cd "$tmp/a" && ls) <(cd "$tmp/b" && ls)
for f in "$tmp"/a/*; do check "$(basename "$f") identical" cmp -s "$f" "$tmp/b/$(basename "$f")"; done
"$D" data prepare "${args[@]/--seed/--seed}" --seed 6 --out "$tmp/c" $FX/devil-sample.jsonl $FX/plain.txt
check "another seed changes the data" bash -c "! cmp -s '$tmp/a/g1-train-00000.bin' '$tmp/c/g1-train-00000.bin'"

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
check "run id" grep -q '"run_id":[[:space:]]*"[0-9a-f]\{16\}"' "$m"
check "input sha256" grep -q "\"sha256\":[[:space:]]*\"$(sha256sum $FX/devil-sample.jsonl | cut -d' ' -f1)\"" "$m"
check "generation 1" test "$(num generation)" = 1

# Shard layout: 64-byte header, magic, then rows x 129 uint32.
s="$tmp/a/g1-train-00000.bin"
check "magic" test "$(head -c 8 "$s")" = DSV3TOKS
rows=$(od -An -t u8 -j 24 -N 8 "$s" | tr -d ' ')
seq=$(od -An -t u4 -j 20 -N 4 "$s" | tr -d ' ')
check "header seq_len" test "$seq" = 128
check "shard rows <= 16" test "$rows" -ge 1 -a "$rows" -le 16
check "shard size" test "$(stat -c %s "$s")" = $(( 64 + 4 * rows * 129 ))
# First row starts with BOS (id 0): best-fit puts the longest chunk first in a new row.
first=$(od -An -t u4 -j 64 -N 4 "$s" | tr -d ' ')
check "row starts with BOS ($first)" test "$first" = 0
total=0; for f in "$tmp"/a/g1-train-*.bin; do total=$(( total + $(od -An -t u8 -j 24 -N 8 "$f" | tr -d ' ') )); done
check "rows in shards = manifest train rows" grep -q "\"rows\":[[:space:]]*$total," "$m"

# concat packing: no padding, rows overlap by one token
"$D" data prepare --tokenizer $T --seq-len 64 --packing concat --val-fraction 0 --quiet --out "$tmp/d" $FX/devil-sample.jsonl
check "concat: no pad id" test "$(od -An -t x4 -j 40 -N 4 "$tmp/d/g1-train-00000.bin" | tr -d ' ')" = ffffffff
r0_last=$(od -An -t u4 -j $(( 64 + 4 * 64 )) -N 4 "$tmp/d/g1-train-00000.bin" | tr -d ' ')
r1_first=$(od -An -t u4 -j $(( 64 + 4 * 65 )) -N 4 "$tmp/d/g1-train-00000.bin" | tr -d ' ')
check "concat: rows overlap by one token" test "$r0_last" = "$r1_first"
# a run that fails on its inputs leaves an earlier output directory untouched
"$D" data prepare --tokenizer $T --seq-len 64 --quiet --out "$tmp/e" $FX/plain.txt
cp -r "$tmp/e" "$tmp/e0"
expect_exit 2 "failing rerun" "$D" data prepare --tokenizer $T --quiet --out "$tmp/e" $FX/plain.txt $FX/bad-field.jsonl
check "earlier output untouched after a failed rerun" diff -r "$tmp/e" "$tmp/e0"
check "concat: empty val split" grep -q '"shards":[[:space:]]*\[\]' "$tmp/d/manifest.json"

# data verify: usage, a good set, a mixed set (a shard of the seed-6 run copied over the seed-5 run's
# file of the same name) and a corrupted one are refused naming the shard
expect_exit 2 "verify: no folder" "$D" data verify
expect_exit 2 "verify: bad split" "$D" data verify "$tmp/a" --split test
expect_exit 2 "verify: missing folder" "$D" data verify "$tmp/none"
out=$("$D" data verify "$tmp/a"); rc=$?
check "verify: ok ($rc)" test $rc -eq 0
check "verify prints the run id" grep -q "^run_id $(sed -n 's/.*"run_id":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' "$tmp/a/manifest.json")$" <<<"$out"
check "verify prints the train rows" grep -q "^train shards [0-9]* rows $total " <<<"$out"
check "verify: same digests for the 1- and 2-thread runs" test "$("$D" data verify "$tmp/a" --verify | grep digest)" = \
  "$("$D" data verify "$tmp/b" --verify | grep digest)"
check "verify: another seed, other digests" test "$("$D" data verify "$tmp/a" | grep digest)" != "$("$D" data verify "$tmp/c" | grep digest)"
cp -r "$tmp/a" "$tmp/mix"; cp "$tmp/c/g1-train-00000.bin" "$tmp/mix/g1-train-00000.bin"
for v in "" --verify; do
  err=$("$D" data verify "$tmp/mix" $v 2>&1); rc=$?
  check "mixed set refused${v:+ with $v} (exit $rc)" test $rc -eq 2
  check "... naming the shard: $err" grep -q "mix/g1-train-00000.bin: shard of another run" <<<"$err"
done
cp -r "$tmp/a" "$tmp/flip"; f="$tmp/flip/g1-train-00000.bin"
printf '\x7f' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 2 )) conv=notrunc status=none
expect_exit 2 "flipped byte refused by --verify" "$D" data verify "$tmp/flip" --verify
check "verify: stdout full is an error" bash -c "! '$D' data verify '$tmp/a' > /dev/full 2>/dev/null"
finish
