#!/usr/bin/env python3
"""Builds the tokenizer benchmark input: real English text documents from data/corpus/*.jsonl
(scripts/build_corpus.sh: GCIDE dictionary, Jargon File, Devil's Dictionary, fortunes, KJV Bible)
plus Python standard-library source, at least --mb megabytes, written as documents separated by a
NUL byte (no document contains NUL). Deterministic: files in a fixed order, documents in file order."""
import glob, json, os, sys

def main():
    out, mb = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 12.0
    want = int(mb * 1e6)
    docs, total = [], 0
    # a slice of code (~10%), then prose: the smaller corpora first, gcide last to reach the target size
    for p in sorted(glob.glob("/usr/lib/python3.11/*.py")):
        t = open(p, encoding="utf-8", errors="replace").read().replace("\0", "")
        docs.append(t); total += len(t.encode())
        if total >= want // 10:
            break
    for name in ["jargon", "devil", "fortunes", "bible", "gcide"]:
        p = f"data/corpus/{name}.jsonl"
        if not os.path.exists(p):
            continue
        for line in open(p, encoding="utf-8"):
            t = json.loads(line)["text"].replace("\0", "")
            docs.append(t); total += len(t.encode())
            if total >= want:
                break
        if total >= want:
            break
    if total < want and os.path.exists("/usr/share/dictd/gcide.dict.dz"):
        # fallback without scripts/build_corpus.sh: GCIDE dictionary text (apt-get install dict-gcide),
        # cut into ~4 KB documents at line boundaries
        import gzip
        text = gzip.open("/usr/share/dictd/gcide.dict.dz", "rt", encoding="utf-8", errors="replace").read()
        pos = 0
        while total < want and pos < len(text):
            end = text.find("\n", pos + 4000)
            end = len(text) if end < 0 else end + 1
            d = text[pos:end].replace("\0", "")
            docs.append(d); total += len(d.encode()); pos = end
    if total < want:
        sys.exit(f"tokenizer_bench_prep: only {total} bytes of text found (want {want}); run scripts/build_corpus.sh")
    with open(out, "wb") as f:
        f.write(b"\0".join(d.encode() for d in docs))
    print(f"{len(docs)} documents, {total} bytes", file=sys.stderr)

main()
