#!/usr/bin/env bash
# dsv3 fp8 cast / study: usage errors, bad input lines, and encodes whose expected codes come from
# ml_dtypes 0.6 / torch 2.15 (E4M3, E5M2) or the E5M6 definition in docs/FP8.md.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp_err=$(mktemp)

expect_exit 0 "fp8 --help" "$D" fp8 --help
expect_exit 0 "cast --help" "$D" fp8 cast --help
expect_exit 0 "study --help" "$D" fp8 study --help
expect_exit 2 "no subcommand" "$D" fp8
expect_exit 2 "unknown subcommand" "$D" fp8 melt
expect_exit 2 "cast without --format" "$D" fp8 cast </dev/null
expect_exit 2 "bad format" "$D" fp8 cast --format e4m4 </dev/null
expect_exit 2 "unknown option" "$D" fp8 cast --format e4m3 --round-up </dev/null
expect_exit 2 "study bad --k" "$D" fp8 study --k 12x
expect_exit 2 "study nc not a multiple of the group" "$D" fp8 study --k 256 --nc 48
expect_exit 2 "study bad dist" "$D" fp8 study --dist cauchy
# a group that does not divide the default intervals: the message says so instead of blaming an --nc never given
err=$("$D" fp8 study --group 64 2>&1 >/dev/null)
check "default intervals vs --group explained" grep -q "default promotion intervals" <<<"$err"

# bad line: exit 2, the message names the line, nothing on stdout
out=$(printf '1.5\n2\nabc\n4\n' | "$D" fp8 cast --format e4m3 2>/tmp/fp8_cli_err.$$); rc=$?
check "bad line exits 2" test $rc -eq 2
check "bad line named" grep -q "line 3" /tmp/fp8_cli_err.$$
check "no output on bad input" test -z "$out"
printf '1\n\n' | "$D" fp8 cast --format e5m2 >/dev/null 2>/tmp/fp8_cli_err.$$
check "empty line rejected with its number" grep -q "line 2" /tmp/fp8_cli_err.$$
# hex floats are not decimal, with or without a sign; a NUL byte must not truncate the line to "1"
for v in 0x10 -0x1p3 +0X10; do
  expect_exit 2 "hex float '$v' rejected" bash -c "printf '%s\n' '$v' | \"\$0\" fp8 cast --format e4m3" "$D"
done
expect_exit 2 "NUL byte in a line rejected" bash -c "printf '1\0002\n' | \"\$0\" fp8 cast --format e4m3" "$D"
# no trailing newline, CRLF and surrounding blanks are fine; nan/inf words are accepted
got=$(printf ' 1.5 \r\n-inf\nNaN\n2' | "$D" fp8 cast --format e5m2)
check "CRLF, blanks, inf/nan words, last line without newline" test "$got" == $'0x3e 1.5\n0xfc -inf\n0x7f nan\n0x40 2'
rm -f /tmp/fp8_cli_err.$$

# E4M3: ml_dtypes codes 29 195 1 121 128 for 0.1 -2.75 1e-3 300 -0; 464 ties to 448; 470 overflows to NaN
got=$(printf '0.1\n-2.75\n1e-3\n300\n-0\n464\n470\n' | "$D" fp8 cast --format e4m3)
want=$'0x1d 0.1015625\n0xc3 -2.75\n0x01 0.001953125\n0x79 288\n0x80 -0\n0x7e 448\n0x7f nan'
check "e4m3 cast" test "$got" == "$want"
got=$(printf '470\ninf\nnan\n' | "$D" fp8 cast --format e4m3 --saturate)
check "e4m3 saturate (torch 2.15 cast behaviour)" test "$got" == $'0x7e 448\n0x7e 448\n0x7f nan'
# E5M2: ml_dtypes codes 46 194 20 93 for 0.1 -2.75 1e-3 300; 61440 overflows to inf, 57344 is max
got=$(printf '0.1\n-2.75\n1e-3\n300\n57344\n61440\n' | "$D" fp8 cast --format e5m2)
check "e5m2 cast" test "$got" == $'0x2e 0.09375\n0xc2 -3\n0x14 0.0009765625\n0x5d 320\n0x7b 57344\n0x7c inf'
# E5M6: binary16 top 12 bits. 1 = 0x3c0; 1 + 2^-7 ties to 1 (even); 65280 = max + half ulp -> inf
got=$(printf '1\n1.0078125\n-65024\n65280\n9.5367431640625e-07\n' | "$D" fp8 cast --format e5m6)
check "e5m6 cast" test "$got" == $'0x3c0 1\n0x3c0 1\n0xfbf -65024\n0x7c0 inf\n0x001 9.53674316e-07'
got=$(printf '1e6\n' | "$D" fp8 cast --format e5m6 --saturate)
check "e5m6 saturate" test "$got" == "0x7bf 65024"

# study: one small cell prints a header and one row per promotion interval
out=$("$D" fp8 study --k 256 --m 8 --n 8 --dist uniform)
check "study rows" test "$(grep -cE '^ +256 +(fp32|32|64|128|256|none) ' <<<"$out")" -eq 6
check "study header" grep -q "max_rel" <<<"$out"

# a bad line is echoed escaped and cut, never as raw bytes; an overlong line is refused
err=$(printf '1\n\001\377abc\n' | "$D" fp8 cast --format e4m3 2>&1 >/dev/null)
check "bad line escaped ($err)" grep -qF "'\\x01\\xffabc'" <<<"$err"
err=$(head -c 300 /dev/zero | tr '\0' '\377' | "$D" fp8 cast --format e4m3 2>&1 >/dev/null)
check "long bad line cut with ..." grep -qE "(\\\\xff){60}\.\.\.'$" <<<"$err"
expect_exit 2 "overlong line" bash -c 'head -c 10000 /dev/zero | tr "\0" 1 | "$0" fp8 cast --format e4m3' "$D"
# huge study sizes are refused up front (the limit is named), before any output
out=$("$D" fp8 study --m 4096 --n 4096 --k 1048576 2>"$tmp_err"); rc=$?
check "huge study refused (exit $rc)" test $rc -eq 2 -a -z "$out"
check "huge study names the limit" grep -q "GiB limit" "$tmp_err"
# stdout that cannot be written: exit 1 with a message
if [ -w /dev/full ]; then
  expect_exit 1 "cast > /dev/full" bash -c 'printf "1\n2\n" | "$0" fp8 cast --format e4m3 > /dev/full' "$D"
  check "cast /dev/full message" bash -c 'printf "1\n" | "$0" fp8 cast --format e4m3 2>&1 >/dev/full | grep -q "stdout: write failed"' "$D"
  expect_exit 1 "study > /dev/full" bash -c '"$0" fp8 study --k 256 --m 8 --n 8 > /dev/full' "$D"
fi
rm -f "$tmp_err"
finish
