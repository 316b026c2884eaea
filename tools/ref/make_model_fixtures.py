#!/usr/bin/env python3
"""Write the tiny DeepSeek-V3/V2 model fixtures that the C forward pass is tested against.

    python3 tools/ref/make_model_fixtures.py --out tests/fixtures/model [--only a_sigmoid_groups_yarn,...]

Every case directory gets config.json + weights exactly as HF transformers writes them (plus the
variations described per case) and expected.safetensors with the HF fp32 eager outputs.
See docs/ORACLE.md for the format and the semantics verified in the transformers source.
CPU only, fp32, eager attention and eager experts, fixed seeds: rerunning gives identical files on
the same machine / library versions.
"""
import argparse
import json
import math
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM  # noqa: E402
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as mv3  # noqa: E402

try:
    from transformers import DeepseekV2Config, DeepseekV2ForCausalLM  # noqa: E402
except ImportError:  # pragma: no cover
    DeepseekV2Config = DeepseekV2ForCausalLM = None

SEQ_LEN = 17
MARGIN_MIN = 1e-3  # routing decisions must be this far from a tie (see reference-oracle.md 3.2 item 7)
FP8_MAX = 448.0
FP8_BLOCK = 128

YARN = {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}

# Config (a): every V3 path; qk_rope 16 -> yarn low=2, high=6 over 8 frequencies (all three ramp regions).
BASE = dict(
    vocab_size=384, hidden_size=64, intermediate_size=96, moe_intermediate_size=16,
    num_hidden_layers=3, first_k_dense_replace=1,
    num_attention_heads=4, num_key_value_heads=4,
    q_lora_rank=48, kv_lora_rank=32,
    qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=24,
    n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4,
    n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True, hidden_act="silu",
    rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=dict(YARN),
    max_position_embeddings=163840,  # = factor * original
    rope_interleave=True, attention_bias=False, attention_dropout=0.0,
    tie_word_embeddings=False, pad_token_id=None, bos_token_id=0, eos_token_id=1,
    num_nextn_predict_layers=0,  # 5.24 defaults this to 1 (num_mtp_layers); real non-MTP fixtures say 0
)


def with_(d, **kw):
    out = dict(d)
    out.update(kw)
    return out


# Each case: cfg (kwargs), arch v3|v2, config_spelling v5|v4, weights layout, router bias init, extras.
CASES = {
    "a_sigmoid_groups_yarn": dict(
        seed=1001, arch="v3", cfg=dict(BASE), spelling="v5", layout="single", bias="pos"),
    "b_no_qlora_2shared": dict(
        seed=2000, arch="v3", spelling="v4", layout="fused", bias="pos",
        # unequal mscale / mscale_all_dim: cos/sin get attention_factor = m(1.0)/m(0.8) != 1
        cfg=with_(BASE, q_lora_rank=None, n_shared_experts=2, vocab_size=256, moe_intermediate_size=8,
                  rope_scaling=with_(YARN, mscale=1.0, mscale_all_dim=0.8))),
    "c_one_group_nonorm": dict(
        seed=3000, arch="v3", spelling="v5", layout="sharded", bias="pos", small_norm_inputs=True,
        cfg=with_(BASE, n_group=1, topk_group=1, norm_topk_prob=False, rms_norm_eps=1e-5,
                  vocab_size=256, n_routed_experts=8, num_experts_per_tok=3,
                  num_attention_heads=2, num_key_value_heads=2,
                  rope_scaling=None, max_position_embeddings=4096)),
    "d_v2_softmax": dict(
        seed=4000, arch="v2", spelling="v4", layout="single", bias=None,
        cfg=dict(vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=8,
                 num_hidden_layers=3, first_k_dense_replace=1,
                 num_attention_heads=4, num_key_value_heads=4,
                 q_lora_rank=None, kv_lora_rank=32,
                 qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
                 n_routed_experts=16, n_group=4, topk_group=2, num_experts_per_tok=4,
                 topk_method="group_limited_greedy", n_shared_experts=2,
                 routed_scaling_factor=1.5, norm_topk_prob=False, hidden_act="silu",
                 rms_norm_eps=1e-6, rope_theta=10000.0,
                 rope_scaling=with_(YARN, mscale=0.707, mscale_all_dim=0.707),
                 max_position_embeddings=163840,
                 attention_bias=False, attention_dropout=0.0, mlp_bias=False,
                 tie_word_embeddings=False, pad_token_id=None, bos_token_id=1, eos_token_id=2)),
    "e_negative_bias": dict(
        seed=5000, arch="v3", spelling="v5", layout="single", bias="neg",
        cfg=with_(BASE, vocab_size=256, moe_intermediate_size=8, num_attention_heads=2, num_key_value_heads=2)),
    "f_fp8": dict(
        seed=6000, arch="v3", spelling="v4", layout="fp8", bias="pos",
        cfg=with_(BASE, hidden_size=192, intermediate_size=320, q_lora_rank=160,
                  kv_lora_rank=96, num_attention_heads=2, num_key_value_heads=2,
                  qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=40,
                  moe_intermediate_size=144, num_hidden_layers=2, vocab_size=160,
                  n_routed_experts=6, n_group=2, topk_group=1, num_experts_per_tok=2)),
    "g_mtp": dict(
        seed=7000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=True,
        cfg=with_(BASE, vocab_size=256, moe_intermediate_size=8, num_hidden_layers=2, num_nextn_predict_layers=1)),
    # paths no other case takes: attention biases (q_a/kv_a/o), half-split rope (rope_interleave false),
    # tied embedding/head, yarn "truncate": false and an explicit "attention_factor"
    "i_bias_halfsplit_tied": dict(
        seed=9000, arch="v3", spelling="v5", layout="single", bias="pos",
        cfg=with_(BASE, attention_bias=True, rope_interleave=False, tie_word_embeddings=True, vocab_size=256,
                  moe_intermediate_size=8, rope_scaling=with_(YARN, truncate=False, attention_factor=0.8))),
    "h_bf16": dict(
        seed=1001, arch="v3", spelling="v4", layout="bf16", bias="pos", same_as="a_sigmoid_groups_yarn",
        cfg=dict(BASE)),
    # long sequences (T >= 300): the packed GEMM path (M > 24 rows, experts included) and attention over two
    # query blocks of 256 (the second partial) inside the model. Routing margins over so many tokens are made
    # > MARGIN_MIN by resampling token ids (repair_ids), not by reseeding.
    "j_long_mtp": dict(
        seed=10000, arch="v3", spelling="v5", layout="single", bias="pos", mtp=True, seq_len=300, repair_ids=True,
        cfg=with_(BASE, vocab_size=128, moe_intermediate_size=8, num_hidden_layers=2, num_nextn_predict_layers=1)),
    "k_long_fp8": dict(
        seed=10100, arch="v3", spelling="v4", layout="fp8", bias="pos", seq_len=333, repair_ids=True,
        cfg=with_(BASE, hidden_size=136, intermediate_size=136, q_lora_rank=32, kv_lora_rank=32,
                  num_attention_heads=2, num_key_value_heads=2, v_head_dim=16, moe_intermediate_size=16,
                  num_hidden_layers=2, vocab_size=96, n_routed_experts=6, n_group=2, topk_group=1,
                  num_experts_per_tok=2)),
}


