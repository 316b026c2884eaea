#!/usr/bin/env bash
# dsv3 grad: --help, exit codes on bad input (nothing written), the --json loss keys, the tensors it
# writes (one per parameter, MTP copies of the embedding/head under both names, same bytes). The
# gradient values are checked against torch autograd in tests/test_grad.c.
source tests/cli/lib.bash
FX=tests/fixtures/grad
A=$FX/a_v3_groups_yarn_mtp     # vocab 384, one MTP layer with the embedding/head copies stored
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/g.safetensors

# npy ROWS: write a .npy of DTYPE (<i4, <i8, <f4) and shape "(B, T1)" with the given values (perl pack)
npy() { local file=$1 descr=$2 shape=$3; shift 3
  perl -e 'my ($d, $s, @v) = @ARGV; my $h = "{'"'"'descr'"'"': '"'"'$d'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': $s, }";
           $h .= " " x (63 - (10 + length($h)) % 64) . "\n";
           my $f = $d eq "<i8" ? "q<" : $d eq "<i4" ? "l<" : "f<";
           print "\x93NUMPY\x01\x00", pack("v", length($h)), $h, pack("$f*", @v);' "$descr" "$shape" "$@" > "$file"; }

expect_exit 0 "--help" "$DSV3" grad --help
check "--help names --rows" bash -c '"$0" grad --help | grep -q -- --rows' "$DSV3"
expect_exit 2 "no arguments" "$DSV3" grad
expect_exit 2 "unknown option" "$DSV3" grad --frobnicate 1
expect_exit 2 "missing --out" "$DSV3" grad --model "$A" --rows "$A/rows.npy"
expect_exit 2 "bad --attn" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --attn fancy --out "$OUT"
expect_exit 2 "bad --mtp-weight" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --mtp-weight x --out "$OUT"
expect_exit 2 "negative --seq-aux" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --seq-aux -1 --out "$OUT"
expect_exit 2 "missing model" "$DSV3" grad --model "$TMP/nope" --rows "$A/rows.npy" --out "$OUT"
expect_exit 2 "missing rows" "$DSV3" grad --model "$A" --rows "$TMP/nope.npy" --out "$OUT"
npy "$TMP/big.npy" '<i8' '(1, 3)' 1 2 384
expect_exit 2 "id >= vocab" "$DSV3" grad --model "$A" --rows "$TMP/big.npy" --out "$OUT"
check "id message names the position" bash -c '"$0" grad --model "$1" --rows "$2" --out "$3" 2>&1 | grep -q "384 at row 0, position 2"' "$DSV3" "$A" "$TMP/big.npy" "$OUT"
npy "$TMP/neg.npy" '<i4' '(2, 2)' 1 2 -3 4
expect_exit 2 "negative id" "$DSV3" grad --model "$A" --rows "$TMP/neg.npy" --out "$OUT"
npy "$TMP/short.npy" '<i8' '(2, 1)' 1 2
expect_exit 2 "T+1 < 2" "$DSV3" grad --model "$A" --rows "$TMP/short.npy" --out "$OUT"
npy "$TMP/rank1.npy" '<i8' '(4,)' 1 2 3 4
expect_exit 2 "rank 1" "$DSV3" grad --model "$A" --rows "$TMP/rank1.npy" --out "$OUT"
npy "$TMP/float.npy" '<f4' '(1, 3)' 1 2 3
expect_exit 2 "float rows" "$DSV3" grad --model "$A" --rows "$TMP/float.npy" --out "$OUT"
head -c 40 "$A/rows.npy" > "$TMP/trunc.npy"
expect_exit 2 "truncated rows" "$DSV3" grad --model "$A" --rows "$TMP/trunc.npy" --out "$OUT"
check "nothing written after errors" test ! -e "$OUT"

# a good run: JSON keys, one tensor per parameter, MTP copies under both names with equal bytes
json=$("$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$OUT" --json 2>/dev/null); rc=$?
check "grad exit 0" test "$rc" -eq 0
check "output written" test -s "$OUT"
for k in loss main mtp balance tokens; do
  check "--json has $k" bash -c 'grep -q "\"$1\":" <<<"$0"' "$json" "$k"
done
check "tokens = B*T = 48" bash -c 'grep -q "\"tokens\": 48" <<<"$0"' "$json"
hdr=$(perl -e 'open F, "<", $ARGV[0]; read F, $n, 8; read F, $h, unpack("Q<", $n); print $h' "$OUT")
check "gradient of the embedding" grep -q '"model.embed_tokens.weight"' <<<"$hdr"
check "MTP copy of the embedding" grep -q '"model.layers.2.embed_tokens.weight"' <<<"$hdr"
check "MTP copy of the head" grep -q '"model.layers.2.shared_head.head.weight"' <<<"$hdr"
check "no gradient for the correction bias" bash -c '! grep -q e_score_correction_bias <<<"$0"' "$hdr"
check "one tensor per fixture gradient" test "$(grep -o '"dtype"' <<<"$hdr" | wc -l)" -eq \
  "$(perl -e 'open F, "<", $ARGV[0]; read F, $n, 8; read F, $h, unpack("Q<", $n); print $h' "$A/grads.safetensors" | grep -o '"dtype"' | wc -l)"
# the copies hold the same bytes as the main tensors: compare the two data ranges
same=$(perl -e 'open F, "<", $ARGV[0]; binmode F; read F, $n, 8; $l = unpack("Q<", $n); read F, $h, $l;
  sub rng { my $k = shift; $h =~ /"\Q$k\E":\{[^}]*"data_offsets":\[(\d+),(\d+)\]/ or die "no $k"; return ($1, $2); }
  sub dat { my ($a, $b) = @_; seek F, 8 + $l + $a, 0; read F, my $d, $b - $a; return $d; }
  print dat(rng("model.embed_tokens.weight")) eq dat(rng("model.layers.2.embed_tokens.weight")) &&
        dat(rng("lm_head.weight")) eq dat(rng("model.layers.2.shared_head.head.weight")) ? "yes" : "no";' "$OUT")
check "MTP copies hold the same gradient" test "$same" = yes
expect_exit 0 "absorb attention" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --attn absorb --out "$TMP/g2.safetensors"
expect_exit 1 "unwritable output" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out /dev/full/x.safetensors
# --precision bf16: GEMM inputs rounded to bf16. The loss moves by bf16 rounding only (|Δ| < 1% of
# the fp32 loss on this tiny random model; measured 0.045%), and the gradients really change
# (cosine 0.999 against fp32 there, checked by hand with safetensors).
l32=$("$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g32.st" --json 2>/dev/null | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
l16=$("$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g16.st" --json --precision bf16 2>/dev/null | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
check "bf16 loss ($l16) within 1% of fp32 ($l32)" awk -v a="$l32" -v b="$l16" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 0.01 * a) }'
check "bf16 gradients differ from fp32" bash -c '! cmp -s "$0" "$1"' "$TMP/g32.st" "$TMP/g16.st"
expect_exit 2 "bad --precision" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --precision fp4
check "nothing written on a bad --precision" test ! -e "$TMP/gx.st"
# --precision fp8 (its gradients are checked against the PyTorch FP8 oracle in tests/test_fp8_train.c):
# the loss moves by FP8 noise (measured 0.16% on this model), the gradients change.
l8=$("$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g8.st" --json --precision fp8 2>/dev/null | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
check "fp8 loss ($l8) within 2% of fp32 ($l32)" awk -v a="$l32" -v b="$l8" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 0.02 * a) }'
check "fp8 gradients differ from bf16" bash -c '! cmp -s "$0" "$1"' "$TMP/g16.st" "$TMP/g8.st"
expect_exit 0 "fp8 with every recipe knob" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g8b.st" --precision fp8 \
  --fp8-accum promote:128 --scale-format ue8m0 --fp8-dgrad block --fp8-wgrad-x high
# FP8 activation caching: keeping the fp32 copies of the Linear inputs too changes memory, not the gradients
expect_exit 0 "fp8 --fp8-act-cache fp32" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g8k.st" --json --precision fp8 \
  --fp8-act-cache fp32
check "fp8 gradients identical with the fp32 inputs kept" cmp -s "$TMP/g8.st" "$TMP/g8k.st"
# --fp8-blocks: the four blocks together are the full recipe; one block alone is neither fp8 nor bf16
expect_exit 0 "fp8 --fp8-blocks (all four)" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g8l.st" --precision fp8 \
  --fp8-blocks attn,mlp,experts,mtp
check "all four blocks = the full recipe" cmp -s "$TMP/g8.st" "$TMP/g8l.st"
expect_exit 0 "fp8 --fp8-blocks attn" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/g8a.st" --precision fp8 --fp8-blocks attn
check "attn-only differs from full fp8 and from bf16" bash -c '! cmp -s "$0" "$1" && ! cmp -s "$0" "$2"' "$TMP/g8a.st" "$TMP/g8.st" "$TMP/g16.st"
expect_exit 2 "bad --fp8-blocks" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --precision fp8 --fp8-blocks attn,
expect_exit 2 "bad --fp8-act-cache" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --precision fp8 --fp8-act-cache bf16
expect_exit 2 "bad --fp8-accum" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --precision fp8 --fp8-accum promote:100
expect_exit 2 "bad --scale-format" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --precision fp8 --scale-format e8
expect_exit 2 "fp8 knob without --precision fp8" "$DSV3" grad --model "$A" --rows "$A/rows.npy" --out "$TMP/gx.st" --fp8-dgrad block
check "nothing written on bad fp8 options" test ! -e "$TMP/gx.st"
# logits --precision: the training forward (its fp8 logits are checked against the oracle in test_fp8_train.c)
expect_exit 0 "logits --precision fp8 --attn naive" "$DSV3" logits --model "$A" --ids 1,2,3,4,5 --attn naive --precision fp8 --out "$TMP/l8.npy"
expect_exit 0 "logits --precision bf16 --mtp" "$DSV3" logits --model "$A" --ids 1,2,3,4,5 --precision bf16 --mtp --out "$TMP/l16m.npy"
expect_exit 0 "logits fp32" "$DSV3" logits --model "$A" --ids 1,2,3,4,5 --attn naive --out "$TMP/l32.npy"
check "fp8 logits differ from fp32, same size" bash -c '! cmp -s "$0" "$1" && [ "$(stat -c %s "$0")" = "$(stat -c %s "$1")" ]' "$TMP/l8.npy" "$TMP/l32.npy"
check "MTP logits: T-1 rows" bash -c '[ "$(stat -c %s "$0")" -lt "$(stat -c %s "$1")" ]' "$TMP/l16m.npy" "$TMP/l32.npy"
expect_exit 2 "logits: fp8 knob without fp8" "$DSV3" logits --model "$A" --ids 1,2 --scale-format ue8m0 --out "$TMP/lx.npy"
expect_exit 2 "logits fp8: id outside the vocabulary" "$DSV3" logits --model "$A" --ids 1,100000 --precision fp8 --out "$TMP/lx.npy"
check "nothing written on bad logits input" test ! -e "$TMP/lx.npy"
finish
