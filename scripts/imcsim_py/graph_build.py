"""Incremental construction of value graphs with calibrated activation quantisation.

``GraphBuilder`` appends nodes one at a time; a node's output quantisation is chosen from the
real values it produces on calibration inputs: the node is appended with a float output
(bits = 0, allowed on the last node), the numpy reference runs the graph so far, and the
range of the outputs gives the scale and zero point. Used by the digital-op test corpus and
the transformer workloads (scripts/make_transformer_workloads.py).
"""

from __future__ import annotations

import numpy as np

from . import digital_export as DX
from . import export as E
from . import reference as R
from .graph_pb import pb


def quant_for(y, bits: int, symmetric: bool = False, clip_pct: float = 100.0):
    """Quant (scale, zero point, bits) covering the values y (optionally a central percentile)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if clip_pct < 100.0:
        lo, hi = np.percentile(y, [100.0 - clip_pct, clip_pct])
    else:
        lo, hi = float(y.min(initial=0.0)), float(y.max(initial=0.0))
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    top = (1 << bits) - 1
    if symmetric:
        a = max(abs(lo), abs(hi), 1e-6)
        scale = 2.0 * a / top
        zp = (top + 1) // 2
    else:
        scale = max(hi - lo, 1e-6) / top
        zp = int(min(max(round(-lo / scale), 0), top))
    return E.quant(scale, zp, bits)


class GraphBuilder:
    def __init__(self, name, input_shape, calib_codes, input_quant=None, num_classes=0,
                 pixel_scale=1.0 / 255.0, mean=0.0, std=1.0):
        """calib_codes: input codes [B][C][H][W] to calibrate activation ranges on."""
        self.g = pb.Graph(format_version=1, name=name)
        self.g.input.CopyFrom(E.input_spec(input_shape, pixel_scale=pixel_scale, mean=mean, std=std,
                                           q=input_quant))
        self.g.num_classes = num_classes
        self.calib = np.asarray(calib_codes, dtype=np.int64)
        self.tensors = {"input": self.calib}
        self.quants = {"input": self.g.input.quant}

    def _ref(self):
        return R.Reference(self.g)

    def add(self, node, bits=8, symmetric=False, quant=None, clip_pct=100.0, float_output=False):
        """Appends `node` (its output_shape is filled in); calibrates its output quant unless
        `quant` is given or float_output (the last node's float logits). Returns the name."""
        first = quant if quant is not None else E.quant(1.0, 0, 0)   # float: allowed on the last node
        node.output_quant.CopyFrom(first)
        self.g.nodes.append(node)
        last = self.g.nodes[-1]
        if not last.output_shape:
            shape = self._ref().infos[last.output].shape
            last.output_shape.extend(int(v) for v in shape)
        if quant is None and not float_output:
            y = self.run_last_float()
            last.output_quant.CopyFrom(quant_for(y, bits, symmetric, clip_pct))
        self.quants[last.output] = last.output_quant
        self.tensors[last.output] = self._ref().run(self.calib, stop_after=last.name)
        return last.output

    def run_last_float(self):
        ref = self._ref()
        return ref.run(self.calib)

    def shape(self, tensor):
        if tensor == "input":
            return tuple(self.g.input.shape)
        return tuple(next(n for n in self.g.nodes if n.output == tensor).output_shape)

    def lut(self, name, x, fn, function, bits=8, out_quant=None):
        """An element-wise table node for fn, output quant from fn over the input's range."""
        qi = self.quants[x]
        if out_quant is None:
            vals = [fn(qi.scale * (q - qi.zero_point)) for q in range(1 << qi.bits)]
            used = np.unique(np.asarray(self.tensors[x]).ravel())
            out_quant = quant_for([vals[int(q)] for q in used], bits)
        node = DX.op_node(name, [x], "lut", output_shape=self.shape(x), function=function,
                          table=DX.lut_table(fn, qi, out_quant))
        return self.add(node, quant=out_quant)
