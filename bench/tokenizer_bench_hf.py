#!/usr/bin/env python3
"""HF `tokenizers` side of bench/tokenizer_bench.sh: encode throughput on the same documents, on one
thread (RAYON_NUM_THREADS=1 must be set by the caller before tokenizers starts its pool).
usage: tokenizer_bench_hf.py TOKENIZER_JSON DOCS_FILE [REPEATS]
Prints key=value lines like the C helper, including the same FNV-1a hash of all ids."""
import os, sys, time
import tokenizers

def main():
    path, docs_path = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    tok = tokenizers.Tokenizer.from_file(path)
    raw = open(docs_path, "rb").read()
    docs = [d.decode("utf-8") for d in raw.split(b"\0")]
    nbytes = len(raw) - (len(docs) - 1)
    best_batch, best_batch_cpu, best_loop, best_loop_cpu, encs = 1e30, 1e30, 1e30, 1e30, None
    for _ in range(reps):
        s, sc = time.perf_counter(), time.process_time()
        encs = tok.encode_batch(docs, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - s)
        best_batch_cpu = min(best_batch_cpu, time.process_time() - sc)
        s, sc = time.perf_counter(), time.process_time()
        for d in docs:
            tok.encode(d, add_special_tokens=False)
        best_loop = min(best_loop, time.perf_counter() - s)
        best_loop_cpu = min(best_loop_cpu, time.process_time() - sc)
    h, ntok, M = 1469598103934665603, 0, (1 << 64) - 1
    for e in encs:
        for i in e.ids:
            h = ((h ^ i) * 1099511628211) & M
        ntok += len(e.ids)
    print(f"hf_version={tokenizers.__version__} rayon_threads={os.environ.get('RAYON_NUM_THREADS', 'unset')}")
    print(f"docs={len(docs)} bytes={nbytes} tokens={ntok} hash={h:016x}")
    print(f"hf_batch_s={best_batch:.3f} hf_batch_mbps={nbytes / best_batch / 1e6:.2f} "
          f"hf_batch_cpu_s={best_batch_cpu:.3f} hf_batch_cpu_mbps={nbytes / best_batch_cpu / 1e6:.2f}")
    print(f"hf_loop_s={best_loop:.3f} hf_loop_mbps={nbytes / best_loop / 1e6:.2f} "
          f"hf_loop_cpu_s={best_loop_cpu:.3f} hf_loop_cpu_mbps={nbytes / best_loop_cpu / 1e6:.2f}")

main()
