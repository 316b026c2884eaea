#!/usr/bin/env python3
"""Compare logits written by `./dsv3 logits` (.npy) with a fixture's expected.safetensors.

    ./dsv3 logits --model tests/fixtures/model/a_sigmoid_groups_yarn \
        --ids "$(python3 tools/ref/compare_npy.py --print-ids tests/fixtures/model/a_sigmoid_groups_yarn)" \
        --out /tmp/a.npy
    python3 tools/ref/compare_npy.py tests/fixtures/model/a_sigmoid_groups_yarn /tmp/a.npy [--key mtp_logits]

Passes when |got - ref| <= atol + rtol*|ref| everywhere (defaults 1e-5 and 1e-4, the fp32 tolerance of the C
tests). Prints the worst elements, per-row maxima and the argmax agreement. For humans debugging; the C tests do
their own comparison. Needs numpy only (safetensors is parsed by hand).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "F16": np.float16, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        if h["dtype"] not in DT:
            continue
        out[name] = np.frombuffer(data[a:b], dtype=DT[h["dtype"]]).reshape(h["shape"])
    return out, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixture", help="fixture directory (or its expected.safetensors)")
    ap.add_argument("npy", nargs="?", help=".npy written by ./dsv3 logits")
    ap.add_argument("--key", default=None, help="tensor to compare (default: logits, or mtp_logits if rows = T-1)")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--print-ids", action="store_true", help="print the fixture's input ids as I,J,... and exit")
    args = ap.parse_args()

    path = args.fixture
    if os.path.isdir(path):
        path = os.path.join(path, "expected.safetensors")
    exp, meta = read_safetensors(path)
    if args.print_ids:
        print(",".join(str(int(i)) for i in exp["input_ids"]))
        return 0
    if not args.npy:
        ap.error("npy file required (unless --print-ids)")
    got = np.load(args.npy)
    key = args.key
    if key is None:
        key = "mtp_logits" if ("mtp_logits" in exp and got.shape == exp["mtp_logits"].shape) else "logits"
    ref = exp[key].astype(np.float32)
    print(f"fixture {path} ({meta.get('case', '?')}, transformers {meta.get('transformers', '?')}), key {key}")
    if got.shape != ref.shape:
        print(f"FAIL: shape {got.shape} != expected {ref.shape}")
        return 1
    got = got.astype(np.float32)
    if not np.isfinite(got).all():
        print(f"FAIL: {int((~np.isfinite(got)).sum())} non-finite values")
        return 1
    d = np.abs(got - ref)
    bound = args.atol + args.rtol * np.abs(ref)
    bad = d > bound
    print(f"max |d| {d.max():.3e}   max |d|/|ref| {np.max(d / np.maximum(np.abs(ref), 1e-30)):.3e}   "
          f"max |ref| {np.abs(ref).max():.3f}   worst |d|/tolerance {np.max(d / bound):.2f}   "
          f"violations {int(bad.sum())}/{d.size}")
    print("per-row max |d|: " + " ".join(f"{x:.1e}" for x in d.max(axis=1)))
    am = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"argmax agreement {am * 100:.1f}%")
    if bad.any():
        idx = np.argsort(-(d - bound), axis=None)[: min(8, int(bad.sum()))]
        for flat in idx:
            r, c = np.unravel_index(flat, d.shape)
            print(f"  [{r},{c}] got {got[r, c]:.7g} ref {ref[r, c]:.7g} |d| {d[r, c]:.2e}")
        print(f"FAIL (tolerance {args.atol:g} + {args.rtol:g}*|ref|)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
