#!/usr/bin/env bash
# dsv3 tokenize / detokenize: ids, --bos, --jsonl, byte round trips, errors (exit 2).
source tests/cli/lib.bash
TOK=models/deepseek-v3/tokenizer.json
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

check "tokenize --help" bash -c "\"$DSV3\" tokenize --help | grep -q usage"
check "detokenize --help" bash -c "\"$DSV3\" detokenize --help | grep -q usage"
# ids from tests/fixtures/tokenizer/deepseek-v3-cases.jsonl (HF tokenizers)
check "tokenize ids" test "$(printf 'Hello, world!' | "$DSV3" tokenize --tokenizer $TOK)" = "19923 14 2058 3"
check "default tokenizer" test "$(printf 'Hello, world!' | "$DSV3" tokenize)" = "19923 14 2058 3"
check "--bos" test "$(printf 'Hello, world!' | "$DSV3" tokenize --bos)" = "0 19923 14 2058 3"
check "empty input" test "$(printf '' | "$DSV3" tokenize)" = ""
check "detokenize" test "$(echo '19923 14 2058 3' | "$DSV3" detokenize)" = "Hello, world!"
check "detokenize --skip-special" test "$(echo '0 19923 14 2058 3 1' | "$DSV3" detokenize --skip-special)" = "Hello, world!"
check "detokenize keeps special" test "$(echo '0 19923' | "$DSV3" detokenize)" = "<｜begin▁of▁sentence｜>Hello"
# round trip of arbitrary bytes (invalid UTF-8 included) and of a file with CRLF and a trailing newline
head -c 20000 /dev/urandom > "$T/rand.bin"
"$DSV3" tokenize < "$T/rand.bin" | "$DSV3" detokenize > "$T/rand.out"
check "random bytes round trip" cmp -s "$T/rand.bin" "$T/rand.out"
printf 'line one\r\n\tline two <｜User｜> 123456\n\n' > "$T/crlf.txt"
"$DSV3" tokenize < "$T/crlf.txt" | "$DSV3" detokenize > "$T/crlf.out"
check "CRLF text round trip" cmp -s "$T/crlf.txt" "$T/crlf.out"
# --jsonl
printf '{"text":"Hello, world!"}\n{"text":""}\n\n{"text":"hello world","id":3}\n' > "$T/in.jsonl"
check "--jsonl" test "$("$DSV3" tokenize --jsonl < "$T/in.jsonl")" = "$(printf '[19923,14,2058,3]\n[]\n[33310,2058]')"
check "--jsonl --bos" test "$(printf '{"text":"hello world"}\n' | "$DSV3" tokenize --jsonl --bos)" = "[0,33310,2058]"
# CRLF line ends and whitespace-only lines (blank) are accepted, as in `data prepare`
check "--jsonl CRLF + blank lines" test "$(printf '{"text":"hello world"}\r\n \t\r\n{"text":"Hello, world!"} \r\n' | "$DSV3" tokenize --jsonl)" = "$(printf '[33310,2058]\n[19923,14,2058,3]')"
# two objects on one line: an error, not a silently dropped second text
expect_exit 2 "--jsonl two objects on a line" bash -c "printf '{\"text\":\"a\"}{\"text\":\"b\"}\n' | \"$DSV3\" tokenize --jsonl"
expect_exit 2 "--jsonl \\u0000" bash -c "printf '{\"text\":\"a\\\\u0000b\"}\n' | \"$DSV3\" tokenize --jsonl"
expect_exit 2 "--jsonl raw NUL byte" bash -c "printf '{\"text\":\"a\\0b\"}\n' | \"$DSV3\" tokenize --jsonl"
# a write error on stdout (here mid-output, /dev/full) is reported, exit 1
if [ -w /dev/full ]; then
  head -c 200000 "$T/rand.bin" | base64 -w 100 | sed 's/.*/{"text":"&"}/' > "$T/big.jsonl"
  check "--jsonl write error reported" bash -c "\"$DSV3\" tokenize --jsonl < '$T/big.jsonl' 2>&1 >/dev/full | grep -q 'write failed'"
  expect_exit 1 "--jsonl write error exit 1" bash -c "\"$DSV3\" tokenize --jsonl < '$T/big.jsonl' > /dev/full"
