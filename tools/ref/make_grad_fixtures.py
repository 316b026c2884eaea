#!/usr/bin/env python3
"""Write the training-gradient fixtures that the C backward pass (issue 7) is checked against.

    python3 tools/ref/make_grad_fixtures.py --out tests/fixtures/grad [--only a_v3_groups_yarn_mtp,...]

Each case directory holds a tiny HF-format DeepSeek-V3/V2 checkpoint (config.json + model.safetensors, the same
way tools/ref/make_model_fixtures.py writes them; the models are built with its functions), rows.npy (int64
[B, T+1] token ids), grads.safetensors (one F32 gradient per trainable parameter, named like its HF tensor, per
expert) and expected.json (the loss and its parts). The loss is the one pinned by issue 7 and written out in
docs/ORACLE.md §9:

    L = L_main + (λ/D)·Σ_k L^k + Σ_{MoE layers} mean_rows α·Σ_i f_i·P_i

assembled here on the HF transformers modules (the MTP module and the balance loss, which transformers does not
have, are built in this script). The gradient is torch autograd in float64 (the model is .double()'d; the few
places where HF casts to fp32 are run in float64, see F64_PATCHES) on exactly the stored weights (FP8: the
dequantized fp32 values). The same loss is also run in plain HF fp32; both runs must choose identical experts,
and every routing decision (group choice, biased top-K, the unbiased top-K of the balance loss) is at least
MARGIN_MIN from a tie, so an fp32 implementation cannot flip a choice. The fp32-vs-float64 gradient error is
recorded in expected.json (what an fp32 implementation achieves).

CPU only, one thread, deterministic algorithms, fixed seeds: reruns give identical files on the same machine.
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as mmf  # noqa: E402  (sets the offline / CPU environment before importing torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import DeepseekV3ForCausalLM  # noqa: E402
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as mv3  # noqa: E402

try:
    from transformers import DeepseekV2ForCausalLM  # noqa: E402
    from transformers.models.deepseek_v2 import modeling_deepseek_v2 as mv2  # noqa: E402
except ImportError:  # pragma: no cover
    DeepseekV2ForCausalLM = mv2 = None

MARGIN_MIN = mmf.MARGIN_MIN
F64 = torch.float64
LAMBDA_DEFAULT, ALPHA_DEFAULT = 0.3, 1e-4

SMALL = dict(mmf.BASE, vocab_size=96, hidden_size=48, intermediate_size=64, moe_intermediate_size=8,
             num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2, num_key_value_heads=2,
             q_lora_rank=32, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16)

# Each case: the make_model_fixtures case keys (seed, arch, cfg, spelling, layout, bias) plus
#   B, T: rows of T+1 ids; mtp: number of MTP layers D; copies: store model.layers.{N+k}.embed_tokens /
#   shared_head.head; alpha, lam: the seq-aux and MTP weights.
CASES = {
    # V3 main path: sigmoid + bias, 4 groups keep 2, top-4 of 16, q_lora, YaRN (3 ramp regions), 1 MTP layer
    # with the embedding / head copies stored; alpha 0.05 so the balance gradient is visible in the router grads
    "a_v3_groups_yarn_mtp": dict(
        seed=11000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=1, copies=True,
        B=2, T=24, alpha=0.05, lam=LAMBDA_DEFAULT,
        cfg=dict(SMALL, num_nextn_predict_layers=1)),
    # V2: softmax scores, group_limited_greedy (group max), no q_lora (q_proj), 2 shared experts, scaling 1.5,
    # fused experts on disk (gradients still per expert), v4 config spelling, alpha 0.1
    "b_v2_softmax_qproj": dict(
        seed=12000, arch="v2", spelling="v4", layout="fused", bias=None, mtp=0,
        B=2, T=20, alpha=0.1, lam=0.0,
        cfg=dict(vocab_size=96, hidden_size=48, intermediate_size=64, moe_intermediate_size=8,
                 num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2, num_key_value_heads=2,
                 q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
                 n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=2,
                 topk_method="group_limited_greedy", n_shared_experts=2, routed_scaling_factor=1.5,
                 norm_topk_prob=False, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0,
                 rope_scaling=dict(mmf.YARN, mscale=0.707, mscale_all_dim=0.707), max_position_embeddings=163840,
                 attention_bias=False, attention_dropout=0.0, mlp_bias=False, tie_word_embeddings=False,
                 pad_token_id=None, bos_token_id=1, eos_token_id=2)),
    # dense only (first_k_dense_replace = num_hidden_layers): no router, balance loss 0; default RoPE, rms eps 1e-5
    "c_dense_only": dict(
        seed=13000, arch="v3", spelling="v4", layout="single", bias="pos", mtp=0,
        B=2, T=17, alpha=ALPHA_DEFAULT, lam=0.0,
        cfg=dict(SMALL, first_k_dense_replace=2, rope_scaling=None, max_position_embeddings=4096,
                 rms_norm_eps=1e-5)),
    # FP8 e4m3 + 128x128 weight_scale_inv (H = 136, dense intermediate 136: full and partial blocks), negative
    # correction biases, 1 MoE layer + 1 MTP layer (the MTP block is FP8 too) with the copies ABSENT
    "d_fp8_negbias_mtp": dict(
        seed=14000, arch="v3", spelling="v4", layout="fp8", bias="neg", mtp=1, copies=False,
        B=2, T=19, alpha=ALPHA_DEFAULT, lam=LAMBDA_DEFAULT,
        cfg=dict(SMALL, vocab_size=64, hidden_size=136, intermediate_size=136, moe_intermediate_size=8,
                 q_lora_rank=32, kv_lora_rank=32, n_routed_experts=8, n_group=2, topk_group=1,
                 num_experts_per_tok=2, num_nextn_predict_layers=1)),
    # B = 3 rows, T = 37 (prime: not a multiple of any block size), 2 MoE layers, top-3 of 8, no grouping
    # (n_group 1), norm_topk_prob false, alpha 0.01
    "e_batch3_t37": dict(
        seed=15000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=0,
        B=3, T=37, alpha=0.01, lam=0.0,
        cfg=dict(SMALL, num_hidden_layers=3, n_routed_experts=8, n_group=1, topk_group=1,
                 num_experts_per_tok=3, norm_topk_prob=False)),
    # two MTP layers (D = 2, depth 2 fed depth 1's shared_head-normed output), copies stored; also attention
    # biases (q_a / kv_a / o) and half-split RoPE (rope_interleave false)
    "f_mtp2_bias_halfsplit": dict(
        seed=16000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=2, copies=True,
        B=2, T=21, alpha=ALPHA_DEFAULT, lam=LAMBDA_DEFAULT,
        cfg=dict(SMALL, vocab_size=64, num_nextn_predict_layers=2, attention_bias=True, rope_interleave=False,
                 n_routed_experts=8, n_group=2, topk_group=1, num_experts_per_tok=2)),
}
for _c in CASES.values():
    _c["cfg"].setdefault("num_nextn_predict_layers", 0)
    assert _c["cfg"].get("num_nextn_predict_layers", 0) == _c["mtp"] or _c["arch"] == "v2"


# ----------------------------------------------------------------------------------------------
# float64 execution of the HF modules. HF computes RMSNorm, the router and the attention softmax in fp32
# whatever the model dtype (and V2's RoPE in complex64); for a float64 model these wrappers do the same math in
# float64 and otherwise call HF's own code unchanged. Routing *selection* is HF's own code (run on the fp32 cast,
# asserted equal to the float64 selection by route margins); the gating weights are recomputed in float64.
# The RoPE cos/sin table stays HF's fp32 table (angles pos.float()*inv_freq, as the C side computes them).

_ORIG = {}


def _rmsnorm_forward(self, x):
    if x.dtype != F64:
        return _ORIG[type(self)](self, x)
    var = x.pow(2).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))


def _router_forward(self, hidden_states):
    if hidden_states.dtype != F64:
        return _ORIG[type(self)](self, hidden_states)
    h = hidden_states.view(-1, self.hidden_dim)
    with torch.no_grad():
        _, _, idx = _ORIG[type(self)](self, h.detach())  # HF's selection
    logits = F.linear(h, self.weight)
    if mv2 is not None and isinstance(self, mv2.DeepseekV2TopkRouter):
        w = logits.softmax(dim=-1).gather(1, idx)
    else:
        w = logits.sigmoid().gather(1, idx)
        if self.norm_topk_prob:
            w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
    return logits, w * self.routed_scaling_factor, idx


def _make_eager(orig):
    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        if query.dtype != F64:
            return orig(module, query, key, value, attention_mask, scaling, dropout=dropout, **kwargs)
        assert module.num_key_value_groups == 1 and dropout == 0.0
        w = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                w = w.masked_fill(~attention_mask, float("-inf"))
            else:
                w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w
    return eager


def _v2_rotary(xq, xk, freqs_cis):
    if xq.dtype != F64:
        return _ORIG["v2_rope"](xq, xk, freqs_cis)
    xq_ = torch.view_as_complex(xq.contiguous().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.contiguous().reshape(*xk.shape[:-1], -1, 2))
    fc = freqs_cis.unsqueeze(1).to(torch.complex128)
    return torch.view_as_real(xq_ * fc).flatten(3), torch.view_as_real(xk_ * fc).flatten(3)


def install_f64_patches():
    if _ORIG:
        return
    for mod, norm, router in ((mv3, "DeepseekV3RMSNorm", "DeepseekV3TopkRouter"),
                              (mv2, "DeepseekV2RMSNorm", "DeepseekV2TopkRouter")):
        if mod is None:
            continue
        n, r = getattr(mod, norm), getattr(mod, router)
        _ORIG[n], _ORIG[r] = n.forward, r.forward
        n.forward, r.forward = _rmsnorm_forward, _router_forward
        _ORIG[mod.__name__ + ".eager"] = mod.eager_attention_forward
        mod.eager_attention_forward = _make_eager(mod.eager_attention_forward)
    if mv2 is not None:
        _ORIG["v2_rope"] = mv2.apply_rotary_emb
        mv2.apply_rotary_emb = _v2_rotary


F64_PATCHES = "RMSNorm, TopkRouter (weights), eager_attention_forward softmax, V2 apply_rotary_emb"


# ----------------------------------------------------------------------------------------------
# the loss

class Recorder:
    """Forward hooks on every router (main MoE layers, then MTP depths): the router logits, with their graph."""

    def __init__(self, routers):
        self.out, self.handles = {}, []
        for key, r in routers:
            self.handles.append(r.register_forward_hook(self._hook(key)))

    def _hook(self, key):
        def fn(mod, inp, out):
            self.out[key] = out
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()


def mtp_depth(model, mtp, k, ids, h_prev):
    """MTP depth k over rows ids [B, T+1] (inputs ids[:, :T]): x_i = eh_proj([enorm(Emb(t_{i+k})); hnorm(h_prev_i)])
    for i = 0..T-1-k, the decoder layer causal over those positions at RoPE positions 0..T-1-k, then
    shared_head.norm. The embedding and the head are the MAIN model's parameters (one tensor each)."""
    T = ids.shape[1] - 1
    Tk = T - k
    e = model.model.embed_tokens(ids[:, k:k + Tk])
    x = mtp.eh_proj(torch.cat([mtp.enorm(e), mtp.hnorm(h_prev[:, :Tk])], dim=-1))  # embedding FIRST
    pos = torch.arange(Tk).unsqueeze(0)
    pe = model.model.rotary_emb(x, pos)
    mask = torch.full((Tk, Tk), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)[None, None]
    x = mtp.layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    hn = mtp.shared_head.norm(x)
    return model.lm_head(hn), hn


