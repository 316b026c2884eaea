#!/usr/bin/env bash
# The main job on built-in defaults (what `make run` does): train a small DeepSeek-V3 on real text.
#   1. a byte-level BPE tokenizer (8,192 ids, DeepSeek-V3's pre-tokenizer) trained on the corpus;
#   2. the corpus -> packed rows of 257 tokens (best-fit packing, FIM 0.1, 1% validation);
#   3. `dsv3 train` of configs/tiny.json (MLA + DeepSeekMoE with 4 groups / 16 experts + 1 MTP
#      layer, 10.3M parameters) with the DeepSeek-V3 recipe for a fixed token budget (~10 minutes
#      on 2 cores), into data/runs/tiny: HF checkpoint, metrics.jsonl, plots;
#   4. the validation loss next to the unigram entropy of the validation set, MaxVio before/after;
#   5. text generated from the trained checkpoint, and MTP speculative decoding against plain
#      greedy decoding: identical output, acceptance rate and speedup.
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
echo "== generate from the trained checkpoint (greedy; the latent-KV-cache engine):" >&2
TOK=data/tokenizer/tokenizer.json
./dsv3 generate --model "$RUN" --tokenizer "$TOK" --prompt "The meaning of the word" --max-tokens 48 --temperature 0 --quiet
echo "== MTP speculative decoding: the same greedy text, fewer target-model steps" >&2
# Plain vs --speculative mtp over a few prompts: 96 greedy tokens each (EOS ignored so both runs do
# the same amount of work); the outputs must be identical, the report is acceptance and speedup.
jnum() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" <<<"$2"; }
jids() { sed -n 's/.*"ids":\[\([0-9,]*\)\].*/\1/p' <<<"$1"; }
tp=0; ts=0; n=0; drafted=0; accepted=0; same=1
for prompt in "The meaning of the word" "In the beginning" "A man who" "Love is"; do
  a=$(./dsv3 generate --model "$RUN" --tokenizer "$TOK" --prompt "$prompt" --max-tokens 96 --temperature 0 --ignore-eos --json --quiet)
  b=$(./dsv3 generate --model "$RUN" --tokenizer "$TOK" --prompt "$prompt" --max-tokens 96 --temperature 0 --ignore-eos --json --quiet --speculative mtp)
  [ "$(jids "$a")" = "$(jids "$b")" ] || same=0
  tp=$(awk -v x="$tp" -v y="$(jnum decode_seconds "$a")" 'BEGIN{print x+y}')
  ts=$(awk -v x="$ts" -v y="$(jnum decode_seconds "$b")" 'BEGIN{print x+y}')
  n=$((n + $(jnum generated "$a") - 1))
  drafted=$((drafted + $(jnum drafted "$b"))); accepted=$((accepted + $(jnum accepted "$b")))
done
awk -v tp="$tp" -v ts="$ts" -v n="$n" -v d="$drafted" -v a="$accepted" -v same="$same" 'BEGIN{
  printf "plain decoding: %.1f tok/s; MTP speculative: %.1f tok/s (%.2fx); drafts accepted %d of %d (%.1f%%); outputs identical: %s\n",
         n/tp, n/ts, tp/ts, a, d, 100*a/(d?d:1), same ? "yes" : "NO" }'
[ "$same" = 1 ] || { echo "speculative output differs from plain greedy decoding" >&2; exit 1; }
echo "run folder: $RUN (config.json + model.safetensors: a Hugging Face checkpoint; metrics.jsonl; *.png)" >&2
