"""Configuration of IMC layers: mapping (bits, encoding, tiling, array size) and ADC.

The names and values are those of export.py / the graph format (sim/graph/imcsim_graph.proto):
encodings "offset", "twos_complement", "differential_digital", "differential_analog";
tilings "contiguous", "channel_aligned"; ADC kinds "ideal", "linear", "nonlinear"; roundings
"floor", "half_away"; granularities "layer", "column", "slice_tile_column".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ENCODINGS = ("offset", "twos_complement", "differential_digital", "differential_analog")
TILINGS = ("contiguous", "channel_aligned")
ADC_KINDS = ("ideal", "linear", "nonlinear")
ROUNDINGS = ("floor", "half_away")
GRANULARITIES = ("layer", "column", "slice_tile_column")


@dataclass(frozen=True)
class AdcConfig:
    """What kind of ADC a layer has. Its parameters (steps / centres or thresholds / levels,
    in units of 2^-frac_bits partial-sum LSB) are buffers of the layer, set by calibration
    (torch_imc.calibrate_adcs) or by hand."""
    kind: str = "linear"
    bits: int = 8
    frac_bits: int = 8
    rounding: str = "half_away"          # linear only
    signed: bool = False                 # linear only: signed codes
    granularity: str = "layer"

    def __post_init__(self):
        if self.kind not in ADC_KINDS:
            raise ValueError(f"AdcConfig.kind {self.kind!r} not in {ADC_KINDS}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"AdcConfig.rounding {self.rounding!r} not in {ROUNDINGS}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"AdcConfig.granularity {self.granularity!r} not in {GRANULARITIES}")
        if self.kind != "ideal" and not 1 <= self.bits <= 16:
            raise ValueError(f"AdcConfig.bits {self.bits} not in 1..16")
        if not 0 <= self.frac_bits <= 30:
            raise ValueError(f"AdcConfig.frac_bits {self.frac_bits} not in 0..30")


@dataclass(frozen=True)
class ImcConfig:
    """Mapping of a Conv2d / Linear layer onto IMC arrays (SEMANTICS.md steps 1-4)."""
    weight_bits: int = 8
    cell_bits: int = 2
    dac_bits: int = 1
    encoding: str = "offset"
    tiling: str = "contiguous"
    array_rows: int = 128
    array_cols: int = 128
    ashift: bool = False                 # A-shift: drive the array with x - 2^(Bx-1)
    adc: AdcConfig = field(default_factory=AdcConfig)

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"ImcConfig.encoding {self.encoding!r} not in {ENCODINGS}")
        if self.tiling not in TILINGS:
            raise ValueError(f"ImcConfig.tiling {self.tiling!r} not in {TILINGS}")
        for k in ("weight_bits", "cell_bits", "dac_bits"):
            if not 1 <= getattr(self, k) <= 16:
                raise ValueError(f"ImcConfig.{k} {getattr(self, k)} not in 1..16")
        if self.weight_bits < 2:
            raise ValueError("ImcConfig.weight_bits must be >= 2 (symmetric signed weights)")
        if self.array_rows < 1:
            raise ValueError("ImcConfig.array_rows must be >= 1")

    def replace(self, **kw) -> "ImcConfig":
        """A copy with some fields changed; adc_* keys change the ADC config
        (e.g. replace(adc_bits=4, encoding="twos_complement"))."""
        adc_kw = {k[4:]: kw.pop(k) for k in list(kw) if k.startswith("adc_")}
        adc = dataclasses.replace(kw.pop("adc", self.adc), **adc_kw)
        return dataclasses.replace(self, adc=adc, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