def scores_of(arch, logits):
    return logits.softmax(dim=-1) if arch == "v2" else logits.sigmoid()


def unbiased_topk_margin(arch, logits, K):
    """Gap between the K-th and (K+1)-th raw score (V2: in log-probability, like make_model_fixtures)."""
    s = (logits.log_softmax(-1) if arch == "v2" else logits.sigmoid()).sort(-1, descending=True)[0]
    return s[:, K - 1] - s[:, K]


def forward_loss(model, mtps, ids, case):
    """Returns (loss, parts, routing) for rows ids [B, T+1]. routing: per MoE layer key -> (logits [B*Tl, E],
    Tl, HF indices)."""
    cfg = model.config
    B, T1 = ids.shape
    T = T1 - 1
    arch, K, E = case["arch"], cfg.num_experts_per_tok, cfg.n_routed_experts
    routers = [(f"layer{i}", model.model.layers[i].mlp.gate) for i in range(cfg.first_k_dense_replace,
                                                                             cfg.num_hidden_layers)]
    routers += [(f"mtp{k + 1}", m.layer.mlp.gate) for k, m in enumerate(mtps)]
    rec = Recorder(routers)
    try:
        out = model.model(input_ids=ids[:, :T], use_cache=False)
        h = out.last_hidden_state  # after model.norm
        logits = model.lm_head(h)
        V = logits.shape[-1]
        ce = -logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]  # [B, T]
        main = ce.sum() / (B * T)
        mtp_terms, hk = [], h
        for k, m in enumerate(mtps, start=1):
            lk, hk = mtp_depth(model, m, k, ids, hk)
            cek = -lk.log_softmax(-1).gather(-1, ids[:, k + 1:, None])[..., 0]  # row position i predicts t_{i+k+1}
            assert cek.shape == (B, T - k) and lk.shape[-1] == V
            mtp_terms.append(cek.sum() / (B * T))
        D = len(mtps)
        mtp_loss = (case["lam"] / D) * sum(mtp_terms) if D and case["lam"] else logits.new_zeros(())
        bal_terms, routing = [], {}
        for key, _ in routers:
            rl, w, idx = rec.out[key]
            Tl = T - (int(key[3:]) if key.startswith("mtp") else 0)
            assert rl.shape == (B * Tl, E)
            routing[key] = (rl, Tl, idx)
            s = scores_of(arch, rl).view(B, Tl, E)
            with torch.no_grad():
                top = s.topk(K, dim=-1)[1]  # unbiased, no group limit
                f = torch.zeros(B, Tl, E, dtype=s.dtype).scatter_(2, top, 1.0).sum(1) * (E / (K * Tl))  # [B, E]
            P = (s / s.sum(-1, keepdim=True)).mean(1)  # [B, E]
            bal_terms.append(case["alpha"] * (f * P).sum(-1).mean())
        balance = sum(bal_terms) if bal_terms else logits.new_zeros(())
    finally:
        rec.remove()
    loss = main + mtp_loss + balance
    parts = dict(main=main, mtp=mtp_loss, balance=balance, mtp_per_depth=mtp_terms, balance_per_layer=bal_terms,
                 balance_layers=[k for k, _ in routers])
    return loss, parts, routing