# ----------------------------------------------------------------------------------------------
# model construction

def make_config(case):
    cfg = dict(case["cfg"])
    if case["arch"] == "v3":
        return DeepseekV3Config(**cfg)
    return DeepseekV2Config(**cfg)


def set_eager(model):
    for fn in ("set_attn_implementation", "set_experts_implementation"):
        if hasattr(model, fn):
            getattr(model, fn)("eager")
    assert model.config._attn_implementation == "eager"
    assert getattr(model.config, "_experts_implementation", "eager") in ("eager", None)


def randomize_(model, case, gen):
    """Non-degenerate weights: unit-scale activations, norms 1+0.1 randn, router std 0.3."""

    def rn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * rn(p.shape))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.3 * rn(p.shape))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(rn(p.shape) * (0.05 if case.get("small_norm_inputs") else 1.0))
            elif name.endswith("experts.gate_up_proj"):
                p.copy_(rn(p.shape) / math.sqrt(p.shape[2]))
            elif name.endswith("experts.down_proj"):
                p.copy_(rn(p.shape) / math.sqrt(p.shape[2]))
            elif name.endswith(".bias"):
                p.copy_(0.1 * rn(p.shape))
            elif p.dim() == 2:
                p.copy_(rn(p.shape) / math.sqrt(p.shape[1]))
                if case.get("small_norm_inputs") and (name.endswith("q_a_proj.weight") or name.endswith("kv_a_proj_with_mqa.weight")):
                    # inputs of q_a/kv_a norms ~0.05 rms: eps 1e-5 vs 1e-6 then moves the logits by ~1e-3
                    p.mul_(0.05)
            else:
                raise RuntimeError(f"unhandled parameter {name} {tuple(p.shape)}")
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                if case["bias"] == "pos":
                    b.copy_(0.1 * torch.rand(b.shape, generator=gen))
                elif case["bias"] == "neg":
                    # strongly negative biases: many biased scores s+b < 0, so a 0.0 fill of the
                    # dropped groups would let a dropped expert win (checked in check_neg_bias_case)
                    b.copy_(-0.9 + 0.8 * torch.rand(b.shape, generator=gen))
                else:
                    raise RuntimeError("bias kind")


# ----------------------------------------------------------------------------------------------
# routing re-implementation (margins, and the -inf vs 0.0 check); asserted equal to HF's choice

