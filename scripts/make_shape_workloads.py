#!/usr/bin/python3
"""Shape-only workloads at real scale: ResNet-18 and VGG-16 with ImageNet input shapes.

Architectures only (no weights, nothing downloaded): graphs with shape_only = true, for
latency / energy / area studies with `imcsim run --timing-only`. Every conv and linear layer
is an IMC layer with the chosen bits, encoding, tiling and ADC; pooling and residual adds are
digital nodes. Inception-V3 (needs channel concatenation) and a DistilBERT-shaped encoder
(needs attention, softmax, layer norm) wait for those operations in the graph format.

    /usr/bin/python3 scripts/make_shape_workloads.py --out-dir workloads/shapes

With --random-weights SEED the graphs carry seeded random weights instead (shape_only = false),
so that the functional engine can run them on random inputs (benchmarks:
scripts/bench_kernels.sh); they are big (ResNet-18: ~45 MB): write them to a scratch directory.
Scales are chosen so that activations keep a similar spread from layer to layer (weight scale
1 / (74 sqrt(K)), every activation scale 1/32), and the ADC covers the partial-sum range
uniformly (linear: step = ceil(max partial sum / 2^B); non-linear: thresholds at multiples of
that step). `--models w1` adds workload W1 (a 1x1 conv, 512 -> 512 channels on a 512x32x32
input: K = N = 512, 1024 positions).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
from imcsim_py.graph_pb import pb  # noqa: E402
from imcsim_py import imcg_file  # noqa: E402


class Builder:
    """Appends nodes to a shape-only graph, tracking each tensor's shape."""

    def __init__(self, name, args, input_shape):
        self.g = pb.Graph(format_version=1, name=name, shape_only=args.random_weights is None)
        self.args = args
        self.rng = np.random.default_rng(args.random_weights) if args.random_weights is not None else None
        self.act_scale = 1.0 / 32 if self.rng is not None else 1.0
        self.g.provenance.exporter = "scripts/make_shape_workloads.py"
        self.g.provenance.command = " ".join(sys.argv)
        self.g.provenance.method = "shape-only"
        inp = self.g.input
        inp.tensor = "input"
        inp.shape.extend(input_shape)
        # Random-weight graphs are run on input codes the benchmark makes (no dataset is read).
        inp.dataset_format = "none" if args.random_weights is None else "idx-u8"
        inp.pixel_scale, inp.mean, inp.std = 1.0, 0.0, 1.0
        inp.quant.scale, inp.quant.zero_point, inp.quant.bits = self.act_scale, 0, args.input_bits
        self.shapes = {"input": list(input_shape)}
        self.count = 0

    def _node(self, op_name, inputs, shape, bits=None):
        self.count += 1
        name = f"{op_name}{self.count}"
        n = self.g.nodes.add(name=name, output=name)
        n.inputs.extend(inputs)
        n.output_shape.extend(shape)
        n.output_quant.scale, n.output_quant.zero_point = self.act_scale, 0
        n.output_quant.bits = self.args.input_bits if bits is None else bits
        self.shapes[name] = list(shape)
        return n

    def imc(self, x, cout, k=1, stride=1, pad=0, relu=True, linear=False, last=False):
        a = self.args
        cin = self.shapes[x][0]
        if linear:
            shape = [cout]
        else:
            _, h, w = self.shapes[x]
            shape = [cout, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1]
        n = self._node("fc" if linear else "conv", [x], shape, bits=0 if last else None)
        l = n.imc
        l.kind = pb.ImcLayer.KIND_LINEAR if linear else pb.ImcLayer.KIND_CONV2D
        l.in_channels, l.out_channels = cin, cout
        l.kernel_h = l.kernel_w = 1 if linear else k
        l.stride_h = l.stride_w = 1 if linear else stride
        l.pad_h = l.pad_w = 0 if linear else pad
        l.weight_bits, l.cell_bits, l.dac_bits = a.weight_bits, a.cell_bits, a.dac_bits
        l.encoding = pb.WEIGHT_ENCODING_OFFSET
        l.row_tiling = pb.ROW_TILING_CONTIGUOUS
        l.array_rows, l.array_cols = a.array_rows, a.array_cols
        l.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
        adc = l.adc
        adc.granularity = pb.AdcSpec.GRANULARITY_LAYER
        adc.bits = a.adc_bits
        # Shape-only: placeholder step 1. Random weights: cover [0, max partial sum] uniformly.
        rows = min(a.array_rows, cin * l.kernel_h * l.kernel_w)
        step = 1
        if self.rng is not None:
            step = max(1, math.ceil(rows * ((1 << a.dac_bits) - 1) * ((1 << a.cell_bits) - 1) / (1 << a.adc_bits)))
        if a.adc_kind == "linear":
            adc.kind = pb.AdcSpec.KIND_LINEAR
            adc.rounding = pb.AdcSpec.ROUNDING_HALF_AWAY
            adc.step_fx.append(step)
            adc.centre_fx.append(0)
        else:  # non-linear: uniform thresholds (placeholders for timing and cost)
            adc.kind = pb.AdcSpec.KIND_NONLINEAR
            levels = 1 << a.adc_bits
            adc.thresholds_fx.extend(step * i for i in range(1, levels))
            adc.levels_fx.extend(step * i + step // 2 for i in range(levels))
        if self.rng is not None:
            k_rows = cin * l.kernel_h * l.kernel_w
            hi = 1 << (a.weight_bits - 1)
            l.weights.extend(self.rng.integers(-hi, hi, size=cout * k_rows).tolist())
            l.weight_scale.append(1.0 / (74.0 * math.sqrt(k_rows)))
        return n.name

    def pool(self, x, kind, k, stride, pad=0):
        c, h, w = self.shapes[x]
        shape = [c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1]
        n = self._node("maxpool" if kind == "max" else "avgpool", [x], shape)
        p = n.max_pool if kind == "max" else n.avg_pool
        p.kernel_h = p.kernel_w = k
        p.stride_h = p.stride_w = stride
        p.pad_h = p.pad_w = pad
        return n.name

    def add(self, a, b, relu=True):
        n = self._node("add", [a, b], self.shapes[a])
        n.add.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
        return n.name

    def flatten(self, x):
        n = self._node("flatten", [x], [self.shapes[x][0] * self.shapes[x][1] * self.shapes[x][2]])
        n.flatten.SetInParent()
        return n.name


def resnet18(args):
    b = Builder("resnet18_imagenet_shapes", args, [3, 224, 224])
    x = b.imc("input", 64, k=7, stride=2, pad=3)
    x = b.pool(x, "max", 3, 2, 1)
    for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
        cin = b.shapes[x][0]
        y = b.imc(x, cout, k=3, stride=stride, pad=1)
        y = b.imc(y, cout, k=3, stride=1, pad=1, relu=False)
        shortcut = x if (stride == 1 and cin == cout) else b.imc(x, cout, k=1, stride=stride, relu=False)
        x = b.add(y, shortcut)
    x = b.pool(x, "avg", 7, 1)
    x = b.flatten(x)
    b.imc(x, 1000, linear=True, relu=False, last=True)
    b.g.num_classes = 1000
    return b.g


def vgg16(args):
    b = Builder("vgg16_imagenet_shapes", args, [3, 224, 224])
    x = "input"
    for block in [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]:
        for cout in block:
            x = b.imc(x, cout, k=3, stride=1, pad=1)
        x = b.pool(x, "max", 2, 2)
    x = b.flatten(x)
    x = b.imc(x, 4096, linear=True)
    x = b.imc(x, 4096, linear=True)
    b.imc(x, 1000, linear=True, relu=False, last=True)
    b.g.num_classes = 1000
    return b.g


def w1(args):
    b = Builder("w1_layer_shapes", args, [512, 32, 32])
    b.imc("input", 512, k=1, relu=False, last=True)
    b.g.num_classes = 512 * 32 * 32  # the output map (no classifier)
    return b.g


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="workloads/shapes")
    ap.add_argument("--input-bits", type=int, default=8)
    ap.add_argument("--weight-bits", type=int, default=8)
    ap.add_argument("--cell-bits", type=int, default=2)
    ap.add_argument("--dac-bits", type=int, default=1)
    ap.add_argument("--array-rows", type=int, default=128)
    ap.add_argument("--array-cols", type=int, default=128)
    ap.add_argument("--adc-kind", choices=["linear", "nonlinear"], default="linear")
    ap.add_argument("--adc-bits", type=int, default=8)
    ap.add_argument("--suffix", default="", help="appended to the file names, e.g. _6b2b3b")
    ap.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                    help="seeded random weights instead of shape-only graphs (write to a scratch dir)")
    ap.add_argument("--models", default="resnet18,vgg16", help="comma-separated: resnet18, vgg16, w1")
    args = ap.parse_args()
    makers = {"resnet18": resnet18, "vgg16": vgg16, "w1": w1}
    for name in args.models.split(","):
        g = makers[name](args)
        if args.random_weights is not None:
            g.name = g.name.replace("_shapes", "_random")
        path = os.path.join(args.out_dir, f"{g.name.replace('_shapes', '')}{args.suffix}.imcg")
        imcg_file.write_imcg(path, g)
        print(f"wrote {path}: {len(g.nodes)} nodes")


if __name__ == "__main__":
    main()