def routing_margins(model, mtps, case, routing):
    """Per decision kind, the minimum margin; and per row the dependency positions of violations."""
    cfg = model.config
    K = cfg.num_experts_per_tok
    mins = {"group": float("inf"), "expert": float("inf"), "unbiased_topk": float("inf")}
    bad = set()  # (row, position of the last token the decision depends on)
    for key, (rl, Tl, idx) in routing.items():
        rl = rl.detach()
        if key.startswith("layer"):
            gate, lag = model.model.layers[int(key[5:])].mlp.gate, 0
        else:
            gate, lag = mtps[int(key[3:]) - 1].layer.mlp.gate, int(key[3:])
        if case["arch"] == "v3":
            idx2, _, gm, em = mmf.route_v3(rl, cfg, bias=gate.e_score_correction_bias)
        else:
            idx2, _, gm, em = mmf.route_v2(rl, cfg)
        if not torch.equal(idx2.sort(-1)[0], idx.sort(-1)[0]):
            raise AssertionError(f"{key}: HF routing differs from the re-implementation")
        um = unbiased_topk_margin(case["arch"], rl, K)
        per_tok = um.clone()
        mins["unbiased_topk"] = min(mins["unbiased_topk"], um.min().item())
        for name, m in (("group", gm), ("expert", em)):
            if m is not None:
                mins[name] = min(mins[name], m.min().item())
                per_tok = torch.minimum(per_tok, m)
        B = per_tok.numel() // Tl
        for n in (per_tok <= MARGIN_MIN).nonzero().flatten().tolist():
            bad.add((n // Tl, n % Tl + lag))
    return mins, bad


def repair_rows(model, mtps, ids, case, gen, log, name):
    """Make every routing decision at least MARGIN_MIN from a tie by resampling token ids: a decision at row
    position i of the main model (MTP depth k) depends on the ids 0..i (0..i+k) only, so resampling the id at
    the first violating dependency position leaves every earlier decision unchanged. Deterministic (gen)."""
    V = model.config.vocab_size
    for it in range(5000):
        with torch.no_grad():
            _, _, routing = forward_loss(model, mtps, ids, case)
            mins, bad = routing_margins(model, mtps, case, routing)
        if not bad:
            return ids, mins, it
        p = min(pos for _, pos in bad)
        for r in sorted({r for r, pos in bad if pos == p}):
            ids[r, p] = int(torch.randint(3, V, (1,), generator=gen))
    raise RuntimeError(f"{name}: could not repair the routing margins")


# ----------------------------------------------------------------------------------------------
# building and saving

def build_models(case, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = mmf.make_config(case)
    torch.manual_seed(seed)
    cls = DeepseekV3ForCausalLM if case["arch"] == "v3" else DeepseekV2ForCausalLM
    model = cls(cfg).float().eval()
    mmf.set_eager(model)
    mmf.randomize_(model, case, gen)
    mtps = []
    for _ in range(case["mtp"]):
        m = mmf.MtpModule(model.config).float().eval()
        mmf.randomize_(m, case, gen)
        with torch.no_grad():  # the stored copies (if any) are the main tensors
            m.embed_tokens.weight.copy_(model.model.embed_tokens.weight)
            m.shared_head.head.weight.copy_(model.lm_head.weight)
        mtps.append(m)
    return model, mtps, gen


def mtp_layer_dict(m, layer):
    """The on-disk tensors of one MTP layer (per-expert names), without the embedding / head copies."""
    out = mmf.mtp_state_dict(m, layer)
    for s in ("embed_tokens.weight", "shared_head.head.weight"):
        out.pop(f"model.layers.{layer}.{s}")
    return out


def apply_fp8_mtp_(m, layer):
    """FP8-quantize the MTP decoder block's Linear weights (attention, experts, shared experts; not eh_proj, the
    router, norms, embedding or head), load the dequantized values back; returns the on-disk tensors."""
    fused = {k: v.detach().clone() for k, v in m.layer.state_dict().items()}
    split = mmf.split_fused(fused)
    store, deq = {}, dict(split)
    for k, v in split.items():
        if mmf.fp8_quantizable(f"model.layers.{layer}.{k}"):
            wq, s = mmf.quant_fp8_block(v.float())
            store[k], store[k[: -len("weight")] + "weight_scale_inv"] = wq, s
            deq[k] = mmf.dequant_fp8_block(wq, s)
        else:
            store[k] = v
    m.layer.load_state_dict(mmf.fuse_split(deq, fused), strict=True)
    return {f"model.layers.{layer}.{k}": v for k, v in store.items()}


def param_name_map(model, mtps):
    """HF on-disk name (per expert) -> (module parameter, slicer) for every trainable parameter."""
    N = model.config.num_hidden_layers
    out = {}

    def add(prefix, named):
        for k, p in named:
            if k.endswith("mlp.experts.gate_up_proj"):
                base = prefix + k[: -len("gate_up_proj")]
                im = p.shape[1] // 2
                for e in range(p.shape[0]):
                    out[f"{base}{e}.gate_proj.weight"] = (p, (e, slice(0, im)))
                    out[f"{base}{e}.up_proj.weight"] = (p, (e, slice(im, 2 * im)))
            elif k.endswith("mlp.experts.down_proj"):
                base = prefix + k[: -len("down_proj")]
                for e in range(p.shape[0]):
                    out[f"{base}{e}.down_proj.weight"] = (p, (e,))
            else:
                out[prefix + k] = (p, ())

    add("", model.named_parameters())
    for k, m in enumerate(mtps):
        L = N + k
        add(f"model.layers.{L}.", [(n[len("layer."):] if n.startswith("layer.") else n, p)
                                   for n, p in m.named_parameters()
                                   if not n.startswith("embed_tokens.") and not n.startswith("shared_head.head.")])
        out[f"model.layers.{L}.embed_tokens.weight"] = out["model.embed_tokens.weight"]
        out[f"model.layers.{L}.shared_head.head.weight"] = out["lm_head.weight"]
    return out


def collect_grads(model, mtps):
    g = {}
    for name, (p, sl) in param_name_map(model, mtps).items():
        gr = p.grad if p.grad is not None else torch.zeros_like(p)
        g[name] = gr[sl].detach().clone()
    return g


def run(model, mtps, ids, case, dtype):
    m2 = copy.deepcopy(model).to(dtype)
    ms2 = [copy.deepcopy(m).to(dtype) for m in mtps]
    for p in list(m2.parameters()) + [p for m in ms2 for p in m.parameters()]:
        p.grad = None
    loss, parts, routing = forward_loss(m2, ms2, ids, case)
    loss.backward()
    grads = collect_grads(m2, ms2)
    # the balance loss' share of the router gradients (a second pass with alpha = 0)
    share = None
    if parts["balance_per_layer"] and case["alpha"]:
        for p in list(m2.parameters()) + [p for m in ms2 for p in m.parameters()]:
            p.grad = None
        l0, _, _ = forward_loss(m2, ms2, ids, dict(case, alpha=0.0))
        l0.backward()
        g0 = collect_grads(m2, ms2)
        share = max(((grads[k] - g0[k]).norm() / grads[k].norm()).item() for k in grads if k.endswith("mlp.gate.weight"))
    return loss.detach(), parts, routing, grads, share, m2, ms2


def build_case(name, case, out_dir, log):
    seed = case["seed"]
    for attempt in range(20):
        model, mtps, gen = build_models(case, seed)
        fp8_store = mmf.apply_fp8_(model) if case["layout"] == "fp8" else None
        fp8_mtp = [apply_fp8_mtp_(m, model.config.num_hidden_layers + k) for k, m in enumerate(mtps)] \
            if case["layout"] == "fp8" else None
        B, T = case["B"], case["T"]
        ids = torch.randint(3, model.config.vocab_size, (B, T + 1), generator=gen)
        m64 = copy.deepcopy(model).to(F64)
        ms64 = [copy.deepcopy(m).to(F64) for m in mtps]
        try:
            ids, mins, n_fix = repair_rows(m64, ms64, ids, case, gen, log, name)
        except RuntimeError as e:
            log(f"  {name}: seed {seed}: {e}; reseeding")
            seed += 1
            continue
        break
    else:
        raise RuntimeError(f"{name}: no usable seed")
    loss64, p64, r64, g64, share, mm64, mms64 = run(model, mtps, ids, case, F64)
    loss32, p32, r32, g32, _, _, _ = run(model, mtps, ids, case, torch.float32)
    mins64, bad64 = routing_margins(mm64, mms64, case, r64)
    assert not bad64
    # fp32 HF chooses the same experts (biased/grouped selection and the unbiased top-K of the balance loss)
    for key in r64:
        assert torch.equal(r64[key][2].sort(-1)[0], r32[key][2].sort(-1)[0]), f"{name}: fp32 routing differs ({key})"
        K = model.config.num_experts_per_tok
        u64 = r64[key][0].detach().topk(K, -1)[1].sort(-1)[0]
        u32 = r32[key][0].detach().topk(K, -1)[1].sort(-1)[0]
        assert torch.equal(u64, u32), f"{name}: fp32 unbiased top-K differs ({key})"
    rel = {}
    for k in g64:
        n = g64[k].norm().item()
        rel[k] = (g32[k].double() - g64[k]).norm().item() / n if n > 0 else float(g32[k].norm().item() > 0) * float("inf")
    worst = max(rel, key=rel.get)
    n_zero = sum(1 for k in g64 if g64[k].norm().item() == 0)
    res = dict(loss64=loss64, parts=p64, loss32=loss32, parts32=p32, mins=mins64, share=share, rel=rel,
               worst=worst, n_zero=n_zero, n_fix=n_fix, seed=seed)
    return save_case(name, case, model, mtps, ids, g64, fp8_store, fp8_mtp, res, out_dir, log)


def save_case(name, case, model, mtps, ids, grads, fp8_store, fp8_mtp, res, out_dir, log):
    d = os.path.join(out_dir, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    cfg = model.config
    arch, layout = case["arch"], case["layout"]
    if layout == "fused":
        model.save_pretrained(d, save_original_format=False)
    elif layout in ("single", "fp8"):
        model.save_pretrained(d)
    else:
        raise RuntimeError(layout)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    path = os.path.join(d, "model.safetensors")
    saved = load_file(path)
    want = mmf.expected_keys(cfg, arch, fused=(layout == "fused"), with_bias=(arch == "v3"))
    assert set(saved) == want, (sorted(set(saved) ^ want)[:8])
    ref = model.state_dict() if layout == "fused" else mmf.split_fused(model.state_dict())
    if layout != "fp8":
        for k, v in saved.items():
            assert torch.equal(v, ref[k]), f"{name}: saved {k} differs from the model"
        tensors = {k: v.clone() for k, v in saved.items()}
    else:
        assert set(k for k in fp8_store if not k.endswith("weight_scale_inv")) == want
        tensors = dict(fp8_store)
    N = cfg.num_hidden_layers
    for k, m in enumerate(mtps):
        extra = fp8_mtp[k] if fp8_mtp else mtp_layer_dict(m, N + k)
        if layout == "fp8":  # eh_proj, norms stay F32 (as the router / norms of the main layers)
            for s in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight"):
                extra[f"model.layers.{N + k}.{s}"] = getattr_path(m, s).detach().clone()
        if case.get("copies"):
            extra[f"model.layers.{N + k}.embed_tokens.weight"] = model.model.embed_tokens.weight.detach().clone()
            extra[f"model.layers.{N + k}.shared_head.head.weight"] = model.lm_head.weight.detach().clone()
        assert not (set(tensors) & set(extra))
        tensors.update(extra)
    mmf.write_safetensors(path, tensors, {"format": "pt"})
    if layout == "fp8":
        c = json.load(open(os.path.join(d, "config.json")))
        c["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                    "weight_block_size": [mmf.FP8_BLOCK, mmf.FP8_BLOCK]}
        mmf.write_json(os.path.join(d, "config.json"), c)
    if case["spelling"] == "v4":
        mmf.to_v4_spelling(d, rope_key="rope_type" if arch == "v2" else "type")
    else:
        mmf.write_json(os.path.join(d, "config.json"), json.load(open(os.path.join(d, "config.json"))))

    # the gradient key set: every stored tensor that is a parameter (per expert), plus both names of the
    # shared embedding / head for every MTP layer
    params = {k for k in tensors if not k.endswith("e_score_correction_bias") and not k.endswith("weight_scale_inv")}
    if layout == "fused":
        params = set(mmf.split_fused({k: tensors[k] for k in params}))
    for k in range(len(mtps)):
        params |= {f"model.layers.{N + k}.embed_tokens.weight", f"model.layers.{N + k}.shared_head.head.weight"}
    assert set(grads) == params, sorted(set(grads) ^ params)[:8]
    shapes = {k: tuple(v.shape) for k, v in mmf.split_fused(
        {k: v for k, v in tensors.items() if k in params or "mlp.experts." in k}).items()}
    for k in range(len(mtps)):
        shapes[f"model.layers.{N + k}.embed_tokens.weight"] = tuple(tensors["model.embed_tokens.weight"].shape)
        shapes[f"model.layers.{N + k}.shared_head.head.weight"] = tuple(tensors["lm_head.weight"].shape)
    for k, g in grads.items():
        assert tuple(g.shape) == shapes[k], (k, tuple(g.shape), shapes[k])
    gmeta = {"case": name, "generator": "tools/ref/make_grad_fixtures.py", "torch": torch.__version__,
             "transformers": transformers.__version__, "reference": "float64 autograd, stored as F32"}
    mmf.write_safetensors(os.path.join(d, "grads.safetensors"), {k: v.float().contiguous() for k, v in grads.items()},
                          gmeta)
    np.save(os.path.join(d, "rows.npy"), ids.numpy().astype(np.int64))

    p = res["parts"]
    D = len(mtps)
    exp = {
        "loss": res["loss64"].item(), "main": p["main"].item(), "mtp": float(p["mtp"]), "balance": float(p["balance"]),
        "tokens": case["B"] * case["T"], "mtp_weight": case["lam"] if D else 0.0, "seq_aux": case["alpha"],
        "B": case["B"], "T": case["T"], "mtp_depth": D,
        "mtp_per_depth": [float(x) for x in p["mtp_per_depth"]],
        "balance_per_layer": {k: float(x) for k, x in zip(p["balance_layers"], p["balance_per_layer"])},
        "min_routing_margin": {k: (v if math.isfinite(v) else None) for k, v in res["mins"].items()},
        "routing_margin_min_required": MARGIN_MIN,
        "routing_margin_units": "log-probability" if arch == "v2" else "sigmoid score",
        "fp32_loss_abs_diff": abs(res["loss32"].item() - res["loss64"].item()),
        "fp32_grad_max_rel_err": res["rel"][res["worst"]], "fp32_grad_max_rel_err_tensor": res["worst"],
        "fp32_grad_median_rel_err": float(np.median([v for v in res["rel"].values() if math.isfinite(v)])),
        "fp32_routing_identical": True,
        "balance_share_of_router_grad": res["share"],
        "zero_grad_tensors": res["n_zero"],
        "grad_tensors": len(grads),
        "mtp_copies_stored": bool(case.get("copies")) if D else None,
        "ids_resampled_for_margins": res["n_fix"],
        "seed": res["seed"],
        "torch": torch.__version__, "transformers": transformers.__version__,
        "generator": "tools/ref/make_grad_fixtures.py",
    }
    mmf.write_json(os.path.join(d, "expected.json"), exp)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    log(f"{name}: seed {res['seed']}, {size / 1024:.0f} KiB, loss {exp['loss']:.6f} (main {exp['main']:.6f} mtp "
        f"{exp['mtp']:.6f} bal {exp['balance']:.3e}), margins {exp['min_routing_margin']}, fp32 grad rel err max "
        f"{exp['fp32_grad_max_rel_err']:.2e} ({res['worst']}) median {exp['fp32_grad_median_rel_err']:.2e}, "
        f"balance share of router grad {res['share']}, zero-grad tensors {res['n_zero']}, ids resampled {res['n_fix']}")
    return size


def getattr_path(m, path):
    for part in path.split(".")[:-1]:
        m = getattr(m, part)
    return getattr(m, path.split(".")[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (one sub-directory per case)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    install_f64_patches()
    names = [n for n in CASES if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(CASES) - {""}
    if unknown:
        sys.exit(f"unknown case(s): {sorted(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for n in names:
        total += build_case(n, CASES[n], args.out, lambda s: print(s, file=sys.stderr, flush=True))
    print(f"wrote {len(names)} case(s), {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
