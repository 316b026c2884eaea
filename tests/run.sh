#!/usr/bin/env bash
# Runs each test binary given as an argument (and each tests/cli/*.sh script), sums the RESULT
# lines and prints "N passed, N failed". Exits non-zero if anything failed or crashed.
set -u
passed=0; failed=0
: "${DSV3:=./dsv3}"; export DSV3
# OpenMP threads sleep instead of spinning while waiting: on a shared 2-core machine spinning
# makes a parallel region wait for a descheduled thread (see docs/PERF.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
for t in "$@" tests/cli/*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  if [[ "$t" == *.sh ]]; then out=$(bash "$t" 2>&1); rc=$?; else out=$("$t" 2>&1); rc=$?; fi
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
  res=$(printf '%s\n' "$out" | awk '/^RESULT /{p+=$3; f+=$4; n++} END{if(n) print p, f; else print ""}')
  if [ -z "$res" ]; then p=0; f=1; else read -r p f <<<"$res"; fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -gt 0 ]; then
    printf '%s\n' "$out" | grep -v '^RESULT ' | tail -40
    printf 'FAILED %-28s %5d passed %3d failed (exit %d, %ss)\n' "$name" "$p" "$f" "$rc" "$secs"
  else
    printf 'ok     %-28s %5d passed (%ss)\n' "$name" "$p" "$secs"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
