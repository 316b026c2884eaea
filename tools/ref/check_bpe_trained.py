#!/usr/bin/env python3
"""Check `dsv3 tokenizer train` against HF tokenizers (the oracle).

1. Trains with `dsv3 tokenizer train` on TRAIN files (timed, --threads 1 and 2).
2. Trains HF tokenizers' BpeTrainer on the same documents with the same pre-tokenizer, special tokens,
   initial alphabet (all 256 ByteLevel chars) and vocab size (timed, RAYON_NUM_THREADS=1 and 2,
   each in a fresh process), and compares the learned vocab and merges with dsv3's: they must be equal.
3. Loads dsv3's tokenizer.json with tokenizers.Tokenizer.from_file, encodes the HELDOUT documents,
   and compares with `dsv3 tokenize --jsonl` on the same file: 100% identical ids required.

Documents: a .jsonl file gives one document per line ("text"), another file is one document
(the rule `dsv3 tokenizer train` uses).

usage: check_bpe_trained.py --dsv3 ./dsv3 --vocab-size 8000 --heldout H.jsonl [--max-heldout N]
                            [--no-hf-train] [--threads 1,2] TRAIN...
Exit 0 when everything matches; prints the timings as one JSON line at the end.
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def read_docs(path):
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [d["text"] for d in (json.loads(l) for l in f if l.strip()) if d["text"]]
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        t = f.read()
    return [t] if t else []


HF_TRAIN = r'''
import json, sys, time
from tokenizers import Tokenizer, Regex, models, pre_tokenizers, trainers, normalizers
cfg = json.load(open(sys.argv[1]))
docs = []
for p in cfg["train"]:
    if p.endswith(".jsonl"):
        docs += [d["text"] for d in (json.loads(l) for l in open(p, encoding="utf-8") if l.strip()) if d["text"]]
    else:
        t = open(p, encoding="utf-8").read()
        if t: docs.append(t)
ref = json.load(open(cfg["ref"]))
steps = []
for s in ref["pre_tokenizer"]["pretokenizers"]:
    if s["type"] == "Split":
        steps.append(pre_tokenizers.Split(Regex(s["pattern"]["Regex"]), behavior="isolated", invert=False))
    else:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.Sequence([])
tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
specials = [a["content"] for a in ref["added_tokens"] if a["id"] < 3]
tr = trainers.BpeTrainer(vocab_size=cfg["vocab_size"], min_frequency=cfg["min_frequency"], show_progress=False,
                         special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
t0, c0 = time.perf_counter(), time.process_time()
tok.train_from_iterator(docs, tr)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
m = json.loads(tok.to_str())["model"]
merges = [" ".join(x) if isinstance(x, list) else x for x in m["merges"]]
json.dump({"seconds": dt, "cpu_seconds": cpu, "vocab": m["vocab"], "merges": merges}, open(cfg["out"], "w"))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsv3", default="./dsv3")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--min-frequency", type=int, default=0)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--max-heldout", type=int, default=0, help="use only the first N held-out documents (0: all)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-hf-train", action="store_true", help="skip the HF training comparison")
    ap.add_argument("train", nargs="+")
    a = ap.parse_args()
    threads = [int(x) for x in a.threads.split(",")]
    tmp = tempfile.mkdtemp(prefix="bpecheck.")
    try:
        return run(a, threads, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, threads, tmp):
    ok = True
    timing = {"vocab_size": a.vocab_size, "train_files": a.train}
    out = os.path.join(tmp, "tokenizer.json")
    for nt in threads:
        t0, c0 = time.perf_counter(), child_cpu()
        subprocess.run([a.dsv3, "tokenizer", "train", "--vocab-size", str(a.vocab_size), "--min-frequency",
                        str(a.min_frequency), "--threads", str(nt), "--quiet", "--out", out] + a.train, check=True)
        timing[f"dsv3_seconds_{nt}t"] = round(time.perf_counter() - t0, 3)
        timing[f"dsv3_cpu_seconds_{nt}t"] = round(child_cpu() - c0, 3)
        print(f"dsv3 tokenizer train, {nt} thread(s): {timing[f'dsv3_seconds_{nt}t']:.2f}s wall, "
              f"{timing[f'dsv3_cpu_seconds_{nt}t']:.2f}s CPU (incl. reading the files)", file=sys.stderr)
    mine = json.load(open(out, encoding="utf-8"))
    if not a.no_hf_train:
        for nt in threads:
            cfg = os.path.join(tmp, "cfg.json")
            hf_out = os.path.join(tmp, f"hf{nt}.json")
            json.dump({"train": a.train, "ref": out, "vocab_size": a.vocab_size, "min_frequency": a.min_frequency,
                       "out": hf_out}, open(cfg, "w"))
            env = dict(os.environ, RAYON_NUM_THREADS=str(nt), TOKENIZERS_PARALLELISM="true")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", HF_TRAIN, cfg], check=True, env=env)
            wall = time.perf_counter() - t0
            hf = json.load(open(hf_out))
            timing[f"hf_train_seconds_{nt}t"] = round(hf["seconds"], 3)
            timing[f"hf_wall_seconds_{nt}t"] = round(wall, 3)
            timing[f"hf_train_cpu_seconds_{nt}t"] = round(hf["cpu_seconds"], 3)
            print(f"HF BpeTrainer, {nt} thread(s): {hf['seconds']:.2f}s wall, {hf['cpu_seconds']:.2f}s CPU in "
                  f"train_from_iterator ({wall:.2f}s wall incl. Python start + reading)", file=sys.stderr)
        same_vocab = hf["vocab"] == mine["model"]["vocab"]
        same_merges = hf["merges"] == mine["model"]["merges"]
        if not (same_vocab and same_merges):
            ok = False
            mm = mine["model"]["merges"]
            k = next((i for i in range(min(len(mm), len(hf["merges"]))) if mm[i] != hf["merges"][i]),
                     min(len(mm), len(hf["merges"])))
            print(f"MISMATCH with HF training: vocab equal={same_vocab}, merges {len(mm)} vs {len(hf['merges'])}, "
                  f"first difference at merge {k}: dsv3 {mm[k:k+3]} HF {hf['merges'][k:k+3]}", file=sys.stderr)
        else:
            print(f"HF BpeTrainer learned the same vocab ({len(hf['vocab'])}) and merges ({len(hf['merges'])})",
                  file=sys.stderr)
        timing["same_as_hf"] = same_vocab and same_merges

    # Encode held-out documents with HF (our tokenizer.json) and with dsv3 tokenize.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(out)
    docs = read_docs(a.heldout)
    if a.max_heldout:
        docs = docs[:a.max_heldout]
    held = os.path.join(tmp, "heldout.jsonl")
    with open(held, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    hf_ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
    r = subprocess.run([a.dsv3, "tokenize", "--tokenizer", out, "--jsonl"], stdin=open(held, "rb"),
                       capture_output=True, check=True)
    my_ids = [json.loads(l) for l in r.stdout.decode().splitlines()]
    same = sum(1 for x, y in zip(hf_ids, my_ids) if x == y)
    ntok = sum(len(x) for x in hf_ids)
    timing["heldout_documents"] = len(docs)
    timing["heldout_tokens"] = ntok
    timing["heldout_identical_documents"] = same
    print(f"held-out: {same}/{len(docs)} documents encode identically ({ntok} tokens, "
          f"{sum(len(d.encode()) for d in docs) / max(ntok, 1):.2f} bytes/token)", file=sys.stderr)
    if same != len(docs) or len(my_ids) != len(docs):
        ok = False
        bad = next(i for i in range(len(docs)) if i >= len(my_ids) or hf_ids[i] != my_ids[i])
        print(f"MISMATCH on held-out document {bad}: {docs[bad][:200]!r}", file=sys.stderr)
    # Decoding round trip through HF
    rt = sum(1 for d, ids in zip(docs, hf_ids) if tok.decode(ids, skip_special_tokens=False) == d)
    timing["heldout_roundtrip_documents"] = rt
    if rt != len(docs):
        ok = False
        print(f"HF decode round trip failed on {len(docs) - rt} documents", file=sys.stderr)
    timing["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(timing))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
