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
finish
