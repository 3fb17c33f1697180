#!/usr/bin/python3
"""Shape-only workloads at real scale: ResNet-18, VGG-16 and Inception-V3 with ImageNet input
shapes, and a DistilBERT-shaped transformer encoder.

Architectures only (no weights, nothing downloaded): graphs with shape_only = true, for
latency / energy / area studies with `imcsim run --timing-only`. Every conv and linear layer
is an IMC layer with the chosen bits, encoding, tiling and ADC (with --digital-first-last the
first and last layers are kept digital instead); pooling, residual adds, concatenation,
attention score / context matmuls, softmax, layer norm and GELU are digital-unit nodes.

    /usr/bin/python3 scripts/make_shape_workloads.py --out-dir workloads/shapes
    /usr/bin/python3 scripts/make_shape_workloads.py --models inception_v3,distilbert

With --random-weights SEED the graphs carry seeded random weights instead (shape_only = false),
so that the functional engine can run them on random inputs (benchmarks:
scripts/bench_kernels.sh); they are big (ResNet-18: ~45 MB): write them to a scratch directory.
Scales are chosen so that activations keep a similar spread from layer to layer (weight scale
1 / (74 sqrt(K)), every activation scale 1/32), and the ADC covers the partial-sum range
(linear: uniformly, step = ceil(max partial sum / 2^B); non-linear: square-law thresholds,
dense at small partial sums like calibrated references; shape-only graphs: placeholder
thresholds at multiples of the step). `--models w1` adds workload W1 (a 1x1 conv, 512 -> 512 channels on a 512x32x32
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

    def imc(self, x, cout, k=1, stride=1, pad=0, relu=True, linear=False, last=False, digital=False):
        """A conv (k, stride, pad: int or (h, w)) or linear layer (on a vector or on tokens)."""
        a = self.args
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        in_shape = self.shapes[x]
        if linear:
            cin = in_shape[-1]
            shape = [in_shape[0], cout] if len(in_shape) == 2 else [cout]
        else:
            cin, h, w = in_shape
            shape = [cout, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1]
        n = self._node("fc" if linear else "conv", [x], shape, bits=0 if last else None)
        if digital:   # kept digital: exact integer MACs in the digital unit
            d = n.digital
            d.kind = pb.DigitalLayer.KIND_LINEAR if linear else pb.DigitalLayer.KIND_CONV2D
            d.in_channels, d.out_channels = cin, cout
            if not linear:
                d.kernel_h, d.kernel_w, d.stride_h, d.stride_w, d.pad_h, d.pad_w = kh, kw, sh, sw, ph, pw
            d.groups = 1
            d.weight_bits = a.weight_bits
            d.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
            return n.name
        l = n.imc
        l.kind = pb.ImcLayer.KIND_LINEAR if linear else pb.ImcLayer.KIND_CONV2D
        l.in_channels, l.out_channels = cin, cout
        l.kernel_h, l.kernel_w = (1, 1) if linear else (kh, kw)
        l.stride_h, l.stride_w = (1, 1) if linear else (sh, sw)
        l.pad_h, l.pad_w = (0, 0) if linear else (ph, pw)
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
        elif self.rng is None:  # non-linear, shape-only: uniform thresholds (placeholders for timing and cost)
            adc.kind = pb.AdcSpec.KIND_NONLINEAR
            levels = 1 << a.adc_bits
            adc.thresholds_fx.extend(step * i for i in range(1, levels))
            adc.levels_fx.extend(step * i + step // 2 for i in range(levels))
        else:  # non-linear, random weights: square-law thresholds over [0, max partial sum],
            # dense at small partial sums like calibrated references (not an arithmetic table)
            adc.kind = pb.AdcSpec.KIND_NONLINEAR
            levels = 1 << a.adc_bits
            top = step * levels
            thresholds = []
            for i in range(1, levels):
                t = max(-(-top * i * i // (levels * levels)), thresholds[-1] + 1 if thresholds else 1)
                thresholds.append(t)
            adc.thresholds_fx.extend(thresholds)
            edges = [0] + thresholds + [top]
            adc.levels_fx.extend((edges[i] + edges[i + 1]) // 2 for i in range(levels))
        if self.rng is not None:
            k_rows = cin * l.kernel_h * l.kernel_w
            hi = 1 << (a.weight_bits - 1)
            l.weights.extend(self.rng.integers(-hi, hi, size=cout * k_rows).tolist())
            l.weight_scale.append(1.0 / (74.0 * math.sqrt(k_rows)))
        return n.name

    def op(self, kind, inputs, shape, **fields):
        """A digital-unit node without values (shape-only): concat, global_avg_pool, to_tokens,
        attention_scores, softmax, attention_context, layer_norm, lut."""
        n = self._node(kind, inputs, shape)
        msg = getattr(n, kind)
        msg.SetInParent()
        for k, v in fields.items():
            setattr(msg, k, v)
        return n.name

    def concat(self, xs):
        c = sum(self.shapes[x][0] for x in xs)
        return self.op("concat", xs, [c] + self.shapes[xs[0]][1:])

    def global_avg_pool(self, x):
        s = self.shapes[x]
        return self.op("global_avg_pool", [x], [s[0]] if len(s) == 3 else [s[1]])

    def pool(self, x, kind, k, stride, pad=0):  # noqa: D401
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


def inception_v3(args):
    """torchvision's Inception-V3 (no auxiliary head), 3x299x299, 1000 classes."""
    b = Builder("inception_v3_imagenet_shapes", args, [3, 299, 299])
    dfl = args.digital_first_last

    def conv(x, cout, k=1, stride=1, pad=0):
        return b.imc(x, cout, k=k, stride=stride, pad=pad)

    def block_a(x, pool_features):
        b1 = conv(x, 64)
        b5 = conv(conv(x, 48), 64, k=5, pad=2)
        b3 = conv(conv(conv(x, 64), 96, k=3, pad=1), 96, k=3, pad=1)
        bp = conv(b.pool(x, "avg", 3, 1, 1), pool_features)
        return b.concat([b1, b5, b3, bp])

    def block_b(x):
        b3 = conv(x, 384, k=3, stride=2)
        bd = conv(conv(conv(x, 64), 96, k=3, pad=1), 96, k=3, stride=2)
        bp = b.pool(x, "max", 3, 2)
        return b.concat([b3, bd, bp])

    def block_c(x, c7):
        b1 = conv(x, 192)
        b7 = conv(conv(conv(x, c7), c7, k=(1, 7), pad=(0, 3)), 192, k=(7, 1), pad=(3, 0))
        bd = conv(x, c7)
        for cout, k, p in [(c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)), (c7, (7, 1), (3, 0)), (192, (1, 7), (0, 3))]:
            bd = conv(bd, cout, k=k, pad=p)
        bp = conv(b.pool(x, "avg", 3, 1, 1), 192)
        return b.concat([b1, b7, bd, bp])

    def block_d(x):
        b3 = conv(conv(x, 192), 320, k=3, stride=2)
        b7 = conv(conv(conv(conv(x, 192), 192, k=(1, 7), pad=(0, 3)), 192, k=(7, 1), pad=(3, 0)), 192, k=3, stride=2)
        bp = b.pool(x, "max", 3, 2)
        return b.concat([b3, b7, bp])

    def block_e(x):
        b1 = conv(x, 320)
        t = conv(x, 384)
        b3 = b.concat([conv(t, 384, k=(1, 3), pad=(0, 1)), conv(t, 384, k=(3, 1), pad=(1, 0))])
        t = conv(conv(x, 448), 384, k=3, pad=1)
        bd = b.concat([conv(t, 384, k=(1, 3), pad=(0, 1)), conv(t, 384, k=(3, 1), pad=(1, 0))])
        bp = conv(b.pool(x, "avg", 3, 1, 1), 192)
        return b.concat([b1, b3, bd, bp])

    x = b.imc("input", 32, k=3, stride=2, digital=dfl)
    x = conv(x, 32, k=3)
    x = conv(x, 64, k=3, pad=1)
    x = b.pool(x, "max", 3, 2)
    x = conv(x, 80)
    x = conv(x, 192, k=3)
    x = b.pool(x, "max", 3, 2)
    x = block_a(x, 32)
    x = block_a(x, 64)
    x = block_a(x, 64)
    x = block_b(x)
    for c7 in (128, 160, 160, 192):
        x = block_c(x, c7)
    x = block_d(x)
    x = block_e(x)
    x = block_e(x)
    x = b.global_avg_pool(x)
    b.imc(x, 1000, linear=True, relu=False, last=True, digital=dfl)
    b.g.num_classes = 1000
    return b.g


