#!/usr/bin/env bash
# dsv3 tokenizer train: usage errors, determinism, and the trained tokenizer.json working in dsv3 tokenize.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
FX=tests/fixtures/data

expect_exit 0 "--help" "$D" tokenizer train --help
expect_exit 0 "tokenizer --help" "$D" tokenizer --help
expect_exit 2 "no subcommand" "$D" tokenizer
expect_exit 2 "unknown subcommand" "$D" tokenizer fly
expect_exit 2 "no inputs" "$D" tokenizer train --vocab-size 300 --out "$tmp/t.json"
expect_exit 2 "vocab too small" "$D" tokenizer train --vocab-size 258 --out "$tmp/t.json" $FX/plain.txt
expect_exit 2 "vocab not a number" "$D" tokenizer train --vocab-size 3e3 --out "$tmp/t.json" $FX/plain.txt
expect_exit 2 "unknown option" "$D" tokenizer train --vocab-size 300 --frob --out "$tmp/t.json" $FX/plain.txt
expect_exit 2 "missing input" "$D" tokenizer train --vocab-size 300 --out "$tmp/t.json" "$tmp/none.txt"
expect_exit 2 "bad jsonl" "$D" tokenizer train --vocab-size 300 --out "$tmp/t.json" $FX/bad-json.jsonl
err=$("$D" tokenizer train --vocab-size 300 --out "$tmp/t.json" $FX/bad-field.jsonl 2>&1)
check "bad jsonl names file:line" grep -q "bad-field.jsonl:2" <<<"$err"
check "no output after failure" test ! -e "$tmp/t.json"

"$D" tokenizer train --vocab-size 600 --threads 1 --quiet --out "$tmp/a.json" $FX/devil-sample.jsonl $FX/plain.txt
"$D" tokenizer train --vocab-size 600 --threads 2 --quiet --out "$tmp/b.json" $FX/devil-sample.jsonl $FX/plain.txt
check "deterministic across threads" cmp -s "$tmp/a.json" "$tmp/b.json"
check "pre_tokenizer copied from DeepSeek-V3" grep -q '"Regex": "\\\\p{N}{1,3}"' "$tmp/a.json"
check "BOS id 0" grep -q '{"id": 0, "content": "<｜begin▁of▁sentence｜>"' "$tmp/a.json"
check "PAD id 2" grep -q '{"id": 2, "content": "<｜▁pad▁｜>"' "$tmp/a.json"
check "fim_begin after the vocab" grep -q '{"id": 601, "content": "<｜fim▁begin｜>"' "$tmp/a.json"
check "Assistant id 604" grep -q '{"id": 604, "content": "<｜Assistant｜>"' "$tmp/a.json"
check "'!' is id 3" grep -q '"!": 3,' "$tmp/a.json"

# The trained tokenizer round-trips text through dsv3 tokenize / detokenize and compresses it.
text=$'The Devil\'s Dictionary: ABSURDITY, n.  A statement or belief manifestly inconsistent with one\'s own opinion.\n'
ids=$(printf '%s' "$text" | "$D" tokenize --tokenizer "$tmp/a.json")
back=$(printf '%s' "$ids" | "$D" detokenize --tokenizer "$tmp/a.json"; printf x)
check "round trip" test "${back%x}" = "$text"
n=$(wc -w <<<"$ids")
check "merges compress ($n tokens for ${#text} bytes)" test "$n" -lt $(( ${#text} * 3 / 4 ))
# special tokens in text are recognized with the trained ids
ids=$(printf '<｜fim▁begin｜>x<｜fim▁end｜>' | "$D" tokenize --tokenizer "$tmp/a.json")
check "added tokens encode to their ids ($ids)" test "${ids%% *}" = 601
# edge cases: an empty input gives the 259 base tokens and no merges (a valid tokenizer), and
# --min-frequency above every pair count stops before the first merge
: > "$tmp/empty.txt"
"$D" tokenizer train --vocab-size 400 --quiet --out "$tmp/e.json" "$tmp/empty.txt"
check "empty input: valid tokenizer" test "$(printf 'ab' | "$D" tokenize --tokenizer "$tmp/e.json")" = "67 68"
check "empty input: added tokens right after the 259 base ids" grep -q '{"id": 259, "content": "<｜fim▁hole｜>"' "$tmp/e.json"
"$D" tokenizer train --vocab-size 600 --min-frequency 1000000 --quiet --out "$tmp/m.json" $FX/devil-sample.jsonl
check "--min-frequency above all counts: no merges" test "$(sed -n '/"merges": \[$/{n;p;}' "$tmp/m.json")" = "    ]"
check "without it there are merges" test "$(sed -n '/"merges": \[$/{n;p;}' "$tmp/a.json")" != "    ]"
check "--min-frequency above all counts: 259 tokens" grep -q '{"id": 259, "content": "<｜fim▁hole｜>"' "$tmp/m.json"
# tokenizer train prints nothing on stdout (progress goes to stderr, the result to --out): a stdout
# that cannot be written does not matter; an --out that cannot be created is exit 2, nothing left
if [ -w /dev/full ]; then
  expect_exit 0 "train with stdout on /dev/full" bash -c '"$0" tokenizer train --vocab-size 300 --quiet --out "$1" "$2" > /dev/full' "$D" "$tmp/full.json" $FX/plain.txt
  check "output written" test -s "$tmp/full.json"
fi
expect_exit 2 "--out in a missing directory" "$D" tokenizer train --vocab-size 300 --quiet --out "$tmp/none/t.json" $FX/plain.txt
check "nothing left after a failed --out" test ! -e "$tmp/none"
finish
