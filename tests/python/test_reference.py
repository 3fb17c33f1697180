"""Hand-checkable properties of the numpy reference (scripts/imcsim_py/reference.py).

Run from the repository root:
    /usr/bin/python3 -m unittest discover -s tests/python -v
"""

import itertools
import os
import sys
import unittest
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_pb import load_graph, pb  # noqa: E402

WORKLOAD = REPO / "workloads" / "fmnist_cnn" / "fmnist_cnn.imcg"


def _layer(weights, *, in_shape, in_quant, kind="conv", **kw):
    """An ImcLayer object built from a one-node graph description."""
    node = E.imc_node("L", ["x"], weights, kind=kind,
                      output_quant=E.quant(1.0, 0, 0), **kw)
    info = R.TensorInfo(tuple(in_shape), in_quant[0], in_quant[1], in_quant[2])
    return R.ImcLayer(node, info)


def _layer_nolut(weights, *, in_shape, in_quant, kind="conv", **kw):
    node = E.imc_node("L", ["x"], weights, kind=kind, output_quant=E.quant(1.0, 0, 0), **kw)
    info = R.TensorInfo(tuple(in_shape), in_quant[0], in_quant[1], in_quant[2])
    return R.ImcLayer(node, info, use_lut=False)


def _brute_im2col(x, kh, kw, sh, sw, ph, pw, z):
    """Independent loop version of the lowering: [P][K] for one image x [C][H][W]."""
    C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((Ho * Wo, C * kh * kw), dtype=np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            for c in range(C):
                for i in range(kh):
                    for j in range(kw):
                        yy, xx = oy * sh - ph + i, ox * sw - pw + j
                        v = x[c, yy, xx] if 0 <= yy < H and 0 <= xx < W else z
                        out[oy * Wo + ox, (c * kh + i) * kw + j] = v
    return out


class TestHelpers(unittest.TestCase):
    def test_requantize_half_to_even(self):
        y = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 254.5, 255.5, 1e9, -1e9, 0.49999999999999994])
        q = R.requantize(y, 1.0, 0, 8)
        self.assertEqual(q.tolist(), [0, 2, 2, 0, 0, 254, 255, 255, 0, 0])
        q = R.requantize(np.array([-0.5, 0.5, -3.5, -2.5]), 1.0, 3, 4)
        self.assertEqual(q.tolist(), [3, 3, 0, 1])
        q = R.requantize(np.array([0.25, 0.75]), 0.5, 0, 8)   # 0.5 -> 0, 1.5 -> 2
        self.assertEqual(q.tolist(), [0, 2])

    def test_digest_by_hand(self):
        M = 0x100000001B3
        self.assertEqual(R.digest([]), 0)
        self.assertEqual(R.digest([5]), 0x5000000087F)        # 5 * M
        self.assertEqual(R.digest([0, 1]), (M * M) % 2**64)
        seq = [1, -1, 2]
        hand = (1 * M + (2**64 - 1) * M**2 + 2 * M**3) % 2**64
        self.assertEqual(R.digest(seq), hand)
        self.assertEqual(R.digest_slow(seq), hand)
        rng = np.random.default_rng(1)
        big = rng.integers(-2**62, 2**62, size=1000)
        self.assertEqual(R.digest(big), R.digest_slow(big.tolist()))

    def test_groups_and_slices(self):
        self.assertEqual(R.input_groups(8, 1, 0), [(t, 1, 1) for t in range(8)])
        self.assertEqual(R.input_groups(8, 3, 0), [(0, 3, 1), (3, 3, 1), (6, 2, 1)])
        self.assertEqual(R.input_groups(8, 2, 128),
                         [(0, 2, 1), (2, 2, 1), (4, 2, 1), (6, 1, 1), (7, 1, -1)])
        self.assertEqual(R.input_groups(8, 8, 128), [(0, 7, 1), (7, 1, -1)])
        self.assertEqual(R.weight_slices(R.ENC_OFFSET, 8, 3),
                         [(0, 3, 1, "D"), (3, 3, 1, "D"), (6, 2, 1, "D")])
        self.assertEqual(R.weight_slices(R.ENC_TWOS, 8, 4),
                         [(0, 4, 1, "D"), (4, 3, 1, "D"), (7, 1, -1, "D")])
        self.assertEqual(R.weight_slices(R.ENC_DIFF_DIGITAL, 5, 2),
                         [(0, 2, 1, "+"), (2, 2, 1, "+"), (0, 2, -1, "-"), (2, 2, -1, "-")])
        self.assertEqual(R.weight_slices(R.ENC_DIFF_ANALOG, 8, 2),
                         [(0, 2, 1, "+-"), (2, 2, 1, "+-"), (4, 2, 1, "+-"), (6, 1, 1, "+-")])
        W = np.array([[-128, -1, 0, 5, 127]])
        d = R.cell_values(W, R.ENC_TWOS, 8, R.weight_slices(R.ENC_TWOS, 8, 4))
        self.assertEqual(d[:, 0, :].tolist(), [[0, 15, 0, 5, 15], [0, 7, 0, 0, 7],
                                               [1, 1, 0, 0, 0]])
        W = np.array([[-6, 7]])
        d = R.cell_values(W, R.ENC_DIFF_ANALOG, 4, R.weight_slices(R.ENC_DIFF_ANALOG, 4, 2))
        self.assertEqual(d[:, 0, :].tolist(), [[-2, 3], [-1, 1]])

    def test_channel_aligned_tiles(self):
        t = R.row_tiles(R.TILING_CHANNEL_ALIGNED, 64 * 9, 256, 64, 3, 3)
        self.assertEqual([(hi - lo) // 9 for lo, hi in t], [28, 28, 8])
        self.assertEqual(t, [(0, 252), (252, 504), (504, 576)])
        t = R.row_tiles(R.TILING_CHANNEL_ALIGNED, 64 * 9, 128, 64, 3, 3)
        self.assertEqual([(hi - lo) // 9 for lo, hi in t], [14, 14, 14, 14, 8])
        self.assertEqual(t[1], (126, 252))
        self.assertEqual(R.row_tiles(R.TILING_CONTIGUOUS, 576, 256, 64, 3, 3),
                         [(0, 256), (256, 512), (512, 576)])
        self.assertEqual(R.row_tiles(R.TILING_CHANNEL_ALIGNED, 16 * 9, 8 * 9, 16, 3, 3),
                         [(0, 72), (72, 144)])
        with self.assertRaises(R.GraphError):
            R.row_tiles(R.TILING_CHANNEL_ALIGNED, 50, 8, 2, 5, 5)


class TestAdc(unittest.TestCase):
    def _adc(self, **kw):
        spec = E.adc_spec(**kw)
        return R.Adc(spec, 1, 1, kw.pop("N", 1), "test")

    def test_linear_floor_vs_half_away_hand(self):
        # F = 2 (v = 4p), step 6/4 = 1.5 psum LSB, centre 0, 3-bit signed codes [-4, 3]
        p = np.array([-7, -3, -2, -1, 0, 1, 2, 3, 7])
        fl = self._adc(kind="linear", bits=3, frac_bits=2, rounding="floor", signed_codes=True,
                       step_fx=[6], centre_fx=[0])
        ha = self._adc(kind="linear", bits=3, frac_bits=2, rounding="half_away",
                       signed_codes=True, step_fx=[6], centre_fx=[0])
        # v = -28 -12 -8 -4 0 4 8 12 28; v/6 = -4.67 -2 -1.33 -0.67 0 0.67 1.33 2 4.67
        c, v = fl.convert(p, 0)
        self.assertEqual(c.tolist(), [-4, -2, -2, -1, 0, 0, 1, 2, 3])
        self.assertEqual(v.tolist(), [-24, -12, -12, -6, 0, 0, 6, 12, 18])
        c, v = ha.convert(p, 0)
        self.assertEqual(c.tolist(), [-4, -2, -1, -1, 0, 1, 1, 2, 3])
        self.assertEqual(v.tolist(), [-24, -12, -6, -6, 0, 6, 6, 12, 18])
        # exact halves: step 8 (2 LSB), v = 4p: p = +-1 -> num = +-4 -> +-0.5 -> away
        ha2 = self._adc(kind="linear", bits=4, frac_bits=2, rounding="half_away",
                        signed_codes=True, step_fx=[8], centre_fx=[0])
        c, _ = ha2.convert(np.array([-3, -1, 1, 3]), 0)
        self.assertEqual(c.tolist(), [-2, -1, 1, 2])
        fl2 = self._adc(kind="linear", bits=4, frac_bits=2, rounding="floor",
                        signed_codes=True, step_fx=[8], centre_fx=[0])
        c, _ = fl2.convert(np.array([-3, -1, 1, 3]), 0)
        self.assertEqual(c.tolist(), [-2, -1, 0, 1])
        # unsigned codes clamp at 0; centre shifts the grid
        un = self._adc(kind="linear", bits=2, frac_bits=2, rounding="half_away",
                       step_fx=[4], centre_fx=[-8])
        c, v = un.convert(np.array([-5, -3, -2, 0, 1, 2]), 0)
        self.assertEqual(c.tolist(), [0, 0, 0, 2, 3, 3])
        self.assertEqual(v.tolist(), [-8, -8, -8, 0, 4, 4])

    def test_linear_one_row_layer(self):
        # One row, one column, DIFFERENTIAL_ANALOG: W = -3 (Bw 3, Bc 2: one slice d = -3),
        # Bx = 2, Bdac = 2 (one group u = x), so p = -3x; F = 2; step 1.5 LSB.
        for rounding, expect in (("floor", [0, -6, -12, -18]), ("half_away", [0, -6, -12, -18])):
            adc = E.adc_spec("linear", bits=3, frac_bits=2, rounding=rounding,
                             signed_codes=True, step_fx=[6], centre_fx=[0])
            L = _layer(np.array([[-3]]), kind="linear", in_shape=(1,), in_quant=(1.0, 0, 2),
                       weight_bits=3, cell_bits=2, dac_bits=2,
                       encoding="differential_analog", adc=adc)
            X = np.array([[0], [1], [2], [3]])
            acc, ps, cd = L.accumulate(X, record=True)
            self.assertEqual(ps.ravel().tolist(), [0, -3, -6, -9])
            # v = 0 -12 -24 -36 -> /6 = 0 -2 -4 -6 -> clamp [-4, 3]
            self.assertEqual(cd.ravel().tolist(), [0, -2, -4, -4])
            self.assertEqual(acc.ravel().tolist(), [0, -12, -24, -24])
        # p = -1 and -2 (x = 1, W = -1 / -2) with step 1.5 LSB: v = -4, -8 -> -0.67, -1.33
        for rounding, codes in (("floor", [-1, -2]), ("half_away", [-1, -1])):
            adc = E.adc_spec("linear", bits=3, frac_bits=2, rounding=rounding,
                             signed_codes=True, step_fx=[6], centre_fx=[0])
            L = _layer(np.array([[-1], [-2]]), kind="linear", in_shape=(1,),
                       in_quant=(1.0, 0, 2), weight_bits=3, cell_bits=2, dac_bits=2,
                       encoding="differential_analog", adc=adc, weight_scale=[1.0])
            acc, ps, cd = L.accumulate(np.array([[1]]), record=True)
            self.assertEqual(ps.ravel().tolist(), [-1, -2])
            self.assertEqual(cd.ravel().tolist(), codes)
            self.assertEqual(acc.ravel().tolist(), [6 * c for c in codes])

    def test_nonlinear_code_counting(self):
        adc = self._adc(kind="nonlinear", bits=2, frac_bits=0, thresholds_fx=[-8, 0, 5],
                        levels_fx=[-10, -3, 2, 9])
        c, v = adc.convert(np.array([-9, -8, -1, 0, 4, 5, 100]), 0)
        self.assertEqual(c.tolist(), [0, 1, 1, 2, 2, 3, 3])
        self.assertEqual(v.tolist(), [-10, -3, -3, 2, 2, 9, 9])
        # per-column sets, B = 3 (7 thresholds), brute-force counting
        rng = np.random.default_rng(0)
        N = 5
        thr = np.sort(rng.choice(np.arange(-200, 200), size=(N, 7), replace=False), axis=1)
        lev = rng.integers(-300, 300, size=(N, 8))
        spec = E.adc_spec("nonlinear", bits=3, frac_bits=3, granularity="column",
                          thresholds_fx=thr, levels_fx=lev)
        adc = R.Adc(spec, 1, 1, N, "test")
        p = rng.integers(-40, 40, size=(100, N))
        c, v = adc.convert(p, np.arange(N)[None, :])
        brute = (p[:, :, None] * 8 >= thr[None, :, :]).sum(axis=2)
        self.assertTrue(np.array_equal(c, brute))
        self.assertTrue(np.array_equal(v, lev[np.arange(N)[None, :], brute]))

    def test_bad_nonlinear_thresholds(self):
        with self.assertRaises(R.GraphError):
            self._adc(kind="nonlinear", bits=2, frac_bits=0, thresholds_fx=[0, 0, 5],
                      levels_fx=[0, 1, 2, 3])


class TestImcLayer(unittest.TestCase):
    def test_ideal_identity_all_combinations(self):
        rng = np.random.default_rng(42)
        count = 0
        for enc, Bdac, Bc, tiling, ashift, (Bx, Bw, zx) in itertools.product(
                ["offset", "twos_complement", "differential_digital", "differential_analog"],
                [1, 2, 3, 8], [1, 2, 3], ["contiguous", "channel_aligned"], [False, True],
                [(8, 8, 0), (5, 4, 7), (3, 6, 0)]):
            Cin, Cout, H, W = 3, 4, 5, 6
            lo = -(1 << (Bw - 1)) + (1 if enc.startswith("diff") else 0)
            w = rng.integers(lo, 1 << (Bw - 1), size=(Cout, Cin, 3, 3))
            w.flat[0], w.flat[1] = lo, (1 << (Bw - 1)) - 1        # extremes
            a = (1 << (Bx - 1)) if ashift else 0
            stride = (1, 1) if count % 2 == 0 else (2, 1)
            L = _layer(w, in_shape=(Cin, H, W), in_quant=(0.1, zx, Bx), kernel=(3, 3),
                       stride=stride, pad=(1, 1), weight_bits=Bw, cell_bits=Bc, dac_bits=Bdac,
                       encoding=enc, tiling=tiling, array_rows=10, ashift_offset=a,
                       adc=E.adc_spec("ideal", frac_bits=3))
            x = rng.integers(0, 1 << Bx, size=(2, Cin, H, W))
            x[0, 0, 0, :] = (1 << Bx) - 1
            X = L.im2col(x)
            Xb = np.concatenate([_brute_im2col(x[i], 3, 3, stride[0], stride[1], 1, 1, zx)
                                 for i in range(2)])
            self.assertTrue(np.array_equal(X, Xb))
            acc = L.accumulate(X)
            expect = ((Xb - zx) @ L.Wmat) * 8                         # 2^F, F = 3
            self.assertTrue(np.array_equal(acc, expect),
                            f"{enc} Bdac={Bdac} Bc={Bc} {tiling} ashift={ashift} Bx={Bx}")
            self.assertTrue(np.array_equal(acc, L.ideal_acc(X)))
            count += 1
        self.assertEqual(count, 4 * 4 * 3 * 2 * 2 * 3)

    def test_psums_by_loops_and_lut_vs_direct(self):
        rng = np.random.default_rng(7)
        for enc, gran, kind in itertools.product(
                ["offset", "twos_complement", "differential_digital", "differential_analog"],
                ["layer", "column", "slice_tile_column"], ["linear", "nonlinear"]):
            Cin, Cout, Bx, Bw, Bc, Bdac = 4, 3, 6, 5, 2, 2
            w = rng.integers(-15, 16, size=(Cout, Cin, 2, 2))
            probe = _layer(w, in_shape=(Cin, 4, 4), in_quant=(1.0, 2, Bx), kernel=(2, 2),
                           weight_bits=Bw, cell_bits=Bc, dac_bits=Bdac, encoding=enc,
                           tiling="channel_aligned", array_rows=9, ashift_offset=32)
            G, S, N = probe.G, probe.S, probe.N
            nsets = {"layer": 1, "column": N, "slice_tile_column": G * S * N}[gran]
            if kind == "linear":
                adc = E.adc_spec("linear", bits=4, frac_bits=2, rounding="floor",
                                 signed_codes=True, granularity=gran,
                                 step_fx=rng.integers(3, 20, nsets),
                                 centre_fx=rng.integers(-10, 10, nsets))
            else:
                thr = np.sort(np.stack([rng.choice(np.arange(-80, 200), 15, replace=False)
                                        for _ in range(nsets)]), axis=1)
                adc = E.adc_spec("nonlinear", bits=4, frac_bits=2, granularity=gran,
                                 thresholds_fx=thr, levels_fx=rng.integers(-90, 210, (nsets, 16)))
            kw = dict(in_shape=(Cin, 4, 4), in_quant=(1.0, 2, Bx), kernel=(2, 2),
                      weight_bits=Bw, cell_bits=Bc, dac_bits=Bdac, encoding=enc,
                      tiling="channel_aligned", array_rows=9, ashift_offset=32, adc=adc)
            La, Lb = _layer(w, **kw), _layer_nolut(w, **kw)
            self.assertIsNotNone(La.tiles[0].lut_w)
            self.assertIsNone(Lb.tiles[0].lut_w)
            x = rng.integers(0, 1 << Bx, size=(3, Cin, 4, 4))
            X = La.im2col(x)
            acc_a, ps_a, cd_a = La.accumulate(X, record=True)
            acc_b, ps_b, cd_b = Lb.accumulate(X, record=True)
            self.assertTrue(np.array_equal(acc_a, acc_b))
            self.assertTrue(np.array_equal(ps_a, ps_b))
            self.assertTrue(np.array_equal(cd_a, cd_b))
            # psums by plain loops, canonical order [P][G][S][T][N]
            xs = X - 32
            pat = xs & ((1 << Bx) - 1)
            cells = R.cell_values(La.Wmat, La.encoding, Bw, La.slices)
            ps = np.zeros_like(ps_a)
            for g, (lo, hi) in enumerate(R.row_tiles(R.TILING_CHANNEL_ALIGNED, La.K, 9, Cin, 2, 2)):
                for s in range(S):
                    for t, (blo, nb, _) in enumerate(La.groups):
                        u = (pat[:, lo:hi] >> blo) & ((1 << nb) - 1)
                        ps[:, g, s, t, :] = u @ cells[s, lo:hi, :]
            self.assertTrue(np.array_equal(ps, ps_a))
            # shift-add by loops from the ADC values
            sidx = np.stack([La.adc.set_index(g) for g in range(G)])          # [G][S][N]
            acc = np.zeros_like(acc_a)
            for g in range(G):
                for s, (slo, _, ssg, _) in enumerate(La.slices):
                    for t, (tlo, _, tsg) in enumerate(La.groups):
                        _, val = La.adc.convert(ps[:, g, s, t, :], sidx[g, s][None, :])
                        acc += ssg * tsg * (val << (slo + tlo))
            acc += ((32 - 2) * La.Wmat.sum(axis=0)) << 2
            if enc == "offset":
                acc -= (xs.sum(axis=1, keepdims=True) << (Bw - 1)) << 2
            self.assertTrue(np.array_equal(acc, acc_a), f"{enc} {gran} {kind}")

    def test_post_processing_order(self):
        w = np.array([[3, -2], [1, 1]])
        adc = E.adc_spec("ideal", frac_bits=4)
        node = E.imc_node("L", ["x"], w, kind="linear", weight_scale=[0.1, 0.3],
                          psum_scale=[1.5, 0.7], bias=[0.25, -0.125], relu=True, adc=adc,
                          output_quant=E.quant(0.05, 3, 8))
        L = R.ImcLayer(node, R.TensorInfo((2,), 0.02, 1, 8))
        acc = L.accumulate(np.array([[10, 4]]))
        self.assertEqual(acc.tolist(), [[(9 * 3 + 3 * -2) * 16, (9 + 3) * 16]])
        y = L.post(acc)
        m0 = ((0.02 * 0.1) * 1.5) * 2.0 ** -4
        m1 = ((0.02 * 0.3) * 0.7) * 2.0 ** -4
        self.assertEqual(y[0, 0], max(float(acc[0, 0]) * m0 + 0.25, 0.0))
        self.assertEqual(y[0, 1], max(float(acc[0, 1]) * m1 + -0.125, 0.0))


class TestGraph(unittest.TestCase):
    def _graph(self):
        rng = np.random.default_rng(3)
        g = pb.Graph()
        g.format_version = 1
        g.num_classes = 3
        g.input.CopyFrom(E.input_spec((2, 5, 5)))
        q1 = E.quant(0.01, 2, 6)
        g.nodes.append(E.imc_node("c1", ["input"], rng.integers(-127, 128, (4, 2, 3, 3)),
                                  kernel=(3, 3), pad=(1, 1), weight_scale=rng.random(4) / 100,
                                  bias=rng.random(4) - 0.5, relu=True, output_quant=q1,
                                  output_shape=(4, 5, 5)))
        g.nodes.append(E.pool_node("mp", ["c1"], "max", (2, 2), (2, 2), (1, 1), q1, (4, 3, 3)))
        g.nodes.append(E.pool_node("ap", ["mp"], "avg", (2, 2), (1, 1), (0, 0),
                                   E.quant(0.02, 1, 8), (4, 2, 2)))
        g.nodes.append(E.simple_node("r", ["ap"], "relu", E.quant(0.02, 0, 8), (4, 2, 2)))
        g.nodes.append(E.simple_node("ad", ["r", "ap"], "add", E.quant(0.03, 5, 8), (4, 2, 2),
                                     relu=True))
        g.nodes.append(E.simple_node("fl", ["ad"], "flatten", E.quant(0.03, 5, 8), (16,)))
        g.nodes.append(E.imc_node("fc", ["fl"], rng.integers(-127, 128, (3, 16)), kind="linear",
                                  weight_scale=[0.01], output_quant=E.quant(1.0, 0, 0),
                                  output_shape=(3,), adc=E.adc_spec("linear", bits=5,
                                  step_fx=[300], centre_fx=[0])))
        return g

    def test_digital_nodes_by_hand(self):
        g = self._graph()
        ref = R.Reference(g)
        pix = np.random.default_rng(0).integers(0, 256, (2, 2, 5, 5), dtype=np.uint8)
        t = {}
        ref.run(ref.input_codes(pix), tensors=t)
        c1 = t["c1"]
        # max pool 2x2 s2 pad 1: window (0,0) covers only input (0,0)
        self.assertTrue(np.array_equal(t["mp"][:, :, 0, 0], c1[:, :, 0, 0]))
        self.assertTrue(np.array_equal(t["mp"][:, :, 1, 1], c1[:, :, 1:3, 1:3].max(axis=(2, 3))))
        s = t["mp"][:, :, 0:2, 0:2].sum(axis=(2, 3))
        y = ((s - 4 * 2).astype(np.float64) * 0.01) / 4.0
        self.assertTrue(np.array_equal(t["ap"][:, :, 0, 0], R.requantize(y, 0.02, 1, 8)))
        r = R.requantize(np.maximum(0.02 * (t["ap"] - 1).astype(np.float64), 0.0), 0.02, 0, 8)
        self.assertTrue(np.array_equal(t["r"], r))
        ya = 0.02 * (t["r"] - 0).astype(np.float64) + 0.02 * (t["ap"] - 1).astype(np.float64)
        self.assertTrue(np.array_equal(t["ad"], R.requantize(np.maximum(ya, 0), 0.03, 5, 8)))
        self.assertTrue(np.array_equal(t["fl"], t["ad"].reshape(2, 16)))

    def test_goldens_roundtrip(self):
        g = self._graph()
        pix = np.random.default_rng(1).integers(0, 256, (3, 2, 5, 5), dtype=np.uint8)
        E.add_goldens(g, pix, [0, 1, 2], [0, 2])
        g2 = pb.Graph()
        g2.ParseFromString(g.SerializeToString())
        self.assertEqual(E.check_goldens(g2), [])
        gp = g2.golden[0]
        self.assertEqual(gp.nodes[0].psum_count, 25 * 1 * 4 * 8 * 4)
        self.assertEqual(len(gp.nodes[0].psums_position0), 1 * 4 * 8 * 4)
        self.assertEqual(len(gp.nodes[-1].output_codes), 0)
        gp.nodes[0].psum_digest ^= 1
        self.assertTrue(E.check_goldens(g2))


class TestIdx(unittest.TestCase):
    def test_parse_and_errors(self):
        from imcsim_py import idx
        hdr = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + \
            (3).to_bytes(4, "big")
        a = idx.parse_idx(hdr + bytes(range(12)))
        self.assertEqual(a.shape, (2, 2, 3))
        self.assertEqual(int(a[1, 1, 2]), 11)
        with self.assertRaises(idx.IdxError):
            idx.parse_idx(bytes([1, 0, 8, 3]) + hdr[4:] + bytes(12))      # bad magic
        with self.assertRaises(idx.IdxError):
            idx.parse_idx(hdr + bytes(11))                                # truncated
        with self.assertRaises(idx.IdxError):
            idx.parse_idx(hdr + bytes(12), expect_ndim=1)                 # labels expected


@unittest.skipUnless(WORKLOAD.is_file(), f"{WORKLOAD} not present")
class TestWorkloadGoldens(unittest.TestCase):
    def test_fmnist_cnn_goldens(self):
        g = load_graph(WORKLOAD)
        self.assertEqual(g.format_version, 1)
        self.assertEqual(len(g.golden), 4)
        self.assertEqual([gp.dataset_index for gp in g.golden], [0, 1, 2, 3])
        self.assertEqual(g.provenance.method, "plain-qat")
        self.assertEqual(g.provenance.reference_images, 10000)
        self.assertGreaterEqual(g.provenance.reference_accuracy, 0.85)
        self.assertEqual(E.check_goldens(g), [])

    def test_all_variants_goldens(self):
        for path in sorted(WORKLOAD.parent.glob("*.imcg")):
            with self.subTest(graph=path.name):
                g = load_graph(path)
                self.assertEqual(len(g.golden), 4)
                self.assertEqual(E.check_goldens(g), [])


if __name__ == "__main__":
    unittest.main()
