"""Training methods (docs: /work/shared/reference/methods.md) as switches of the QAT pipeline.

A method may change the layers' IMC config (``configure``) and add a loss term during QAT
(``loss``). Implemented so far:

* ``plain-qat``: nothing added.
* ``raoq`` (RAOQ, Zhang et al., ICML 2024), the A-shift and W-reshape parts:
  - **A-shift**: every IMC layer drives its arrays with ``x - 2^(Bx-1)`` (``ashift_offset``);
    the digital correction ``(a - z_x)·ΣW`` is part of the contract's shift-add.
  - **W-reshape**: a kurtosis penalty ``λ · Σ_layers (κ(Q(W)) - κ_target)²`` on each IMC
    layer's fake-quantised weights (κ = E[(w − μ)^4] / Var[w]^2 over the layer), pushing
    the weight distribution towards a flat one (κ_target = 1.8, that of a uniform
    distribution), so that partial sums use more of the ADC range. λ = 6e-4 by default
    (methods.md, [R]); both are options. The sum over layers (not the mean) is our choice
    ([U]).
  Not yet: BitAug, ADC-LoRA, RAOQ's fixed hardware ADC step (the ADC stays calibrated).
"""

from __future__ import annotations

import torch

from . import layers as L


def kurtosis(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    w = w.reshape(-1)
    d = w - w.mean()
    var = (d * d).mean()
    return (d ** 4).mean() / (var * var + eps)


class PlainQAT:
    name = "plain-qat"

    def __init__(self, **_):
        pass

    def configure(self, cfg):
        return cfg

    def loss(self, model):
        return None

    def settings(self):
        return {}


class RAOQ(PlainQAT):
    name = "raoq"

    def __init__(self, kurtosis_lambda: float = 6e-4, kurtosis_target: float = 1.8,
                 ashift: bool = True, **_):
        self.lam = float(kurtosis_lambda)
        self.target = float(kurtosis_target)
        self.ashift = bool(ashift)

    def configure(self, cfg):
        return cfg.replace(ashift=True) if self.ashift else cfg

    def loss(self, model):
        if self.lam == 0:
            return None
        terms = [(kurtosis(m.fq_weight()) - self.target) ** 2 for _, m in L.imc_layers(model)]
        return self.lam * torch.stack(terms).sum()

    def settings(self):
        return {"ashift": self.ashift, "w_reshape": {
            "penalty": "lambda * sum over IMC layers of (kurtosis(Q(W)) - target)^2",
            "lambda": self.lam, "target": self.target}}


METHODS = {"plain-qat": PlainQAT, "raoq": RAOQ}


def weight_kurtosis(model) -> dict:
    """Kurtosis of each IMC layer's quantised weights (diagnostics)."""
    with torch.no_grad():
        return {n: float(kurtosis(m.integer_weights()[0])) for n, m in L.imc_layers(model)}