def route_v3(logits, cfg, fill=float("-inf"), bias=None):
    s = logits.sigmoid()
    sc = s + bias
    E, G = cfg.n_routed_experts, cfg.n_group
    gs = sc.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1)
    gsort = gs.sort(dim=-1, descending=True)[0]
    gmargin = (gsort[:, cfg.topk_group - 1] - gsort[:, cfg.topk_group]) if cfg.topk_group < G else None
    gidx = gs.topk(cfg.topk_group, dim=-1)[1]
    gmask = torch.zeros_like(gs).scatter_(1, gidx, 1.0).bool()
    emask = gmask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    masked = sc.masked_fill(~emask, fill)
    K = cfg.num_experts_per_tok
    msort = masked.sort(dim=-1, descending=True)[0]
    n_elig = cfg.topk_group * (E // G)
    emargin = (msort[:, K - 1] - msort[:, K]) if n_elig > K else None
    idx = masked.topk(K, dim=-1)[1]
    w = s.gather(1, idx)
    if cfg.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * cfg.routed_scaling_factor
    return idx, w, gmargin, emargin


def route_v2(logits, cfg):
    """HF V2 routing. Margins are measured on log-probabilities (= router-logit gaps): softmax
    probabilities over E experts are ~1/E, so an absolute 1e-3 gap would be needlessly strict."""
    p = logits.softmax(dim=-1, dtype=torch.float32)
    E = cfg.n_routed_experts
    K = cfg.num_experts_per_tok
    gmargin = None
    if cfg.topk_method == "group_limited_greedy":
        G = cfg.n_group
        gs = p.view(-1, G, E // G).max(dim=-1).values
        gsort = gs.sort(dim=-1, descending=True)[0].log()
        gmargin = (gsort[:, cfg.topk_group - 1] - gsort[:, cfg.topk_group]) if cfg.topk_group < G else None
        gidx = gs.topk(cfg.topk_group, dim=-1)[1]
        gmask = torch.zeros_like(gs).scatter_(1, gidx, 1.0).bool()
        emask = gmask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
        masked = p.masked_fill(~emask, 0.0)
    else:
        masked = p
    msort = masked.sort(dim=-1, descending=True)[0].log()
    emargin = msort[:, K - 1] - msort[:, K]
    idx = masked.topk(K, dim=-1)[1]
    w = p.gather(1, idx) * cfg.routed_scaling_factor
    return idx, w, gmargin, emargin


def sort_routing(idx, w):
    order = idx.argsort(dim=-1)
    return idx.gather(1, order), w.gather(1, order)


class RouterRecorder:
    """forward hooks on every router: keeps (router_logits, topk_weights, topk_indices) per call."""

    def __init__(self, routers):
        self.calls = {}
        self.handles = []
        for key, r in routers:
            self.handles.append(r.register_forward_hook(self._hook(key)))

    def _hook(self, key):
        def fn(mod, inp, out):
            logits, w, idx = out
            self.calls[key] = (logits.detach().clone(), w.detach().clone(), idx.detach().clone())
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()


def check_routing(case, cfg, key, rec, bias):
    """Assert HF's choice == our re-implementation, return sorted ids/weights and the minimum margin."""
    logits, w_hf, idx_hf = rec
    if case["arch"] == "v3":
        idx, w, gm, em = route_v3(logits, cfg, bias=bias)
    else:
        idx, w, gm, em = route_v2(logits, cfg)
    i_hf, w_hf = sort_routing(idx_hf, w_hf)
    i_me, w_me = sort_routing(idx, w)
    if not torch.equal(i_hf, i_me):
        raise AssertionError(f"{key}: HF routing differs from the re-implementation")
    if not torch.allclose(w_hf, w_me, rtol=0, atol=1e-6):
        raise AssertionError(f"{key}: HF routing weights differ from the re-implementation")
    margins = [m.min().item() for m in (gm, em) if m is not None]
    return i_hf, w_hf, (min(margins) if margins else float("inf"))


# ----------------------------------------------------------------------------------------------
# MTP module built from HF modules (HF's DeepseekV3ForCausalLM has no MTP of its own)

class MtpModule(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H = cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, H)
        self.enorm = mv3.DeepseekV3RMSNorm(H, eps=cfg.rms_norm_eps)
        self.hnorm = mv3.DeepseekV3RMSNorm(H, eps=cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * H, H, bias=False)
        self.layer = mv3.DeepseekV3DecoderLayer(cfg, layer_idx=cfg.num_hidden_layers)
        self.shared_head = nn.Module()
        self.shared_head.norm = mv3.DeepseekV3RMSNorm(H, eps=cfg.rms_norm_eps)
        self.shared_head.head = nn.Linear(H, cfg.vocab_size, bias=False)

    def forward(self, ids, h_final, rotary):
        """ids [1,T], h_final [1,T,H] = main model hidden AFTER model.norm. Returns logits [1,T-1,V]."""
        T = ids.shape[1]
        e = self.embed_tokens(ids[:, 1:])                    # Emb(t_{i+1}), i = 0..T-2
        x = self.eh_proj(torch.cat([self.enorm(e), self.hnorm(h_final[:, :T - 1])], dim=-1))  # embedding FIRST
        pos = torch.arange(T - 1).unsqueeze(0)
        pe = rotary(x, pos)
        mask = torch.full((T - 1, T - 1), torch.finfo(torch.float32).min).triu(1)[None, None]
        x = self.layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
        hn = self.shared_head.norm(x)
        return self.shared_head.head(hn), hn


def hf_mtp_crosscheck(model, mtp, ids, final, want_logits):
    """transformers 5.24 ships a generic MTP (modeling_layers.MtpModel, used by generate(use_mtp=True)) but its
    from_pretrained only finds DeepSeek MTP weights under the hard-coded model.layers.61. Build it in memory,
    copy our MTP weights in, run it HF's way (positions of the shifted tokens, 1..T-1) and compare."""
    try:
        from transformers.modeling_layers import MtpModel
    except ImportError:
        return None
    mt = MtpModel(model, 1).float().eval()
    mt.set_attn_implementation("eager")
    mt.set_experts_implementation("eager")
    src = mtp.state_dict()
    dst = {}
    for k in mt.state_dict():
        if not k.startswith("layers.0."):
            continue
        r = k[len("layers.0."):]
        if r.startswith("mtp_block."):
            dst[k] = src["layer." + r[len("mtp_block."):]]
        elif r.startswith("post_norm."):
            dst[k] = src["shared_head.norm." + r[len("post_norm."):]]
        else:
            dst[k] = src[r]
    missing, unexpected = mt.load_state_dict(dst, strict=False)
    assert not unexpected and all(not k.startswith("layers.") for k in missing), (missing, unexpected)
    T = ids.shape[1]
    with torch.no_grad():
        h = mt.forward_layer(0, final[:, : T - 1], torch.arange(1, T)[None], None, input_ids=ids[:, 1:])
        logits = mt._project_to_logits(h)[0]
    d = (logits - want_logits).abs()
    if not (d <= 1e-5 + 1e-4 * want_logits.abs()).all():
        raise AssertionError(f"HF MtpModel disagrees with our MTP module (max |d| {d.max().item()})")
    return d.max().item()


def mtp_state_dict(mtp, N):
    """On-disk names model.layers.{N}.*; experts split per expert like HF's reverse mapping."""
    out = {}
    for k, v in mtp.state_dict().items():
        if k.startswith("layer."):
            k = k[len("layer."):]
        out[f"model.layers.{N}.{k}"] = v
    return split_fused(out)


# ----------------------------------------------------------------------------------------------
# state dict helpers (in-memory fused experts <-> on-disk per-expert names)

def split_fused(sd):
    out = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            base = k[: -len("gate_up_proj")]
            im = v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = v[e, :im].contiguous()
                out[f"{base}{e}.up_proj.weight"] = v[e, im:].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            base = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = v[e].contiguous()
        else:
            out[k] = v.contiguous()
    return out


def fuse_split(sd_split, fused_template):
    """Inverse of split_fused, for loading dequantized per-expert tensors back into the model."""
    out = {}
    for k, v in fused_template.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            base = k[: -len("gate_up_proj")]
            out[k] = torch.stack([torch.cat([sd_split[f"{base}{e}.gate_proj.weight"],
                                             sd_split[f"{base}{e}.up_proj.weight"]], 0)
                                  for e in range(v.shape[0])])
        elif k.endswith("mlp.experts.down_proj"):
            base = k[: -len("down_proj")]
            out[k] = torch.stack([sd_split[f"{base}{e}.down_proj.weight"] for e in range(v.shape[0])])
        else:
            out[k] = sd_split[k]
    return out


def expected_keys(cfg, arch, fused, with_bias):
    """The exact tensor names HF should save (asserted against what it did save)."""
    keys = {"model.embed_tokens.weight", "model.norm.weight"}
    if not cfg.tie_word_embeddings:  # a tied head is not saved
        keys.add("lm_head.weight")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        keys |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        a = p + "self_attn."
        if cfg.q_lora_rank is None:
            keys.add(a + "q_proj.weight")
        else:
            keys |= {a + "q_a_proj.weight", a + "q_a_layernorm.weight", a + "q_b_proj.weight"}
        keys |= {a + "kv_a_proj_with_mqa.weight", a + "kv_a_layernorm.weight", a + "kv_b_proj.weight",
                 a + "o_proj.weight"}
        if cfg.attention_bias:  # q_proj never has one
            keys |= {a + "kv_a_proj_with_mqa.bias", a + "o_proj.bias"}
            if cfg.q_lora_rank is not None:
                keys.add(a + "q_a_proj.bias")
        m = p + "mlp."
        if i < cfg.first_k_dense_replace:
            keys |= {m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight"}
        else:
            keys.add(m + "gate.weight")
            if with_bias:
                keys.add(m + "gate.e_score_correction_bias")
            keys |= {m + f"shared_experts.{n}.weight" for n in ("gate_proj", "up_proj", "down_proj")}
            if fused:
                keys |= {m + "experts.gate_up_proj", m + "experts.down_proj"}
            else:
                for e in range(cfg.n_routed_experts):
                    keys |= {m + f"experts.{e}.{n}.weight" for n in ("gate_proj", "up_proj", "down_proj")}
    return keys


def saved_tensors(d):
    """{name: tensor} over model.safetensors or all shards listed in the index."""
    idx = os.path.join(d, "model.safetensors.index.json")
    files = ([os.path.join(d, f) for f in sorted(set(json.load(open(idx))["weight_map"].values()))]
             if os.path.exists(idx) else [os.path.join(d, "model.safetensors")])
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


# ----------------------------------------------------------------------------------------------
# config.json spelling

def to_v4_spelling(d, rope_key="type"):
    """Rewrite HF-5 config.json keys to the v4 spelling: rope_theta/rope_scaling/torch_dtype."""
    c = json.load(open(os.path.join(d, "config.json")))
    rp = c.pop("rope_parameters")
    theta = rp.pop("rope_theta")
    rtype = rp.pop("rope_type")
    out = {}
    for k, v in c.items():
        if k == "dtype":
            out["torch_dtype"] = v
        else:
            out[k] = v
    out["rope_theta"] = theta
    if rtype == "default":
        out["rope_scaling"] = None
    else:
        out["rope_scaling"] = {rope_key: rtype, **rp}
    write_json(os.path.join(d, "config.json"), out)


ST_DTYPES = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.bfloat16: "BF16",
             torch.float16: "F16", torch.float8_e4m3fn: "F8_E4M3", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    """Byte-deterministic safetensors writer (the library orders __metadata__ keys randomly): sorted tensor
    names, sorted metadata keys, header padded with spaces to a multiple of 8."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    back = load_file(path)  # the library must read back exactly what we meant
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k].cpu()) if tensors[k].dtype != torch.float8_e4m3fn
                                             else torch.equal(back[k].view(torch.uint8), tensors[k].view(torch.uint8))
                                             for k in tensors)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# FP8 block quantization (128x128, partial edge blocks)

def quant_fp8_block(w):
    """w [out,in] fp32 -> (wq float8_e4m3fn [out,in], s fp32 [ceil(out/128), ceil(in/128)])."""
    out_f, in_f = w.shape
    nb_o, nb_i = -(-out_f // FP8_BLOCK), -(-in_f // FP8_BLOCK)
    s = torch.empty(nb_o, nb_i, dtype=torch.float32)
    wq = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    for bo in range(nb_o):
        for bi in range(nb_i):
            r0, c0 = bo * FP8_BLOCK, bi * FP8_BLOCK
            blk = w[r0:r0 + FP8_BLOCK, c0:c0 + FP8_BLOCK]
            sc = blk.abs().max().clamp(min=1e-4) / FP8_MAX
            s[bo, bi] = sc
            q = (blk / sc).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            assert not torch.isnan(q.float()).any()
            wq[r0:r0 + FP8_BLOCK, c0:c0 + FP8_BLOCK] = q
    return wq, s


def dequant_fp8_block(wq, s):
    full = s.repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)[: wq.shape[0], : wq.shape[1]]
    return wq.float() * full


def fp8_quantizable(name):
    """Every Linear inside layers except the router: attention projections, dense MLP, experts, shared experts."""
    if not name.startswith("model.layers.") or not name.endswith(".weight"):
        return False
    if name.endswith("norm.weight") or name.endswith("mlp.gate.weight"):
        return False
    return True


# ----------------------------------------------------------------------------------------------
# forward + expected outputs

@torch.no_grad()
def run_model(model, ids, case):
    cfg = model.config
    routers = [(i, model.model.layers[i].mlp.gate) for i in range(cfg.first_k_dense_replace, cfg.num_hidden_layers)]
    rec = RouterRecorder(routers)
    layer_out = []
    hooks = [L.register_forward_hook(lambda m, i, o: layer_out.append((o[0] if isinstance(o, tuple) else o).detach().clone()))
             for L in model.model.layers]
    out = model(input_ids=ids, use_cache=False)
    # final_hidden: model.model output (after model.norm)
    final = model.model(input_ids=ids, use_cache=False).last_hidden_state
    rec.remove()
    for h in hooks:
        h.remove()
    layer_out = layer_out[: cfg.num_hidden_layers]
    return out.logits[0], final[0], rec, torch.stack([x[0] for x in layer_out])


def build_case(name, case, out_dir, log):
    torch.manual_seed(case["seed"])
    seed = case["seed"]
    # a case that re-saves another case's model must use exactly that model: no reseeding
    if case.get("same_as"):
        assert case["seed"] == CASES[case["same_as"]]["seed"] and case["cfg"] == CASES[case["same_as"]]["cfg"]
    for attempt in range(1 if case.get("same_as") else 50):
        gen = torch.Generator().manual_seed(seed)
        cfg = make_config(case)
        torch.manual_seed(seed)
        model = (DeepseekV3ForCausalLM if case["arch"] == "v3" else DeepseekV2ForCausalLM)(cfg).float().eval()
        set_eager(model)
        randomize_(model, case, gen)
        mtp = None
        if case.get("mtp"):
            mtp = MtpModule(model.config).float().eval()
            randomize_(mtp, case, gen)
            with torch.no_grad():
                mtp.embed_tokens.weight.copy_(model.model.embed_tokens.weight)
                mtp.shared_head.head.weight.copy_(model.lm_head.weight)
        ids = torch.randint(3, cfg.vocab_size, (1, case.get("seq_len", SEQ_LEN)), generator=gen)

        # weight rounding for the fp8 / bf16 cases: the model computes with exactly what is stored
        fp8_store = None
        if case["layout"] == "fp8":
            fp8_store = apply_fp8_(model)
        elif case["layout"] == "bf16":
            apply_bf16_rounding_(model)
        if case.get("repair_ids"):
            ids = repair_ids(model, mtp, ids, case, gen)

        ok, info = evaluate(model, mtp, ids, case)
        if ok:
            break
        log(f"  {name}: seed {seed} rejected ({info}), reseeding")
        seed += 1
    else:
        raise RuntimeError(f"{name}: no seed with routing margins > {MARGIN_MIN}")
    return save_case(name, case, model, mtp, ids, info, fp8_store, out_dir, seed, log)


def margin_violations(model, mtp, ids, case):
    """Positions p whose id some routing decision within MARGIN_MIN of a tie depends on last: the routing of
    main-model position i depends on ids 0..i, that of MTP position i on ids 0..i+1."""
    cfg = model.config
    logits, final, rec, _ = run_model(model, ids, case)
    calls = [(rec.calls[i][0], model.model.layers[i].mlp.gate, 0)
             for i in range(cfg.first_k_dense_replace, cfg.num_hidden_layers)]
    if mtp is not None:
        mrec = RouterRecorder([("mtp", mtp.layer.mlp.gate)])
        with torch.no_grad():
            mtp(ids, final[None], model.model.rotary_emb)
        mrec.remove()
        calls.append((mrec.calls["mtp"][0], mtp.layer.mlp.gate, 1))
    bad = set()
    for lg, gate, lag in calls:
        if case["arch"] == "v3":
            _, _, gm, em = route_v3(lg, cfg, bias=gate.e_score_correction_bias)
        else:
            _, _, gm, em = route_v2(lg, cfg)
        for m in (gm, em):
            if m is not None:
                bad |= {t + lag for t in (m <= MARGIN_MIN).nonzero().flatten().tolist()}
    return bad


def repair_ids(model, mtp, ids, case, gen, max_iter=5000):
    """Resample the id at the first position a near-tie depends on until no routing decision is within
    MARGIN_MIN of a tie (earlier decisions do not depend on it, so this terminates). Deterministic (gen)."""
    ids = ids.clone()
    for _ in range(max_iter):
        bad = margin_violations(model, mtp, ids, case)
        if not bad:
            return ids
        ids[0, min(bad)] = int(torch.randint(3, model.config.vocab_size, (1,), generator=gen))
    raise RuntimeError("repair_ids: routing margins could not be repaired")


def evaluate(model, mtp, ids, case):
    cfg = model.config
    for L in model.model.layers:  # HF builds q_a/kv_a norms with the default eps, not rms_norm_eps
        at = L.self_attn
        assert at.kv_a_layernorm.variance_epsilon == 1e-6
        assert at.q_a_layernorm is None or at.q_a_layernorm.variance_epsilon == 1e-6
        assert L.input_layernorm.variance_epsilon == cfg.rms_norm_eps
    assert model.model.norm.variance_epsilon == cfg.rms_norm_eps
    logits, final, rec, layer_hidden = run_model(model, ids, case)
    res = dict(logits=logits, final=final, layer_hidden=layer_hidden,
               inv_freq=model.model.rotary_emb.inv_freq.detach().clone().float())
    rexp, rw, margins = [], [], []
    for i in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
        gate = model.model.layers[i].mlp.gate
        bias = getattr(gate, "e_score_correction_bias", None)
        idx, w, m = check_routing(case, cfg, f"layer {i}", rec.calls[i], bias)
        rexp.append(idx)
        rw.append(w)
        margins.append(m)
    res["router_experts"] = torch.stack(rexp).to(torch.int32)
    res["router_weights"] = torch.stack(rw).float()
    if mtp is not None:
        mrec = RouterRecorder([("mtp", mtp.layer.mlp.gate)])
        with torch.no_grad():
            ml, mh = mtp(ids, final[None], model.model.rotary_emb)
        mrec.remove()
        idx, w, m = check_routing(case, cfg, "mtp layer", mrec.calls["mtp"], mtp.layer.mlp.gate.e_score_correction_bias)
        margins.append(m)
        res["mtp_logits"] = ml[0]
        res["mtp_final_hidden"] = mh[0]
        res["mtp_router_experts"] = idx.to(torch.int32)
        res["mtp_router_weights"] = w.float()
        res["hf_mtp_max_abs_diff"] = hf_mtp_crosscheck(model, mtp, ids, final[None], ml[0])
    res["margin"] = min(margins)
    if case["bias"] == "neg":
        res["neg_bias_flips"] = neg_bias_flips(model, rec)
        if res["neg_bias_flips"] == 0:
            return False, "negative-bias case: 0.0 fill would pick the same experts everywhere"
    if not torch.isfinite(logits).all():
        return False, "non-finite logits"
    if res["margin"] <= MARGIN_MIN:
        return False, f"routing margin {res['margin']:.2e}"
    return True, res


def neg_bias_flips(model, rec):
    """Number of (layer, token) whose expert set changes if dropped groups were filled with 0.0 (pre-#45441)."""
    cfg = model.config
    n = 0
    for i in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
        logits = rec.calls[i][0]
        bias = model.model.layers[i].mlp.gate.e_score_correction_bias
        a, _, _, _ = route_v3(logits, cfg, fill=float("-inf"), bias=bias)
        b, _, _, _ = route_v3(logits, cfg, fill=0.0, bias=bias)
        n += int((a.sort(-1)[0] != b.sort(-1)[0]).any(-1).sum())
    return n


def apply_fp8_(model):
    """Quantize the on-disk (per-expert) Linear weights, load the dequantized values back in."""
    fused = {k: v.detach().clone() for k, v in model.state_dict().items()}
    split = split_fused(fused)
    store = {}
    deq = dict(split)
    for k, v in split.items():
        if fp8_quantizable(k):
            wq, s = quant_fp8_block(v.float())
            store[k] = wq
            store[k[: -len("weight")] + "weight_scale_inv"] = s
            deq[k] = dequant_fp8_block(wq, s)
        else:
            store[k] = v
    model.load_state_dict(fuse_split(deq, fused), strict=True)
    return store


def apply_bf16_rounding_(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(p.to(torch.bfloat16).float())
    # e_score_correction_bias stays fp32 (as in real checkpoints): not rounded


def save_case(name, case, model, mtp, ids, res, fp8_store, out_dir, seed, log):
    d = os.path.join(out_dir, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    cfg = model.config
    arch = case["arch"]
    layout = case["layout"]
    with_bias = arch == "v3"

    if layout == "bf16":
        biases = {n: b.detach().clone() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")}
        m16 = model.to(torch.bfloat16)
        for n, b in biases.items():  # keep the correction bias fp32, as in the real checkpoint
            mod = m16.get_submodule(n.rsplit(".", 1)[0])
            mod.e_score_correction_bias = b
        m16.save_pretrained(d)
        model.float()
        for n, b in biases.items():
            model.get_submodule(n.rsplit(".", 1)[0]).e_score_correction_bias = b
    elif layout == "fused":
        model.save_pretrained(d, save_original_format=False)
    elif layout == "sharded":
        total = sum(p.numel() * 4 for p in model.state_dict().values())
        for frac in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8):  # aim for exactly 2 shards
            for f in os.listdir(d):
                os.remove(os.path.join(d, f))
            model.save_pretrained(d, max_shard_size=int(total * frac) + 4096)
            if len([f for f in os.listdir(d) if f.startswith("model-")]) == 2:
                break
    elif layout in ("single", "fp8"):
        model.save_pretrained(d)
    else:
        raise RuntimeError(layout)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)

    saved = saved_tensors(d)
    want = expected_keys(cfg, arch, fused=(layout == "fused"), with_bias=with_bias)
    if set(saved) != want:
        raise AssertionError(f"{name}: saved key set differs: extra {sorted(set(saved) - want)[:8]} "
                             f"missing {sorted(want - set(saved))[:8]}")
    # saved values must be what the model computed with
    ref = model.state_dict() if layout == "fused" else split_fused(model.state_dict())
    for k, v in saved.items():
        r = ref[k]
        if layout == "bf16" and not k.endswith("e_score_correction_bias"):
            assert v.dtype == torch.bfloat16 or k.endswith("gate.weight"), (k, v.dtype)
        if k.endswith("e_score_correction_bias"):
            assert v.dtype == torch.float32, (k, v.dtype)
        if layout != "fp8":
            assert torch.equal(v.float(), r.float()), f"{name}: saved {k} differs from the model"
    if layout == "sharded":
        shards = [f for f in os.listdir(d) if f.startswith("model-")]
        assert len(shards) == 2 and os.path.exists(os.path.join(d, "model.safetensors.index.json")), shards

    if layout == "fp8":
        assert set(k for k in fp8_store if not k.endswith("weight_scale_inv")) == want
        meta = {"format": "pt"}
        os.remove(os.path.join(d, "model.safetensors"))
        write_safetensors(os.path.join(d, "model.safetensors"), fp8_store, meta)
        c = json.load(open(os.path.join(d, "config.json")))
        c["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                    "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
        write_json(os.path.join(d, "config.json"), c)

    if mtp is not None:
        N = cfg.num_hidden_layers
        extra = mtp_state_dict(mtp, N)
        path = os.path.join(d, "model.safetensors")
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        allt = {k: v.clone() for k, v in load_file(path).items()}  # copy: we overwrite this very file
        assert not (set(allt) & set(extra))
        allt.update(extra)
        write_safetensors(path, allt, meta)
        mk = {f"model.layers.{N}.{s}" for s in ("enorm.weight", "hnorm.weight", "eh_proj.weight",
                                                   "shared_head.norm.weight", "shared_head.head.weight",
                                                   "embed_tokens.weight")}
        assert mk <= set(extra), sorted(mk - set(extra))

    if case["spelling"] == "v4":
        to_v4_spelling(d, rope_key="rope_type" if arch == "v2" else "type")
    else:
        write_json(os.path.join(d, "config.json"), json.load(open(os.path.join(d, "config.json"))))

    # expected outputs
    exp = {
        "input_ids": ids[0].to(torch.int32).contiguous(),
        "logits": res["logits"].float().contiguous(),
        "final_hidden": res["final"].float().contiguous(),
        "layer_hidden": res["layer_hidden"].float().contiguous(),
        "router_experts": res["router_experts"].contiguous(),
        "router_weights": res["router_weights"].contiguous(),
        "rope_inv_freq": res["inv_freq"].contiguous(),  # captured before the bf16 round trip of case h
    }
    for k in ("mtp_logits", "mtp_final_hidden", "mtp_router_experts", "mtp_router_weights"):
        if k in res:
            exp[k] = res[k].contiguous()
    attn = model.model.layers[0].self_attn
    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "case": name,
        "seed": str(seed),
        "min_routing_margin": f"{res['margin']:.6g}",
        "attention_scaling_softmax": repr(float(attn.scaling)),
        "rope_attention_factor": repr(float(model.model.rotary_emb.attention_scaling)),
        "generator": "tools/ref/make_model_fixtures.py",
    }
    if "neg_bias_flips" in res:
        meta["zero_fill_changes_expert_set_tokens"] = str(res["neg_bias_flips"])
    if res.get("hf_mtp_max_abs_diff") is not None:
        meta["hf_mtp_model_max_abs_diff"] = f"{res['hf_mtp_max_abs_diff']:.3g}"
    write_safetensors(os.path.join(d, "expected.safetensors"), exp, meta)

    # reload through HF and recompute (fp32 cases): proves the files on disk reproduce the logits
    if layout in ("single", "fused", "sharded", "bf16"):
        cls = DeepseekV3ForCausalLM if arch == "v3" else DeepseekV2ForCausalLM
        m2 = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        set_eager(m2)
        m2.eval()
        with torch.no_grad():
            l2 = m2(input_ids=ids, use_cache=False).logits[0]
        # Not bit-exact in general: from_pretrained builds tensors with other strides (e.g. the fused
        # experts), so BLAS sums in another order (seen: 1.4e-6 on |logits| ~4). Hold it to the C tolerance.
        ref_l = res["logits"]
        if not ((l2 - ref_l).abs() <= 1e-5 + 1e-4 * ref_l.abs()).all():
            raise AssertionError(f"{name}: reloaded model gives different logits "
                                 f"(max |d| {(l2 - ref_l).abs().max().item()})")
        res["reload_max_abs_diff"] = (l2 - ref_l).abs().max().item()

    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    lg = res["logits"]
    log(f"{name}: seed {seed}, {size/1024:.0f} KiB, reload |d| {res.get('reload_max_abs_diff', float('nan')):.1e}, logits std {lg.std():.3f} max|.| {lg.abs().max():.3f}, "
        f"min routing margin {res['margin']:.3e}, scaling {attn.scaling:.6f}, "
        f"rope attention_factor {model.model.rotary_emb.attention_scaling:.6f}"
        + (f", HF MtpModel |d| {res['hf_mtp_max_abs_diff']:.1e}" if res.get("hf_mtp_max_abs_diff") is not None else "")
        + (f", 0.0-fill flips {res['neg_bias_flips']} tokens" if "neg_bias_flips" in res else ""))
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (one sub-directory per case)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = [n for n in CASES if not args.only or n in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(CASES) - {""}
    if unknown:
        sys.exit(f"unknown case(s): {sorted(unknown)}")
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for n in names:
        total += build_case(n, CASES[n], args.out, lambda s: print(s, file=sys.stderr, flush=True))
    print(f"wrote {len(names)} case(s), {total/1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
