"""A small vision-transformer encoder on Fashion-MNIST, as an imcsim graph.

Architecture (``Config``): 28x28 image -> ``to_tokens`` (patch x patch patches: T tokens of
patch^2 pixels) -> patch embedding (a Linear layer kept digital: the first layer) -> position
embeddings (``add_constant``) -> ``layers`` post-layer-norm encoder blocks as DistilBERT
(Q, K, V, output projection and the two FFN layers on IMC arrays, one position per token;
attention scores, softmax, context, residual adds, layer norms and GELU in the digital unit)
-> mean over tokens (``global_avg_pool``) -> classifier (a Linear layer kept digital: the last
layer, float logits).

Float parameters are a dict of numpy arrays (random: ``init_params``; trained: from PyTorch,
scripts/make_transformer_workloads.py). ``build_graph`` quantises the weights (symmetric,
per output channel) and calibrates every activation's quantisation on calibration images by
running the numpy reference on the graph built so far (graph_build.GraphBuilder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import digital_export as DX
from . import export as E
from .graph_build import GraphBuilder


@dataclass
class Config:
    d: int = 64
    heads: int = 4
    ffn: int = 256
    layers: int = 2
    patch: int = 7
    classes: int = 10
    image: int = 28
    act_bits: int = 8
    weight_bits: int = 8     # IMC layers (offset encoding, 2-bit cells, 1-bit DAC, 128 rows)
    digital_weight_bits: int = 8
    adc_bits: int = 8
    array_rows: int = 128
    ln_eps: float = 1e-5

    @property
    def tokens(self) -> int:
        return (self.image // self.patch) ** 2

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch


def init_params(rng, cfg: Config) -> dict:
    """Random float parameters (a DistilBERT-like initialisation, std 0.02 ... 1/sqrt(fan_in))."""
    def lin(n_out, n_in):
        return rng.normal(0, 1.0 / math.sqrt(n_in), size=(n_out, n_in)), rng.normal(0, 0.02, size=n_out)
    p = {}
    p["embed.w"], p["embed.b"] = lin(cfg.d, cfg.patch_dim)
    p["pos"] = rng.normal(0, 0.1, size=(cfg.tokens, cfg.d))
    for i in range(cfg.layers):
        for nm in ("q", "k", "v", "o"):
            p[f"l{i}.{nm}.w"], p[f"l{i}.{nm}.b"] = lin(cfg.d, cfg.d)
        p[f"l{i}.ffn1.w"], p[f"l{i}.ffn1.b"] = lin(cfg.ffn, cfg.d)
        p[f"l{i}.ffn2.w"], p[f"l{i}.ffn2.b"] = lin(cfg.d, cfg.ffn)
        for ln in ("ln1", "ln2"):
            p[f"l{i}.{ln}.g"] = 1.0 + rng.normal(0, 0.05, size=cfg.d)
            p[f"l{i}.{ln}.b"] = rng.normal(0, 0.05, size=cfg.d)
    p["head.w"], p["head.b"] = lin(cfg.classes, cfg.d)
    return p


def quantise_weights(w, bits):
    """Symmetric per-output-channel: integers in [-(2^(b-1) - 1), 2^(b-1) - 1] and scales."""
    w = np.asarray(w, dtype=np.float64)
    top = (1 << (bits - 1)) - 1
    s = np.maximum(np.abs(w).max(axis=1), 1e-12) / top
    return np.clip(np.rint(w / s[:, None]), -top, top).astype(np.int64), s


def build_graph(params: dict, cfg: Config, calib_codes, name: str) -> "GraphBuilder":
    """The graph of the float parameters, activation ranges calibrated on calib_codes
    ([B][1][28][28] input codes = pixels)."""
    b = GraphBuilder(name, (1, cfg.image, cfg.image), calib_codes, input_quant=E.quant(1.0 / 255.0, 0, 8),
                     num_classes=cfg.classes)
    A = cfg.act_bits
    adc = E.adc_spec("linear", bits=cfg.adc_bits, frac_bits=0, rounding="half_away", step_fx=[1], centre_fx=[0])

    def imc(nm, x, key):
        wq, s = quantise_weights(params[key + ".w"], cfg.weight_bits)
        node = E.imc_node(nm, [x], wq, kind="linear", weight_bits=cfg.weight_bits, cell_bits=2, dac_bits=1,
                          array_rows=cfg.array_rows, weight_scale=s, bias=params[key + ".b"], adc=adc)
        return b.add(node, bits=A, clip_pct=99.99)

    def digital(nm, x, key, last=False):
        wq, s = quantise_weights(params[key + ".w"], cfg.digital_weight_bits)
        node = DX.digital_node(nm, [x], wq, kind="linear", weight_bits=cfg.digital_weight_bits, weight_scale=s,
                               bias=params[key + ".b"])
        return b.add(node, float_output=True) if last else b.add(node, bits=A, clip_pct=99.99)

    def layer_norm(nm, x, key):
        q = b.quants[x]
        node = DX.op_node(nm, [x], "layer_norm", gamma=params[key + ".g"], beta=params[key + ".b"],
                          eps_int=DX.layer_norm_eps_int(cfg.ln_eps, cfg.d, q.scale))
        return b.add(node, bits=A, clip_pct=99.99)

    x = b.add(DX.op_node("tokens", ["input"], "to_tokens", patch=(cfg.patch, cfg.patch)), quant=b.quants["input"])
    x = digital("embed", x, "embed")
    x = b.add(DX.op_node("pos", [x], "add_constant", values=params["pos"]), bits=A, clip_pct=99.99)
    dh = cfg.d // cfg.heads
    for i in range(cfg.layers):
        L = f"l{i}"
        q, k, v = (imc(f"{L}.{nm}", x, f"{L}.{nm}") for nm in ("q", "k", "v"))
        s = b.add(DX.op_node(f"{L}.scores", [q, k], "attention_scores", heads=cfg.heads,
                             scale=1.0 / math.sqrt(dh)), bits=A)
        qs = b.quants[s]
        p = b.add(DX.op_node(f"{L}.softmax", [s], "softmax", exp_table=DX.softmax_exp_table(qs.scale, qs.bits)),
                  quant=E.quant(1.0 / 255.0, 0, 8))
        c = b.add(DX.op_node(f"{L}.context", [p, v], "attention_context"), bits=A, clip_pct=99.99)
        o = imc(f"{L}.o", c, f"{L}.o")
        x = layer_norm(f"{L}.ln1", b.add(E.simple_node(f"{L}.res1", [x, o], "add"), bits=A, clip_pct=99.99),
                       f"{L}.ln1")
        h = imc(f"{L}.ffn1", x, f"{L}.ffn1")
        g = b.lut(f"{L}.gelu", h, DX.gelu, "gelu", bits=A)
        f = imc(f"{L}.ffn2", g, f"{L}.ffn2")
        x = layer_norm(f"{L}.ln2", b.add(E.simple_node(f"{L}.res2", [x, f], "add"), bits=A, clip_pct=99.99),
                       f"{L}.ln2")
    m = b.add(DX.op_node("mean", [x], "global_avg_pool"), bits=A, clip_pct=99.99)
    digital("head", m, "head", last=True)
    return b


def float_forward(params: dict, cfg: Config, pixels) -> np.ndarray:
    """The float model (numpy), logits [B][classes] of uint8 pixels [B][28][28]."""
    x = np.asarray(pixels, dtype=np.float64).reshape(-1, cfg.image, cfg.image) / 255.0
    B, P, n = x.shape[0], cfg.patch, cfg.image // cfg.patch
    t = x.reshape(B, n, P, n, P).transpose(0, 1, 3, 2, 4).reshape(B, n * n, P * P)
    h = t @ params["embed.w"].T + params["embed.b"] + params["pos"]

    def ln(z, g, bb):
        mu = z.mean(-1, keepdims=True)
        var = ((z - mu) ** 2).mean(-1, keepdims=True)
        return (z - mu) / np.sqrt(var + cfg.ln_eps) * g + bb

    dh = cfg.d // cfg.heads
    for i in range(cfg.layers):
        L = f"l{i}"
        q, k, v = (h @ params[f"{L}.{nm}.w"].T + params[f"{L}.{nm}.b"] for nm in ("q", "k", "v"))
        split = lambda z: z.reshape(B, -1, cfg.heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
        s = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        p = s / s.sum(-1, keepdims=True)
        c = (p @ split(v)).transpose(0, 2, 1, 3).reshape(B, -1, cfg.d)
        h = ln(h + c @ params[f"{L}.o.w"].T + params[f"{L}.o.b"], params[f"{L}.ln1.g"], params[f"{L}.ln1.b"])
        f = h @ params[f"{L}.ffn1.w"].T + params[f"{L}.ffn1.b"]
        f = 0.5 * f * (1.0 + np.vectorize(math.erf)(f / math.sqrt(2.0)))
        f = f @ params[f"{L}.ffn2.w"].T + params[f"{L}.ffn2.b"]
        h = ln(h + f, params[f"{L}.ln2.g"], params[f"{L}.ln2.b"])
    return h.mean(1) @ params["head.w"].T + params["head.b"]
