#!/usr/bin/env bash
# dsv3 logits: --help, exit codes on bad input (nothing written), and the .npy it writes
# (header, shape, size). The numbers themselves are checked against the oracle in test_forward.c.
source tests/cli/lib.bash
FX=${DSV3_MODEL_FIXTURES:-tests/fixtures/model}
A=$FX/a_sigmoid_groups_yarn   # vocab 384, no MTP layer
G=$FX/g_mtp                   # vocab 256, one MTP layer
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/out.npy

expect_exit 0 "--help" "$DSV3" logits --help
check "--help names --ids" bash -c '"$0" logits --help | grep -q -- --ids' "$DSV3"
expect_exit 2 "no arguments" "$DSV3" logits
expect_exit 2 "unknown option" "$DSV3" logits --frobnicate 1
expect_exit 2 "bad --attn" "$DSV3" logits --model "$A" --ids 1,2 --attn fancy --out "$OUT"
expect_exit 2 "bad --threads" "$DSV3" logits --model "$A" --ids 1,2 --threads 0 --out "$OUT"
expect_exit 2 "missing --out" "$DSV3" logits --model "$A" --ids 1,2
expect_exit 2 "unreadable model dir" "$DSV3" logits --model "$TMP/nope" --ids 1,2 --out "$OUT"
check "nothing written after errors" test ! -e "$OUT"

if [ ! -d "$A" ] || [ ! -d "$G" ]; then
  echo "SKIP logits.sh fixture checks: $A or $G absent"
  finish; exit $?
fi

expect_exit 2 "non-numeric id" "$DSV3" logits --model "$A" --ids 5,x,7 --out "$OUT"
expect_exit 2 "negative id" "$DSV3" logits --model "$A" --ids 5,-1 --out "$OUT"
expect_exit 2 "id >= vocab" "$DSV3" logits --model "$A" --ids 5,384 --out "$OUT"
expect_exit 2 "empty ids" "$DSV3" logits --model "$A" --ids "" --out "$OUT"
expect_exit 2 "trailing comma" "$DSV3" logits --model "$A" --ids 5, --out "$OUT"
expect_exit 2 "--mtp without MTP layer" "$DSV3" logits --model "$A" --ids 5,6 --mtp --out "$OUT"
expect_exit 2 "--mtp with one token" "$DSV3" logits --model "$G" --ids 5 --mtp --out "$OUT"
check "nothing written after bad ids" test ! -e "$OUT"
# a config whose hidden_size would overflow buffer sizes: exit 2 naming the file and field, nothing written
mkdir -p "$TMP/huge" && ln -s "$PWD/$A/model.safetensors" "$TMP/huge/model.safetensors"
sed 's/"hidden_size": [0-9]*/"hidden_size": 1073741824/' "$A/config.json" > "$TMP/huge/config.json"
expect_exit 2 "huge hidden_size" "$DSV3" logits --model "$TMP/huge" --ids 1,2 --out "$OUT"
check "huge hidden_size message" bash -c '"$0" logits --model "$1" --ids 1,2 --out "$2" 2>&1 | grep -q "huge/config.json: field .hidden_size."' "$DSV3" "$TMP/huge" "$OUT"
check "nothing written after huge config" test ! -e "$OUT"

# npy layout: 10-byte preamble + header padded to a multiple of 64, then T*V float32
npy_ok() { # FILE T V
  local f=$1 t=$2 v=$3 size hdr
  size=$(stat -c %s "$f") || return 1
  hdr=$(head -c 128 "$f" | tr -d '\000' | tr '\n' '|')
  [[ "$hdr" == $'\x93NUMPY'* ]] || { echo "bad magic" >&2; return 1; }
  [[ "$hdr" == *"{'descr': '<f4', 'fortran_order': False, 'shape': ($t, $v), }"* ]] || { echo "bad header: $hdr" >&2; return 1; }
  local hlen=$(( $(od -An -tu2 -j8 -N2 "$f") ))
  [ $(( (10 + hlen) % 64 )) -eq 0 ] || { echo "header not 64-aligned" >&2; return 1; }
  [ "$size" -eq $(( 10 + hlen + t * v * 4 )) ] || { echo "size $size" >&2; return 1; }
}

IDS=25,339,288,241,323,38,11,223
expect_exit 0 "logits naive" "$DSV3" logits --model "$A" --ids $IDS --attn naive --out "$TMP/n.npy" --threads 1
check "naive npy header/size" npy_ok "$TMP/n.npy" 8 384
expect_exit 0 "logits absorb" "$DSV3" logits --model "$A" --ids $IDS --out "$TMP/a.npy"
check "absorb npy header/size" npy_ok "$TMP/a.npy" 8 384
expect_exit 0 "logits rerun" "$DSV3" logits --model "$A" --ids $IDS --out "$TMP/a2.npy"
check "deterministic output" cmp -s "$TMP/a.npy" "$TMP/a2.npy"
check "logits are not all zero" bash -c '[ "$(od -An -v -tx1 -j128 "$0" | tr -d " \n0")" != "" ]' "$TMP/a.npy"
expect_exit 0 "logits 2 threads" "$DSV3" logits --model "$A" --ids $IDS --attn naive --out "$TMP/n2.npy" --threads 2
check "identical for 1 and 2 threads" cmp -s "$TMP/n.npy" "$TMP/n2.npy"
expect_exit 0 "one token" "$DSV3" logits --model "$A" --ids 7 --out "$TMP/one.npy"
check "T=1 npy" npy_ok "$TMP/one.npy" 1 384
expect_exit 0 "mtp logits" "$DSV3" logits --model "$G" --ids 5,6,7,8,9 --mtp --out "$TMP/m.npy"
check "mtp npy is [T-1, V]" npy_ok "$TMP/m.npy" 4 256
# a failed run leaves an existing output untouched
cp "$TMP/a.npy" "$TMP/keep.npy"
expect_exit 2 "bad ids over existing file" "$DSV3" logits --model "$A" --ids 999 --out "$TMP/keep.npy"
check "existing output untouched" cmp -s "$TMP/a.npy" "$TMP/keep.npy"
finish
