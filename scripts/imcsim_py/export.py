"""Building imcsim graphs (sim/graph/imcsim_graph.proto) and their golden pairs.

The exporter identifies itself in Provenance.exporter as ``EXPORTER``. Run as a script, this
file is the training + export command line of the bundled model (same options as
``train_export.py``; see workloads/fmnist_cnn/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from imcsim_py.train_export import main as _main
    _main()
    sys.exit(0)

import numpy as np  # noqa: E402

from .graph_pb import pb  # noqa: E402
from . import reference as R  # noqa: E402

EXPORTER = "scripts/imcsim_py/export.py 1"


def quant(scale: float, zero_point: int, bits: int):
    q = pb.Quant()
    q.scale = float(scale)
    q.zero_point = int(zero_point)
    q.bits = int(bits)
    return q


def adc_spec(kind="ideal", bits=8, frac_bits=8, rounding="half_away", signed_codes=False,
             granularity="layer", step_fx=(), centre_fx=(), thresholds_fx=(), levels_fx=()):
    a = pb.AdcSpec()
    a.kind = {"ideal": R.ADC_IDEAL, "linear": R.ADC_LINEAR, "nonlinear": R.ADC_NONLINEAR}[kind]
    a.bits = int(bits) if kind != "ideal" else 0
    a.frac_bits = int(frac_bits)
    a.rounding = {"floor": R.ROUND_FLOOR, "half_away": R.ROUND_HALF_AWAY}[rounding]
    a.signed_codes = bool(signed_codes)
    a.granularity = {"layer": R.GRAN_LAYER, "column": R.GRAN_COLUMN,
                     "slice_tile_column": R.GRAN_STC}[granularity]
    a.step_fx.extend(int(v) for v in np.ravel(step_fx))
    a.centre_fx.extend(int(v) for v in np.ravel(centre_fx))
    a.thresholds_fx.extend(int(v) for v in np.ravel(thresholds_fx))
    a.levels_fx.extend(int(v) for v in np.ravel(levels_fx))
    return a


ENCODINGS = {"offset": R.ENC_OFFSET, "twos_complement": R.ENC_TWOS,
             "differential_digital": R.ENC_DIFF_DIGITAL,
             "differential_analog": R.ENC_DIFF_ANALOG}
TILINGS = {"contiguous": R.TILING_CONTIGUOUS, "channel_aligned": R.TILING_CHANNEL_ALIGNED}


def imc_node(name, inputs, weights, *, kind="conv", kernel=(1, 1), stride=(1, 1), pad=(0, 0),
             weight_bits=8, cell_bits=2, dac_bits=1, encoding="offset", tiling="contiguous",
             array_rows=128, array_cols=128, weight_scale=(1.0,), psum_scale=(), bias=(),
             ashift_offset=0, adc=None, relu=False, output_quant=None, output_shape=()):
    """weights: int array [Cout][Cin][kh][kw] (conv) or [out][in] (linear)."""
    w = np.asarray(weights, dtype=np.int64)
    n = pb.Node()
    n.name = name
    n.inputs.extend(inputs)
    n.output = name
    n.output_shape.extend(int(v) for v in output_shape)
    if output_quant is not None:
        n.output_quant.CopyFrom(output_quant)
    L = n.imc
    if kind == "conv":
        L.kind = pb.ImcLayer.KIND_CONV2D
        L.in_channels, L.out_channels = int(w.shape[1]), int(w.shape[0])
        L.kernel_h, L.kernel_w = int(w.shape[2]), int(w.shape[3])
        L.stride_h, L.stride_w = int(stride[0]), int(stride[1])
        L.pad_h, L.pad_w = int(pad[0]), int(pad[1])
    else:
        L.kind = pb.ImcLayer.KIND_LINEAR
        L.in_channels, L.out_channels = int(w.shape[1]), int(w.shape[0])
        L.kernel_h = L.kernel_w = 1
        L.stride_h = L.stride_w = 1
    L.weight_bits, L.cell_bits, L.dac_bits = int(weight_bits), int(cell_bits), int(dac_bits)
    L.encoding = ENCODINGS[encoding]
    L.row_tiling = TILINGS[tiling]
    L.array_rows, L.array_cols = int(array_rows), int(array_cols)
    L.weights.extend(int(v) for v in w.ravel())
    L.weight_scale.extend(float(v) for v in np.ravel(weight_scale))
    L.psum_scale.extend(float(v) for v in np.ravel(psum_scale))
    L.bias.extend(float(v) for v in np.ravel(bias))
    L.ashift_offset = int(ashift_offset)
    L.adc.CopyFrom(adc if adc is not None else adc_spec("ideal"))
    L.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
    return n


def pool_node(name, inputs, kind="max", kernel=(2, 2), stride=(2, 2), pad=(0, 0),
              output_quant=None, output_shape=()):
    n = pb.Node()
    n.name = name
    n.inputs.extend(inputs)
    n.output = name
    n.output_shape.extend(int(v) for v in output_shape)
    if output_quant is not None:
        n.output_quant.CopyFrom(output_quant)
    p = n.max_pool if kind == "max" else n.avg_pool
    p.kernel_h, p.kernel_w = int(kernel[0]), int(kernel[1])
    p.stride_h, p.stride_w = int(stride[0]), int(stride[1])
    p.pad_h, p.pad_w = int(pad[0]), int(pad[1])
    return n


def simple_node(name, inputs, op, output_quant=None, output_shape=(), relu=False):
    n = pb.Node()
    n.name = name
    n.inputs.extend(inputs)
    n.output = name
    n.output_shape.extend(int(v) for v in output_shape)
    if output_quant is not None:
        n.output_quant.CopyFrom(output_quant)
    if op == "flatten":
        n.flatten.SetInParent()
    elif op == "relu":
        n.relu.SetInParent()
    elif op == "add":
        n.add.activation = pb.ACTIVATION_RELU if relu else pb.ACTIVATION_NONE
    else:
        raise ValueError(op)
    return n


def input_spec(shape, tensor="input", pixel_scale=1.0 / 255.0, mean=0.0, std=1.0,
               q=None, dataset_format="idx-u8"):
    s = pb.InputSpec()
    s.tensor = tensor
    s.shape.extend(int(v) for v in shape)
    s.dataset_format = dataset_format
    s.pixel_scale, s.mean, s.std = float(pixel_scale), float(mean), float(std)
    s.quant.CopyFrom(q if q is not None else quant(1.0 / 255.0, 0, 8))
    return s


def add_goldens(graph, pixels, labels, indices, ref: R.Reference | None = None):
    """Append one GoldenPair per dataset index (pixels uint8 [n][H][W])."""
    ref = ref or R.Reference(graph)
    last_bits = ref.output_info.bits
    for i in indices:
        codes = ref.input_codes(pixels[i:i + 1])[0]
        recs = R.golden_record(ref, codes, int(i))   # the dataset index keys the ADC noise
        gp = graph.golden.add()
        gp.dataset_index = int(i)
        gp.label = int(labels[i])
        gp.input_codes.extend(int(v) for v in codes.ravel())
        for r in recs:
            ng = gp.nodes.add()
            ng.node = r["node"]
            if r["output_codes"] is not None:
                ng.output_codes.extend(int(v) for v in r["output_codes"])
            if "psum_count" in r:
                ng.psum_count = r["psum_count"]
                ng.psum_digest = r["psum_digest"]
                ng.adc_code_digest = r["adc_code_digest"]
                ng.acc_digest = r["acc_digest"]
                ng.psums_position0.extend(int(v) for v in r["psums_position0"])
                ng.adc_codes_position0.extend(int(v) for v in r["adc_codes_position0"])
                ng.acc_position0.extend(int(v) for v in r["acc_position0"])
        final = recs[-1]["output"].ravel()
        if last_bits == 0:
            gp.logits.extend(float(v) for v in final)
        else:
            info = ref.output_info
            gp.logits.extend(float(v) for v in
                             (final - info.zero_point).astype(np.float64) * info.scale)
        gp.predicted_class = int(np.argmax(final))
    return graph


def check_goldens(graph, ref: R.Reference | None = None):
    """Re-run the stored golden pairs; returns a list of mismatch descriptions (empty: OK)."""
    ref = ref or R.Reference(graph)
    problems = []
    for gp in graph.golden:
        codes = np.asarray(gp.input_codes, dtype=np.int64).reshape(ref.input_shape)
        recs = R.golden_record(ref, codes, int(gp.dataset_index))
        tag = f"golden[{gp.dataset_index}]"
        if len(recs) != len(gp.nodes):
            problems.append(f"{tag}: {len(gp.nodes)} node records, expected {len(recs)}")
            continue
        for r, ng in zip(recs, gp.nodes):
            if r["node"] != ng.node:
                problems.append(f"{tag}: node {ng.node} != {r['node']}")
                continue
            if r["output_codes"] is not None and \
                    list(r["output_codes"]) != list(ng.output_codes):
                problems.append(f"{tag}/{ng.node}: output_codes differ")
            if "psum_count" in r:
                for key in ("psum_count", "psum_digest", "adc_code_digest", "acc_digest"):
                    if r[key] != getattr(ng, key):
                        problems.append(f"{tag}/{ng.node}: {key} differs")
                for key in ("psums_position0", "adc_codes_position0", "acc_position0"):
                    if list(r[key]) != list(getattr(ng, key)):
                        problems.append(f"{tag}/{ng.node}: {key} differs")
        final = recs[-1]["output"].ravel()
        if ref.output_info.bits == 0 and list(final) != list(gp.logits):
            problems.append(f"{tag}: logits differ")
        if int(np.argmax(final)) != gp.predicted_class:
            problems.append(f"{tag}: predicted_class differs")
    return problems
