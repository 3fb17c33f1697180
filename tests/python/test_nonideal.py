"""Analog non-idealities of the numpy reference (docs/SEMANTICS.md step 5), with the same
hand-derived values as tests/unit/nonideal_test.cc (so both languages are pinned to the same
numbers), and the random-layer corpus generator's reproducibility.

Run from the repository root:
    /usr/bin/python3 -m unittest discover -s tests/python -v
"""

import filecmp
import json
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_pb import pb  # noqa: E402

_M = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15


def _mix(z):
    """splitmix64 output function, plain Python integers (independent of the numpy code)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M
    return z ^ (z >> 31)


def _hash32(x):
    """The 32-bit xorshift-multiply finalizer, plain Python integers."""
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    return x ^ (x >> 15)


def _gauss(key, n):
    s = 0
    for i in (2 * n, 2 * n + 1):
        o = _hash32((((key & 0xFFFFFFFF) + i * 0x9E3779B9) & 0xFFFFFFFF) ^ (key >> 32))
        s += sum((o >> (5 * f)) & 0x1F for f in range(6))
    return (s - 186) / 32.0


class TestRng(unittest.TestCase):
    def test_splitmix64_known_outputs(self):
        out = [int(R.splitmix64_output(0, i)) for i in range(3)]
        self.assertEqual(out, [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F])

    def test_key_hashing(self):
        self.assertEqual(R.rng_key(0), 0xE220A8397B1DCDAF)
        self.assertEqual(R.rng_key(1, 2, 3), 0xD0734750FDE362B3)
        h = 0
        for v in (1, 2, 3):
            h = _mix(((h ^ v) + _G) & _M)
        self.assertEqual(R.rng_key(1, 2, 3), h)

    def test_gaussian_by_hand(self):
        key0 = R.rng_key(0)
        self.assertEqual(int(R.gauss32_output(key0, 0)), 0x43A23B46)
        self.assertEqual(R.gaussian_sample(key0, [0, 1, 2]).tolist(), [-0.21875, 1.78125, 2.65625])
        self.assertEqual(float(R.uniform_sample(0, 0)), (0xE220A8397B1DCDAF >> 11) * 2.0 ** -53)
        rng = np.random.default_rng(3)
        for key in rng.integers(0, 2**63, size=20, dtype=np.uint64):
            n = rng.integers(0, 2**31, size=5)
            want = [_gauss(int(key), int(i)) for i in n]
            self.assertEqual(R.gaussian_sample(key, n.astype(np.uint64)).tolist(), want)

    def test_gaussian_moments(self):
        z = R.gaussian_sample(R.rng_key(42), np.arange(400000, dtype=np.uint64))
        self.assertAlmostEqual(float(z.mean()), 0.0, delta=0.01)
        self.assertAlmostEqual(float(z.var()), 1.0 - 2.0 ** -10, delta=0.01)
        self.assertGreaterEqual(float(z.min()), -5.8125)
        self.assertLessEqual(float(z.max()), 5.8125)

    def test_noise_fx_rounds_half_to_even(self):
        self.assertEqual(int(R.noise_fx(0.5, -0.19140625)), -6272)
        self.assertEqual(R.noise_fx(1.0, np.array([2.5, 3.5, -2.5]) / 65536).tolist(), [2, 4, -2])


class TestTransferAndAdc(unittest.TestCase):
    def test_transfer_curve_by_hand(self):
        c = R.TransferCurve([(0, 0), (2, 1), (4, 4)])
        x = np.array([1, 3, 2, 6, -2], dtype=np.int64) * 65536
        self.assertEqual(c.apply(x).tolist(), [32768, 163840, 65536, 7 * 65536, -65536])
        self.assertEqual(c.apply(np.array([1, 3])).tolist(), [0, 2])
        steep = R.TransferCurve([(0, 0), (1, 1e9)])
        self.assertEqual(int(steep.apply(np.int64(1 << 40))), 1 << 46)

    def _adc(self, **kw):
        spec = E.adc_spec(**kw)
        return R.Adc(spec, 1, 1, 1, "test")

    def test_analog_adc_by_hand(self):
        one = 65536
        fl = self._adc(kind="linear", bits=3, frac_bits=0, rounding="floor", step_fx=[2], centre_fx=[0])
        code, val, sat = fl.convert_analog(np.array([7 * one // 2, 4 * one - 1, 4 * one, -one // 4]), 0)
        self.assertEqual(code.tolist(), [1, 1, 2, 0])
        self.assertEqual(val.tolist(), [2, 2, 4, 0])
        self.assertEqual(sat.tolist(), [False, False, False, True])
        ha = self._adc(kind="linear", bits=3, frac_bits=0, rounding="half_away", signed_codes=True,
                       step_fx=[2], centre_fx=[0])
        a = np.array([one, -one, -one + 656, 3 * one - 656, 3 * one, -3 * one, -3 * one + 1])
        self.assertEqual(ha.convert_analog(a, 0)[0].tolist(), [1, -1, 0, 1, 2, -2, -1])
        w = self._adc(kind="linear", bits=4, frac_bits=18, rounding="floor", step_fx=[3], centre_fx=[0])
        self.assertEqual(int(w.convert_analog(np.array([5]), 0)[0][0]), 6)
        ideal = self._adc(kind="ideal", frac_bits=1)
        code, val, _ = ideal.convert_analog(np.array([one + one // 4, -one // 2]), 0)
        self.assertEqual((code.tolist(), val.tolist()), ([1, 0], [3, -1]))
        nl = self._adc(kind="nonlinear", bits=2, frac_bits=2, thresholds_fx=[1, 4, 9],
                       levels_fx=[0, 10, 20, 30])
        code, val, _ = nl.convert_analog(np.array([int(0.3 * one), int(2.2 * one), 2 * one + one // 4]), 0)
        self.assertEqual(code.tolist(), [1, 2, 3])
        self.assertEqual(val.tolist(), [10, 20, 30])

    def test_analog_equals_integer_adc_on_integers(self):
        rng = np.random.default_rng(1)
        p = np.arange(-70, 71, dtype=np.int64)
        for kind, rounding, signed, F in [("linear", "floor", False, 0), ("linear", "half_away", True, 3),
                                          ("linear", "half_away", False, 17), ("nonlinear", "floor", False, 5),
                                          ("ideal", "floor", False, 8), ("ideal", "floor", False, 20)]:
            one = 1 << F
            kw = dict(kind=kind, bits=3, frac_bits=F, rounding=rounding, signed_codes=signed)
            if kind == "linear":
                kw.update(step_fx=[int(rng.integers(1, 4 * one))], centre_fx=[int(rng.integers(-9 * one, 9 * one))])
            if kind == "nonlinear":
                kw.update(thresholds_fx=np.sort(rng.choice(np.arange(-40 * one, 40 * one), 7, replace=False)),
                          levels_fx=rng.integers(-99, 99, size=8))
            adc = self._adc(**kw)
            c1, v1 = adc.convert(p, 0)
            c2, v2, _ = adc.convert_analog(p << 16, 0)
            self.assertEqual(c1.tolist(), c2.tolist(), kw)
            self.assertEqual(v1.tolist(), v2.tolist(), kw)


class TestNonIdealSettings(unittest.TestCase):
    def test_bad_settings(self):
        for bad, part in [({"adc_noise_sigma_lsb": -0.1}, "adc_noise_sigma_lsb"),
                          ({"conductance_variation_sigma": 1.5}, "conductance_variation_sigma"),
                          ({"stuck_at_rate": 1.01}, "stuck_at_rate"),
                          ({"stuck_at_rate": -0.5}, "stuck_at_rate"),
                          ({"stuck_at_max_fraction": 2}, "stuck_at_max_fraction"),
                          ({"transfer_curve": [[0, 0], [5, 4], [3, 2]]}, "strictly increasing"),
                          ({"transfer_curve": [[0, 0]]}, "at least 2"),
                          ({"noise": 1}, "unknown key")]:
            with self.assertRaises(ValueError) as ctx:
                R.NonIdeal.from_dict(bad)
            self.assertIn(part, str(ctx.exception))

    def test_round_trip_and_off(self):
        d = {"adc_noise_sigma_lsb": 0.5, "conductance_variation_sigma": 0.02,
             "transfer_curve": [[0.0, 0.0], [100.0, 97.5]], "stuck_at_rate": 0.001,
             "stuck_at_max_fraction": 0.25}
        self.assertEqual(R.NonIdeal.from_dict(d).to_dict(), d)
        self.assertFalse(R.NonIdeal().active())
        self.assertTrue(R.NonIdeal(stuck_at_rate=0.1).active())


def _one_row(w, F=0):
    """The one-row layer of nonideal_test.cc: input [1,1,1] (Bx 1) -> flatten -> Linear 1 -> 1,
    Bw 2 OFFSET on one 2-bit cell, Bdac 1, IDEAL ADC with F frac bits, float output."""
    g = pb.Graph()
    g.format_version = 1
    g.input.CopyFrom(E.input_spec((1, 1, 1), tensor="x", q=E.quant(1.0, 0, 1)))
    g.nodes.append(E.simple_node("flat", ["x"], "flatten", output_quant=E.quant(1.0, 0, 1), output_shape=(1,)))
    g.nodes.append(E.imc_node("fc", ["flat"], [[w]], kind="linear", weight_bits=2, cell_bits=2, dac_bits=1,
                              adc=E.adc_spec("ideal", frac_bits=F), output_quant=E.quant(1.0, 0, 0),
                              output_shape=(1,)))
    g.num_classes = 1
    return g


class TestOneRow(unittest.TestCase):
    def _run(self, g, ni, seed, image=0):
        ref = R.Reference(g, nonideal=ni, seed=seed)
        tr = ref.trace(np.ones((1, 1, 1), dtype=np.int64), image)
        return float(tr[-1].output[0][0]), int(tr[-1].psums.ravel()[0]), int(tr[-1].codes.ravel()[0])

    def test_noise(self):
        for image in (0, 1, 7):
            z = float(R.gaussian_sample(R.rng_key(5, 1, 1, image, 0), 0))  # stream H(seed, 1, node, image, pos)
            a = 3 * 65536 + int(np.rint((0.8 * z) * 65536))
            y, psum, code = self._run(_one_row(1), R.NonIdeal(adc_noise_sigma_lsb=0.8), 5, image)
            self.assertEqual(psum, a)
            self.assertEqual(code, (a + 32768) >> 16)
            self.assertEqual(y, float(((a + 32768) >> 16) - 2))

    def test_variation(self):
        z = float(R.gaussian_sample(R.rng_key(3, 3, 1, 0, 0, 0), 0))
        cell = int(np.rint((3.0 * max(0.0, 1.0 + 0.1 * z)) * 65536.0))
        y, psum, _ = self._run(_one_row(1, 8), R.NonIdeal(conductance_variation_sigma=0.1), 3)
        self.assertEqual(psum, cell)
        self.assertEqual(y, (((cell + 128) >> 8) - 512) / 256.0)  # IDEAL F=8: floor(cell 2^-8 + 1/2)

    def test_transfer(self):
        y, psum, code = self._run(_one_row(1, 1), R.NonIdeal(transfer_curve=((0, 0), (2, 1), (4, 4))), 0)
        self.assertEqual((y, psum, code), (0.5, 163840, 3))

    def test_stuck_at(self):
        ni = R.NonIdeal(stuck_at_rate=1.0, stuck_at_max_fraction=0.0)
        self.assertEqual(self._run(_one_row(1), ni, 0)[:2], (-2.0, 0))
        ni = R.NonIdeal(stuck_at_rate=1.0, stuck_at_max_fraction=1.0)
        self.assertEqual(self._run(_one_row(-1), ni, 0)[:2], (1.0, 3 * 65536))

    def test_stuck_at_rates_binomial(self):
        rng = np.random.default_rng(1)
        W = rng.integers(-128, 128, size=(200, 50))
        slices = R.weight_slices(R.ENC_OFFSET, 8, 2)
        for rate, frac in [(0.1, 0.5), (0.02, 0.25), (0.5, 0.9)]:
            ni = R.NonIdeal(stuck_at_rate=rate, stuck_at_max_fraction=frac)
            z, m, n = R.stuck_counts(W, R.ENC_OFFSET, 8, 2, slices, ni, 11, 0)
            self.assertEqual(n, 40000)
            for count, p in ((z, rate * (1 - frac)), (m, rate * frac)):
                self.assertLess(abs(count - n * p), 5 * np.sqrt(n * p * (1 - p)))

    def test_off_is_the_ideal_reference(self):
        g = _one_row(1)
        a = R.Reference(g).trace(np.ones((1, 1, 1), dtype=np.int64))
        b = R.Reference(g, nonideal=R.NonIdeal(), seed=9).trace(np.ones((1, 1, 1), dtype=np.int64))
        self.assertEqual(a[-1].psums.tolist(), b[-1].psums.tolist())
        self.assertEqual(a[-1].psums.ravel().tolist(), [3])


class TestBatchesAndImages(unittest.TestCase):
    def test_batch_equals_single_images(self):
        """A batch run keyed by dataset indices equals each image traced on its own."""
        m = json.loads((REPO / "tests/data/random_layers/manifest.json").read_text())
        case = next(c for c in m["cases"] if c["nonidealities"] and "adc_noise_sigma_lsb" in c["nonidealities"]
                    and c["adc"] == "linear_floor")
        from imcsim_py.graph_pb import load_graph
        g = load_graph(REPO / "tests/data/random_layers" / case["file"])
        ref = R.Reference(g, nonideal=case["nonidealities"], seed=case["seed"])
        rng = np.random.default_rng(0)
        codes = ref.input_codes(rng.integers(0, 256, size=(5,) + ref.input_shape, dtype=np.uint8))
        images = np.array([4, 9, 100, 2, 7])
        out = ref.run(codes, images=images)
        for i in range(5):
            single = ref.run(codes[i:i + 1], images=images[i:i + 1])
            self.assertEqual(out[i].tolist(), single[0].tolist())
        other = ref.run(codes, images=images + 1)
        self.assertFalse(np.array_equal(out, other))


class TestRandomLayerCorpus(unittest.TestCase):
    def test_generator_reproduces_the_corpus(self):
        """make_random_layers.py (fixed seed) writes exactly the committed files."""
        sys.path.insert(0, str(REPO / "tests/data/random_layers"))
        import make_random_layers as M
        here = REPO / "tests/data/random_layers"
        with tempfile.TemporaryDirectory() as tmp:
            manifest = M.generate(Path(tmp))
            files = [c["file"] for c in manifest["cases"]] + ["manifest.json"]
            match, mismatch, errors = filecmp.cmpfiles(here, tmp, files, shallow=False)
            self.assertEqual((mismatch, errors), ([], []))
            self.assertEqual(len(match), len(files))
            committed = sorted(p.name for p in here.glob("*.imcg"))
            self.assertEqual(committed, sorted(c["file"] for c in manifest["cases"]))
        total = sum(p.stat().st_size for p in here.iterdir())
        self.assertLess(total, 2 * 1024 * 1024)


if __name__ == "__main__":
    unittest.main()
