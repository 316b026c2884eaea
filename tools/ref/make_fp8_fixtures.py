#!/usr/bin/env python3
"""Writes the FP8 fixtures the C tests compare against (tests/fixtures/fp8/*.bin).

The codec oracles are torch's float8_e4m3fn / float8_e5m2 casts and ml_dtypes' casts (float32 in, RNE).
They differ on E4M3 overflow: ml_dtypes (and torch before 2.x-something) overflow to the NaN code 0x7F,
while torch 2.15's float32 -> float8_e4m3fn cast saturates to ±448 (inf included); the script records
which behaviour the installed torch has (array "torch_e4m3_saturates") so the C test compares the torch
column with the matching policy. E5M2 overflows to inf in both. The quantizer oracle is torch
re-implementations of DeepSeek-V3's act_quant / weight_dequant semantics (inference/kernel.py):
per 1x128 tile (or 128x128 block): amax = max|x| in fp32, amax = max(amax, 1e-4), s = amax / 448,
optionally s = 2^ceil(log2 s) ("ue8m0"), q = e4m3(x / s). Partial edge tiles are zero-padded to 128
before the amax (DeepSeek's README says the released weights were quantized that way), which equals
the amax over the real elements.

File format (little-endian), one file per fixture set:
    8 bytes  magic b"DSV3FX01"
    u32      number of arrays
    per array:
      u32 name length, name bytes (ASCII, no terminator)
      u32 dtype: 0 = float32, 1 = uint8, 2 = int32, 3 = uint16
      u32 ndim, u32 dims[ndim]
      data, C order
Run: python3 tools/ref/make_fp8_fixtures.py   (needs torch >= 2.1 and ml_dtypes; deterministic)
Generated with torch 2.15.0, ml_dtypes 0.6.0, numpy 2.4.
"""
import math
import os
import struct
import sys

import ml_dtypes
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "fp8")
DT = {np.float32: 0, np.uint8: 1, np.int32: 2, np.uint16: 3}


def write(path, arrays):
    with open(path, "wb") as f:
        f.write(b"DSV3FX01")
        f.write(struct.pack("<I", len(arrays)))
        for name, a in arrays:
            a = np.ascontiguousarray(a)
            code = DT[a.dtype.type]
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", code, a.ndim) + struct.pack("<%dI" % a.ndim, *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    print("wrote", os.path.relpath(path), os.path.getsize(path), "bytes")


def f32(x):
    return np.asarray(x, dtype=np.float32)


def cast(x, dt):
    """torch cast float32 -> fp8, returned as the uint8 codes."""
    return torch.from_numpy(f32(x)).to(dt).view(torch.uint8).numpy()


def edge_inputs(rng):
    vals = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38]
    for dt in (torch.float8_e4m3fn, torch.float8_e5m2):
        grid = torch.arange(128, dtype=torch.uint8).view(dt).float().numpy().astype(np.float64)
        grid = grid[np.isfinite(grid)]
        grid = np.sort(grid)
        ulp_top = grid[-1] - grid[-2]
        grid = np.append(grid, grid[-1] + ulp_top, )  # one step past the max: the overflow boundary region
        mids = (grid[:-1] + grid[1:]) / 2
        for v in np.concatenate([grid, mids]):
            v32 = np.float32(v)
            for w in (v32, np.nextafter(v32, np.float32(np.inf)), np.nextafter(v32, np.float32(0))):
                vals += [float(w), -float(w)]
        vals += [float(v) for v in grid * 4] + [float(v) for v in grid / 1024]
    bits = rng.integers(0, 2**32, size=1500, dtype=np.uint64).astype(np.uint32)
    with np.errstate(invalid="ignore"):
        vals += list(bits.view(np.float32).astype(np.float64))
    vals += list(rng.normal(0, 30, size=500)) + list(rng.normal(0, 3000, size=500))
    return f32(vals)


def make_codec(rng):
    e4 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    e5 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e5m2).float().numpy()
    x = edge_inputs(rng)
    # satfinite = clamp to the largest finite value, then the RNE cast (NaN stays NaN under clamp)
    sat4 = np.clip(x, -448.0, 448.0)
    sat5 = np.clip(x, -57344.0, 57344.0)
    torch_sat = int(cast(f32([470.0]), torch.float8_e4m3fn)[0] == 0x7E)
    print("torch %s float32 -> float8_e4m3fn cast %s" % (torch.__version__, "saturates" if torch_sat else "overflows to NaN"))
    mld4 = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    mld5 = x.astype(ml_dtypes.float8_e5m2).view(np.uint8)
    write(os.path.join(OUT, "codec.bin"), [
        ("e4m3_decode", f32(e4)), ("e5m2_decode", f32(e5)), ("enc_in", x),
        ("torch_e4m3_saturates", np.array([torch_sat], dtype=np.uint8)),
        ("torch_e4m3", cast(x, torch.float8_e4m3fn)), ("torch_e4m3_clamped", cast(sat4, torch.float8_e4m3fn)),
        ("torch_e5m2", cast(x, torch.float8_e5m2)), ("torch_e5m2_clamped", cast(sat5, torch.float8_e5m2)),
        ("mld_e4m3", mld4), ("mld_e5m2", mld5),
    ])


