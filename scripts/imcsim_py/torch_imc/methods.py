"""Training methods (/work/shared/reference/methods.md) as switches of the fine-tuning pipeline
of scripts/train_zoo.py. Every method is a class with the same hooks, called in this order:

    cfg = method.configure(cfg)              # mapping / ADC kind the method needs
    ... model built, trained (or loaded from a trained base) ...
    ti.calibrate_adcs(model, pixels, rule=method.calib_rule)
    groups = method.setup(model)             # trainable parameters (optimizer groups)
    for each step: loss = method.loss(model, x, y, ce); backward; step; method.after_step(model)
    method.finalize(model, calib_pixels)     # merge / calibrate what the export needs
    method.settings()                        # recorded in the graph provenance

Each option is a documented constructor argument (train_zoo.py exposes them). What each
method approximates is said in its docstring and in torch_imc/README.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import layers as L


def kurtosis(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    w = w.reshape(-1)
    d = w - w.mean()
    var = (d * d).mean()
    return (d ** 4).mean() / (var * var + eps)


def kurtosis_penalty(model, lam: float, target: float):
    if lam == 0:
        return None
    terms = [(kurtosis(m.fq_weight()) - target) ** 2 for _, m in L.imc_layers(model)]
    return lam * torch.stack(terms).sum()


# ---------------------------------------------------------------------------------------
# Building blocks (used by the methods; usable on their own)
# ---------------------------------------------------------------------------------------

def add_lora(layer, rank: int, gen: torch.Generator | None = None):
    """ADC-LoRA adapter on an IMC layer: W_eff = W + B·A, A [r][K] (Kaiming-uniform), B [N][r]
    (zeros, so training starts from the frozen model). The weight itself is frozen."""
    K = layer.weight[0].numel()
    A = torch.empty(rank, K)
    bound = 1.0 / math.sqrt(K)
    A.uniform_(-bound, bound, generator=gen)
    layer.lora_A = nn.Parameter(A)
    layer.lora_B = nn.Parameter(torch.zeros(layer.N, rank))
    layer.weight.requires_grad_(False)
    layer.invalidate()


@torch.no_grad()
def merge_lora(model):
    """W <- W + B·A (the exact float32 value the training forward used); adapters removed."""
    for _, m in L.imc_layers(model):
        if m.lora_A is not None:
            w = m.effective_weight().detach().clone()
            m.lora_A = None
            m.lora_B = None
            m.weight.data.copy_(w)
            m.weight.requires_grad_(True)
            m.invalidate()


def enable_lsq_weights(layer):
    """Learned per-column weight scale (LSQ), initialised to max|W[n]| / qmax."""
    _, s = layer.integer_weights()
    layer.w_scale = nn.Parameter(s.detach().clone().float())
    layer.invalidate()


def enable_adc_step_learning(layer):
    """Learned LINEAR ADC steps (one per parameter set), step = step0·exp(theta) with the
    calibrated step0; the centre stays on its code (centre_fx = centre_code·step_fx)."""
    if layer.cfg.adc.kind != "linear" or not bool(layer.adc_ready):
        raise ValueError("learned ADC steps need a calibrated LINEAR ADC")
    st = layer.adc_step_fx.clone()
    layer.register_buffer("adc_step0", st.to(torch.float64))
    layer.register_buffer("adc_centre_code", torch.div(layer.adc_centre_fx, st,
                                                       rounding_mode="floor"))
    if not torch.equal(layer.adc_centre_code * st, layer.adc_centre_fx):
        raise ValueError("learned ADC steps need centres on whole codes (calib rule 'centred' "
                         "or centre 0)")
    layer.adc_log_step = nn.Parameter(torch.zeros(layer.nsets, dtype=torch.float64))
    layer.invalidate()


def freeze_adc_steps(layer):
    """Learned steps -> fixed integer ADC buffers; the learning parameters removed."""
    if layer.adc_log_step is None:
        return
    layer.sync_adc_steps()
    layer.adc_log_step = None
    del layer.adc_step0
    del layer.adc_centre_code
    layer.invalidate()


@torch.no_grad()
def bn_calibrate(model, pixels):
    """PIM-QAT's BN calibration on simulated outputs: layer by layer in graph order (upstream
    layers already calibrated), on one batch of calibration images through the exact model,
    each IMC layer's per-column affine correction is re-estimated so that the mean and the
    standard deviation (over images and positions) of its simulated pre-activation output
    y_hw = acc·m equal those of the ideal MAC of the same quantised operands: psum_scale[n] =
    std_ideal / std_hw, bias[n] += mean_ideal - psum_scale[n]·mean_hw. (With the BatchNorms
    folded, this is re-estimating the BN statistics on the hardware outputs.) Returns the
    factors per layer."""
    from .calib import run_with_pre_hooks
    from .graph import prepare
    was = model.training
    L.set_quantized(model, True)
    model.eval()
    an = prepare(model)
    out = {}

    def make_hook(path, layer):
        def pre(_m, inputs):
            x = inputs[0].to(torch.float64)
            layer.psum_scale.fill_(1.0)
            sx, _, _ = layer.input_quant()
            pl, acc, out_hw = layer.hw_acc(x)
            m = layer.post_multiplier(sx, pl.F)
            yh = acc.to(torch.float64) * m                                   # [B*P][N]
            w = layer.fq_weight().detach().double()
            yi = layer._ideal(x, w, None)
            yi = yi.permute(0, 2, 3, 1).reshape(-1, layer.N) if layer.is_conv else yi
            sh, si = yh.std(0), yi.std(0)
            ps = torch.where(sh > 0, si / sh.clamp_min(1e-300), torch.ones_like(sh))
            db = yi.mean(0) - ps * yh.mean(0)
            layer.psum_scale.copy_(ps)
            if layer.bias is None:
                layer.bias = nn.Parameter(db.float())
            else:
                layer.bias.data.add_(db.float())
            out[path] = {"psum_scale_mean": float(ps.mean()), "psum_scale_min": float(ps.min()),
                         "psum_scale_max": float(ps.max()),
                         "bias_shift_abs_mean": float(db.abs().mean())}
        return pre
    run_with_pre_hooks(model, [(o.path, o.module) for o in an.ops if o.op == "imc"], make_hook, pixels)
    model.train(was)
    return out


# ---------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------

class PlainQAT:
    """QAT with the calibrated ADC in the forward pass (exact hardware numerics forward,
    identity straight-through backward through slicing and ADC); nothing added."""
    name = "plain-qat"
    calib_rule = "percentile"

    def __init__(self, **_):
        self.gen = torch.Generator().manual_seed(0)

    def configure(self, cfg):
        return cfg

    def setup(self, model, lr: float):
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def penalty(self, model):
        return None

    def loss(self, model, x, y, lossf):
        loss = lossf(model(x), y)
        pen = self.penalty(model)
        return loss if pen is None else loss + pen

    def after_step(self, model):
        pass

    def finalize(self, model, calib_pixels):
        return {}

    def settings(self):
        return {}


class RAOQ(PlainQAT):
    """RAOQ (Zhang, Chen, Verma, ICML 2024), in the contract's bit-sliced mapping:

    * **A-shift**: every IMC layer drives its arrays with x - 2^(Bx-1) (``ashift_offset``; the
      digital correction is the contract's step 7).
    * **W-reshape**: ``lambda · sum_layers (kurtosis(Q(W)) - target)^2`` on the fake-quantised
      weights (target 1.8 = uniform; lambda 6e-4; the sum over layers is our choice [U]).
    * **BitAug**: each step adds ``bitaug_weight ×`` the loss of the same batch with every
      LINEAR ADC re-derived at another resolution b' (same full-scale range, the rule of
      ``imcsim``'s with_adc_bits), b' drawn (seeded) from ``b + bitaug_offsets`` clipped to
      [1, 16].
    * **ADC-LoRA**: the last ``lora_fraction`` of the fine-tuning steps train only rank-
      ``lora_rank`` adapters W + B·A of every IMC layer (weights, biases frozen); at export
      the adapters are merged: the graph holds Q_w(W + B·A).
    Approximations: RAOQ's ADC step is fixed by the hardware (Δ_A from M, Bx, Bw, k); here
    the ADC is calibrated per layer on training images (rule of calibrate.py) because our
    partial sums are per input bit and weight slice, not whole multi-bit column sums.
    """
    name = "raoq"

    def __init__(self, kurtosis_lambda: float = 6e-4, kurtosis_target: float = 1.8,
                 ashift: bool = True, bitaug_offsets=(-1, 1), bitaug_weight: float = 1.0,
                 lora_rank: int = 4, lora_fraction: float = 0.5, seed: int = 0, **_):
        self.lam = float(kurtosis_lambda)
        self.target = float(kurtosis_target)
        self.ashift = bool(ashift)
        self.bitaug_offsets = tuple(int(v) for v in bitaug_offsets)
        self.bitaug_weight = float(bitaug_weight)
        self.lora_rank = int(lora_rank)
        self.lora_fraction = float(lora_fraction)
        self.gen = torch.Generator().manual_seed(seed)
        self.lora_on = False

    def configure(self, cfg):
        return cfg.replace(ashift=True) if self.ashift else cfg

    def penalty(self, model):
        return kurtosis_penalty(model, self.lam, self.target)

    def loss(self, model, x, y, lossf):
        loss = super().loss(model, x, y, lossf)
        if self.bitaug_weight > 0 and self.bitaug_offsets:
            layers = [m for _, m in L.imc_layers(model) if m.cfg.adc.kind == "linear"]
            if layers:
                i = int(torch.randint(len(self.bitaug_offsets), (1,), generator=self.gen))
                b2 = min(16, max(1, layers[0].cfg.adc.bits + self.bitaug_offsets[i]))
                for m in layers:
                    m.train_adc_bits = b2
                try:
                    loss = loss + self.bitaug_weight * lossf(model(x), y)
                finally:
                    for m in layers:
                        m.train_adc_bits = None
        return loss

    def start_lora(self, model, lr: float):
        """Switch to ADC-LoRA: freeze everything, add adapters; returns optimizer groups."""
        for p in model.parameters():
            p.requires_grad_(False)
        params = []
        for _, m in L.imc_layers(model):
            add_lora(m, self.lora_rank, self.gen)
            params += [m.lora_A, m.lora_B]
        self.lora_on = True
        return [{"params": params, "lr": lr}]

    def finalize(self, model, calib_pixels):
        merge_lora(model)
        for p in model.parameters():
            p.requires_grad_(True)
        return {}

    def settings(self):
        return {"ashift": self.ashift, "w_reshape": {
            "penalty": "lambda * sum over IMC layers of (kurtosis(Q(W)) - target)^2",
            "lambda": self.lam, "target": self.target},
            "bitaug": {"offsets": list(self.bitaug_offsets), "weight": self.bitaug_weight,
                       "rule": "one b' per step; linear ADCs re-derived at b' keeping their "
                               "full-scale range (with_adc_bits)"},
            "adc_lora": {"rank": self.lora_rank, "fraction_of_steps": self.lora_fraction,
                         "trained": "B [N][r] (zero init), A [r][K] (Kaiming uniform); "
                                    "weights and biases frozen; merged W + B·A at export"},
            "adc_step": "calibrated per layer (approximation of RAOQ's fixed hardware step)"}


class ColumnQuant(PlainQAT):
    """ColumnQuant (Kim et al., DATE 2025):

    * **channel-aligned tiles** (``tiling = channel_aligned``: whole input channels per array);
    * **column-wise LSQ weight scales**: s_w[n] learned (LSQ gradient, gradient scale
      1/sqrt(K·qmax)), initialised to max|W[n]|/qmax;
    * **partial-sum quantiser per (slice, array tile, column)**: a LINEAR ADC with signed
      codes at granularity slice_tile_column whose centre sits on a whole code c (calibrated:
      the two-sided percentile range; c frozen, as the paper freezes μ, σ and c for export)
      and whose step s_ps is learned (LSQ gradient, log-parametrised: step = step0·exp(θ)).
      The per-column dequantisation s_w·s_ps is the contract's post-multiplier.
    Approximations: weights stay symmetric (±(2^(b−1)−1)) with OFFSET cells; the paper's
    μ ± 6σ pre-clip is the ADC's own clipping; the inputs keep the run's DAC setting (the
    paper's code uses multi-bit inputs: ``--dac-bits 8``)."""
    name = "columnquant"
    calib_rule = "centred"

    def __init__(self, scale_lr_factor: float = 0.01, adc_step_lr: float = 5e-3, **_):
        super().__init__()
        self.scale_lr_factor = float(scale_lr_factor)
        self.adc_step_lr = float(adc_step_lr)

    def configure(self, cfg):
        return cfg.replace(tiling="channel_aligned", adc_granularity="slice_tile_column",
                           adc_signed=True, adc_rounding="half_away")

    def setup(self, model, lr: float):
        w, sc, st = [], [], []
        for _, m in L.imc_layers(model):
            enable_lsq_weights(m)
            if m.cfg.adc.kind == "linear":
                enable_adc_step_learning(m)
                st.append(m.adc_log_step)
            sc.append(m.w_scale)
        ids = {id(p) for p in sc + st}
        w = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        mean_scale = float(torch.cat([s.detach() for s in sc]).mean())
        return [{"params": w, "lr": lr},
                {"params": sc, "lr": self.scale_lr_factor * mean_scale},
                {"params": st, "lr": self.adc_step_lr}]

    def after_step(self, model):
        for _, m in L.imc_layers(model):
            m.sync_adc_steps()

    def finalize(self, model, calib_pixels):
        for _, m in L.imc_layers(model):
            freeze_adc_steps(m)
        return {}

    def settings(self):
        return {"tiling": "channel_aligned", "weights": "LSQ per column (learned s_w)",
                "psum_quantiser": "linear ADC, signed codes, slice_tile_column, centre on a "
                                  "whole code (frozen), step learned (LSQ, log-parametrised)",
                "scale_lr_factor": self.scale_lr_factor, "adc_step_lr": self.adc_step_lr}


PIM_SCHEMES = {
    # PIM-QAT's three decompositions mapped onto the contract's encodings (methods.md [U])
    "bit-serial": dict(dac_bits=1, cell_bits=1, encoding="offset"),
    "differential": dict(dac_bits=1, encoding="differential_analog"),
    "multi-bit": dict(dac_bits=8, cell_bits=8, encoding="offset"),
}


class PIMQAT(PlainQAT):
    """PIM-QAT (Jin et al., 2022):

    * **decomposition scheme** (``scheme``): ``bit-serial`` = 1-bit DAC steps × 1-bit cells
      (OFFSET); ``differential`` = 1-bit DAC × W⁺/W⁻ cell pairs subtracted in the analog
      domain (DIFFERENTIAL_ANALOG, the run's cell bits); ``multi-bit`` = the whole 8-bit input
      in one DAC step × 8-bit cells (one conversion per column and tile);
    * **rescaling**: forward, each layer's output scale eta (least squares of the simulated on
      the ideal MAC, EMA ``rescale_momentum`` over batches) is applied through the graph's
      psum_scale; backward, the straight-through gradient of the ideal MAC is scaled by eta;
    * **noise-aware training**: Gaussian noise of ``noise_sigma`` partial-sum LSB on every
      partial sum before the ADC during training (the ADC input on the 2^-F grid);
    * **adjusted precision**: training runs the ADC at b − ``precision_delta`` bits (linear
      ADCs re-derived with the same full-scale range), the exported graph at b;
    * **BN calibration** (finalize): per-column mean / std of the simulated outputs re-
      estimated on calibration images (``bn_calibrate``), in psum_scale and bias.
    Approximations: noise is the contract's step-5d Gaussian model (not a chip measurement);
    the transfer-curve non-linearity is not trained against (imcsim can simulate it)."""
    name = "pim-qat"

    def __init__(self, scheme: str = "bit-serial", noise_sigma: float = 0.5,
                 precision_delta: int = 1, rescale_momentum: float = 0.9, seed: int = 0, **_):
        super().__init__()
        if scheme not in PIM_SCHEMES:
            raise ValueError(f"PIM-QAT scheme {scheme!r} not in {sorted(PIM_SCHEMES)}")
        self.scheme = scheme
        self.noise_sigma = float(noise_sigma)
        self.precision_delta = int(precision_delta)
        self.rescale_momentum = float(rescale_momentum)
        self.gen = torch.Generator().manual_seed(seed)
        self.bn_notes = None

    def configure(self, cfg):
        return cfg.replace(**PIM_SCHEMES[self.scheme])

    def setup(self, model, lr: float):
        for _, m in L.imc_layers(model):
            m.rescale_momentum = self.rescale_momentum
            m.train_noise_sigma = self.noise_sigma
            m.noise_gen = self.gen
            if m.cfg.adc.kind == "linear" and self.precision_delta:
                m.train_adc_bits = max(1, m.cfg.adc.bits - self.precision_delta)
        return super().setup(model, lr)

    def finalize(self, model, calib_pixels):
        for _, m in L.imc_layers(model):
            m.rescale_momentum = None
            m.train_noise_sigma = 0.0
            m.noise_gen = None
            m.train_adc_bits = None
        self.bn_notes = bn_calibrate(model, calib_pixels)
        return {"bn_calibration": self.bn_notes}

    def settings(self):
        return {"scheme": self.scheme, "scheme_mapping": PIM_SCHEMES[self.scheme],
                "noise_sigma_lsb": self.noise_sigma, "precision_delta": self.precision_delta,
                "rescale_momentum": self.rescale_momentum,
                "bn_calibration": "per-column mean/std of simulated vs ideal outputs on the "
                                  "calibration images, into psum_scale and bias"}


class BSKMQ(PlainQAT):
    """BS-KMQ: non-linear ADC (threshold table) per layer, references calibrated by
    boundary-suppressed k-means on the calibration images' exact partial sums, the rule of
    ``imcsim calibrate --method bs-kmq`` (default level rule ``reserved``, torch_imc.bskmq
    mirrors the C++ fit), then low-bit fine-tuning with those references in the forward pass
    (identity straight-through gradient through the NL-ADC); the references stay those
    calibrated before fine-tuning."""
    name = "bs-kmq"
    calib_rule = "bs-kmq"

    def configure(self, cfg):
        return cfg.replace(adc_kind="nonlinear")

    def settings(self):
        return {"adc": "nonlinear (threshold table)", "calibration": "bs-kmq, levels reserved "
                "(imcsim calibrate --method bs-kmq), first N training images",
                "fine_tuning": "with the calibrated references (STE through the NL-ADC)"}


METHODS = {"plain-qat": PlainQAT, "raoq": RAOQ, "columnquant": ColumnQuant,
           "pim-qat": PIMQAT, "bs-kmq": BSKMQ}


def weight_kurtosis(model) -> dict:
    """Kurtosis of each IMC layer's quantised weights (diagnostics)."""
    with torch.no_grad():
        return {n: float(kurtosis(m.integer_weights()[0])) for n, m in L.imc_layers(model)}
