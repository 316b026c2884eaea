#!/usr/bin/env bash
# dsv3 generate / dsv3 chat: usage and bad input (exit 2, nothing written), --json keys, greedy
# determinism, speculative == plain greedy, the prompt cache (--session), text in and out with a
# tokenizer, and a chat session with /save, /reset and /load.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
M=tests/fixtures/model
G=$M/g_mtp

expect_exit 0 "generate --help" "$D" generate --help
expect_exit 0 "chat --help" "$D" chat --help
expect_exit 2 "no model" "$D" generate --ids 1,2
expect_exit 2 "no prompt" "$D" generate --model $G
expect_exit 2 "two prompts" "$D" generate --model $G --ids 1 --prompt hi
expect_exit 2 "missing model dir" "$D" generate --model "$tmp/none" --ids 1,2
expect_exit 2 "id out of range" "$D" generate --model $G --ids 1,256
expect_exit 2 "negative id" "$D" generate --model $G --ids 1,-3
expect_exit 2 "prompt longer than the context" "$D" generate --model $G --ctx 4 --ids 1,2,3,4,5
expect_exit 2 "top-p above 1" "$D" generate --model $G --ids 1,2 --top-p 1.5
expect_exit 2 "temperature not a number" "$D" generate --model $G --ids 1,2 --temperature nan
expect_exit 2 "negative max tokens" "$D" generate --model $G --ids 1,2 --max-tokens -1
expect_exit 2 "unknown speculative method" "$D" generate --model $G --ids 1,2 --speculative eagle
expect_exit 2 "speculative without MTP module" "$D" generate --model $M/a_sigmoid_groups_yarn --ids 1,2 --speculative mtp
expect_exit 2 "text prompt without tokenizer" "$D" generate --model $G --prompt hello
expect_exit 2 "stop id out of range" "$D" generate --model $G --ids 1,2 --stop-id 999
err=$("$D" generate --model $G --ids 1,256 2>&1 >/dev/null)
check "out-of-range id named ($err)" grep -q "256" <<<"$err"

# --json, greedy determinism, speculative == plain
j1=$("$D" generate --model $G --ids 3,1,4,1,5 --max-tokens 16 --temperature 0 --ignore-eos --json --quiet)
j2=$("$D" generate --model $G --ids 3,1,4,1,5 --max-tokens 16 --temperature 0 --ignore-eos --json --quiet --threads 1)
js=$("$D" generate --model $G --ids 3,1,4,1,5 --max-tokens 16 --temperature 0 --ignore-eos --json --quiet --speculative mtp --draft 2)
ids() { sed -n 's/.*"ids":\[\([0-9,]*\)\].*/\1/p' <<<"$1"; }
for k in ids prompt_tokens drafted accepted tokens_per_second prefill_tokens_per_second generated stop_reason seed; do
  check "--json has $k" grep -q "\"$k\":" <<<"$j1"
done
check "16 ids" test "$(ids "$j1" | tr ',' '\n' | wc -l)" = 16
check "greedy is deterministic (1 vs 2 threads)" test "$(ids "$j1")" = "$(ids "$j2")"
check "speculative greedy == plain greedy" test "$(ids "$js")" = "$(ids "$j1")"
check "speculative drafted" grep -q '"drafted":[1-9]' <<<"$js"
s1=$("$D" generate --model $G --ids 3,1,4 --max-tokens 12 --temperature 0.9 --seed 7 --json --quiet)
s2=$("$D" generate --model $G --ids 3,1,4 --max-tokens 12 --temperature 0.9 --seed 7 --json --quiet)
check "same seed, same sample" test "$(ids "$s1")" = "$(ids "$s2")"
lp=$("$D" generate --model $G --ids 3,1,4 --max-tokens 3 --temperature 0 --json --quiet --logprobs 2)
check "--logprobs entries" grep -q '"logprobs":\[{"id":[0-9]*,"logprob":-\?[0-9.e-]*,"top":\[\[' <<<"$lp"

# prompt cache
"$D" generate --model $G --ids 3,1,4,1,5,9,2,6 --max-tokens 4 --temperature 0 --ignore-eos --quiet --session "$tmp/s.kv" >/dev/null
check "session file written" test -s "$tmp/s.kv"
r=$("$D" generate --model $G --ids 3,1,4,1,5,9,2,6,5,3 --max-tokens 4 --temperature 0 --ignore-eos --json --quiet --session "$tmp/s.kv")
check "prefix reused from the session file" grep -q '"reused_tokens":8' <<<"$r"
f=$("$D" generate --model $G --ids 3,1,4,1,5,9,2,6,5,3 --max-tokens 4 --temperature 0 --ignore-eos --json --quiet)
check "restored session continues like a fresh one" test "$(ids "$r")" = "$(ids "$f")"
expect_exit 2 "session of another model" "$D" generate --model $M/j_long_mtp --ids 1,2 --session "$tmp/s.kv"
err=$("$D" generate --model $M/j_long_mtp --ids 1,2 --session "$tmp/s.kv" 2>&1 >/dev/null)
check "another model named ($err)" grep -q "another model" <<<"$err"
head -c 100 "$tmp/s.kv" > "$tmp/t.kv"
expect_exit 2 "truncated session file" "$D" generate --model $G --ids 1,2 --session "$tmp/t.kv"
check "refused session file left as it was" test "$(stat -c %s "$tmp/t.kv")" = 100
printf 'garbage' > "$tmp/g.kv"
expect_exit 2 "foreign session file" "$D" generate --model $G --ids 1,2 --session "$tmp/g.kv"

