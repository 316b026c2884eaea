#!/usr/bin/env bash
# The main job on built-in defaults (what `make run` does): train a small DeepSeek-V3 on real text.
#   1. a byte-level BPE tokenizer (8,192 ids, DeepSeek-V3's pre-tokenizer) trained on the corpus;
#   2. the corpus -> packed rows of 257 tokens (best-fit packing, FIM 0.1, 1% validation);
#   3. `dsv3 train` of configs/tiny.json (MLA + DeepSeekMoE with 4 groups / 16 experts + 1 MTP
#      layer, 10.3M parameters) with the DeepSeek-V3 recipe for a fixed token budget (~10 minutes
#      on 2 cores), into data/runs/tiny: HF checkpoint, metrics.jsonl, plots;
#   4. the validation loss next to the unigram entropy of the validation set, MaxVio before/after.
# Knobs (environment): TOKENS (budget, default 600K), BATCH (rows per step, default 8), LR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x ./dsv3 ] || make -j"$(nproc)"
[ -f data/corpus/SOURCES.txt ] || bash scripts/build_corpus.sh
# OpenMP threads sleep while waiting: on a shared 2-core machine spinning loses (docs/PERF.md)
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
TOKENS=${TOKENS:-600000}
BATCH=${BATCH:-8}
LR=${LR:-2e-3}
RUN=data/runs/tiny

if [ ! -s data/tokenizer/tokenizer.json ]; then
  echo "== tokenizer: byte-level BPE, 8187 merges+bytes + 5 added ids = 8192, on data/corpus" >&2
  mkdir -p data/tokenizer
  ./dsv3 tokenizer train --vocab-size 8187 --out data/tokenizer/tokenizer.json --quiet data/corpus/*.jsonl
fi
if [ ! -s data/shards-tiny/manifest.json ]; then
  echo "== data prepare: data/corpus/*.jsonl -> data/shards-tiny (seq-len 256, FIM 0.1, best-fit packing)" >&2
  ./dsv3 data prepare --tokenizer data/tokenizer/tokenizer.json --out data/shards-tiny --seq-len 256 --quiet data/corpus/*.jsonl
fi
./dsv3 data verify data/shards-tiny
echo "== train configs/tiny.json on data/shards-tiny: $TOKENS tokens, batch $BATCH x 256, lr $LR" >&2
rm -rf "$RUN"
./dsv3 train --config configs/tiny.json --data data/shards-tiny --out "$RUN" \
  --tokens "$TOKENS" --batch "$BATCH" --micro-batch 8 --lr "$LR" --warmup 20 --init-std 0.02 \
  --eval-every 50 --eval-rows 64 --save-every 100 --log-every 10
echo "== the trained checkpoint runs in the forward pass:" >&2
ids=$(printf 'The meaning of the word' | ./dsv3 tokenize --tokenizer data/tokenizer/tokenizer.json | tr ' ' ',')
./dsv3 logits --model "$RUN" --ids "$ids" --out data/runs/tiny-logits.npy
echo "run folder: $RUN (config.json + model.safetensors: a Hugging Face checkpoint; metrics.jsonl; *.png)" >&2
