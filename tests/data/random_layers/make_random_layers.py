#!/usr/bin/env python3
"""Writes the randomised bit-exactness corpus of tests/golden/random_layers_test.cc (deterministic).

Every combination of weight encoding (4) x DAC width (1, 2, Bx) x ADC (ideal, linear floor,
linear round-half-away with signed codes, non-linear) x ADC granularity (layer, column,
slice-tile-column) x row tiling (contiguous, channel-aligned) gets one small random graph:
one IMC layer (a Conv2d with random kernel / stride / padding, or a Flatten and a Linear
layer), sometimes followed by a max pool, with random weight / input / cell / ADC bits, A-shift, zero points and
ADC parameters, and one golden pair computed by the numpy reference (export.add_goldens). Then a
few graphs per analog non-ideality (ADC noise, conductance variation, transfer curve, stuck-at
faults, all of them) with the settings and the seed recorded in the manifest; their goldens are
computed with those non-idealities (docs/SEMANTICS.md step 5).

Output (next to this file): rl_NNN_<combination>.imcg and manifest.json, which lists for every
graph its file, its combination and, for the non-ideality cases, "nonidealities" (the arch
config section, same keys) and "seed". Everything derives from SEED below: running the script
again reproduces the files byte for byte (tests/python/test_random_layers.py checks that).

Usage: /usr/bin/python3 tests/data/random_layers/make_random_layers.py [out_dir]
"""
from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_pb import pb, save_graph  # noqa: E402

SEED = 20260101
GENERATOR = "tests/data/random_layers/make_random_layers.py 1"
ENCODINGS = ["offset", "twos_complement", "differential_digital", "differential_analog"]
DACS = ["1", "2", "bx"]
ADCS = ["ideal", "linear_floor", "linear_half_away_signed", "nonlinear"]
GRANULARITIES = ["layer", "column", "slice_tile_column"]
TILINGS = ["contiguous", "channel_aligned"]
NONIDEAL_MODES = {
    "noise": {"adc_noise_sigma_lsb": 0.7},
    "variation": {"conductance_variation_sigma": 0.1},
    "transfer": {"transfer_curve": [[-40.0, -38.5], [0.0, 0.25], [6.0, 5.5], [15.5, 13.0], [60.0, 41.0]]},
    "stuck": {"stuck_at_rate": 0.2, "stuck_at_max_fraction": 0.4},
    "all": {"adc_noise_sigma_lsb": 0.35, "conductance_variation_sigma": 0.05,
            "transfer_curve": [[0.0, 0.0], [10.0, 9.75], [30.0, 26.0]],
            "stuck_at_rate": 0.05, "stuck_at_max_fraction": 0.5},
}
NONIDEAL_SEED = 7
# ADC noise whose sigma 2^11 is an integer, on one-bit DACs, linear ADCs and LAYER / COLUMN
# parameters: the nibble kernel's affine noise path (docs/fast_kernels.md "ADC noise"); last in
# the corpus, from their own generator, so that the cases above stay as they are.
NOISE_AFFINE_CASES = [
    ("offset", "linear_floor", "layer", {"adc_noise_sigma_lsb": 1.0}),
    ("twos_complement", "linear_half_away_signed", "column", {"adc_noise_sigma_lsb": 0.5}),
    ("differential_digital", "linear_floor", "column", {"adc_noise_sigma_lsb": 1.5}),
    ("offset", "linear_half_away_signed", "layer", {"adc_noise_sigma_lsb": 1.0, "stuck_at_rate": 0.1,
                                                    "stuck_at_max_fraction": 0.5}),
]


def slice_count(encoding, Bw, Bc):
    return len(R.weight_slices(E.ENCODINGS[encoding], Bw, Bc))