# text in and out: a small tokenizer (vocab < 384) with the 384-id fixture model
X=$M/a_sigmoid_groups_yarn
"$D" tokenizer train --vocab-size 300 --quiet --out "$tmp/tok.json" tests/fixtures/data/plain.txt
out=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "The meaning of" --max-tokens 8 --temperature 0 --ignore-eos --quiet)
check "text output" test -n "$out"
jt=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "The meaning of" --max-tokens 8 --temperature 0 --ignore-eos --quiet --json)
check "--json text" grep -q '"text":"' <<<"$jt"
# the raw text may end inside a UTF-8 sequence (byte-level tokens); --json text is always valid UTF-8
jl=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "hello there" --max-tokens 60 --temperature 0 --ignore-eos --quiet --json)
check "--json text is valid UTF-8" iconv -f UTF-8 -t UTF-8 -o /dev/null <<<"$jl"
# a stop string cuts the text (what is printed is the text before its first occurrence); bytes, not characters
export LC_ALL=C
full=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "The meaning of" --max-tokens 8 --temperature 0 --ignore-eos --quiet)
if [ ${#full} -ge 6 ]; then
  stop=${full:3:2}
  cut=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "The meaning of" --max-tokens 8 --temperature 0 --ignore-eos --quiet --stop "$stop")
  check "stop string ends the text" test "$cut" = "${full%%"$stop"*}"
else
  bad "generated text too short for the stop-string check (${#full} bytes)"
fi

# continuous batching: the same results whatever the number of sequences per step
printf 'The meaning of\nhello there\nA b c\nthe end\n' > "$tmp/prompts.txt"
b1=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompts-file "$tmp/prompts.txt" --parallel 1 --max-tokens 6 --temperature 0 --ignore-eos --json --quiet)
b3=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompts-file "$tmp/prompts.txt" --parallel 3 --max-tokens 6 --temperature 0 --ignore-eos --json --quiet)
check "--prompts-file: one result per prompt" test "$(wc -l <<<"$b3")" = 4
check "--parallel 3 == --parallel 1" test "$b1" = "$b3"
single=$("$D" generate --model $X --tokenizer "$tmp/tok.json" --prompt "hello there" --max-tokens 6 --temperature 0 --ignore-eos --json --quiet)
check "batched result == single generation" test "$(ids "$single")" = "$(sed -n 2p <<<"$b3" | sed -n 's/.*"ids":\[\([0-9,]*\)\].*/\1/p')"
: > "$tmp/empty.txt"
expect_exit 2 "--prompts-file without prompts" "$D" generate --model $X --tokenizer "$tmp/tok.json" --prompts-file "$tmp/empty.txt"
expect_exit 2 "--prompts-file with --speculative" "$D" generate --model $G --prompts-file "$tmp/prompts.txt" --speculative mtp
expect_exit 2 "--parallel 0" "$D" generate --model $X --tokenizer "$tmp/tok.json" --prompts-file "$tmp/prompts.txt" --parallel 0

# chat: two turns, /save, /reset, /load
chat=$(printf 'hello there\n/save %s\n/reset\n/load %s\nand again\n/quit\n' "$tmp/c.kv" "$tmp/c.kv" |
       "$D" chat --model $X --tokenizer "$tmp/tok.json" --system "Be brief." --max-tokens 6 --temperature 0 --ignore-eos 2>&1)
rc=$?
check "chat exits 0 ($rc)" test $rc -eq 0
check "chat saved" grep -q "\[saved [0-9]* tokens and 3 messages" <<<"$chat"
check "chat reset" grep -q "\[conversation reset\]" <<<"$chat"
check "chat loaded" grep -q "\[loaded [0-9]* tokens and 3 messages" <<<"$chat"
check "second turn reused the loaded cache" grep -q "[0-9]* reused" <<<"$(grep '^\[' <<<"$chat" | tail -1)"
bad_load=$(printf '/load %s\n/quit\n' "$tmp/g.kv" | "$D" chat --model $X --tokenizer "$tmp/tok.json" 2>&1)
check "chat /load of a bad file reports it" grep -q "not a dsv3 session" <<<"$bad_load"
finish