def scale_of(amax, ue8m0):
    """DeepSeek's scale: max(amax, 1e-4) / 448 in fp32; ue8m0: 2^ceil(log2 s). The ceil(log2) is taken
    exactly (frexp), not through a float32 log2 that could round near powers of two."""
    amax = torch.clamp(amax.float(), min=1e-4)
    s = amax / 448.0
    if ue8m0:
        m, e = torch.frexp(s)                       # s = m * 2^e, m in [0.5, 1)
        e = torch.where(m == 0.5, e - 1, e)         # exact power of two: log2 s = e - 1
        s2 = torch.ldexp(torch.ones_like(s), e)
        # cross-check against the kernel's float32 formula; they agree unless log2f rounds onto an integer
        alt = torch.exp2(torch.ceil(torch.log2(s)))
        n_diff = int((alt != s2).sum())
        if n_diff:
            print("note: %d scale(s) where exp2(ceil(log2 s)) in fp32 differs from the exact rounding" % n_diff)
        s = s2
    return s


def quant_rows(x, ue8m0, tile=128):
    """1x128 tiles along the last dim of a 2-D float32 tensor; partial last tile zero-padded."""
    M, K = x.shape
    nt = (K + tile - 1) // tile
    xp = torch.zeros(M, nt * tile, dtype=torch.float32)
    xp[:, :K] = x
    t = xp.view(M, nt, tile)
    s = scale_of(t.abs().amax(dim=-1), ue8m0)          # (M, nt)
    y = (t / s[..., None]).to(torch.float8_e4m3fn).view(torch.uint8).view(M, nt * tile)[:, :K]
    return y.numpy().copy(), s.numpy().copy()


def quant_blocks(w, ue8m0, tile=128):
    N, K = w.shape
    nb, kb = (N + tile - 1) // tile, (K + tile - 1) // tile
    wp = torch.zeros(nb * tile, kb * tile, dtype=torch.float32)
    wp[:N, :K] = w
    t = wp.view(nb, tile, kb, tile)
    s = scale_of(t.abs().amax(dim=(1, 3)), ue8m0)        # (nb, kb)
    y = (t / s[:, None, :, None]).to(torch.float8_e4m3fn).view(torch.uint8).view(nb * tile, kb * tile)
    return y[:N, :K].numpy().copy(), s.numpy().copy()


def dequant_blocks(q, s, tile=128):
    """weight_dequant: float(q) * s[r // 128, c // 128], fp32 (and the bf16 cast of it)."""
    qf = torch.from_numpy(q).view(torch.float8_e4m3fn).float()
    N, K = qf.shape
    srep = torch.from_numpy(s).repeat_interleave(tile, 0)[:N].repeat_interleave(tile, 1)[:, :K]
    y = qf * srep
    return y.numpy().copy(), y.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).copy()


def dequant_rows(q, s, tile=128):
    qf = torch.from_numpy(q).view(torch.float8_e4m3fn).float()
    M, K = qf.shape
    srep = torch.from_numpy(s).repeat_interleave(tile, 1)[:, :K]
    return (qf * srep)


def make_quant(rng):
    arrays = []
    # activations: 5 tokens x 300 channels (tiles of 128, 128, 44); row 3 has a zero tile and a tiny tile
    x = rng.standard_normal((5, 300)).astype(np.float32) * np.float32(3.0)
    x[1, 7] = 900.0        # an outlier
    x[2, 200] = -1e-3
    x[3, :128] = 0.0       # amax clamp: s = 1e-4 / 448
    x[3, 128:256] *= np.float32(1e-6)
    x[4, 256:] *= np.float32(1e5)
    arrays.append(("act_x", x))
    for ue in (0, 1):
        q, s = quant_rows(torch.from_numpy(x), ue)
        arrays += [("act_q_%d" % ue, q), ("act_s_%d" % ue, f32(s))]
    # weights: 136 x 200 (blocks of 128/8 rows by 128/72 columns)
    w = (rng.standard_normal((136, 200)) * 0.02).astype(np.float32)
    w[130:, 150:] *= np.float32(50.0)
    arrays.append(("w_x", w))
    for ue in (0, 1):
        q, s = quant_blocks(torch.from_numpy(w), ue)
        d32, d16 = dequant_blocks(q, s)
        arrays += [("w_q_%d" % ue, q), ("w_s_%d" % ue, f32(s)), ("w_deq_bf16_%d" % ue, d16)]
        if ue == 0:
            arrays.append(("w_deq_0", d32))
    # backward re-tiling: x2 (136 tokens x 160 channels), 1x128 quantized, then dequantize -> transpose ->
    # requantize in 1x128 tiles of x2^T (= 128x1 tiles of x2; the token dim 136 ends in a partial tile)
    x2 = rng.standard_normal((136, 160)).astype(np.float32)
    x2[17, :] *= np.float32(40.0)  # a token with outliers: its column tiles get larger scales
    arrays.append(("rt_x", x2))
    for ue in (0, 1):
        q, s = quant_rows(torch.from_numpy(x2), ue)
        deq = dequant_rows(q, s)
        qt, st = quant_rows(deq.t().contiguous(), ue)
        arrays += [("rt_q_%d" % ue, q), ("rt_s_%d" % ue, f32(s)), ("rt_qt_%d" % ue, qt), ("rt_st_%d" % ue, f32(st))]
    write(os.path.join(OUT, "quant.bin"), arrays)


def main():
    if not hasattr(torch, "float8_e4m3fn"):
        sys.exit("torch >= 2.1 with float8_e4m3fn is required")
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20241226)
    make_codec(rng)
    make_quant(rng)


if __name__ == "__main__":
    main()