def make_case(rng, encoding, dac, adc_kind, gran, tiling, frac_bits=None):
    """One random graph (protobuf) for a combination."""
    conv = tiling == "channel_aligned" or rng.random() < 0.6
    Bx = int(rng.integers(2, 7))
    Bw = int(rng.integers(2, 7))
    Bc = int(rng.integers(1, 4))
    Bdac = {"1": 1, "2": min(2, Bx), "bx": Bx}[dac]
    if conv:
        Cin, Cout = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        H, W = int(rng.integers(max(kh, 2), 6)), int(rng.integers(max(kw, 2), 6))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        in_shape = (Cin, H, W)
        Hout, Wout = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
        out_shape = (Cout, Hout, Wout)
        taps = kh * kw
    else:
        C, H, W = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        in_shape = (C, H, W)
        Cin, Cout = C * H * W, int(rng.integers(2, 6))
        kh = kw = sh = sw = 1
        ph = pw = 0
        out_shape = (Cout,)
        taps = 1
    K = Cin * taps
    # A few rows per array, so that layers have several row tiles.
    R_rows = int(rng.integers(taps, max(taps + 1, min(K, 2 * taps + 3)) + 1))
    differential = encoding.startswith("differential")
    wmax = (1 << (Bw - 1)) - 1
    wmin = -wmax if differential else -(1 << (Bw - 1))
    wshape = (Cout, Cin, kh, kw) if conv else (Cout, Cin)
    weights = rng.integers(wmin, wmax + 1, size=wshape)

    ashift = int(rng.random() < 0.5)
    a = (1 << (Bx - 1)) if ashift else 0
    in_zp = int(rng.integers(0, 1 << Bx))
    in_scale = 1.0 / ((1 << Bx) - 1)

    # Partial-sum range of the layer, for ADC parameters that neither always clip nor never.
    groups = R.input_groups(Bx, Bdac, a)
    slices = R.weight_slices(E.ENCODINGS[encoding], Bw, Bc)
    tiles = R.row_tiles(E.TILINGS[tiling], K, R_rows, Cin, kh, kw)
    G, S, N = len(tiles), len(slices), Cout
    umax = max((1 << nb) - 1 for _, nb, _ in groups)
    dmax = max((1 << nb) - 1 for _, nb, _, _ in slices)
    rows = max(hi - lo for lo, hi in tiles)
    pmax = max(1, rows * umax * dmax // 2)        # typical upper range
    pmin = -pmax if encoding == "differential_analog" else 0
    F = int(rng.integers(0, 9)) if frac_bits is None else frac_bits
    B = int(rng.integers(2, 6))
    nsets = {"layer": 1, "column": N, "slice_tile_column": G * S * N}[gran]
    one = 1 << F
    if adc_kind == "ideal":
        adc = E.adc_spec("ideal", frac_bits=F, granularity=gran)
    elif adc_kind == "linear_floor":
        span = (pmax - pmin) * one
        step = [max(1, int(span / (1 << B) * rng.uniform(0.5, 1.3))) for _ in range(nsets)]
        centre = [int(pmin * one - rng.integers(0, max(1, span // 8))) for _ in range(nsets)]
        adc = E.adc_spec("linear", bits=B, frac_bits=F, rounding="floor", granularity=gran,
                         step_fx=step, centre_fx=centre)
    elif adc_kind == "linear_half_away_signed":
        span = (pmax - pmin) * one
        step = [max(1, int(span / (1 << B) * rng.uniform(0.5, 1.3))) for _ in range(nsets)]
        mid = (pmin + pmax) * one // 2
        centre = [int(mid + rng.integers(-max(1, span // 8), max(2, span // 8))) for _ in range(nsets)]
        adc = E.adc_spec("linear", bits=B, frac_bits=F, rounding="half_away", signed_codes=True,
                         granularity=gran, step_fx=step, centre_fx=centre)
    else:
        L = 1 << B
        thr, lev = [], []
        lo, hi = pmin * one - one, pmax * one + one
        for _ in range(nsets):
            if hi - lo + 1 >= L - 1:
                t = np.sort(rng.choice(hi - lo + 1, size=L - 1, replace=False)) + lo
            else:
                t = lo + np.arange(L - 1)
            thr.extend(int(v) for v in t)
            lev.extend(int(v) for v in np.sort(rng.integers(lo, hi + 1, size=L)))
        adc = E.adc_spec("nonlinear", bits=B, frac_bits=F, granularity=gran,
                         thresholds_fx=thr, levels_fx=lev)

    float_out = rng.random() < 0.5
    pool = conv and not float_out and rng.random() < 0.5 and out_shape[1] >= 2 and out_shape[2] >= 2
    imc_q = E.quant(0, 0, 0) if float_out else E.quant(float(rng.uniform(0.05, 2.0)),
                                                         int(rng.integers(0, 64)), 8)
    w_scale = rng.uniform(0.01, 0.2, size=Cout if rng.random() < 0.5 else 1)
    node = E.imc_node("imc", ["x" if conv else "flat"], weights, kind="conv" if conv else "linear",
                      stride=(sh, sw), pad=(ph, pw), weight_bits=Bw, cell_bits=Bc, dac_bits=Bdac,
                      encoding=encoding, tiling=tiling, array_rows=R_rows, array_cols=128,
                      weight_scale=w_scale,
                      psum_scale=rng.uniform(0.5, 1.5, size=Cout) if rng.random() < 0.5 else (),
                      bias=rng.uniform(-1, 1, size=Cout) if rng.random() < 0.5 else (),
                      ashift_offset=a, adc=adc, relu=bool(rng.random() < 0.5), output_quant=imc_q,
                      output_shape=out_shape)
    if float_out:
        node.output_quant.scale = 1.0
    g = pb.Graph()
    g.format_version = 1
    g.name = "random_layer"
    g.input.CopyFrom(E.input_spec(in_shape, tensor="x", pixel_scale=1.0 / 255.0, mean=0.5, std=1.0,
                                  q=E.quant(in_scale, in_zp, Bx), dataset_format="idx-u8"))
    if not conv:   # a Linear layer reads a vector
        g.nodes.append(E.simple_node("flat", ["x"], "flatten", output_quant=E.quant(in_scale, in_zp, Bx),
                                     output_shape=(Cin,)))
    g.nodes.append(node)
    last_shape = out_shape
    if pool:
        ph_ = (out_shape[1] - 2) // 2 + 1, (out_shape[2] - 2) // 2 + 1
        last_shape = (out_shape[0], ph_[0], ph_[1])
        g.nodes.append(E.pool_node("pool", ["imc"], "max", kernel=(2, 2), stride=(2, 2),
                                   output_quant=imc_q, output_shape=last_shape))
    g.num_classes = int(np.prod(last_shape))
    g.provenance.exporter = GENERATOR
    g.provenance.command = "python3 " + GENERATOR.split()[0]
    g.provenance.seed = SEED
    g.provenance.method = "random-layer"
    return g, in_shape


def add_goldens(g, rng, in_shape, indices, nonideal=None, seed=0):
    n = max(indices) + 1
    pixels = rng.integers(0, 256, size=(n,) + tuple(in_shape), dtype=np.uint8)
    labels = rng.integers(0, g.num_classes, size=n)
    ref = R.Reference(g, nonideal=nonideal, seed=seed)
    E.add_goldens(g, pixels, labels, indices, ref)
    problems = E.check_goldens(g, R.Reference(g, nonideal=nonideal, seed=seed, use_lut=False))
    if problems:
        raise SystemExit(f"golden self-check failed: {problems[:3]}")


def nonideal_case(out_dir, rng, name, enc, dac, adc, gran, tiling, settings, frac=None):
    """One graph with goldens under the non-idealities `settings` (NONIDEAL_SEED); its manifest entry."""
    g, in_shape = make_case(rng, enc, dac, adc, gran, tiling, frac_bits=frac)
    ni = R.NonIdeal.from_dict(settings)
    add_goldens(g, rng, in_shape, [3, 11], nonideal=ni, seed=NONIDEAL_SEED)
    g.provenance.method_settings_json = json.dumps({"nonidealities": settings, "seed": NONIDEAL_SEED}, sort_keys=True)
    save_graph(g, out_dir / name)
    return {"file": name, "encoding": enc, "dac": dac, "adc": adc, "granularity": gran, "tiling": tiling,
            "nonidealities": settings, "seed": NONIDEAL_SEED}


def generate(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    cases = []
    combos = list(itertools.product(ENCODINGS, DACS, ADCS, GRANULARITIES, TILINGS))
    for idx, (enc, dac, adc, gran, tiling) in enumerate(combos):
        g, in_shape = make_case(rng, enc, dac, adc, gran, tiling)
        add_goldens(g, rng, in_shape, [0])
        name = f"rl_{idx:03d}_{enc}_{dac}_{adc}_{gran}_{tiling}.imcg"
        save_graph(g, out_dir / name)
        cases.append({"file": name, "encoding": enc, "dac": dac, "adc": adc, "granularity": gran,
                      "tiling": tiling, "nonidealities": None, "seed": 0})
    # Non-ideality cases: each mode on four combinations (rotating encodings and ADC kinds; one
    # with frac_bits >= 16, the other branch of the analog ADC).
    idx = len(combos)
    for m, (mode, settings) in enumerate(NONIDEAL_MODES.items()):
        for j in range(4):
            enc = ENCODINGS[(m + j) % 4]
            adc = ADCS[(j + m) % 4]
            gran = GRANULARITIES[(m + 2 * j) % 3]
            tiling = TILINGS[(m + j) % 2]
            dac = DACS[j % 3]
            frac = 18 if j == 3 else None
            cases.append(nonideal_case(out_dir, rng, f"rl_{idx:03d}_nonideal_{mode}_{enc}_{adc}.imcg", enc, dac, adc,
                                       gran, tiling, settings, frac))
            idx += 1
    rng = np.random.default_rng(SEED + 1)
    for enc, adc, gran, settings in NOISE_AFFINE_CASES:
        cases.append(nonideal_case(out_dir, rng, f"rl_{idx:03d}_nonideal_noise_affine_{enc}_{adc}.imcg", enc, "1", adc,
                                   gran, TILINGS[idx % 2], settings))
        idx += 1
    manifest = {"generator": GENERATOR, "seed": SEED, "cases": cases}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    m = generate(out)
    total = sum(os.path.getsize(out / c["file"]) for c in m["cases"])
    print(f"{len(m['cases'])} graphs, {total / 1024:.0f} KiB in {out}")
