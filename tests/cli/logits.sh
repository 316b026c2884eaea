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
expect_exit 2 "id above 2^31" "$DSV3" logits --model "$A" --ids 1,2147483648 --out "$OUT"
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
# --ids-file: the same ids as text (commas, spaces, newlines) or as .npy int32 / int64 give the same logits
printf '25, 339\n288 241\n323,38\n11\n223\n' > "$TMP/ids.txt"
expect_exit 0 "--ids-file text" "$DSV3" logits --model "$A" --ids-file "$TMP/ids.txt" --out "$TMP/f.npy"
check "--ids-file text = --ids" cmp -s "$TMP/a.npy" "$TMP/f.npy"
byte() { printf "\\$(printf '%03o' "$1")"; }
npy_ids() { # DESCR BYTES-PER-ID SHAPE IDS... > file: a .npy written the way numpy.save writes it
  local descr=$1 w=$2 shape=$3; shift 3
  local dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
  local pad=$(( (64 - (10 + ${#dict} + 1) % 64) % 64 )) hlen
  hlen=$(( ${#dict} + pad + 1 ))
  printf '\x93NUMPY\x01\x00'; byte $((hlen & 255)); byte $((hlen >> 8))
  printf '%s%*s\n' "$dict" $pad ''
  for v in "$@"; do for ((b = 0; b < w; b++)); do byte $(( (v >> (8 * b)) & 255 )); done; done
}
npy_ids '<i4' 4 '(8,)' 25 339 288 241 323 38 11 223 > "$TMP/ids4.npy"
npy_ids '<i8' 8 '(1, 8)' 25 339 288 241 323 38 11 223 > "$TMP/ids8.npy"
expect_exit 0 "--ids-file int32 .npy" "$DSV3" logits --model "$A" --ids-file "$TMP/ids4.npy" --out "$TMP/f4.npy"
check "--ids-file int32 .npy = --ids" cmp -s "$TMP/a.npy" "$TMP/f4.npy"
expect_exit 0 "--ids-file int64 .npy (1, T)" "$DSV3" logits --model "$A" --ids-file "$TMP/ids8.npy" --out "$TMP/f8.npy"
check "--ids-file int64 .npy = --ids" cmp -s "$TMP/a.npy" "$TMP/f8.npy"
expect_exit 0 "--ids-file - (stdin)" bash -c 'printf "7\n" | "$0" logits --model "$1" --ids-file - --out "$2"' "$DSV3" "$A" "$TMP/s.npy"
check "--ids-file - = --ids 7" cmp -s "$TMP/one.npy" "$TMP/s.npy"
# bad ids files: exit 2, a message naming the file, nothing written
bad_ids() { # DESC FILE WORDS
  local err rc; err=$("$DSV3" logits --model "$A" --ids-file "$2" --out "$TMP/bad.npy" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 2 ] && grep -qF -- "$3" <<<"$err" && [ ! -e "$TMP/bad.npy" ]; then ok; else bad "$1: rc $rc: $err"; fi
}
npy_ids '<f4' 4 '(2,)' 1 2 > "$TMP/idsf.npy"
npy_ids '<i4' 4 '(2, 2)' 1 2 3 4 > "$TMP/ids22.npy"
npy_ids '<i4' 4 '(2,)' 1 -5 > "$TMP/idsneg.npy"
head -c 70 "$TMP/ids4.npy" > "$TMP/idstrunc.npy"
printf '1,2,,3' > "$TMP/ids-comma.txt"; printf '1 2 x' > "$TMP/ids-x.txt"; printf ' \n' > "$TMP/ids-empty.txt"
printf '1 99999999999' > "$TMP/ids-big.txt"
bad_ids "float .npy" "$TMP/idsf.npy" "int32 or int64"
bad_ids "2-D .npy" "$TMP/ids22.npy" "shape (T,) or (1, T)"
bad_ids "negative .npy id" "$TMP/idsneg.npy" "not in [0, 2^31)"
bad_ids "truncated .npy" "$TMP/idstrunc.npy" "idstrunc.npy"
bad_ids "double comma" "$TMP/ids-comma.txt" "ids-comma.txt"
bad_ids "non-number" "$TMP/ids-x.txt" "ids-x.txt"
bad_ids "no ids" "$TMP/ids-empty.txt" "no token ids"
bad_ids "id above 2^31" "$TMP/ids-big.txt" "above 2^31"
bad_ids "directory" "$TMP" "is a directory"
bad_ids "missing file" "$TMP/none.txt" "cannot open"
bad_ids "endless input (/dev/zero)" /dev/zero "64 MiB limit"
expect_exit 2 "--ids and --ids-file" "$DSV3" logits --model "$A" --ids 1 --ids-file "$TMP/ids.txt" --out "$TMP/bad.npy"
# limits checked from the config before any weight is read: T against the context, the logits size
mkdir -p "$TMP/ctx4" && ln -s "$PWD/$A/model.safetensors" "$TMP/ctx4/model.safetensors"
sed 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 4/' "$A/config.json" > "$TMP/ctx4/config.json"
expect_exit 0 "T = context" "$DSV3" logits --model "$TMP/ctx4" --ids 1,2,3,4 --out "$TMP/c4.npy"
err=$("$DSV3" logits --model "$TMP/ctx4" --ids 1,2,3,4,5 --out "$TMP/bad.npy" 2>&1); rc=$?
check "T > context refused ($rc: $err)" test $rc -eq 2 -a ! -e "$TMP/bad.npy"
check "T > context message" grep -q "max_position_embeddings 4" <<<"$err"
mkdir -p "$TMP/bigvocab" && sed 's/"vocab_size": [0-9]*/"vocab_size": 2000000000/' "$A/config.json" > "$TMP/bigvocab/config.json"
err=$("$DSV3" logits --model "$TMP/bigvocab" --ids 1,2 --out "$TMP/bad.npy" 2>&1); rc=$?
check "logits above the memory limit refused ($rc: $err)" test $rc -eq 2 -a ! -e "$TMP/bad.npy"
check "memory limit message" grep -q "GiB limit" <<<"$err"
# --out - writes the .npy to stdout; a stdout that cannot be written is exit 1 with a message
"$DSV3" logits --model "$A" --ids $IDS --out - > "$TMP/stdout.npy" 2>/dev/null
check "--out - = file" cmp -s "$TMP/a.npy" "$TMP/stdout.npy"
if [ -w /dev/full ]; then
  expect_exit 1 "--out - > /dev/full" bash -c '"$0" logits --model "$1" --ids 1,2 --out - > /dev/full' "$DSV3" "$A"
  check "--out - > /dev/full message" bash -c '"$0" logits --model "$1" --ids 1,2 --out - 2>&1 >/dev/full | grep -q "write failed"' "$DSV3" "$A"
fi
# a failed run leaves an existing output untouched
cp "$TMP/a.npy" "$TMP/keep.npy"
expect_exit 2 "bad ids over existing file" "$DSV3" logits --model "$A" --ids 999 --out "$TMP/keep.npy"
check "existing output untouched" cmp -s "$TMP/a.npy" "$TMP/keep.npy"
finish
