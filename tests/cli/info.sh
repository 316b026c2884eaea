#!/usr/bin/env bash
# dsv3 info: counts for the real DeepSeek-V3 config (spec deepseek-v3.md §3.5) and bad configs.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

expect_exit 0 "--help" "$D" info --help
expect_exit 2 "no --config" "$D" info
expect_exit 2 "unknown option" "$D" info --config configs/deepseek-v3.json --frobnicate
expect_exit 2 "bad --ctx" "$D" info --config configs/deepseek-v3.json --ctx abc
expect_exit 2 "missing file" "$D" info --config "$tmp/none.json"

json=$("$D" info --config configs/deepseek-v3.json --json)
has() { grep -q -- "$1" <<<"$json"; }
# exact arithmetic from the tensor shapes: 671.03B total, 37.55B active, 11.61B MTP, 70,272 KV bytes/token
check "total_params" has '"total_params": 671026419200,'
check "active_params" has '"active_params": 37552297472,'
check "mtp_params" has '"mtp_params": 11610068224,'
check "kv_bytes_per_token" has '"kv_bytes_per_token": 70272,'
check "mha_kv_bytes_per_token" has '"mha_kv_bytes_per_token": 4997120,'
check "flops_per_token" has '"flops_per_token": '
check "one JSON object" test "$(printf '%s' "$json" | head -c1)" = "{"

human=$("$D" info --config configs/deepseek-v3.json)
check "human total" grep -q "671.03 B" <<<"$human"
check "human active" grep -q "37.55 B" <<<"$human"
check "human KV" grep -q "70.27 KB" <<<"$human"
check "human FLOPs unit" grep -q "GFLOP" <<<"$human"

# a model directory works as --config; --ctx changes only the attention term
mkdir -p "$tmp/model" && cp configs/deepseek-v2-lite.json "$tmp/model/config.json"
check "directory form" grep -q '"model_type": "deepseek_v2"' <<<"$("$D" info --config "$tmp/model" --json)"
a=$("$D" info --config configs/nano.json --json --ctx 0 | grep -o '"flops_per_token_at_ctx": [0-9]*')
b=$("$D" info --config configs/nano.json --json | grep -o '"flops_per_token": [0-9]*')
check "ctx 0 adds no attention" test "${a#*: }" = "${b#*: }"
for f in configs/*.json; do expect_exit 0 "$f" "$D" info --config "$f"; done

# bad configs: exit 2, a message naming the file and the problem, nothing on stdout
bad_config() { # file, expected words in the message
  local out err rc; out=$("$D" info --config "$1" 2>"$tmp/err"); rc=$?; err=$(cat "$tmp/err")
  if [ $rc -eq 2 ] && [ -z "$out" ] && grep -qF "$1" <<<"$err" && grep -qF "$2" <<<"$err"; then ok; else bad "$1: rc $rc out '$out' err '$err'"; fi
}
bad_config tests/fixtures/bad/config-nan.json "malformed JSON"
bad_config tests/fixtures/bad/config-unknown-model-type.json "model_type"
bad_config tests/fixtures/bad/config-bad-yarn.json "beta_fast"
bad_config tests/fixtures/bad/config-wrong-type.json "num_attention_heads"
bad_config tests/fixtures/bad/config-truncated.json "malformed JSON"
bad_config tests/fixtures/bad/config-groups.json "n_routed_experts"
bad_config tests/fixtures/bad/config-negative-eps.json "rms_norm_eps"
# dimensions whose buffer sizes would overflow: refused by the reader, naming the field
sed 's/"hidden_size": [0-9]*/"hidden_size": 1073741824/' configs/nano.json > "$tmp/huge-d.json"
bad_config "$tmp/huge-d.json" "'hidden_size'"

