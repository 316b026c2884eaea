#!/usr/bin/env bash
# dsv3 train (and dsv3 plot): --help; bad input -> exit 2, a message and nothing written; one writer
# per --out; bit-identical resume (straight 2N steps == N steps + --stop-at + --resume, with
# micro-batches, from periodic checkpoints); kill -9 at random moments never leaves a step-* folder
# that fails to load or resume; SIGINT -> 130 with a resumable checkpoint; write failures -> exit 1/2;
# bf16 / fp8 checkpoints load in `dsv3 logits` (fp8 close to f32); a non-finite loss is skipped and
# the run stops after --max-bad-steps; the plots of a run. The recipe's numbers are checked against
# PyTorch elsewhere (tests/test_train_ref.c); this is the command line and its faults. Model: a
# 10K-parameter DeepSeek-V3 (MLA, sigmoid routing with groups, one MTP layer), T = 8, --threads 1.
source tests/cli/lib.bash
TMP=$(mktemp -d); BG=()
cleanup() { for p in "${BG[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap cleanup EXIT

# npy FILE DESCR SHAPE VALUES...: a .npy of <i4 / <i8 (perl pack)
npy() { local file=$1 descr=$2 shape=$3; shift 3
  perl -e 'my ($d, $s, @v) = @ARGV; my $h = "{'"'"'descr'"'"': '"'"'$d'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': $s, }";
           $h .= " " x (63 - (10 + length($h)) % 64) . "\n";
           my $f = $d eq "<i8" ? "q<" : "l<";
           print "\x93NUMPY\x01\x00", pack("v", length($h)), $h, pack("$f*", @v);' "$descr" "$shape" "$@" > "$file"; }
# npy_max_absdiff A.npy B.npy: max |a - b| over two float32 .npy files of the same shape
npy_max_absdiff() { perl -e 'sub rd { open my $f, "<", $_[0] or die; binmode $f; local $/; my $b = <$f>;
    my $hl = unpack("v", substr($b, 8, 2)); return [unpack("f<*", substr($b, 10 + $hl))]; }
  my ($a, $b) = (rd($ARGV[0]), rd($ARGV[1])); die "sizes" if @$a != @$b; my $m = 0;
  for my $i (0..$#$a) { my $d = abs($a->[$i] - $b->[$i]); $m = $d if $d > $m; } printf "%.9g\n", $m;' "$1" "$2"; }
npy_max_abs() { perl -e 'open my $f, "<", $ARGV[0] or die; binmode $f; local $/; my $b = <$f>;
  my $hl = unpack("v", substr($b, 8, 2)); my $m = 0; for (unpack("f<*", substr($b, 10 + $hl))) { $m = abs($_) if abs($_) > $m } printf "%.9g\n", $m;' "$1"; }
# data range [begin, end) of tensor NAME in a safetensors file (absolute offsets)
st_range() { perl -e 'open F, "<", $ARGV[0]; binmode F; read F, $n, 8; $l = unpack("Q<", $n); read F, $h, $l;
  $h =~ /"\Q$ARGV[1]\E":\{[^}]*"data_offsets":\[(\d+),(\d+)\]/ or die "no $ARGV[1]"; print 8 + $l + $1, " ", 8 + $l + $2, "\n";' "$1" "$2"; }
newest_step() { ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -1; }

CFG=$TMP/pico.json
cat > "$CFG" <<'EOF'
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "attention_bias": false,
 "bos_token_id": 0, "eos_token_id": 1, "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 16,
 "initializer_range": 0.02, "intermediate_size": 32, "kv_lora_rank": 8, "max_position_embeddings": 64,
 "moe_intermediate_size": 8, "moe_layer_freq": 1, "n_group": 2, "n_routed_experts": 4, "n_shared_experts": 1,
 "norm_topk_prob": true, "num_attention_heads": 2, "num_experts_per_tok": 2, "num_hidden_layers": 2,
 "num_key_value_heads": 2, "num_nextn_predict_layers": 1, "q_lora_rank": 8, "qk_nope_head_dim": 4,
 "qk_rope_head_dim": 4, "rms_norm_eps": 1e-06, "rope_theta": 10000, "routed_scaling_factor": 2.5,
 "scoring_func": "sigmoid", "tie_word_embeddings": false, "topk_group": 1, "topk_method": "noaux_tc",
 "torch_dtype": "float32", "v_head_dim": 4, "vocab_size": 64}
EOF
# 16 rows of T+1 = 9 ids < 64 (a deterministic pattern), another data set differing in one id, a bad one
vals=(); for i in $(seq 0 143); do vals+=($(( (i * 7 + i / 9) % 64 ))); done
npy "$TMP/rows.npy" '<i8' '(16, 9)' "${vals[@]}"
vals[5]=$(( (vals[5] + 1) % 64 )); npy "$TMP/rows2.npy" '<i8' '(16, 9)' "${vals[@]}"
vals[100]=64; npy "$TMP/big.npy" '<i8' '(16, 9)' "${vals[@]}"
R=$TMP/rows.npy
TR=("$DSV3" train --config "$CFG" --data "$R" --threads 1 --quiet)   # a fresh run, add --steps/--out
RS=(--data "$R" --threads 1 --quiet)                                 # what a resume repeats

# ---- usage and bad input: exit 2, a message, nothing written --------------------------------------
expect_exit 0 "--help" "$DSV3" train --help
check "--help names --resume and --save-every" bash -c '"$0" train --help | grep -q -- --resume && "$0" train --help | grep -q -- --save-every' "$DSV3"
O=$TMP/never
expect_exit 2 "no arguments" "$DSV3" train
expect_exit 2 "unknown option" "${TR[@]}" --steps 2 --out "$O" --frobnicate 1
expect_exit 2 "missing --data" "$DSV3" train --config "$CFG" --steps 2 --out "$O"
expect_exit 2 "missing --out" "${TR[@]}" --steps 2
expect_exit 2 "no --steps/--tokens" "${TR[@]}" --out "$O"
expect_exit 2 "--model and --config" "${TR[@]}" --model "$TMP" --steps 2 --out "$O"
expect_exit 2 "--steps x" "${TR[@]}" --steps x --out "$O"
expect_exit 2 "--steps 2.5x" "${TR[@]}" --steps 2.5x --out "$O"
expect_exit 2 "--lr -1" "${TR[@]}" --steps 2 --lr -1 --out "$O"
expect_exit 2 "--batch 0" "${TR[@]}" --steps 2 --batch 0 --out "$O"
expect_exit 2 "--steps without a value" "${TR[@]}" --out "$O" --steps
expect_exit 2 "--save-dtype f16" "${TR[@]}" --steps 2 --save-dtype f16 --out "$O"
expect_exit 2 "--schedule linear" "${TR[@]}" --steps 2 --schedule linear --out "$O"
expect_exit 2 "--batch 4 --micro-batch 3" "${TR[@]}" --steps 2 --batch 4 --micro-batch 3 --out "$O"
check "the message names both" bash -c '"$@" 2>&1 | grep -q "batch 4 is not a multiple of --micro-batch 3"' _ "${TR[@]}" --steps 2 --batch 4 --micro-batch 3 --out "$O"
expect_exit 2 "--micro-batch > --batch" "${TR[@]}" --steps 2 --batch 2 --micro-batch 4 --out "$O"
expect_exit 2 "id >= vocab in ROWS.npy" "$DSV3" train --config "$CFG" --data "$TMP/big.npy" --steps 2 --out "$O" --quiet
check "the message names the id" bash -c '"$0" train --config "$1" --data "$2" --steps 2 --out "$3" 2>&1 | grep -q "id 64 is outside the vocabulary"' "$DSV3" "$CFG" "$TMP/big.npy" "$O"
npy "$TMP/neg.npy" '<i4' '(2, 3)' 1 2 -3 4 5 6
expect_exit 2 "negative id" "$DSV3" train --config "$CFG" --data "$TMP/neg.npy" --steps 2 --out "$O"
npy "$TMP/short.npy" '<i8' '(2, 1)' 1 2
expect_exit 2 "rows of T+1 = 1" "$DSV3" train --config "$CFG" --data "$TMP/short.npy" --steps 2 --out "$O"
expect_exit 2 "missing data file" "$DSV3" train --config "$CFG" --data "$TMP/nope.npy" --steps 2 --out "$O"
expect_exit 2 "missing config" "$DSV3" train --config "$TMP/nope.json" --data "$R" --steps 2 --out "$O"
echo '{"model_type": "deepseek_v3"' > "$TMP/broken.json"
expect_exit 2 "malformed config" "$DSV3" train --config "$TMP/broken.json" --data "$R" --steps 2 --out "$O"
check "nothing written after bad input" test ! -e "$O"
echo keep > "$TMP/afile"
expect_exit 2 "--out names a file" "${TR[@]}" --steps 2 --out "$TMP/afile"
check "the file is untouched" test "$(cat "$TMP/afile")" = keep
expect_exit 2 "--out under a file" "${TR[@]}" --steps 2 --out "$TMP/afile/sub"
expect_exit 2 "--out /dev/full (not a folder)" "${TR[@]}" --steps 2 --out /dev/full

# ---- bit-identical resume -------------------------------------------------------------------------
# straight 8 steps (with periodic checkpoints every 2: saving must not change the run) ...
expect_exit 0 "8 steps straight" "${TR[@]}" --steps 8 --batch 4 --save-every 2 --keep 10 --out "$TMP/A"
same() { cmp -s "$1/model.safetensors" "$2/model.safetensors" && cmp -s "$1/trainer_state.bin" "$2/trainer_state.bin"; }
check "final checkpoint files" test -s "$TMP/A/model.safetensors" -a -s "$TMP/A/trainer_state.bin" -a -s "$TMP/A/config.json" -a -s "$TMP/A/generation_config.json"
check "periodic checkpoints step 2, 4, 6" test -d "$TMP/A/checkpoints/step-0000002" -a -d "$TMP/A/checkpoints/step-0000004" -a -d "$TMP/A/checkpoints/step-0000006"
check "metrics: 8 step lines" test "$(grep -c '"step":' "$TMP/A/metrics.jsonl")" -eq 8
check "metrics keys" bash -c 'for k in step tokens lr loss main mtp balance grad_norm lambda gamma tok_s maxvio; do grep -q "\"$k\":" "$0" || exit 1; done' "$TMP/A/metrics.jsonl"
# ... equals 4 steps + --stop-at, then --resume (into the same folder)
expect_exit 0 "4 of 8 steps (--stop-at 4)" "${TR[@]}" --steps 8 --batch 4 --stop-at 4 --out "$TMP/B"
check "--stop-at 4 ran 4 steps" test "$(grep -c '"step":' "$TMP/B/metrics.jsonl")" -eq 4
check "the stopped run's checkpoint == step-4 of the straight run" same "$TMP/B" "$TMP/A/checkpoints/step-0000004"
expect_exit 0 "--resume for the other 4" "$DSV3" train --resume "$TMP/B" "${RS[@]}" --batch 4 --out "$TMP/B"
check "resume: model.safetensors and trainer_state.bin byte-identical to 8 straight" same "$TMP/A" "$TMP/B"
check "resumed metrics: 8 step lines" test "$(grep -c '"step":' "$TMP/B/metrics.jsonl")" -eq 8
# from a periodic checkpoint, into another folder
expect_exit 0 "--resume checkpoints/step-0000006" "$DSV3" train --resume "$TMP/A/checkpoints/step-0000006" "${RS[@]}" --batch 4 --out "$TMP/C"
check "resume from step-6: byte-identical" same "$TMP/A" "$TMP/C"
# with gradient accumulation (2 micro-batches of 2), stopping twice
expect_exit 0 "micro-batch: 8 straight" "${TR[@]}" --steps 8 --batch 4 --micro-batch 2 --out "$TMP/M1"
expect_exit 0 "micro-batch: --stop-at 3" "${TR[@]}" --steps 8 --batch 4 --micro-batch 2 --stop-at 3 --save-every 1 --out "$TMP/M2"
expect_exit 0 "micro-batch: resume, --stop-at 6" "$DSV3" train --resume "$TMP/M2" "${RS[@]}" --batch 4 --micro-batch 2 --stop-at 6 --save-every 1 --out "$TMP/M2"
expect_exit 0 "micro-batch: resume to the end" "$DSV3" train --resume "$TMP/M2/checkpoints/step-0000005" "${RS[@]}" --batch 4 --micro-batch 2 --out "$TMP/M3"
check "micro-batch resume: byte-identical" same "$TMP/M1" "$TMP/M3"
expect_exit 0 "micro-batch: resume the folder to the end" "$DSV3" train --resume "$TMP/M2" "${RS[@]}" --batch 4 --micro-batch 2 --out "$TMP/M2"
check "micro-batch resume (twice): byte-identical" same "$TMP/M1" "$TMP/M2"

# ---- mismatched resume: exit 2, nothing written ----------------------------------------------------
O=$TMP/never2
expect_exit 2 "resume with other data" "$DSV3" train --resume "$TMP/B" --data "$TMP/rows2.npy" --threads 1 --batch 4 --out "$O"
check "the message says other data" bash -c '"$0" train --resume "$1" --data "$2" --batch 4 --out "$3" 2>&1 | grep -q "other data"' "$DSV3" "$TMP/B" "$TMP/rows2.npy" "$O"
expect_exit 2 "resume with another --batch" "$DSV3" train --resume "$TMP/B" "${RS[@]}" --batch 2 --out "$O"
expect_exit 2 "resume with another --micro-batch" "$DSV3" train --resume "$TMP/B" "${RS[@]}" --batch 4 --micro-batch 2 --out "$O"
expect_exit 2 "resume with another budget" "$DSV3" train --resume "$TMP/B" "${RS[@]}" --batch 4 --steps 9 --out "$O"
mkdir -p "$TMP/X"; cp "$TMP/B"/*.safetensors "$TMP/B/trainer_state.bin" "$TMP/X/"
sed -E 's/"intermediate_size":[[:space:]]*32/"intermediate_size": 48/' "$TMP/B/config.json" > "$TMP/X/config.json"
expect_exit 2 "resume with another config (edited config.json)" "$DSV3" train --resume "$TMP/X" "${RS[@]}" --batch 4 --out "$O"
sed -E 's/"intermediate_size":[[:space:]]*32/"intermediate_size": 48/' "$CFG" > "$TMP/pico48.json"
expect_exit 2 "--resume with --config naming another config" "$DSV3" train --resume "$TMP/B" --config "$TMP/pico48.json" "${RS[@]}" --batch 4 --out "$TMP/never3"
head -c 100 "$TMP/B/trainer_state.bin" > "$TMP/X/trainer_state.bin"; cp "$TMP/B/config.json" "$TMP/X/"
expect_exit 2 "resume from a truncated trainer_state.bin" "$DSV3" train --resume "$TMP/X" "${RS[@]}" --batch 4 --out "$O"
expect_exit 2 "resume from a folder without state" "$DSV3" train --resume "$TMP/nope" "${RS[@]}" --batch 4 --out "$O"
check "nothing written after mismatched resumes" test ! -e "$O"

# ---- one writer per --out; SIGINT saves and exits 130 ---------------------------------------------
L=$TMP/L
"${TR[@]}" --steps 100000 --batch 2 --out "$L" 2>"$TMP/L.err" & lp=$!; BG+=($lp)
for i in $(seq 100); do [ -s "$L/metrics.jsonl" ] && break; sleep 0.05; done
expect_exit 2 "a second writer to the same --out" "${TR[@]}" --steps 2 --out "$L"
check "the message names the pid" bash -c '"$@" 2>&1 | grep -q "in use by pid $0"' "$lp" "${TR[@]}" --steps 2 --out "$L"
kill -INT "$lp"; wait "$lp"; rc=$?
check "SIGINT: exit 130 (got $rc)" test "$rc" -eq 130
check "SIGINT: a checkpoint was saved" test -s "$L/model.safetensors" -a -s "$L/trainer_state.bin"
n=$(grep -c '"step":' "$L/metrics.jsonl")
expect_exit 0 "SIGINT: the checkpoint resumes" "$DSV3" train --resume "$L" "${RS[@]}" --batch 2 --stop-at $((n + 1)) --out "$L"
check "SIGINT: resumed one more step" test "$(grep -c '"step":' "$L/metrics.jsonl")" -eq $((n + 1))
expect_exit 0 "SIGINT: the checkpoint loads in logits" "$DSV3" logits --model "$L" --ids 1,2,3 --out "$TMP/l.npy"

# ---- kill -9 at random moments with --save-every 1 ------------------------------------------------
# each round resumes the newest step-* folder into the same --out (or starts fresh), is killed after
# a random delay; then every step-* left must load in `dsv3 logits` and the newest must resume.
K=$TMP/K
for round in 1 2 3 4; do
  start=$(newest_step "$K")
  if [ -n "$start" ]; then "$DSV3" train --resume "$start" "${RS[@]}" --batch 2 --save-every 1 --keep 3 --out "$K" 2>/dev/null & kp=$!
  else "${TR[@]}" --steps 400 --batch 2 --save-every 1 --keep 3 --out "$K" 2>/dev/null & kp=$!; fi
  BG+=($kp)
  delay=0.$(( RANDOM % 7 + 2 ))$(( RANDOM % 10 ))
  sleep "$delay"; kill -9 "$kp" 2>/dev/null; wait "$kp" 2>/dev/null
  for s in "$K"/checkpoints/step-*; do
    [ -d "$s" ] || continue
    expect_exit 0 "kill -9 round $round (after ${delay}s): $(basename "$s") loads" "$DSV3" logits --model "$s" --ids 1,2,3 --out "$TMP/k.npy"
  done
done
s=$(newest_step "$K")
check "kill -9: some checkpoint was written" test -n "$s"
if [ -n "$s" ]; then
  k=$((10#${s##*step-}))
  expect_exit 0 "kill -9: the newest checkpoint (step $k) resumes" "$DSV3" train --resume "$s" "${RS[@]}" --batch 2 --stop-at $((k + 1)) --out "$TMP/K2"
  # and the steps after it are those of an uninterrupted run (compare with a straight run to k+1)
  expect_exit 0 "kill -9: straight run to the same step" "${TR[@]}" --steps 400 --batch 2 --stop-at $((k + 1)) --out "$TMP/K3"
  check "kill -9: resumed run byte-identical to the straight one" same "$TMP/K2" "$TMP/K3"
  # the killed writers' half-written temp folders are removed by the next writer of that folder
  expect_exit 0 "kill -9: one more step in the killed folder" "$DSV3" train --resume "$s" "${RS[@]}" --batch 2 --save-every 1 --stop-at $((k + 2)) --out "$K"
  check "kill -9: no dead writer's .step-* temp folder is left ($(ls -A "$K/checkpoints" | tr '\n' ' '))" \
    bash -c '! ls -A "$0" | grep -q "^\.step-"' "$K/checkpoints"
fi

# ---- write failures -----------------------------------------------------------------------------
mkdir -p "$TMP/F"; ln -s /dev/full "$TMP/F/metrics.jsonl"
err=$("${TR[@]}" --steps 2 --out "$TMP/F" 2>&1 >/dev/null); rc=$?
check "metrics.jsonl on a full disk (/dev/full): exit 1 or 2 (got $rc)" test "$rc" -eq 1 -o "$rc" -eq 2
check "full disk: a message" test -n "$err"
if [ "$(id -u)" -ne 0 ]; then   # root ignores permissions
  mkdir -p "$TMP/ro"; chmod 555 "$TMP/ro"
  expect_exit 2 "an unwritable --out" "${TR[@]}" --steps 2 --out "$TMP/ro/run"
  mkdir -p "$TMP/ro2"; chmod 555 "$TMP/ro2"
  err=$("${TR[@]}" --steps 2 --out "$TMP/ro2" 2>&1 >/dev/null); rc=$?
  check "a read-only --out folder: exit 1 or 2 (got $rc)" test "$rc" -eq 1 -o "$rc" -eq 2
  chmod 755 "$TMP/ro" "$TMP/ro2"
fi
expect_exit 2 "an --out that cannot be created (/proc)" "${TR[@]}" --steps 2 --out /proc/dsv3-train-test

# ---- --precision bf16 / fp8 ---------------------------------------------------------------------
expect_exit 2 "--fp8-accum without --precision fp8" "${TR[@]}" --steps 2 --fp8-accum hopper14 --out "$O"
expect_exit 2 "--precision fp4" "${TR[@]}" --steps 2 --precision fp4 --out "$O"
expect_exit 2 "--fp8-dgrad rows" "${TR[@]}" --steps 2 --precision fp8 --fp8-dgrad rows --out "$O"
check "nothing written after bad precision options" test ! -e "$O"
expect_exit 0 "bf16: 8 steps" "${TR[@]}" --steps 8 --batch 4 --precision bf16 --out "$TMP/P16"
expect_exit 0 "fp8: 8 steps straight" "${TR[@]}" --steps 8 --batch 4 --precision fp8 --out "$TMP/P8"
check "fp8 recipe in the trainer state (precision 2, exact accumulator, bf16 moments)" bash -c \
  'grep -aq "\"precision\":[[:space:]]*2" "$0/trainer_state.bin" && grep -aq "\"fp8_accum_nc\":[[:space:]]*-1" "$0/trainer_state.bin"' "$TMP/P8"
check "fp8 weights differ from bf16" bash -c '! cmp -s "$0/model.safetensors" "$1/model.safetensors"' "$TMP/P8" "$TMP/P16"
l16=$(grep '"step": 8' "$TMP/P16/metrics.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
l8=$(grep '"step": 8' "$TMP/P8/metrics.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
l8a=$(grep '"step": 1,' "$TMP/P8/metrics.jsonl" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/')
check "fp8 trains: step-8 loss $l8 < step-1 loss $l8a, within 2% of bf16's $l16" awk -v a="$l8a" -v b="$l8" -v c="$l16" \
  'BEGIN { d = b - c; if (d < 0) d = -d; exit !(b < a && d < 0.02 * c) }'
expect_exit 0 "fp8 hopper14: 4 of 8 steps" "${TR[@]}" --steps 8 --batch 4 --precision fp8 --fp8-accum hopper14 --stop-at 4 --out "$TMP/P8h"
expect_exit 0 "fp8 hopper14: --resume keeps the recipe" "$DSV3" train --resume "$TMP/P8h" "${RS[@]}" --batch 4 --out "$TMP/P8h"
check "resumed state still hopper14" grep -aq '"fp8_accum_nc":[[:space:]]*0' "$TMP/P8h/trainer_state.bin"
expect_exit 0 "fp8 hopper14: 8 straight" "${TR[@]}" --steps 8 --batch 4 --precision fp8 --fp8-accum hopper14 --out "$TMP/P8s"
check "fp8 resume byte-identical to 8 straight" same "$TMP/P8h" "$TMP/P8s"
check "hopper14 differs from exact accumulation" bash -c '! cmp -s "$0/model.safetensors" "$1/model.safetensors"' "$TMP/P8" "$TMP/P8s"

# ---- save dtypes: bf16 and fp8 load in dsv3 logits; fp8 close to f32 ------------------------------
# the same run saved three ways (the fp32 masters are the same; only the file differs)
expect_exit 0 "--save-dtype bf16" "${TR[@]}" --steps 8 --batch 4 --init-std 0.1 --save-dtype bf16 --out "$TMP/D16"
expect_exit 0 "--save-dtype fp8" "${TR[@]}" --steps 8 --batch 4 --init-std 0.1 --save-dtype fp8 --out "$TMP/D8"
expect_exit 0 "--save-dtype f32" "${TR[@]}" --steps 8 --batch 4 --init-std 0.1 --save-dtype f32 --out "$TMP/D32"
check "fp8 checkpoint: quantization_config and F8_E4M3 tensors" bash -c 'grep -q quantization_config "$0/config.json" && grep -q F8_E4M3 "$0/model.safetensors" && grep -q weight_scale_inv "$0/model.safetensors"' "$TMP/D8"
check "bf16 checkpoint: BF16 tensors, the bias F32" bash -c 'grep -q BF16 "$0/model.safetensors" && ! grep -q F8_E4M3 "$0/model.safetensors"' "$TMP/D16"
IDS=1,5,9,13,17,21,25,29,33,37,41,45
for d in D32 D16 D8; do
  expect_exit 0 "$d loads in dsv3 logits" "$DSV3" logits --model "$TMP/$d" --ids $IDS --out "$TMP/$d.npy" --threads 1
  expect_exit 0 "$d loads in dsv3 logits --mtp" "$DSV3" logits --model "$TMP/$d" --ids $IDS --mtp --out "$TMP/$d.mtp.npy" --threads 1
done
if [ -s "$TMP/D32.npy" ] && [ -s "$TMP/D8.npy" ] && [ -s "$TMP/D16.npy" ]; then
  m32=$(npy_max_abs "$TMP/D32.npy"); d8=$(npy_max_absdiff "$TMP/D32.npy" "$TMP/D8.npy"); d16=$(npy_max_absdiff "$TMP/D32.npy" "$TMP/D16.npy")
  # E4M3 keeps 3 mantissa bits (relative rounding error <= 1/16 per weight): max |d| <= 0.15 max |logit|;
  # BF16 (8 bits): <= 0.02 max |logit|. Both must differ from f32 (the files really hold other values).
  check "fp8 logits close to f32 (max |d| $d8, max |logit| $m32)" perl -e 'exit !($ARGV[0] <= 0.15 * $ARGV[1] && $ARGV[0] > 0)' "$d8" "$m32"
  check "bf16 logits close to f32 (max |d| $d16, max |logit| $m32)" perl -e 'exit !($ARGV[0] <= 0.02 * $ARGV[1] && $ARGV[0] > 0)' "$d16" "$m32"
fi
expect_exit 0 "train starts from an fp8 checkpoint (--model)" "$DSV3" train --model "$TMP/D8" "${RS[@]}" --steps 2 --batch 4 --out "$TMP/D8b"
check "an fp8 start saves fp8 by default" grep -q F8_E4M3 "$TMP/D8b/model.safetensors"

# ---- non-finite loss: skipped steps, stop after --max-bad-steps -----------------------------------
# an f32 checkpoint with +inf in the final norm's gain: every step's loss is non-finite
mkdir -p "$TMP/inf"; cp "$TMP/D32/config.json" "$TMP/D32/model.safetensors" "$TMP/inf/"
read -r b e < <(st_range "$TMP/inf/model.safetensors" model.norm.weight)
printf '\x00\x00\x80\x7f' | dd of="$TMP/inf/model.safetensors" bs=1 seek="$b" conv=notrunc status=none
err=$("$DSV3" train --model "$TMP/inf" "${RS[@]}" --steps 10 --batch 2 --max-bad-steps 3 --out "$TMP/NF" 2>&1 >/dev/null); rc=$?
check "non-finite loss: exit 1 (got $rc)" test "$rc" -eq 1
check "non-finite loss: says so" grep -q "non-finite" <<<"$err"
check "non-finite loss: 3 skipped steps in metrics" test "$(grep -c '"skipped": true' "$TMP/NF/metrics.jsonl" 2>/dev/null)" -eq 3
check "non-finite loss: no step was applied" test "$(grep -c '"lr":' "$TMP/NF/metrics.jsonl" 2>/dev/null)" -eq 0

# ---- dsv3 plot -------------------------------------------------------------------------------------
expect_exit 0 "plot --help" "$DSV3" plot --help
expect_exit 2 "plot: no RUN_DIR" "$DSV3" plot
expect_exit 2 "plot: unknown option" "$DSV3" plot "$TMP/A" --frobnicate
expect_exit 2 "plot: no metrics.jsonl" "$DSV3" plot "$TMP/nope"
mkdir -p "$TMP/P"; cp "$TMP/A/metrics.jsonl" "$TMP/P/"; echo '{"step": 9, "tokens": 1' >> "$TMP/P/metrics.jsonl"; echo '{}' >> "$TMP/P/metrics.jsonl"
check "plot: a malformed line -> exit 2 naming line 9" bash -c '"$0" plot "$1" 2>&1 | grep -q "metrics.jsonl: line 9: not valid JSON"; [ "${PIPESTATUS[0]}" -eq 2 ]' "$DSV3" "$TMP/P"
head -8 "$TMP/A/metrics.jsonl" > "$TMP/P/metrics.jsonl"; echo '{"step": 9, "tokens": 1, "lr": 1}' >> "$TMP/P/metrics.jsonl"
check "plot: a step without its fields -> exit 2 naming the field" bash -c '"$0" plot "$1" 2>&1 | grep -q "line 9: step record without a number \"loss\""; [ "${PIPESTATUS[0]}" -eq 2 ]' "$DSV3" "$TMP/P"
: > "$TMP/P/metrics.jsonl"
expect_exit 2 "plot: an empty metrics file" "$DSV3" plot "$TMP/P"
check "plot: nothing written after bad input" bash -c '! ls "$0"/*.png 2>/dev/null | grep -q .' "$TMP/P"
check "train wrote its plots at the end" test -s "$TMP/A/loss.png" -a -s "$TMP/A/lr.png" -a -s "$TMP/A/expert_load.png"
rm -f "$TMP/A"/*.png
expect_exit 1 "plot: gnuplot missing (DSV3_GNUPLOT)" env DSV3_GNUPLOT="$TMP/no-gnuplot" "$DSV3" plot "$TMP/A"
expect_exit 1 "plot: gnuplot missing (PATH)" env PATH="$TMP/empty" "$DSV3" plot "$TMP/A"
expect_exit 1 "plot: gnuplot fails" env DSV3_GNUPLOT=/bin/false "$DSV3" plot "$TMP/A"
check "plot: no partial PNG after a failure" bash -c '! ls "$0"/*.png "$0"/.*.tmp.* 2>/dev/null | grep -q .' "$TMP/A"
if command -v gnuplot >/dev/null; then
  # the resumed run's metrics (B) plus a skipped line and a line cut by a kill
  cp "$TMP/B/metrics.jsonl" "$TMP/P/metrics.jsonl"; echo '{"step": 9, "skipped": true, "loss": null}' >> "$TMP/P/metrics.jsonl"
  printf '{"step": 10, "tok' >> "$TMP/P/metrics.jsonl"
  expect_exit 0 "plot a run (--out)" "$DSV3" plot "$TMP/P" --out "$TMP/P/plots"
  for f in loss lr expert_load; do
    check "plot: $f.png is a PNG" bash -c 'head -c 8 "$0" | od -An -tx1 | tr -d " \n" | grep -q 89504e470d0a1a0a' "$TMP/P/plots/$f.png"
  done
  expect_exit 0 "plot a killed and resumed run (repeated steps, a cut last line)" "$DSV3" plot "$TMP/K" --out "$TMP/KP"
  expect_exit 0 "plot a run in place" "$DSV3" plot "$TMP/A"
  check "plot: three PNGs in RUN_DIR" test -s "$TMP/A/loss.png" -a -s "$TMP/A/lr.png" -a -s "$TMP/A/expert_load.png"
fi

finish
