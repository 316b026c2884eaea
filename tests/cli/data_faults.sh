#!/usr/bin/env bash
# Fault tests of `dsv3 data prepare` (docs/DATA.md §4, "Durability"), bounded to well under a minute:
#  - kill -9 at random moments of a run over an existing dataset: afterwards the reader (data verify
#    --verify, every byte) always accepts the folder, and what it accepts is entirely the old dataset
#    or entirely the new one (same digests as reference runs in fresh folders), never a mix and never
#    nothing; the next run cleans up what the killed one left;
#  - two concurrent writers into one folder: one wins, the other exits 2 "in use by pid N" (N = the
#    winner) and writes nothing;
#  - a run that fails on bad input after it has written shards leaves the previous dataset exactly
#    as it was.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
T=models/deepseek-v3/tokenizer.json
# A small corpus: 20 copies of the fixture (276 KB, 1,260 documents); small shards, so a run writes
# ~130 files and the kills land among them.
for i in $(seq 20); do cat tests/fixtures/data/devil-sample.jsonl; done > "$tmp/c.jsonl"
# two runs that differ by seed and packing; concat without a shuffle buffer writes shards all along,
# best-fit with the default buffer writes them at the end
args_a=(--tokenizer $T --seq-len 64 --shard-rows 8 --val-fraction 0.05 --quiet --seed 1)
args_b=(--tokenizer $T --seq-len 64 --shard-rows 8 --val-fraction 0.05 --quiet --seed 2 --packing concat --shuffle-buffer 0)
digests() { "$D" data verify "$1" --verify 2>&1 | grep -E '^(train|val) ' ; }

"$D" data prepare "${args_a[@]}" --out "$tmp/ref_a" "$tmp/c.jsonl" || bad "reference run A"
"$D" data prepare "${args_b[@]}" --out "$tmp/ref_b" "$tmp/c.jsonl" || bad "reference run B"
dig_a=$(digests "$tmp/ref_a"); dig_b=$(digests "$tmp/ref_b")
check "reference digests differ" test -n "$dig_a" -a "$dig_a" != "$dig_b"

# --- kill -9 at random moments -------------------------------------------------------------------
d="$tmp/live"
"$D" data prepare "${args_a[@]}" --out "$d" "$tmp/c.jsonl" || bad "initial dataset"
state=a; kills=0; finished=0; seed=${FAULT_SEED:-$RANDOM}
RANDOM=$seed
for trial in $(seq 10); do
  if [ $state = a ]; then next=b; args=("${args_b[@]}"); else next=a; args=("${args_a[@]}"); fi
  "$D" data prepare "${args[@]}" --out "$d" "$tmp/c.jsonl" 2>/dev/null &
  pid=$!
  sleep "0.$(printf '%03d' $(( RANDOM % 700 )))"   # 0 .. 0.7 s: tokenizer load, tokenizing, shard writes, publish
  if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
  wait $pid 2>/dev/null; rc=$?
  [ $rc -eq 0 ] && finished=$((finished + 1))
  got=$(digests "$d")
  if [ "$got" = "$dig_a" ]; then now=a; elif [ "$got" = "$dig_b" ]; then now=b; else now=none; fi
  check "trial $trial (seed $seed, exit $rc): the reader accepts the folder, all old or all new ($now)" \
    test $now = $state -o $now = $next
  [ $rc -eq 0 ] && check "trial $trial: a run that finished published the new dataset" test $now = $next
  [ $now != none ] && state=$now
done
check "some runs were killed ($kills of 10)" test $kills -gt 0
# a clean run afterwards: the dead runs' temps and unlisted shards are gone
"$D" data prepare "${args_a[@]}" --out "$d" "$tmp/c.jsonl" || bad "run after the kills"
check "after the kills: dataset A again" test "$(digests "$d")" = "$dig_a"
check "no temp files left" test -z "$(ls -A "$d" | grep '\.tmp\.')"
listed=$(grep -c '"file":' "$d/manifest.json")
check "only the listed shards, the manifest and .lock remain" test "$(ls -A "$d" | wc -l)" -eq $((listed + 2))

# --- two concurrent writers ----------------------------------------------------------------------
# The first writer reads its corpus from a FIFO, so it holds the folder's lock for as long as the
# test keeps the FIFO open: the overlap is certain, not a race.
c="$tmp/conc"; fifo="$tmp/fifo.jsonl"; mkfifo "$fifo"
"$D" data prepare "${args_a[@]}" --out "$c" "$fifo" 2>"$tmp/w1.err" &
p1=$!
exec 3<>"$fifo"  # read-write: never blocks; the writer's own open of the FIFO does not block either
for i in $(seq 1000); do [ "$(cat "$c/.lock" 2>/dev/null)" = "$p1" ] && break; sleep 0.01; done
check "the first writer holds the lock" test "$(cat "$c/.lock" 2>/dev/null)" = "$p1"
"$D" data prepare "${args_b[@]}" --out "$c" "$tmp/c.jsonl" 2>"$tmp/w2.err"; rc2=$?
kill -0 $p1 2>/dev/null && timeout 60 cat "$tmp/c.jsonl" >&3; exec 3>&-
wait $p1; rc1=$?
check "first writer wins (exit $rc1: $(cat "$tmp/w1.err"))" test $rc1 -eq 0
check "second writer exits 2 (exit $rc2)" test $rc2 -eq 2
check "it says who holds the folder: $(cat "$tmp/w2.err")" grep -q "$c: in use by pid $p1" "$tmp/w2.err"
rows() { "$D" data verify "$1" --verify 2>&1 | grep -E '^(train|val) ' | sed 's/ digest.*//'; }
check "the winner's dataset is intact (same rows as run A)" test "$(rows "$c")" = "$(rows "$tmp/ref_a")"
check "the loser wrote nothing" test -z "$(ls -A "$c" | grep -v -E '^(g1-(train|val)-[0-9]{5}\.bin|manifest\.json|\.lock)$')"
# many writers at once: exactly one succeeds, the others exit 2
c="$tmp/conc4"; mkdir "$c"
pids=(); for i in 1 2 3 4; do "$D" data prepare "${args_a[@]}" --out "$c" "$tmp/c.jsonl" 2>/dev/null & pids+=($!); done
n0=0; n2=0; for p in "${pids[@]}"; do wait $p; case $? in 0) n0=$((n0+1));; 2) n2=$((n2+1));; esac; done
check "4 concurrent writers: each exits 0 or 2, at least one 0 ($n0 ok, $n2 refused)" test $n0 -ge 1 -a $((n0 + n2)) -eq 4
check "and the folder holds one whole dataset" test "$(digests "$c")" = "$dig_a"

# --- a failed run keeps the previous dataset -----------------------------------------------------
{ cat "$tmp/c.jsonl"; echo '{"text": 5}'; } > "$tmp/late-bad.jsonl"
before=$(cd "$d" && ls -A | sort | xargs sha256sum)
err=$("$D" data prepare "${args_b[@]}" --out "$d" "$tmp/late-bad.jsonl" 2>&1); rc=$?
check "bad line at the end: exit 2 ($rc)" test $rc -eq 2
check "names the line: $err" grep -q "late-bad.jsonl:$(( $(wc -l < "$tmp/c.jsonl") + 1 ))" <<<"$err"
check "the folder is exactly as before" test "$(cd "$d" && ls -A | sort | xargs sha256sum)" = "$before"
check "the previous dataset still verifies" test "$(digests "$d")" = "$dig_a"
finish