# stdout that cannot be written (a full disk; here /dev/full): exit 1 with a message, both forms
if [ -w /dev/full ]; then
  expect_exit 1 "table > /dev/full" bash -c '"$0" info --config configs/tiny.json > /dev/full' "$D"
  expect_exit 1 "--json > /dev/full" bash -c '"$0" info --config configs/tiny.json --json > /dev/full' "$D"
  check "/dev/full message" bash -c '"$0" info --config configs/tiny.json 2>&1 >/dev/full | grep -q "stdout: write failed"' "$D"
fi
# whole-file reads are capped: an endless device is refused quickly with the limit named, a directory
# without config.json names the file it looked for
bad_config /dev/zero "limit for a config.json"
mkdir -p "$tmp/empty"
bad_config "$tmp/empty" "config.json: cannot open"
# counts are exact integers far past 2^53 (doubles would print 22667704963653314066824298496 here):
# the largest dimensions the reader accepts; expected values from Python integer arithmetic
cat > "$tmp/huge.json" <<'EOF2'
{"model_type": "deepseek_v3", "hidden_size": 1073741823, "vocab_size": 2147483647, "moe_intermediate_size": 1073741823,
 "n_routed_experts": 65536, "n_shared_experts": 1, "n_group": 1, "topk_group": 1, "num_experts_per_tok": 8,
 "num_hidden_layers": 100000, "first_k_dense_replace": 0, "num_attention_heads": 1, "q_lora_rank": null,
 "kv_lora_rank": 1, "qk_nope_head_dim": 1, "qk_rope_head_dim": 2, "v_head_dim": 1}
EOF2
json=$("$D" info --config "$tmp/huge.json" --json)
check "exact total past 2^64" has '"total_params": 22667704963653315146267978785,'
check "exact active past 2^64" has '"active_params": 3112899706167079454378785,'
check "exact weight bytes" has '"weight_bytes_bf16": 45335409927306630292535957570,'
human=$("$D" info --config "$tmp/huge.json")
check "human exact total" grep -q "(22,667,704,963,653,315,146,267,978,785)" <<<"$human"

# --train: the training memory plan. Masters are 4 bytes per parameter of the table, MTP included:
# tiny has total + MTP parameters (from the same --json) of fp32 each.
tj=$("$D" info --config configs/tiny.json --train --batch 8 --seq 256 --json)
tot=$(grep -o '"total_params": [0-9]*' <<<"$tj" | grep -o '[0-9]*$'); mtp=$(grep -o '"mtp_params": [0-9]*' <<<"$tj" | grep -o '[0-9]*$')
check "--train masters = 4 x (total + MTP)" grep -q "\"train_master_bytes\": $((4 * (tot + mtp)))," <<<"$tj"
act=$(grep -o '"train_activation_bytes": [0-9]*' <<<"$tj" | grep -o '[0-9]*$'); amin=$(grep -o '"train_activation_min_bytes": [0-9]*' <<<"$tj" | grep -o '[0-9]*$')
check "--train activations >= analytic minimum > 0" test "$act" -ge "$amin" -a "$amin" -gt 0
# under the FP8 recipe the FP8 Linears' inputs are kept as E4M3 codes (1 byte + a scale per 128) instead of fp32
a8=$(grep -o '"train_fp8_activation_bytes": [0-9]*' <<<"$tj" | grep -o '[0-9]*$'); sav=$(grep -o '"train_fp8_activation_saving": [0-9.]*' <<<"$tj" | grep -o '[0-9.]*$')
check "--train fp8 activations below fp32 / bf16 ($a8 < $act)" test "$a8" -gt 0 -a "$a8" -lt "$act"
check "--train fp8 saving = 1 - fp8/bf16 ($sav)" awk -v a="$act" -v b="$a8" -v s="$sav" 'BEGIN { d = 1 - b / a - s; exit !(d < 1e-5 && d > -1e-5) }'
check "--train table rows" bash -c '"$0" info --config configs/tiny.json --train | grep -q "activations kept"' "$D"
expect_exit 2 "--batch without --train" "$D" info --config configs/tiny.json --batch 4
expect_exit 2 "--seq 0" "$D" info --config configs/tiny.json --train --seq 0
finish
