#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for SECONDS (default 120).
#   fuzz/run.sh [SECONDS] [HARNESS...]      (make fuzz-smoke = fuzz/run.sh 20)
# Harnesses (one per parser): tokenizer_load (tokenizer.json), tokenizer_encode (text), config
# (config.json), safetensors (file header), npy_ids (.npy header + logits id lists), shard_header
# (token shard header), data_manifest (manifest.json through the shard reader), trainer_state
# (trainer_state.bin), session_file (prompt-cache files), chat_json (chat messages + template).
# Corpora live in build/fuzz/corpus-* (seeded from the repository's configs and fixtures, and from a
# small dataset prepared with ./dsv3 data prepare); crashes go to build/fuzz/crash-<harness>-*.
# Prints one line per harness: seconds, executions, executions/s, corpus units, crashes.
# Exits 1 if any harness left a crash, leak, timeout or OOM artifact. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}
shift || true
ALL="tokenizer_load tokenizer_encode config safetensors npy_ids shard_header data_manifest trainer_state session_file chat_json"
HARNESSES=${*:-$ALL}
OUT=build/fuzz
CC=${CC:-clang}
DSV3=${DSV3:-./dsv3}
mkdir -p $OUT/obj
command -v "$CC" >/dev/null || { echo "fuzz/run.sh: $CC not found (apt-get install clang)" >&2; exit 2; }
[ -x "$DSV3" ] || { echo "fuzz/run.sh: $DSV3 not built (run make first; it prepares the data seeds)" >&2; exit 2; }

SAN="-g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="$SAN -march=native -std=c11 -D_GNU_SOURCE -fopenmp -Iinclude -Isrc" # -march: the SIMD kernels (GCC target pragmas) now link in
# The parsers and what they link against, instrumented for coverage; rebuilt when a source or any
# header under src/ is newer than its object.
LIBSRC="$(find src -name '*.c' | sort)"
newest_h=$(find src -name '*.h' -printf '%T@\n' | sort -n | tail -1)
objs=""
for f in $LIBSRC; do
  o=$OUT/obj/$(echo "${f%.c}" | tr / _).o
  if [ ! -e "$o" ] || [ "$f" -nt "$o" ] || awk -v a="$newest_h" -v b="$(stat -c %Y "$o")" 'BEGIN{exit !(a > b)}'; then
    $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$f" -o "$o"
  fi
  objs="$objs $o"
done
rm -f $OUT/libfuzz.a && ar rcs $OUT/libfuzz.a $objs
for h in $HARNESSES; do
  $CC $CFLAGS -fsanitize=fuzzer -o $OUT/fuzz_$h fuzz/fuzz_$h.c $OUT/libfuzz.a -lcjson -lonig -lm
done

# ---- seeds
for h in $HARNESSES; do mkdir -p $OUT/corpus-$h; done
seed() { [ -d "$OUT/corpus-$1" ] && cp "${@:2}" "$OUT/corpus-$1/" 2>/dev/null || true; }
seed tokenizer_load tests/fixtures/tokenizer/gpt2-style/tokenizer*.json
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel","use_regex":true}}' > $OUT/corpus-min.json
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\\\p{N}{1,3}"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},"added_tokens":[{"id":3,"content":"<s>","special":true}],"decoder":{"type":"ByteLevel"}}' > $OUT/corpus-seq.json
seed tokenizer_load $OUT/corpus-min.json $OUT/corpus-seq.json
rm -f $OUT/corpus-min.json $OUT/corpus-seq.json
for c in configs/*.json tests/fixtures/bad/config-*.json; do seed config "$c"; done
for d in tests/fixtures/model/*/; do [ -e "$d/config.json" ] && cp "$d/config.json" "$OUT/corpus-config/$(basename "$d").json" 2>/dev/null || true; done
python3 - "$OUT" "$HARNESSES" <<'PY'
import json, os, struct, sys
out, hs = sys.argv[1], sys.argv[2].split()
if "tokenizer_encode" in hs:
    for i, line in enumerate(open("tests/fixtures/tokenizer/deepseek-v3-cases.jsonl", encoding="utf-8")):
        t = json.loads(line)["text"].encode()
        if len(t) <= 4096:
            open(os.path.join(out, "corpus-tokenizer_encode", f"seed{i:04d}"), "wb").write(t)
def st(tensors, meta=None, pad=8):  # a .safetensors file as the format defines it
    hdr, data = {}, b""
    if meta is not None: hdr["__metadata__"] = meta
    for name, dt, shape, es in tensors:
        n = es
        for s in shape: n *= s
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((i * 37) & 255 for i in range(n))
    h = json.dumps(hdr).encode()
    h += b" " * ((-len(h)) % pad)
    return struct.pack("<Q", len(h)) + h + data
if "safetensors" in hs:
    d = os.path.join(out, "corpus-safetensors")
    open(os.path.join(d, "three.safetensors"), "wb").write(st([("w", "F32", [2, 3], 4), ("b", "BF16", [3], 2), ("q", "F8_E4M3", [4, 4], 1)], {"format": "pt"}))
    open(os.path.join(d, "empty.safetensors"), "wb").write(st([], {}))
    open(os.path.join(d, "scalar.safetensors"), "wb").write(st([("s", "F16", [], 2), ("z", "I64", [0, 5], 8)]))
    # the header of a real fixture checkpoint (data cut off: a truncated file the reader must refuse)
    p = "tests/fixtures/model/g_mtp/model.safetensors"
    if os.path.exists(p):
        b = open(p, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        if n < 16000: open(os.path.join(d, "fixture-header.safetensors"), "wb").write(b[:8 + n + 64])
def npy(descr, shape, data):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, "(%d,)" % shape[0] if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")")
    pad = (64 - (10 + len(d) + 1) % 64) % 64
    h = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data
