"""Graph nodes of the digital-unit operations (docs/graph_format.md) and the tables the exporter
computes for them: the softmax exponential table, the GELU table, the layer-norm epsilon.

Transcendental functions (exp, erf) are evaluated here, once, by the exporter; the graph then
carries integer tables, so the C++ engine and the numpy reference never call them.
"""

from __future__ import annotations

import math

import numpy as np

from .graph_pb import pb

SOFTMAX_EXP_FRAC_BITS = 30


def _node(name, inputs, output_quant=None, output_shape=()):
    n = pb.Node()
    n.name = name
    n.inputs.extend(inputs)
    n.output = name
    n.output_shape.extend(int(v) for v in output_shape)
    if output_quant is not None:
        n.output_quant.CopyFrom(output_quant)
    return n


def digital_node(name, inputs, weights, *, kind="conv", stride=(1, 1), pad=(0, 0), groups=1,
                 weight_bits=8, weight_scale=(1.0,), bias=(), relu=False, output_quant=None,
                 output_shape=(), shape_only=False, in_channels=None):
    """A layer computed exactly in the digital unit. weights: int [Cout][Cin/groups][kh][kw]
    (conv) or [out][in] (linear); for shape_only graphs pass the shape tuple instead."""
    n = _node(name, inputs, output_quant, output_shape)
    L = n.digital
    wshape = tuple(weights) if shape_only else np.asarray(weights).shape
    L.kind = pb.DigitalLayer.KIND_CONV2D if kind == "conv" else pb.DigitalLayer.KIND_LINEAR
    L.out_channels = int(wshape[0])
    if kind == "conv":
        L.in_channels = int(in_channels if in_channels is not None else wshape[1] * groups)
        L.kernel_h, L.kernel_w = int(wshape[2]), int(wshape[3])
        L.stride_h, L.stride_w = int(stride[0]), int(stride[1])
        L.pad_h, L.pad_w = int(pad[0]), int(pad[1])
        L.groups = int(groups)
    else:
        L.in_channels = int(wshape[1])
    L.weight_bits = int(weight_bits)
    if not shape_only:
        L.weights.extend(int(v) for v in np.asarray(weights, dtype=np.int64).ravel())
        L.weight_scale.extend(float(v) for v in np.ravel(weight_scale))
        L.bias.extend(float(v) for v in np.ravel(bias))
    L.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
    return n


def op_node(name, inputs, op, output_quant=None, output_shape=(), **kw):
    """global_avg_pool, concat, attention_context (no fields); to_tokens (patch);
    attention_scores (heads, scale); softmax (exp_table); layer_norm (gamma, beta, eps_int);
    lut (table, function); add_constant (values, relu)."""
    n = _node(name, inputs, output_quant, output_shape)
    if op in ("global_avg_pool", "concat", "attention_context"):
        getattr(n, op).SetInParent()
    elif op == "to_tokens":
        n.to_tokens.patch_h, n.to_tokens.patch_w = (int(v) for v in kw["patch"])
    elif op == "attention_scores":
        n.attention_scores.heads = int(kw["heads"])
        n.attention_scores.scale = float(kw["scale"])
    elif op == "softmax":
        n.softmax.SetInParent()
        n.softmax.exp_table.extend(int(v) for v in kw.get("exp_table", ()))
    elif op == "layer_norm":
        n.layer_norm.SetInParent()
        n.layer_norm.gamma.extend(float(v) for v in kw.get("gamma", ()))
        n.layer_norm.beta.extend(float(v) for v in kw.get("beta", ()))
        n.layer_norm.eps_int = int(kw.get("eps_int", 0))
    elif op == "lut":
        n.lut.SetInParent()
        n.lut.function = kw.get("function", "")
        n.lut.table.extend(int(v) for v in kw.get("table", ()))
    elif op == "add_constant":
        n.add_constant.SetInParent()
        n.add_constant.values.extend(float(v) for v in np.ravel(kw.get("values", ())))
        n.add_constant.activation = pb.ACTIVATION_RELU if kw.get("relu") else pb.ACTIVATION_NONE
    else:
        raise ValueError(op)
    return n


def softmax_exp_table(in_scale: float, in_bits: int, frac_bits: int = SOFTMAX_EXP_FRAC_BITS):
    """exp_table[d] = round(2^frac_bits * exp(-in_scale * d)), d = 0 .. 2^in_bits - 1."""
    one = 1 << frac_bits
    return [int(round(one * math.exp(-in_scale * d))) for d in range(1 << in_bits)]


def gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def lut_table(fn, in_quant, out_quant):
    """Output code of fn(s_in (q - z_in)) for every input code q (round half to even, clamp)."""
    table = []
    top = (1 << out_quant.bits) - 1
    for q in range(1 << in_quant.bits):
        y = fn(in_quant.scale * (q - in_quant.zero_point))
        c = round(y / out_quant.scale) + out_quant.zero_point   # Python round: half to even
        table.append(int(min(max(c, 0), top)))
    return table


def layer_norm_eps_int(eps: float, d: int, in_scale: float) -> int:
    """eps (real, added to the variance) in the contract's units: round(eps * D^4 / s_in^2)."""
    return int(round(eps * float(d) ** 4 / (in_scale * in_scale)))
