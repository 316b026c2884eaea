#!/usr/bin/env python3
"""FP8-training oracle (issue 9): the training loss of tests/fixtures/grad run with every FP8 Linear of the recipe
emulated in PyTorch, and its autograd gradients, written next to the fp32 fixture files:

    python3 tools/ref/make_fp8_train_fixtures.py tests/fixtures/grad [--only CASE,...]

writes, per case directory, grads_fp8.safetensors (one F32 gradient per trainable tensor, named as in
grads.safetensors), logits_fp8.npy (F32 [T, V]: the main-head logits of row 0) and expected_fp8.json (the loss
parts, and how far the fp8 gradients are from the fp32 ones).

The forward follows the recipe pinned by issue 9 and docs/FP8_TRAINING.md, independently of the C code:
  * every Linear of attention (q_a/q_b or q, kv_a_proj_with_mqa, kv_b_proj on the latent, o_proj), of the dense
    MLP, of the shared and routed experts and the MTP eh_proj: X (fp32) quantized in 1x128 tiles along K,
    W (fp32 master) in 128x128 blocks; scale s = max(amax, 1e-4)/448 in fp32 (rounded up to a power of two for
    the inputs of the experts' gate/up projections, routed and shared), q = E4M3(x/s) by torch's RNE cast after
    clamping to +-448; the product of the dequantized operands in float64 (exact promotion: every partial sum is
    kept), rounded to fp32 and then to bf16; the bias, if any, added after;
  * the router (mlp.gate) and the output heads: bf16-rounded operands, float64 product (fp32 accumulation);
  * everything else (norms, RoPE, attention core, SwiGLU, softmax, losses) in float64 as in check_grad_fixtures.
The gradient is autograd through straight-through estimators: each quantizer passes its gradient through
unchanged and the Linear's backward sees the quantized operands (dX = dY Wq, dW = dY^T Xq), in float64. The C
backward also quantizes dY and re-tiles X; those differences, and routing flips caused by FP8 noise, are what the
C test's cosine >= 0.9 allows.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import check_grad_fixtures as cgf  # noqa: E402

D = torch.float64
E4M3_MAX = 448.0
AMAX_MIN = 1e-4
FP8_LINEARS = ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj",
               "down_proj", "eh_proj")
BF16_LINEARS = ("mlp.gate.weight", "lm_head.weight", "shared_head.head.weight")


def ste(x, xq):
    """xq in the forward, identity in the backward."""
    return x + (xq - x).detach()


def scale(amax, ue8m0):
    """fp32 scale of a tile from its fp32 amax: max(amax, 1e-4)/448, optionally 2^ceil(log2 s)."""
    s = torch.clamp(amax, min=AMAX_MIN) / E4M3_MAX
    if ue8m0:
        m, e = torch.frexp(s)
        s = torch.where(m == 0.5, s, torch.ldexp(torch.ones_like(s), e))
    return s


def e4m3(v):
    return torch.clamp(v, -E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).float()


def quant_rows(x, ue8m0):
    """x (M, K) -> dequantized float64 values of its E4M3 1x128 tiles along K."""
    M, K = x.shape
    x32 = x.detach().float()
    Kp = -(-K // 128) * 128
    xp = torch.nn.functional.pad(x32, (0, Kp - K)).view(M, Kp // 128, 128)
    s = scale(xp.abs().amax(-1, keepdim=True), ue8m0)
    return (e4m3(xp / s).to(D) * s.to(D)).view(M, Kp)[:, :K]


def quant_blocks(w):
    """w (O, I) -> dequantized float64 values of its E4M3 128x128 blocks (amax scales)."""
    O, I = w.shape
    w32 = w.detach().float()
    Op, Ip = -(-O // 128) * 128, -(-I // 128) * 128
    wp = torch.nn.functional.pad(w32, (0, Ip - I, 0, Op - O)).view(Op // 128, 128, Ip // 128, 128)
    s = scale(wp.abs().amax(dim=(1, 3), keepdim=True), False)
    return (e4m3(wp / s).to(D) * s.to(D)).view(Op, Ip)[:O, :I]


def bf16(t):
    return t.detach().float().to(torch.bfloat16).to(D)


class _Transposed:
    def __init__(self, lin):
        self.lin = lin

    def __rmatmul__(self, x):
        return self.lin.apply(x)


class EmulatedLinear:
    """Stands in for a weight tensor W in `x @ W.T`; anything else is the leaf's (e.g. .grad)."""

    def __init__(self, W, kind):
        self.W, self.kind = W, kind

    @property
    def T(self):
        return _Transposed(self)

    def __getattr__(self, name):
        return getattr(self.W, name)

    def apply(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.kind == "bf16":
            y = ste(x2, bf16(x2)) @ ste(self.W, bf16(self.W)).T
        else:
            y = ste(x2, quant_rows(x2, self.kind == "fp8_ue8m0_in")) @ ste(self.W, quant_blocks(self.W)).T
            y = ste(y, bf16(y))
        return y.reshape(*shape[:-1], y.shape[-1])


def kind_of(name):
    if any(name.endswith(s) for s in BF16_LINEARS):
        return "bf16"
    if any(name.endswith(f".{s}.weight") for s in FP8_LINEARS):
        expert_in = ".experts." in name or ".shared_experts." in name
        return "fp8_ue8m0_in" if expert_in and (".gate_proj." in name or ".up_proj." in name) else "fp8"
    return None


def wrap(W):
    out = {}
    for k, v in W.items():
        kind = kind_of(k)
        out[k] = EmulatedLinear(v, kind) if kind and isinstance(v, torch.Tensor) and v.dim() == 2 else v
    return out


def cosine(a, b):
    na, nb = a.norm().item(), b.norm().item()
    return float((a * b).sum().item() / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)


def make_case(d):
    cgf.WRAP = wrap
    try:
        exp, c, loss, main, mtp, balance, bal, grads, logits_rows = cgf.compute_case(d)
    finally:
        cgf.WRAP = None
    ref = load_file(os.path.join(d, "grads.safetensors"))
    cos = {k: cosine(g, ref[k].to(D)) for k, g in grads.items() if ref[k].norm() > 0}
    wk = min(cos, key=cos.get)
    out = {
        "generator": "tools/ref/make_fp8_train_fixtures.py",
        "recipe": "fp8: E4M3 1x128 activations, 128x128 weights, amax scales (UE8M0 for expert gate/up inputs), "
                  "exact fp32 promotion, bf16 outputs; router and heads bf16; straight-through backward",
        "B": exp["B"], "T": exp["T"], "mtp_weight": exp["mtp_weight"], "seq_aux": exp["seq_aux"],
        "loss": float(loss.detach()), "main": float(torch.as_tensor(main).detach()),
        "mtp": float(torch.as_tensor(mtp).detach()), "balance": float(torch.as_tensor(balance).detach()),
        "balance_per_layer": {k: float(v.detach()) for k, v in bal.items()},
        "fp32_loss": exp["loss"],
        "grad_cosine_vs_fp32_min": cos[wk], "grad_cosine_vs_fp32_min_tensor": wk,
        "grad_cosine_vs_fp32_median": float(np.median(list(cos.values()))),
    }
    save_file({k: v.float().contiguous() for k, v in grads.items()}, os.path.join(d, "grads_fp8.safetensors"))
    np.save(os.path.join(d, "logits_fp8.npy"), logits_rows[0].float().numpy())
    with open(os.path.join(d, "expected_fp8.json"), "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="fixture root, e.g. tests/fixtures/grad")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in sorted(os.listdir(args.root)):
        d = os.path.join(args.root, name)
        if not os.path.isdir(d) or (args.only and name not in args.only.split(",")):
            continue
        o = make_case(d)
        print(f"{name}: fp8 loss {o['loss']:.6f} (fp32 {o['fp32_loss']:.6f}), grad cosine vs fp32 "
              f"min {o['grad_cosine_vs_fp32_min']:.4f} ({o['grad_cosine_vs_fp32_min_tensor']}), "
              f"median {o['grad_cosine_vs_fp32_median']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
