#!/usr/bin/env python3
"""Writes the digital-operation corpus of tests/golden/digital_ops_test.cc (deterministic).

Small random graphs covering every digital-unit operation (docs/SEMANTICS.md "Digital nodes"),
with activation quantisation calibrated on random inputs (scripts/imcsim_py/graph_build.py)
and golden pairs computed by the numpy reference on random images and on edge cases:
  * dw_conv:   digital conv (padding, ReLU) -> depthwise conv (stride 2) -> global average pool
               -> digital linear, float logits (the first / last layers kept digital);
  * concat:    two digital convs and the input concatenated (one part moved, two requantised),
               average pool, global average pool;
  * attention: to_tokens, per-token digital Q/K/V, attention scores (3 heads), softmax,
               context, per-token IMC linear (linear ADC), residual add, layer norm, GELU table,
               constant add, IMC linear on tokens again, token mean, digital linear;
  * ties:      weight scale 0.5 (accumulators land on .5: round-half-to-even), narrow output
               codes (saturation), softmax of equal scores, layer norm of constant rows with
               eps_int = 0 and > 0.
Each graph gets golden pairs for random images plus a constant image (every row constant:
equal softmax scores, constant layer-norm rows) and an all-zero and all-255 image.

Usage: /usr/bin/python3 tests/data/digital_ops/make_digital_ops.py [out_dir]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from imcsim_py import digital_export as DX  # noqa: E402
from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_build import GraphBuilder  # noqa: E402
from imcsim_py.graph_pb import save_graph  # noqa: E402

SEED = 20261122
GENERATOR = "tests/data/digital_ops/make_digital_ops.py 1"


def rand_w(rng, shape, bits):
    top = (1 << (bits - 1)) - 1
    return rng.integers(-top - 1, top + 1, size=shape)


def wscale(rng, n, bits, k):
    """Per-column weight scales giving outputs of order one."""
    return rng.uniform(0.5, 1.5, size=n) / (((1 << (bits - 1)) - 1) * math.sqrt(k))


def images(rng, shape, n):
    imgs = rng.integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)
    const = np.full((1,) + tuple(shape), 97, dtype=np.uint8)
    zeros = np.zeros((1,) + tuple(shape), dtype=np.uint8)
    full = np.full((1,) + tuple(shape), 255, dtype=np.uint8)
    return np.concatenate([imgs, const, zeros, full])


def finish(b: GraphBuilder, rng, shape, out: Path):
    g = b.g
    g.provenance.exporter = GENERATOR
    g.provenance.command = "/usr/bin/python3 tests/data/digital_ops/make_digital_ops.py"
    g.provenance.seed = SEED
    g.provenance.method = "random-digital-ops"
    g.provenance.dataset = "random"
    pix = images(rng, shape, 3)
    labels = np.zeros(len(pix), dtype=np.int64)
    E.add_goldens(g, pix, labels, list(range(len(pix))))
    problems = E.check_goldens(g)
    if problems:
        raise SystemExit(f"{out}: golden self-check failed: {problems[:3]}")
    save_graph(g, out)
    print(f"wrote {out}: {len(g.nodes)} nodes, {len(g.golden)} golden pairs")


def calib_codes(rng, shape, n=16):
    return rng.integers(0, 256, size=(n,) + tuple(shape)).astype(np.int64)


def dw_conv(rng, out_dir):
    shape = (3, 7, 8)
    b = GraphBuilder("digital_dw_conv", shape, calib_codes(rng, shape), num_classes=3)
    w1 = rand_w(rng, (4, 3, 3, 3), 6)
    x = b.add(DX.digital_node("conv1", ["input"], w1, pad=(1, 1), weight_bits=6,
                              weight_scale=wscale(rng, 4, 6, 27), bias=rng.normal(0, 0.1, 4), relu=True), bits=6)
    w2 = rand_w(rng, (4, 1, 3, 3), 5)
    x = b.add(DX.digital_node("dw2", [x], w2, stride=(2, 2), pad=(1, 1), groups=4, weight_bits=5,
                              weight_scale=wscale(rng, 4, 5, 9)), bits=7)
    x = b.add(DX.op_node("gap", [x], "global_avg_pool"), bits=8)
    w3 = rand_w(rng, (3, 4), 8)
    b.add(DX.digital_node("fc", [x], w3, kind="linear", weight_bits=8, weight_scale=[0.01],
                          bias=[0.1, -0.2, 0.0]), float_output=True)
    finish(b, rng, shape, out_dir / "dw_conv.imcg")


def concat(rng, out_dir):
    shape = (2, 6, 6)
    b = GraphBuilder("digital_concat", shape, calib_codes(rng, shape), num_classes=7)
    a = b.add(DX.digital_node("a", ["input"], rand_w(rng, (3, 2, 1, 1), 8), weight_bits=8,
                              weight_scale=wscale(rng, 3, 8, 2), relu=True), bits=8)
    c = b.add(DX.digital_node("c", ["input"], rand_w(rng, (2, 2, 3, 3), 4), pad=(1, 1), weight_bits=4,
                              weight_scale=wscale(rng, 2, 4, 18)), bits=5)
    qa = b.quants[a]
    x = b.add(DX.op_node("cat", [a, c, "input"], "concat"), quant=qa)
    x = b.add(E.pool_node("avg", [x], "avg", kernel=(3, 3), stride=(1, 1), pad=(1, 1)), bits=8)
    x = b.add(E.pool_node("max", [x], "max", kernel=(2, 2), stride=(2, 2)), quant=b.quants[x])
    b.add(DX.op_node("gap", [x], "global_avg_pool"), float_output=True)
    finish(b, rng, shape, out_dir / "concat.imcg")


def imc_linear(rng, name, x, K, N, b, bits=8, relu=False):
    w = rand_w(rng, (N, K), 6)
    adc = E.adc_spec("linear", bits=6, frac_bits=0, rounding="half_away", step_fx=[2], centre_fx=[0])
    node = E.imc_node(name, [x], w, kind="linear", weight_bits=6, cell_bits=2, dac_bits=1, array_rows=8,
                      weight_scale=wscale(rng, N, 6, K), bias=rng.normal(0, 0.05, N), adc=adc, relu=relu)
    return b.add(node, bits=bits)


def attention(rng, out_dir):
    T, D, H = 8, 12, 3
    shape = (1, T, D)
    b = GraphBuilder("digital_attention", shape, calib_codes(rng, shape), num_classes=4)
    x = b.add(DX.op_node("tok", ["input"], "to_tokens", patch=(1, D)), quant=b.quants["input"])
    qkv = []
    for nm in ("q", "k", "v"):
        qkv.append(b.add(DX.digital_node(nm, [x], rand_w(rng, (D, D), 8), kind="linear", weight_bits=8,
                                         weight_scale=wscale(rng, D, 8, D), bias=rng.normal(0, 0.1, D)),
                         bits=8, symmetric=True))
    s = b.add(DX.op_node("scores", [qkv[0], qkv[1]], "attention_scores", heads=H, scale=4 / math.sqrt(D // H)),
              bits=8)
    qs = b.quants[s]
    p = b.add(DX.op_node("softmax", [s], "softmax", exp_table=DX.softmax_exp_table(qs.scale, qs.bits)),
              quant=E.quant(1.0 / 255.0, 0, 8))
    c = b.add(DX.op_node("context", [p, qkv[2]], "attention_context"), bits=8, symmetric=True)
    o = imc_linear(rng, "out_proj", c, D, D, b)
    r = b.add(E.simple_node("res", [x, o], "add"), bits=8)
    qr = b.quants[r]
    n = b.add(DX.op_node("ln", [r], "layer_norm", gamma=rng.uniform(0.5, 1.5, D), beta=rng.normal(0, 0.2, D),
                         eps_int=DX.layer_norm_eps_int(1e-5, D, qr.scale)), bits=8, symmetric=True)
    h = imc_linear(rng, "ffn1", n, D, 2 * D, b)
    gq = b.lut("gelu", h, DX.gelu, "gelu", bits=8)
    pos = rng.normal(0, 0.3, size=(T, 2 * D))
    a = b.add(DX.op_node("pos", [gq], "add_constant", values=pos, relu=True), bits=7)
    f = imc_linear(rng, "ffn2", a, 2 * D, D, b)
    m = b.add(DX.op_node("mean", [f], "global_avg_pool"), bits=8)
    b.add(DX.digital_node("head", [m], rand_w(rng, (4, D), 8), kind="linear", weight_bits=8,
                          weight_scale=wscale(rng, 4, 8, D)), float_output=True)
    finish(b, rng, shape, out_dir / "attention.imcg")


def ties(rng, out_dir):
    shape = (1, 4, 8)
    q_in = E.quant(1.0, 0, 3)   # input codes rint(pixel / 32), clamped to 7
    calib = np.minimum(np.rint(calib_codes(rng, shape) / 32.0), 7).astype(np.int64)
    b = GraphBuilder("digital_ties_saturation", shape, calib, input_quant=q_in, pixel_scale=1.0 / 32.0,
                     num_classes=4)
    x = b.add(DX.op_node("tok", ["input"], "to_tokens", patch=(1, 4)), quant=q_in)   # [8, 4]
    # On the constant images every token row is constant: equal softmax scores, constant
    # layer-norm rows (eps_int 0: the root is 0 and the output is beta).
    b.add(DX.op_node("softmax_in", [x], "softmax", exp_table=DX.softmax_exp_table(0.4, 3)),
          quant=E.quant(1.0 / 255.0, 0, 8))
    b.add(DX.op_node("ln_in", [x], "layer_norm", gamma=[2.0, -1.0, 0.5, 1.0], beta=[0.5, -0.25, 0.0, 1.5],
                     eps_int=0), quant=E.quant(0.05, 64, 7))
    w = rng.integers(-3, 4, size=(4, 4))
    # y = acc * (1 * 0.5): every odd accumulator is a tie; 6-bit codes (zero point 24) saturate.
    y = b.add(DX.digital_node("half", [x], w, kind="linear", weight_bits=3, weight_scale=[0.5]),
              quant=E.quant(1.0, 24, 6))
    qy = b.quants[y]
    p = b.add(DX.op_node("softmax", [y], "softmax", exp_table=DX.softmax_exp_table(qy.scale * 0.15, qy.bits)),
              quant=E.quant(1.0 / 15.0, 0, 4))
    n0 = b.add(DX.op_node("ln0", [p], "layer_norm", gamma=[1.0, -2.0, 0.5, 3.0], beta=[0.0, 0.25, -0.5, 1.0],
                          eps_int=0), quant=E.quant(0.125, 16, 6))
    n1 = b.add(DX.op_node("ln1", [n0], "layer_norm", gamma=[1.0, 1.0, 1.0, 1.0], beta=[0.5, 0.0, -0.5, 0.0],
                          eps_int=DX.layer_norm_eps_int(0.01, 4, 0.125)), quant=E.quant(0.0625, 32, 6))
    b.add(DX.op_node("mean", [n1], "global_avg_pool"), float_output=True)
    finish(b, rng, shape, out_dir / "ties.imcg")


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    dw_conv(rng, out_dir)
    concat(rng, out_dir)
    attention(rng, out_dir)
    ties(rng, out_dir)


if __name__ == "__main__":
    main()
