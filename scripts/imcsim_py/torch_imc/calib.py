"""Calibration: activation ranges (float model) and ADC parameters (exact partial sums).

ADC calibration uses the rules of scripts/imcsim_py/calibrate.py (the bundled exporter's):
exact histograms of the partial sums per ADC parameter set, nearest-rank percentiles, linear
unsigned (centre 0) / signed (two-sided) steps, or 1-D k-means for non-linear ADCs. Layers are
calibrated one after the other in graph order, the upstream ADCs already calibrated.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import calibrate as C
from . import layers as L
from . import bskmq
from .graph import prepare


def _batches(pixels, batch_size):
    for i in range(0, len(pixels), batch_size):
        p = pixels[i:i + batch_size]
        if isinstance(p, np.ndarray):
            p = torch.from_numpy(np.ascontiguousarray(p))
        yield p.float()


def _with_channel(model, p):
    shape = prepare_shape(model)
    return p.reshape((p.shape[0],) + shape)


def run_with_pre_hooks(model, targets, make_hook, pixels):
    """One forward pass of `pixels` (array or tensor, one batch) with make_hook(path, layer)
    registered as a forward pre-hook on every (path, layer) of `targets`; hooks removed after."""
    hooks = [layer.register_forward_pre_hook(make_hook(path, layer)) for path, layer in targets]
    try:
        p = pixels if not isinstance(pixels, np.ndarray) else torch.from_numpy(np.ascontiguousarray(pixels))
        model(_with_channel(model, p.float()))
    finally:
        for h in hooks:
            h.remove()


def prepare_shape(model):
    for m in model.modules():
        if isinstance(m, L.ImcInput):
            return m.shape
    raise ValueError("model has no ImcInput")


@torch.no_grad()
def init_act_ranges(model, pixels, batch_size: int = 256):
    """Set every activation quantiser's range to the max (|max| if signed) of the tensor it
    quantises, over `pixels` (uint8 [n][H][W] or [n][C][H][W]), with the float model in eval
    mode."""
    qs = [m for _, m in L.act_quants(model)]
    was = model.training
    qstate = {m: m.quantized for m in model.modules() if isinstance(m, L.ImcModule)}
    L.set_quantized(model, False)
    model.eval()
    for q in qs:
        q.amax.zero_()
        q.calibrating = True
    try:
        for p in _batches(pixels, batch_size):
            model(_with_channel(model, p))
    finally:
        for q in qs:
            q.calibrating = False
        for m, s in qstate.items():
            m.quantized = s
        model.train(was)
    return {n: float(q.amax) for n, q in L.act_quants(model)}


class _Hist:
    """Exact histograms of one layer's partial sums per ADC parameter set."""

    def __init__(self, layer, plan):
        self.plan = plan
        self.pmin = min(t.pmin for t in plan.tiles)
        self.pmax = max(t.pmax for t in plan.tiles)
        self.range = self.pmax - self.pmin + 1
        self.nsets = layer.nsets
        self.counts = torch.zeros(self.nsets * self.range, dtype=torch.int64)
        # parameter-set indices of the layer's configured ADC (the plan's is IDEAL)
        from .core import AdcParams
        a = layer.cfg.adc
        ap = AdcParams(a.kind, a.frac_bits, a.bits, a.granularity)
        self.sidx = [ap.set_index(g, plan.S, plan.N) for g in range(plan.G)]

    def __call__(self, g, pint):
        idx = (self.sidx[g] * self.range - self.pmin)[None, None] + pint
        self.counts += torch.bincount(idx.reshape(-1), minlength=self.counts.numel())

    def hist(self, s):
        c = self.counts[s * self.range:(s + 1) * self.range].numpy()
        return np.arange(self.pmin, self.pmax + 1, dtype=np.int64), c


RULES = ("percentile", "bs-kmq", "centred")


