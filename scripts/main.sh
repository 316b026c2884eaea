#!/usr/bin/env bash
# The main job on built-in defaults (what `make run` does): turn the real English corpus into
# packed training shards with the DeepSeek-V3 tokenizer, then run the forward pass of the shipped
# tiny oracle model and report model sizes. Training (the next stage) will consume data/shards.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./dsv3 ] || make -j"$(nproc)"
[ -f data/corpus/SOURCES.txt ] || bash scripts/build_corpus.sh
echo "== data prepare: data/corpus/*.jsonl -> data/shards (seq-len 1024, FIM 0.1)" >&2
./dsv3 data prepare --tokenizer models/deepseek-v3/tokenizer.json --out data/shards data/corpus/*.jsonl
./dsv3 data verify data/shards >&2   # what the trainer checks when it opens the shards
echo "== model sizes (configs/deepseek-v3.json)" >&2
./dsv3 info --config configs/deepseek-v3.json
echo "== forward + MTP on the oracle model tests/fixtures/model/g_mtp" >&2
ids=$(printf 'DeepSeek-V3 in C' | ./dsv3 tokenize --tokenizer models/deepseek-v3/tokenizer.json | tr ' ' '\n' | awk '{print $1 % 256}' | paste -sd,)
./dsv3 logits --model tests/fixtures/model/g_mtp --ids "$ids" --out data/logits.npy
./dsv3 logits --model tests/fixtures/model/g_mtp --ids "$ids" --mtp --out data/mtp_logits.npy
echo "wrote data/logits.npy and data/mtp_logits.npy for ids $ids" >&2
