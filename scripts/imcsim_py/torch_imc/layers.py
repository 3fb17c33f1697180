"""IMC-aware quantised PyTorch modules.

Every module has two numeric personalities, chosen by ``module.quantized`` (set for a whole
model with ``torch_imc.set_quantized(model, True/False)``):

* ``quantized = False``: a plain float layer (float pre-training; BatchNorm allowed).
* ``quantized = True``:
  - ``eval()``: **exactly** what docs/SEMANTICS.md specifies for the exported graph. Tensors
    between modules are float64 real values ``s * (q - z)`` of integer codes q (exact; a
    consumer recovers q = rint(x / s) + z); IMC layers run the integer datapath of
    ``core.ImcPlan`` (bit groups, slices, row tiles, ADC, int64 shift-add, corrections),
    then float64 post-processing and round-half-to-even requantisation. The output of
    ``model(pixels)`` equals reference.py's output of the exported graph bit for bit.
  - ``train()``: the same hardware forward (float32 where that is exact), made
    differentiable with straight-through estimators: weights are fake-quantised per output
    column (STE through the rounding), activations fake-quantised with clipping (STE), and
    the IMC datapath (bit slicing + ADC) is ``y = y_ideal + (y_hw - y_ideal).detach()`` with
    y_ideal the float conv / linear of the fake-quantised operands: the forward value is the
    hardware's, the gradient that of the ideal MAC (identity STE through slicing and ADC).

Models take **raw pixel values** (0..255) as input; ``ImcInput`` applies the graph's
InputSpec (pixel_scale, mean, std, input Quant).

Which quantiser produced an IMC layer's (or average pool's) input is resolved from the
traced graph by ``torch_imc.prepare(model, input_shape)``; call it once after building the
model (and after loading a state dict into a fresh model).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from . import core
from .config import AdcConfig, ImcConfig


class ImcModule(nn.Module):
    """Base class of the torch_imc modules (a leaf for tracing and export)."""

    quantized: bool = False


def set_quantized(model: nn.Module, on: bool = True) -> nn.Module:
    for m in model.modules():
        if isinstance(m, ImcModule):
            m.quantized = bool(on)
    return model


def _round_ste(x):
    return x + (torch.round(x) - x).detach()


# ---------------------------------------------------------------------------------------
# Activation quantiser
# ---------------------------------------------------------------------------------------

class ActQuant(nn.Module):
    """Quantisation of a tensor to `bits`-bit codes with a fixed zero point:
    unsigned (z = 0, real range [0, (2^b - 1) s]) or signed (z = 2^(b-1), real range
    [-2^(b-1) s, (2^(b-1) - 1) s]). The scale is amax / qmax_pos (qmax_pos = 2^b - 1 unsigned,
    2^(b-1) - 1 signed), amax an EMA of the batch max (|max| if signed) while training and
    observing, frozen in eval. The exported scale is float64(float32 scale)."""

    def __init__(self, bits: int = 8, signed: bool = False, momentum: float = 0.99):
        super().__init__()
        if not 1 <= bits <= 16:
            raise ValueError(f"activation bits {bits} not in 1..16")
        self.bits, self.signed, self.momentum = int(bits), bool(signed), float(momentum)
        self.observe = True          # EMA update while training
        self.calibrating = False     # running max (init_act_ranges), any mode
        self.register_buffer("amax", torch.zeros(()))

    @property
    def zero_point(self) -> int:
        return (1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax_pos(self) -> int:
        return ((1 << (self.bits - 1)) - 1) if self.signed else (1 << self.bits) - 1

    def scale32(self) -> torch.Tensor:
        a = self.amax.detach().float()
        if float(a) <= 0:
            a = torch.ones(())
        return a / float(self.qmax_pos)

    def scale(self) -> float:
        """The float64 scale of the exported Quant."""
        return core.np_f64(self.scale32())

    def quant_tuple(self):
        return self.scale(), self.zero_point, self.bits

    def track(self, y: torch.Tensor, training: bool):
        """Float mode: observe y (EMA while training; running max while calibrating)."""
        if self.calibrating or (training and self.observe):
            self.observe_batch(y)

    @torch.no_grad()
    def observe_batch(self, y: torch.Tensor):
        m = y.detach().abs().max() if self.signed else y.detach().max().clamp(min=0)
        m = m.float()
        if self.calibrating:
            self.amax.copy_(torch.maximum(self.amax, m))
        elif float(self.amax) <= 0:
            self.amax.copy_(m)
        else:
            self.amax.mul_(self.momentum).add_((1 - self.momentum) * m)

    def fake_quant(self, y: torch.Tensor) -> torch.Tensor:
        """Training: clip + round with STE (float32)."""
        s = self.scale32().to(y.device)
        z = self.zero_point
        lo, hi = (0 - z) * s, ((1 << self.bits) - 1 - z) * s
        yc = torch.minimum(torch.maximum(y, lo), hi)
        q = torch.round(yc / s) * s
        return yc + (q - yc).detach()

    def exact(self, y64: torch.Tensor) -> torch.Tensor:
        """Eval: requantise float64 y exactly; return the real value s * (q - z)."""
        s, z, b = self.quant_tuple()
        return core.real_of(core.requantize(y64, s, z, b), s, z)

    def forward(self, y):
        if self.training:
            if self.observe:
                self.observe_batch(y)
            return self.fake_quant(y)
        return self.exact(y.to(torch.float64))

    def extra_repr(self):
        return f"bits={self.bits}, signed={self.signed}"


# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------

class ImcInput(ImcModule):
    """Dataset pixels -> input codes (InputSpec): real = p * pixel_scale,
    norm = (real - mean) / std, codes = requantisation to (scale, zero_point, bits).
    Returns the real value s * (q - z) (float mode: norm)."""

    def __init__(self, shape=(1, 28, 28), pixel_scale: float = 1.0 / 255.0, mean: float = 0.0,
                 std: float = 1.0, scale: float = 1.0 / 255.0, zero_point: int = 0,
                 bits: int = 8):
        super().__init__()
        self.shape = tuple(int(v) for v in shape)
        self.pixel_scale, self.mean, self.std = float(pixel_scale), float(mean), float(std)
        self.q_scale, self.q_zero, self.q_bits = float(scale), int(zero_point), int(bits)

    def quant_tuple(self):
        return self.q_scale, self.q_zero, self.q_bits

    def forward(self, p):
        if not self.quantized:
            return (p * self.pixel_scale - self.mean) / self.std
        p64 = p.to(torch.float64)
        norm = (p64 * self.pixel_scale - self.mean) / self.std
        q = core.requantize(norm, self.q_scale, self.q_zero, self.q_bits)
        out = core.real_of(q, self.q_scale, self.q_zero)
        return out if not self.training else out.to(torch.float32)

    def extra_repr(self):
        return (f"shape={self.shape}, pixel_scale={self.pixel_scale:g}, mean={self.mean:g}, "
                f"std={self.std:g}, quant=({self.q_scale:g}, {self.q_zero}, {self.q_bits})")


class _InputQuantRef:
    """What an IMC layer / average pool knows of its input: (scale, zero_point, bits),
    resolved by prepare() to the producing quantiser (ActQuant or ImcInput)."""

    def __init__(self, src, path: str):
        self.src, self.path = src, path

    def quant_tuple(self):
        return self.src.quant_tuple()


def _bound_input(module, what: str):
    ref = module.__dict__.get("_in_q")
    if ref is None:
        raise RuntimeError(
            f"{what}: input quantisation unknown; call torch_imc.prepare(model, input_shape) "
            "after building the model (it binds each IMC layer to the quantiser of its input)")
    return ref


# ---------------------------------------------------------------------------------------
# IMC layers
# ---------------------------------------------------------------------------------------

class _ImcLayer(ImcModule):
    """Common part of ImcConv2d / ImcLinear."""

    is_conv = False

    def _init_imc(self, cfg: ImcConfig | None, relu: bool, out_bits: int, out_signed: bool,
                  bn: bool, N: int, Cin: int, kh: int, kw: int):
        self.cfg = cfg or ImcConfig()
        self.relu = bool(relu)
        self.out_quant = ActQuant(out_bits, out_signed) if out_bits > 0 else None
        self.bn = nn.BatchNorm2d(N) if (bn and self.is_conv) else (
            nn.BatchNorm1d(N) if bn else None)
        self.Cin, self.kh, self.kw = Cin, kh, kw
        self.K = Cin * kh * kw
        self.N = N
        self.tiles = core.tiles_of(self.cfg, self.K, Cin, kh, kw)
        self.G = len(self.tiles)
        self.S = core.num_slices(self.cfg)
        self.nsets = core.adc_num_sets(self.cfg, self.G, self.S, N)
        a = self.cfg.adc
        L = 1 << a.bits if a.kind == "nonlinear" else 1
        # ADC parameters (units of 2^-F partial-sum LSB); adc_ready = 0 means "not calibrated
        # yet": the layer then behaves (and exports) as an IDEAL ADC.
        self.register_buffer("adc_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("adc_step_fx", torch.ones(self.nsets if a.kind == "linear" else 0,
                                                       dtype=torch.int64))
        self.register_buffer("adc_centre_fx", torch.zeros(self.nsets if a.kind == "linear" else 0,
                                                          dtype=torch.int64))
        nl = a.kind == "nonlinear"
        self.register_buffer("adc_thresholds_fx",
                             torch.zeros((self.nsets, L - 1) if nl else (0, 0), dtype=torch.int64))
        self.register_buffer("adc_levels_fx",
                             torch.zeros((self.nsets, L) if nl else (0, 0), dtype=torch.int64))
        # per-column psum_scale ps[n] of the contract's step 8 (float64; PIM-QAT rescaling and
        # BN calibration set it; 1.0 = none, not exported)
        self.register_buffer("psum_scale", torch.ones(N, dtype=torch.float64))
        # method hooks (torch_imc.methods); all off by default
        self.lora_A = None           # ADC-LoRA: W_eff = W + lora_B @ lora_A (merged at export)
        self.lora_B = None
        self.w_scale = None          # LSQ: learned per-column weight scale (Parameter [N])
        self.adc_log_step = None     # learned linear ADC steps: step = step0 * exp(theta)
        self.train_noise_sigma = 0.0  # train: Gaussian noise (psum LSB) before the ADC
        self.train_adc_bits = None   # train: ADC re-derived at these bits (BitAug, adj. precision)
        self.rescale_momentum = None  # train: PIM-QAT rescaling (EMA of the LS fit into psum_scale)
        self.noise_gen = None
        self.use_lut = True
        self.force_hw = False        # train: hardware forward even with an ideal ADC
        self.record = False          # eval: keep the last psums / ADC codes / acc (tests)
        self.last_record = None
        self.psum_hook = None        # eval: called with (g, pint [R][T][S][N]) per tile
        self._plan_cache = None

    # -- quantities shared by forward and export ---------------------------------------
    def effective_weight(self):
        """The float weight: W, or W + B·A with an ADC-LoRA adapter (differentiable)."""
        if self.lora_A is None:
            return self.weight
        return self.weight + (self.lora_B @ self.lora_A).reshape(self.weight.shape)

    def integer_weights(self):
        """(W_int float32 [N][...] holding integers in [-qmax, qmax], s_w float32 [N]):
        per-column symmetric quantisation, s_w = max|W[n]| / qmax, qmax = 2^(Bw-1) - 1, or the
        learned LSQ scale w_scale[n] if set (then weights beyond qmax·s_w clip)."""
        w = self.effective_weight().detach()
        qmax = float((1 << (self.cfg.weight_bits - 1)) - 1)
        dims = tuple(range(1, w.dim()))
        shape = (-1,) + (1,) * (w.dim() - 1)
        if self.w_scale is not None:
            s = self.w_scale.detach().abs().clamp_min(1e-12).reshape(shape)
        else:
            s = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / qmax
        q = torch.clamp(torch.round(w / s), -qmax, qmax)
        return q, s.reshape(-1)

    def fq_weight(self):
        w = self.effective_weight()
        shape = (-1,) + (1,) * (w.dim() - 1)
        if self.w_scale is not None:
            # LSQ (Esser et al.): STE through the rounding, gradient to the scale,
            # gradient scale 1 / sqrt(numel per column * qmax)
            qmax = float((1 << (self.cfg.weight_bits - 1)) - 1)
            g = 1.0 / math.sqrt(w[0].numel() * qmax)
            s = self.w_scale.abs().clamp_min(1e-12)
            s = (s - s * g).detach() + s * g
            s = s.reshape(shape)
            x = torch.clamp(w / s, -qmax, qmax)
            return _round_ste(x) * s
        q, s = self.integer_weights()
        return w + (q * s.reshape(shape) - w).detach()

    def adc_params(self) -> core.AdcParams:
        a = self.cfg.adc
        if a.kind == "ideal" or not bool(self.adc_ready):
            return core.AdcParams("ideal", a.frac_bits, 0, a.granularity)
        p = core.AdcParams(a.kind, a.frac_bits, a.bits, a.granularity, a.rounding, a.signed,
                           step=self.adc_step_fx, centre=self.adc_centre_fx,
                           thr=self.adc_thresholds_fx, lev=self.adc_levels_fx)
        if self.training and self.train_adc_bits is not None and a.kind == "linear" and \
                self.train_adc_bits != a.bits:
            p = core.rescale_linear_adc(p, self.train_adc_bits)
        return p

    @torch.no_grad()
    def sync_adc_steps(self):
        """Learned ADC steps -> the integer ADC buffers: step_fx = max(1, round(step0 ·
        exp(theta))), centre_fx = centre_code · step_fx (the centre stays on its code)."""
        if self.adc_log_step is None:
            return
        st = torch.clamp(torch.round(self.adc_step0 * torch.exp(self.adc_log_step.double())), min=1)
        self.adc_step_fx.copy_(st.to(torch.int64))
        self.adc_centre_fx.copy_(self.adc_centre_code * self.adc_step_fx)
        self.invalidate()

    def input_quant(self):
        return _bound_input(self, f"{type(self).__name__}").quant_tuple()

    def plan(self) -> core.ImcPlan:
        """The integer datapath for the current weights, input quant and ADC (cached in
        eval mode)."""
        sx, zx, bx = self.input_quant()
        key = (sx, zx, bx, self.use_lut, self.weight.data_ptr(), self.weight._version,
               self.lora_A is None) + tuple(
            (b.data_ptr(), b._version) for b in (self.adc_ready, self.adc_step_fx,
                                                 self.adc_centre_fx, self.adc_thresholds_fx,
                                                 self.adc_levels_fx))
        if not self.training and self._plan_cache is not None:
            k, pl = self._plan_cache
            if k == key:
                return pl
        q, _ = self.integer_weights()
        pl = core.ImcPlan(q.reshape(self.N, -1), self.cfg, self.Cin, self.kh, self.kw, bx, zx,
                          self.adc_params(), where=type(self).__name__,
                          use_lut=self.use_lut)
        if not self.training:
            self._plan_cache = (key, pl)
        return pl

    def train(self, mode: bool = True):
        self._plan_cache = None
        return super().train(mode)

    def _apply(self, fn):
        self._plan_cache = None
        return super()._apply(fn)

    def invalidate(self):
        """Forget cached plans (call after changing weights or ADC buffers in eval mode)."""
        self._plan_cache = None

    def post_multiplier(self, sx: float, F: int) -> torch.Tensor:
        """m[n] = ((s_x * s_w[n]) * ps[n]) * 2^-F, float64 (docs/SEMANTICS.md step 8)."""
        _, s_w = self.integer_weights()
        sw64 = s_w.to(torch.float64)
        return ((torch.tensor(sx, dtype=torch.float64) * sw64) * self.psum_scale) * (2.0 ** (-F))

    def bias64(self) -> torch.Tensor:
        if self.bias is None:
            return torch.zeros(self.N, dtype=torch.float64)
        return self.bias.detach().to(torch.float64)

    # -- lowering ----------------------------------------------------------------------
    def _lower(self, q: torch.Tensor, zx: float):
        """Input codes [B][...] -> X [B*P][K], output spatial shape."""
        raise NotImplementedError

    def _ideal(self, x, w, bias):
        raise NotImplementedError

    def _to_layout(self, y, B, out_hw):
        if not self.is_conv:
            return y.reshape(B, self.N)
        Ho, Wo = out_hw
        return y.reshape(B, Ho * Wo, self.N).permute(0, 2, 1).reshape(B, self.N, Ho, Wo)

    # -- forward -----------------------------------------------------------------------
    def forward(self, x):
        if not self.quantized:
            y = self._ideal(x, self.weight, self.bias)
            if self.bn is not None:
                y = self.bn(y)
            if self.relu:
                y = Fn.relu(y)
            if self.out_quant is not None:
                self.out_quant.track(y, self.training)
            return y
        if self.bn is not None:
            raise RuntimeError(f"{type(self).__name__}: BatchNorm must be folded before "
                               "quantised use (torch_imc.fold_bn(model))")
        if self.training:
            return self._forward_train(x)
        return self._forward_exact(x)

    def hw_acc(self, x_real: torch.Tensor, record: bool = False):
        """acc_fx int64 [B*P][N] of the real input x = s_x (q - z_x) (and the plan, the
        output spatial shape, and psums / codes if record)."""
        sx, zx, bx = self.input_quant()
        q = core.codes_of(x_real, sx, zx)
        X, out_hw = self._lower(q, float(zx))
        pl = self.plan()
        res = pl.accumulate(X, record=record, psum_hook=self.psum_hook, use_lut=self.use_lut)
        return pl, res, out_hw

    def _post(self, acc, pl, sx, B, out_hw, relu=True):
        m = self.post_multiplier(sx, pl.F)
        y = acc.to(torch.float64) * m + self.bias64()
        if self.relu and relu:
            y = torch.clamp(y, min=0.0)
        return self._to_layout(y, B, out_hw)

    def _forward_exact(self, x):
        B = x.shape[0]
        sx, _, _ = self.input_quant()
        pl, res, out_hw = self.hw_acc(x.to(torch.float64), record=self.record)
        if self.record:
            acc, ps, cd = res
            P = acc.shape[0] // B
            self.last_record = {"acc": acc.reshape(B, P, -1), "psums": ps.reshape((B, P) + ps.shape[1:]),
                                "codes": cd.reshape((B, P) + cd.shape[1:])}
        else:
            acc = res
        y = self._post(acc, pl, sx, B, out_hw)
        if self.out_quant is None:
            return y
        return self.out_quant.exact(y)

    def _forward_train(self, x):
        w_fq = self.fq_weight()
        y_ideal = self._ideal(x, w_fq, self.bias)
        ap = self.adc_params()
        special = self.train_noise_sigma > 0 or self.adc_log_step is not None
        if ap.kind != "ideal" or self.force_hw or special:
            B = x.shape[0]
            sx, zx, bx = self.input_quant()
            with torch.no_grad():
                if special:
                    q = core.codes_of(x.detach().to(torch.float64), sx, zx)
                    X, out_hw = self._lower(q, float(zx))
                    q_w, _ = self.integer_weights()
                    pl = core.ImcPlan(q_w.reshape(self.N, -1), self.cfg, self.Cin, self.kh,
                                      self.kw, bx, zx, ap, where=type(self).__name__,
                                      use_lut=False)
                    acc, H = pl.accumulate_train(X, self.train_noise_sigma, self.noise_gen,
                                                 self.adc_log_step is not None)
                else:
                    pl, acc, out_hw = self.hw_acc(x.detach())
                y_hw = self._post(acc, pl, sx, B, out_hw, relu=False).to(y_ideal.dtype)
                if self.rescale_momentum is not None:
                    self._update_rescale(y_ideal.detach(), y_hw)
                    y_hw = self._post(acc, pl, sx, B, out_hw, relu=False).to(y_ideal.dtype)
            ps = self.psum_scale.to(y_ideal.dtype)
            pshape = (1, -1, 1, 1) if self.is_conv else (1, -1)
            if self.rescale_momentum is not None:
                # PIM-QAT rescaling, backward: the gradient of the ideal MAC scaled by ps
                b = 0 if self.bias is None else self.bias.reshape(pshape)
                y_ref = (y_ideal - b) * ps.reshape(pshape) + b
            else:
                y_ref = y_ideal
            y = y_ref + (y_hw - y_ref).detach()
            if self.adc_log_step is not None:
                # LSQ gradient of the ADC steps: d acc_fx / d step[set] = H (per set), times
                # m[n] (real units per fx unit); forward value unchanged
                step = self.adc_step0 * torch.exp(self.adc_log_step.double())
                m = self.post_multiplier(sx, pl.F).detach()
                sidx = torch.stack([ap.set_index(g, pl.S, self.N) for g in range(pl.G)])
                sur = (H * step[sidx][None]).sum((1, 2)) * m                 # [R][N]
                sur = self._to_layout(sur.to(y.dtype), B, out_hw)
                y = y + (sur - sur.detach())
        else:
            y = y_ideal
        if self.relu:
            y = Fn.relu(y)
        if self.out_quant is not None:
            y = self.out_quant(y)
        return y


    @torch.no_grad()
    def _update_rescale(self, y_ideal, y_hw):
        """PIM-QAT rescaling, forward: EMA of the least-squares factor eta with
        eta·(y_hw - bias) ≈ y_ideal - bias over the batch, one per layer, into psum_scale."""
        pshape = (1, -1, 1, 1) if self.is_conv else (1, -1)
        b = 0 if self.bias is None else self.bias.detach().reshape(pshape)
        yi = (y_ideal - b).double()
        yh = ((y_hw - b).double() / self.psum_scale.reshape(pshape))
        den = float((yh * yh).sum())
        if den <= 0:
            return
        eta = float((yi * yh).sum()) / den
        mom = self.rescale_momentum
        self.psum_scale.mul_(mom).add_((1 - mom) * eta)


class ImcConv2d(_ImcLayer):
    """Conv2d on IMC arrays. relu: fused ReLU (graph activation RELU). out_bits: output
    activation bits (0: float64 output, only for the last layer). out_signed: zero point
    2^(bits-1). bn: a BatchNorm2d for float training, folded by torch_imc.fold_bn()."""

    is_conv = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, *, relu=False, out_bits=8, out_signed=False, bn=False,
                 cfg: ImcConfig | None = None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels * kh * kw)
            nn.init.uniform_(self.bias, -bound, bound)
        self._init_imc(cfg, relu, out_bits, out_signed, bn, out_channels, in_channels, kh, kw)

    def _ideal(self, x, w, bias):
        return Fn.conv2d(x, w, bias, self.stride, self.padding)

    def _lower(self, q, zx):
        B, C, H, W = q.shape
        ph, pw = self.padding
        if ph or pw:
            q = Fn.pad(q, (pw, pw, ph, ph), value=zx)
        Ho = (H + 2 * ph - self.kh) // self.stride[0] + 1
        Wo = (W + 2 * pw - self.kw) // self.stride[1] + 1
        cols = Fn.unfold(q, (self.kh, self.kw), stride=self.stride)      # [B][K][P]
        return cols.transpose(1, 2).reshape(B * Ho * Wo, self.K), (Ho, Wo)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, relu={self.relu}, "
                f"bias={self.bias is not None}, cfg={self.cfg}")


class ImcLinear(_ImcLayer):
    """Linear on IMC arrays (see ImcConv2d for the options)."""

    def __init__(self, in_features, out_features, bias=True, *, relu=False, out_bits=8,
                 out_signed=False, bn=False, cfg: ImcConfig | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self._init_imc(cfg, relu, out_bits, out_signed, bn, out_features, in_features, 1, 1)

    def _ideal(self, x, w, bias):
        return Fn.linear(x, w, bias)

    def _lower(self, q, zx):
        return q.reshape(q.shape[0], self.K), None

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, relu={self.relu}, "
                f"bias={self.bias is not None}, cfg={self.cfg}")


# ---------------------------------------------------------------------------------------
# Digital nodes
# ---------------------------------------------------------------------------------------

class QAdd(ImcModule):
    """Residual add y = a + b (graph Add node), optional ReLU, requantised."""

    def __init__(self, relu=False, out_bits=8, out_signed=True):
        super().__init__()
        self.relu = bool(relu)
        self.out_quant = ActQuant(out_bits, out_signed)

    def forward(self, a, b):
        if not self.quantized or self.training:
            y = a + b
            if self.relu:
                y = Fn.relu(y)
            if not self.quantized:
                self.out_quant.track(y, self.training)
                return y
            return self.out_quant(y)
        y = a.to(torch.float64) + b.to(torch.float64)
        if self.relu:
            y = torch.clamp(y, min=0.0)
        return self.out_quant.exact(y)


class QReLU(ImcModule):
    """ReLU (graph Relu node) requantised to its own quant (out_bits > 0) or keeping the
    input's quant (out_bits = 0; then a plain nn.ReLU is equivalent)."""

    def __init__(self, out_bits=8, out_signed=False):
        super().__init__()
        self.out_quant = ActQuant(out_bits, out_signed) if out_bits > 0 else None

    def forward(self, x):
        if not self.quantized:
            y = Fn.relu(x)
            if self.out_quant is not None:
                self.out_quant.track(y, self.training)
            return y
        if self.training:
            y = Fn.relu(x)
            return self.out_quant(y) if self.out_quant is not None else y
        y = torch.clamp(x.to(torch.float64), min=0.0)
        return self.out_quant.exact(y) if self.out_quant is not None else y