if "npy_ids" in hs:
    d = os.path.join(out, "corpus-npy_ids")
    open(os.path.join(d, "i4.npy"), "wb").write(npy("<i4", [4], struct.pack("<4i", 5, 17, 300, 0)))
    open(os.path.join(d, "i8.npy"), "wb").write(npy("<i8", [1, 3], struct.pack("<3q", 1, 2, 3)))
    open(os.path.join(d, "f4.npy"), "wb").write(npy("<f4", [2, 2], struct.pack("<4f", 1, 2, 3, 4)))
    open(os.path.join(d, "scalar.npy"), "wb").write(npy("<f4", [], struct.pack("<f", 1)))
    open(os.path.join(d, "ids.txt"), "wb").write(b"5, 17,300\n42\t7\r\n")
PY
if [[ " $HARNESSES " == *" shard_header "* || " $HARNESSES " == *" data_manifest "* ]]; then
  # a small real dataset: several shards per split, both packings' fields; its files are the seeds
  rm -rf $OUT/data && mkdir -p $OUT/data
  "$DSV3" data prepare --tokenizer models/deepseek-v3/tokenizer.json --out $OUT/data --seq-len 32 --shard-rows 4 \
      --val-fraction 0.2 --quiet tests/fixtures/data/devil-sample.jsonl >/dev/null
  seed shard_header $OUT/data/*.bin
  seed data_manifest $OUT/data/manifest.json
fi
if [[ " $HARNESSES " == *" trainer_state "* ]]; then
  # valid states of a 64-float model (fp32 and bf16 moments), as dsv3_ckpt_write_state lays them out
  python3 - "$OUT/corpus-trainer_state" <<'PY'
import json, struct, sys
def fnv(b, h=0xcbf29ce484222325):
    for x in b: h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
for mom, es in (("f32", 4), ("bf16", 2)):
    arr = struct.pack("<64f", *[i / 7 for i in range(64)]) + bytes((i * 13) & 255 for i in range(2 * es * 64))
    hdr = json.dumps({"step": 3, "tokens_done": 96, "arena_floats": 64, "moments": mom, "adam_step": 3,
                      "arrays_fnv1a64": "%016x" % fnv(arr)}).encode()
    open(f"{sys.argv[1]}/state-{mom}.bin", "wb").write(b"DSV3TRST" + struct.pack("<II", 1, len(hdr)) + hdr + arr)
PY
fi

if [[ " $HARNESSES " == *" session_file "* ]]; then
  # valid session files of the g_mtp fixture (fp32 and bf16 rows, with and without an MTP cache)
  "$DSV3" generate --model tests/fixtures/model/g_mtp --ids 3,1,4,1,5,9,2,6 --max-tokens 4 --temperature 0 --ignore-eos \
      --ctx 64 --quiet --session $OUT/corpus-session_file/plain.kv >/dev/null
  "$DSV3" generate --model tests/fixtures/model/g_mtp --ids 2,7,1,8 --max-tokens 6 --temperature 0 --ignore-eos \
      --ctx 64 --cache bf16 --speculative mtp --quiet --session $OUT/corpus-session_file/mtp-bf16.kv >/dev/null
fi
if [[ " $HARNESSES " == *" chat_json "* ]]; then
  python3 - "$OUT/corpus-chat_json" <<'PY'
import json, sys
for i, line in enumerate(open("tests/fixtures/chat/cases.jsonl", encoding="utf-8")):
    open(f"{sys.argv[1]}/case{i:02d}.json", "w", encoding="utf-8").write(json.dumps(json.loads(line)["messages"], ensure_ascii=False))
PY
fi

# ---- run
declare -A MAXLEN=([tokenizer_load]=65536 [tokenizer_encode]=65536 [config]=16384 [safetensors]=16384 [npy_ids]=8192 [shard_header]=8192 [data_manifest]=16384 [trainer_state]=4096 [session_file]=65536 [chat_json]=16384)
declare -A DICT=([tokenizer_load]=fuzz/tokenizer_json.dict [config]=fuzz/config_json.dict [safetensors]=fuzz/safetensors.dict [npy_ids]=fuzz/npy.dict [data_manifest]=fuzz/manifest_json.dict)
printf '%-18s %6s %12s %10s %8s %8s\n' harness secs execs execs/s corpus crashes
found=0
for h in $HARNESSES; do
  rm -f $OUT/crash-$h-* 2>/dev/null || true
  dict=${DICT[$h]:-}; [ -n "$dict" ] && dict="-dict=$dict"
  log=$OUT/log-$h.txt
  DSV3_FUZZ_DATA_DIR=$OUT/data $OUT/fuzz_$h $OUT/corpus-$h -max_total_time=$SECS -max_len=${MAXLEN[$h]} -timeout=20 \
      -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix=$OUT/crash-$h- $dict >"$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  units=$(find $OUT/corpus-$h -type f | wc -l)
  crashes=$(find $OUT -maxdepth 1 -name "crash-$h-*" | wc -l)
  printf '%-18s %6s %12s %10s %8s %8s\n' "$h" "$SECS" "${execs:-0}" "${rate:-0}" "$units" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    found=1
    grep -E "ERROR|SUMMARY|runtime error" "$log" | head -5
    ls $OUT/crash-$h-*
  fi
done
[ $found -eq 0 ] && echo "no crashes" || { echo "CRASHES FOUND (logs: $OUT/log-*.txt)"; exit 1; }