def fit_layer_adc(layer, hist: _Hist, percentile: float, rule: str = "percentile"):
    """Set `layer`'s ADC buffers from its histograms; returns notes. Rules:
    "percentile": scripts/imcsim_py/calibrate.py (linear unsigned centre 0 / signed two-sided;
    non-linear: clipped k-means); "bs-kmq" (non-linear ADCs): torch_imc.bskmq, the fit of
    `imcsim calibrate --method bs-kmq` (a parameter set that saw nothing takes the fit of the
    layer's sets pooled, as there); "centred" (linear, signed codes; ColumnQuant's partial-sum
    quantiser): step from the two-sided percentile range, centre on a whole code,
    centre_fx = round(centre / step) · step_fx."""
    a = layer.cfg.adc
    q = percentile / 100.0
    F, B = a.frac_bits, a.bits
    if rule not in RULES:
        raise ValueError(f"ADC calibration rule {rule!r} not in {RULES}")
    if rule == "bs-kmq" and a.kind != "nonlinear":
        raise ValueError("bs-kmq calibration needs a non-linear ADC (AdcConfig(kind='nonlinear'))")
    if rule == "centred" and (a.kind != "linear" or not a.signed):
        raise ValueError("centred calibration needs a linear ADC with signed codes")
    steps, centres, thrs, levs = [], [], [], []
    pooled = None
    for s in range(hist.nsets):
        v, c = hist.hist(s)
        if rule == "bs-kmq":
            if c.sum() == 0:
                if pooled is None:
                    allc = hist.counts.numpy().reshape(hist.nsets, hist.range).sum(0)
                    pooled = bskmq.fit_bskmq(v, allc, B, F, percentile)
                t, l_ = pooled
            else:
                t, l_ = bskmq.fit_bskmq(v, c, B, F, percentile)
            thrs.append(t)
            levs.append(l_)
        elif a.kind == "linear":
            st, ce = (C.fit_linear_signed if a.signed else C.fit_linear_unsigned)(v, c, B, F, q)
            if rule == "centred":
                ce = int(round(ce / st)) * st
            steps.append(st)
            centres.append(ce)
        else:
            t, l_ = C.fit_nonlinear(v, c, B, F, q)
            thrs.append(t)
            levs.append(l_)
    with torch.no_grad():
        if a.kind == "linear":
            layer.adc_step_fx.copy_(torch.tensor(steps, dtype=torch.int64))
            layer.adc_centre_fx.copy_(torch.tensor(centres, dtype=torch.int64))
        else:
            layer.adc_thresholds_fx.copy_(torch.from_numpy(np.stack(thrs)).to(torch.int64))
            layer.adc_levels_fx.copy_(torch.from_numpy(np.stack(levs)).to(torch.int64))
        layer.adc_ready.fill_(True)
    layer.invalidate()
    nz = np.nonzero(hist.counts.numpy())[0]
    lo = int(nz.min() % hist.range) + hist.pmin if nz.size else 0
    hi = int(nz.max() % hist.range) + hist.pmin if nz.size else 0
    return {"psum_range_observed": [int(lo), int(hi)], "psum_range_possible":
            [hist.pmin, hist.pmax]}


@torch.no_grad()
def calibrate_adcs(model, pixels, percentile: float = 99.99, batch_size: int | None = None,
                   only=None, rule: str = "percentile"):
    """Calibrate every non-ideal ADC (or the layers named in `only`) on `pixels`, in graph
    order, each with the upstream ADCs already calibrated, with the exact quantised model.

    One forward pass over all calibration images as one batch: when the pass reaches a
    layer, the layer histograms the partial sums of the whole batch (its ADC still ideal),
    fits its ADC, then computes its output with the calibrated ADC for the layers
    downstream. (batch_size is accepted for compatibility and ignored: the whole set must be
    one batch for this order.) Returns per-layer notes."""
    was = model.training
    L.set_quantized(model, True)
    model.eval()
    an = prepare(model)
    notes = {}
    layers = [(o.path, o.module) for o in an.ops if o.op == "imc"]
    targets = []
    for path, layer in layers:
        if layer.cfg.adc.kind == "ideal" or (only is not None and path not in only):
            continue
        layer.adc_ready.fill_(False)
        layer.invalidate()
        targets.append((path, layer))

    def make_hook(path, layer):
        def pre(_m, inputs):
            layer.adc_ready.fill_(False)
            layer.invalidate()
            hist = _Hist(layer, layer.plan())
            layer.psum_hook = hist
            try:
                layer.hw_acc(inputs[0].to(torch.float64))
            finally:
                layer.psum_hook = None
            notes[path] = fit_layer_adc(layer, hist, percentile, rule)
        return pre
    run_with_pre_hooks(model, targets, make_hook, pixels)
    model.train(was)
    return notes