class QAvgPool2d(ImcModule):
    """Average pooling (graph AvgPool node), padded positions count as the zero point;
    requantised. kernel_size=None: global average pooling (kernel = input H, W)."""

    def __init__(self, kernel_size=None, stride=None, padding=0, out_bits=8, out_signed=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.out_quant = ActQuant(out_bits, out_signed)

    def geometry(self, H, W):
        k = (H, W) if self.kernel_size is None else (
            (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size))
        s = k if self.stride is None else (
            (self.stride,) * 2 if isinstance(self.stride, int) else tuple(self.stride))
        p = (self.padding,) * 2 if isinstance(self.padding, int) else tuple(self.padding)
        return k, s, p

    def forward(self, x):
        k, s, p = self.geometry(x.shape[2], x.shape[3])
        if not self.quantized or self.training:
            y = Fn.avg_pool2d(x, k, s, p, count_include_pad=True)
            if not self.quantized:
                self.out_quant.track(y, self.training)
                return y
            return self.out_quant(y)
        sx, zx, _ = _bound_input(self, "QAvgPool2d").quant_tuple()
        d = core.codes_of(x, sx, zx) - float(zx)          # q - z; padding holds z -> 0
        tot = Fn.avg_pool2d(d, k, s, p, count_include_pad=True, divisor_override=1)
        y = (tot * sx) / float(k[0] * k[1])
        return self.out_quant.exact(y)


# ---------------------------------------------------------------------------------------
# Model-level helpers
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every IMC layer's BatchNorm (running statistics) into its weight and bias."""
    for m in model.modules():
        if isinstance(m, _ImcLayer) and m.bn is not None:
            bn = m.bn
            inv = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (m.weight.dim() - 1)
            m.weight.mul_(inv.reshape(shape))
            b = m.bias if m.bias is not None else torch.zeros_like(bn.running_mean)
            nb = bn.bias + (b - bn.running_mean) * inv
            if m.bias is None:
                m.bias = nn.Parameter(nb.clone())
            else:
                m.bias.copy_(nb)
            m.bn = None
            m.invalidate()
    return model


def imc_layers(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _ImcLayer)]


def act_quants(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ActQuant)]