fi
# errors: exit 2 with a message
expect_exit 2 "bad jsonl line" bash -c "printf '{\"text\":\"ok\"}\nnot json\n' | \"$DSV3\" tokenize --jsonl"
check "bad jsonl names the line" bash -c "printf '{\"text\":\"ok\"}\n{\"txt\":1}\n' | \"$DSV3\" tokenize --jsonl 2>&1 >/dev/null | grep -q 'line 2'"
expect_exit 2 "detokenize bad id" bash -c "echo '1 2 999999' | \"$DSV3\" detokenize"
expect_exit 2 "detokenize non-number" bash -c "echo '1 x 2' | \"$DSV3\" detokenize"
expect_exit 2 "detokenize negative" bash -c "echo '-1' | \"$DSV3\" detokenize"
expect_exit 2 "missing tokenizer file" bash -c "echo hi | \"$DSV3\" tokenize --tokenizer $T/nope.json"
echo '{"model": {"type": "Unigram"}}' > "$T/unigram.json"
expect_exit 2 "unsupported model type" bash -c "echo hi | \"$DSV3\" tokenize --tokenizer $T/unigram.json"
echo 'not json' > "$T/bad.json"
expect_exit 2 "not JSON" bash -c "echo hi | \"$DSV3\" detokenize --tokenizer $T/bad.json"
expect_exit 2 "unknown option" "$DSV3" tokenize --frobnicate
# --jsonl: a bad line anywhere means no output at all (every line is encoded before the first is printed)
out=$(printf '{"text":"a"}\n{"text":"b"}\nbad\n' | "$DSV3" tokenize --jsonl 2>/dev/null); rc=$?
check "--jsonl bad third line: exit 2, nothing printed (rc $rc, out '$out')" test $rc -eq 2 -a -z "$out"
# detokenize echoes a bad token escaped, not as raw bytes
err=$(printf '1 \001\377z\n' | "$DSV3" detokenize 2>&1 >/dev/null)
check "detokenize bad token escaped ($err)" grep -qF "'\\x01\\xffz'" <<<"$err"
# whole-file reads are capped; a directory is named as such
err=$(echo hi | "$DSV3" tokenize --tokenizer /dev/zero 2>&1 >/dev/null); rc=$?
check "tokenizer /dev/zero: exit 2 with the limit ($rc: $err)" test $rc -eq 2 -a -n "$(grep 'limit for a tokenizer.json' <<<"$err")"
expect_exit 2 "tokenizer is a directory" bash -c "echo hi | \"$DSV3\" tokenize --tokenizer $T"
check "directory message" bash -c "echo hi | \"$DSV3\" tokenize --tokenizer $T 2>&1 | grep -q 'is a directory'"
# tokenizer_config.json: a bos_token that is not a string / AddedToken is an error naming the file and
# field (not a silent default); null means no BOS, so --bos is an error
mkdir -p "$T/cfg" && ln -s "$PWD/$TOK" "$T/cfg/tokenizer.json"
echo '{"bos_token": 5}' > "$T/cfg/tokenizer_config.json"
err=$(echo hi | "$DSV3" tokenize --tokenizer "$T/cfg/tokenizer.json" 2>&1 >/dev/null); rc=$?
check "numeric bos_token refused ($rc: $err)" test $rc -eq 2 -a -n "$(grep "tokenizer_config.json: field 'bos_token'" <<<"$err")"
echo '{"bos_token": {"content": ["x"]}}' > "$T/cfg/tokenizer_config.json"
expect_exit 2 "AddedToken with a non-string content refused" bash -c "echo hi | \"$DSV3\" tokenize --tokenizer $T/cfg/tokenizer.json"
echo '{"bos_token": null, "eos_token": "<｜end▁of▁sentence｜>"}' > "$T/cfg/tokenizer_config.json"
check "bos_token null: plain tokenize works" test "$(printf 'Hello, world!' | "$DSV3" tokenize --tokenizer "$T/cfg/tokenizer.json")" = "19923 14 2058 3"
expect_exit 2 "bos_token null: --bos is an error" bash -c "printf hi | \"$DSV3\" tokenize --bos --tokenizer $T/cfg/tokenizer.json"
echo '{"bos_token": "<｜end▁of▁sentence｜>"}' > "$T/cfg/tokenizer_config.json"
check "bos_token as a plain string" test "$(printf 'Hello, world!' | "$DSV3" tokenize --bos --tokenizer "$T/cfg/tokenizer.json")" = "1 19923 14 2058 3"
# every command that prints: stdout that cannot be written is exit 1 with a message
if [ -w /dev/full ]; then
  expect_exit 1 "tokenize > /dev/full" bash -c "printf 'Hello' | \"$DSV3\" tokenize > /dev/full"
  expect_exit 1 "tokenize --jsonl > /dev/full" bash -c "printf '{\"text\":\"a\"}\n' | \"$DSV3\" tokenize --jsonl > /dev/full"
  expect_exit 1 "detokenize > /dev/full" bash -c "echo '19923 14' | \"$DSV3\" detokenize > /dev/full"
  check "detokenize /dev/full message" bash -c "echo '19923 14' | \"$DSV3\" detokenize 2>&1 >/dev/full | grep -q 'stdout: write failed'"
fi
finish