def distilbert(args):
    """A DistilBERT-shaped encoder (6 layers, d = 768, 12 heads, FFN 3072, sequence 128),
    post-layer-norm blocks as DistilBERT; input = the 128 x 768 embeddings (the table lookup
    is not a matmul), a mean over tokens, pre-classifier (ReLU) and a 2-class classifier."""
    T, D, H, F, L = args.seq_len, 768, 12, 3072, 6
    b = Builder("distilbert_seq%d_shapes" % T, args, [1, T, D])
    x = b.op("to_tokens", ["input"], [T, D], patch_h=1, patch_w=D)
    x = b.op("layer_norm", [x], [T, D])                       # embedding layer norm
    for _ in range(L):
        q = b.imc(x, D, linear=True, relu=False)
        k = b.imc(x, D, linear=True, relu=False)
        v = b.imc(x, D, linear=True, relu=False)
        s = b.op("attention_scores", [q, k], [H, T, T], heads=H, scale=1.0 / math.sqrt(D // H))
        p = b.op("softmax", [s], [H, T, T])
        c = b.op("attention_context", [p, v], [T, D])
        o = b.imc(c, D, linear=True, relu=False)
        x = b.op("layer_norm", [b.add(x, o, relu=False)], [T, D])
        h = b.op("lut", [b.imc(x, F, linear=True, relu=False)], [T, F], function="gelu")
        f = b.imc(h, D, linear=True, relu=False)
        x = b.op("layer_norm", [b.add(x, f, relu=False)], [T, D])
    x = b.global_avg_pool(x)
    x = b.imc(x, D, linear=True, relu=True, digital=args.digital_first_last)
    b.imc(x, 2, linear=True, relu=False, last=True, digital=args.digital_first_last)
    b.g.num_classes = 2
    return b.g


NETWORKS = {"resnet18": resnet18, "vgg16": vgg16, "w1": w1, "inception_v3": inception_v3, "distilbert": distilbert}


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
    ap.add_argument("--models", default="resnet18,vgg16",
                    help="comma-separated: " + ", ".join(NETWORKS))
    ap.add_argument("--digital-first-last", action="store_true",
                    help="keep the first and last layers digital (exact integer MACs, no ADC)")
    ap.add_argument("--seq-len", type=int, default=128, help="DistilBERT sequence length")
    args = ap.parse_args()
    for name in args.models.split(","):
        if name not in NETWORKS:
            ap.error(f"--models: unknown network '{name}' (expected {', '.join(NETWORKS)})")
        if args.random_weights is not None and (name in ("inception_v3", "distilbert") or args.digital_first_last):
            ap.error(f"--random-weights: not available for {name} / --digital-first-last (digital-unit "
                     "nodes would need tables and weights); shape-only only")
        g = NETWORKS[name](args)
        if args.random_weights is not None:
            g.name = g.name.replace("_shapes", "_random")
        path = os.path.join(args.out_dir, f"{g.name.replace('_shapes', '')}{args.suffix}.imcg")
        imcg_file.write_imcg(path, g)
        print(f"wrote {path}: {len(g.nodes)} nodes")


if __name__ == "__main__":
    main()
