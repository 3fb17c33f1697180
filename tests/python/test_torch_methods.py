"""Tests of the training methods' building blocks (scripts/imcsim_py/torch_imc/methods.py,
bskmq.py, core.accumulate_train / rescale_linear_adc): exactness where the export depends on
them, hand-derived values, and that gradients reach what each method trains.

    /usr/bin/python3 -m unittest tests.python.test_torch_methods -v     (~10 s)

The end-to-end per-method check (train, export, PyTorch == reference.py == imcsim run, and
BS-KMQ references == imcsim calibrate) is tests/python/smoke_train.py (ctest train_smoke).
"""

import itertools
import sys
import unittest
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

try:
    import torch
    import torch.nn as nn
    HAVE_TORCH = True
except ImportError:          # pragma: no cover
    HAVE_TORCH = False

from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402

if HAVE_TORCH:
    from imcsim_py import torch_imc as ti  # noqa: E402
    from imcsim_py.torch_imc import bskmq, core  # noqa: E402
    from imcsim_py.torch_imc import methods as MT  # noqa: E402

    class Small(nn.Module):
        """ImcInput -> conv 3x3 (2->5) + ReLU -> flatten -> linear (float logits)."""

        def __init__(self, cfg):
            super().__init__()
            self.inp = ti.ImcInput((2, 6, 6))
            self.conv = ti.ImcConv2d(2, 5, 3, 1, 1, relu=True, cfg=cfg)
            self.fc = ti.ImcLinear(5 * 36, 4, out_bits=0, cfg=cfg)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(self.inp(x)), 1))


def _pixels(seed, n, shape=(2, 6, 6)):
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + shape, dtype=np.uint8)


def _ready(model, cfg_pixels, rule="percentile"):
    ti.prepare(model)
    ti.init_act_ranges(model, cfg_pixels)
    ti.set_quantized(model, True)
    for _, q in ti.act_quants(model):
        q.observe = False
    ti.calibrate_adcs(model, cfg_pixels, rule=rule)
    return model


def _exact_vs_reference(tc, model, pixels):
    """torch_imc eval output == reference.py output of the exported graph, bit for bit."""
    model.eval()
    with torch.no_grad():
        y = model(torch.from_numpy(pixels).double()).numpy()
    g = ti.export_graph(model, "t", golden_pixels=pixels,
                        golden_labels=np.zeros(len(pixels), dtype=np.int64),
                        golden_indices=(0, 1), num_classes=4)
    tc.assertEqual(E.check_goldens(g), [])
    ref = R.Reference(g)
    tc.assertTrue(np.array_equal(ref.run(ref.input_codes(pixels)), y))
    return g


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestTrainingDatapath(unittest.TestCase):
    def test_accumulate_train_equals_accumulate(self):
        """Without noise the float training datapath is the exact one (every encoding,
        cell / DAC width, A-shift, ADC kind, granularity, rounding, signedness)."""
        g = torch.Generator().manual_seed(1)
        n = 0
        for enc, Bc, dac, ash, kind, gran, rnd, sg in itertools.product(
                ["offset", "twos_complement", "differential_digital", "differential_analog"],
                [1, 2, 8], [1, 8], [False, True], ["linear", "nonlinear"],
                ["layer", "slice_tile_column"], ["floor", "half_away"], [False, True]):
            if kind == "nonlinear" and (rnd == "floor" or sg):
                continue
            if (Bc, dac) == (8, 8) and kind == "nonlinear":
                continue
            cfg = ti.ImcConfig(cell_bits=Bc, dac_bits=dac, encoding=enc, ashift=ash,
                               array_rows=16, adc=ti.AdcConfig(kind=kind, bits=3,
                                                               granularity=gran,
                                                               rounding=rnd, signed=sg))
            K, N = 40, 3
            W = torch.randint(-127, 128, (N, K), generator=g)
            G = len(core.tiles_of(cfg, K, K, 1, 1))
            S = core.num_slices(cfg)
            ns = core.adc_num_sets(cfg, G, S, N)
            if kind == "linear":
                ap = core.AdcParams("linear", 8, 3, gran, rnd, sg,
                                    step=torch.randint(100, 3000, (ns,), generator=g),
                                    centre=torch.randint(-2000, 2000, (ns,), generator=g))
            else:
                thr = torch.sort(torch.randint(-5000, 60000, (ns, 7), generator=g), 1).values \
                    + torch.arange(7)
                ap = core.AdcParams("nonlinear", 8, 3, gran, thr=thr,
                                    lev=torch.randint(-9000, 90000, (ns, 8), generator=g))
            pl = core.ImcPlan(W, cfg, K, 1, 1, 8, 3, ap, use_lut=False)
            X = torch.randint(0, 256, (12, K), generator=g)
            acc, _ = pl.accumulate_train(X)
            self.assertTrue(torch.equal(pl.accumulate(X), acc),
                            (enc, Bc, dac, ash, kind, gran, rnd, sg))
            n += 1
        self.assertGreater(n, 300)

    def test_rescale_linear_adc(self):
        p = core.AdcParams("linear", 8, 4, "layer", "half_away", False,
                           step=torch.tensor([1843, 7]), centre=torch.tensor([0, -21]))
        up = core.rescale_linear_adc(p, 5)      # 1843 / 2 = 921.5 -> 922; 3.5 -> 4
        self.assertEqual(up.step.tolist(), [922, 4])
        self.assertEqual(up.centre.tolist(), [0, -21])
        self.assertEqual(up.B, 5)
        down = core.rescale_linear_adc(p, 2)
        self.assertEqual(down.step.tolist(), [1843 * 4, 28])
        # a partial sum of 0 is still reconstructed as 0 (centre kept)
        code, val = up.convert(torch.zeros(1, 1, dtype=torch.int64),
                               torch.zeros(1, 1, dtype=torch.int64))
        self.assertEqual(int(val), 0)


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestBsKmq(unittest.TestCase):
    def test_hand_derived_reserved(self):
        # values {0:100, 1:3, 2:3, 5:2, 6:2, 10:50}, 2 bits: x_lo = 0, x_hi = 10 own bins;
        # k-means (2) on {1,2,5,6}: greedy D^2 picks 1 (weighted median) then 6; Lloyd ->
        # centroids 1.5, 5.5; thresholds 0.5, 3.5, 9.5 -> x 256 = 128, 896, 2432; levels =
        # bin means 0, 1.5, 5.5, 10 -> 0, 384, 1408, 2560
        v = np.arange(0, 11)
        c = np.zeros(11, dtype=np.int64)
        for k, w in {0: 100, 1: 3, 2: 3, 5: 2, 6: 2, 10: 50}.items():
            c[k] = w
        t, lev = bskmq.fit_bskmq(v, c, 2, 8)
        self.assertEqual(t.tolist(), [128, 896, 2432])
        self.assertEqual(lev.tolist(), [0, 384, 1408, 2560])

    def test_lossless_small_range(self):
        v = np.arange(5, 8)
        t, lev = bskmq.fit_bskmq(v, np.array([4, 1, 9]), 2, 4)
        # every integer 5..8 a level, thresholds at the half-integers
        self.assertEqual(t.tolist(), [88, 104, 120])
        self.assertEqual(lev.tolist(), [80, 96, 112, 128])


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestMethodParts(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.pix = _pixels(0, 48)

    def test_lora_merge_is_exact_and_trains_only_adapters(self):
        cfg = ti.ImcConfig(adc=ti.AdcConfig(bits=5))
        m = _ready(Small(cfg), self.pix)
        meth = MT.RAOQ()
        groups = meth.start_lora(m, 1e-2)
        m.train()
        loss = meth.loss(m, torch.from_numpy(self.pix[:8]).float(),
                         torch.zeros(8, dtype=torch.int64), nn.CrossEntropyLoss())
        loss.backward()
        torch.optim.Adam(groups).step()
        for _, layer in ti.imc_layers(m):
            self.assertIsNone(layer.weight.grad)
            self.assertGreater(float(layer.lora_B.abs().sum()), 0)
        m.eval()
        with torch.no_grad():
            before = m(torch.from_numpy(self.pix).double())
            wq = [layer.integer_weights()[0].clone() for _, layer in ti.imc_layers(m)]
        meth.finalize(m, self.pix)
        for (_, layer), w in zip(ti.imc_layers(m), wq):
            self.assertIsNone(layer.lora_A)
            self.assertTrue(torch.equal(layer.integer_weights()[0], w))
        with torch.no_grad():
            self.assertTrue(torch.equal(m(torch.from_numpy(self.pix).double()), before))
        _exact_vs_reference(self, m, self.pix[:6])

    def test_columnquant_learns_scales_and_exports_exactly(self):
        meth = MT.ColumnQuant()
        cfg = meth.configure(ti.ImcConfig(array_rows=9, adc=ti.AdcConfig(bits=4)))
        self.assertEqual((cfg.tiling, cfg.adc.granularity, cfg.adc.signed),
                         ("channel_aligned", "slice_tile_column", True))
        m = _ready(Small(cfg), self.pix, rule=meth.calib_rule)
        for _, layer in ti.imc_layers(m):   # centres on whole codes
            self.assertTrue(torch.equal(layer.adc_centre_fx % layer.adc_step_fx,
                                        torch.zeros_like(layer.adc_centre_fx)))
        groups = meth.setup(m, 1e-3)
        opt = torch.optim.Adam(groups)
        m.train()
        steps0 = [layer.adc_step_fx.clone() for _, layer in ti.imc_layers(m)]
        for _ in range(3):
            opt.zero_grad()
            loss = meth.loss(m, torch.from_numpy(self.pix[:16]).float(),
                             torch.arange(16) % 4, nn.CrossEntropyLoss())
            loss.backward()
            for _, layer in ti.imc_layers(m):
                self.assertGreater(float(layer.w_scale.grad.abs().sum()), 0)
                self.assertGreater(float(layer.adc_log_step.grad.abs().sum()), 0)
            opt.step()
            meth.after_step(m)
        self.assertTrue(any(not torch.equal(s, layer.adc_step_fx)
                            for s, (_, layer) in zip(steps0, ti.imc_layers(m))))
        meth.finalize(m, self.pix)
        for _, layer in ti.imc_layers(m):
            self.assertIsNone(layer.adc_log_step)
            self.assertIsNotNone(layer.w_scale)
        _exact_vs_reference(self, m, self.pix[:6])

    def test_pim_qat_bn_calibration_and_export(self):
        meth = MT.PIMQAT(scheme="differential", noise_sigma=0.5)
        cfg = meth.configure(ti.ImcConfig(adc=ti.AdcConfig(bits=3)))
        self.assertEqual((cfg.encoding, cfg.dac_bits), ("differential_analog", 1))
        m = _ready(Small(cfg), self.pix)
        groups = meth.setup(m, 1e-3)
        self.assertEqual(m.conv.train_adc_bits, 2)
        opt = torch.optim.Adam(groups)
        m.train()
        for _ in range(2):
            opt.zero_grad()
            meth.loss(m, torch.from_numpy(self.pix[:16]).float(), torch.arange(16) % 4,
                      nn.CrossEntropyLoss()).backward()
            opt.step()
        self.assertNotAlmostEqual(float(m.conv.psum_scale[0]), 1.0, places=6)   # rescaling
        meth.finalize(m, self.pix)
        # after BN calibration, the first layer's simulated pre-activation output has the
        # per-column mean / std of the ideal MAC on the calibration images
        m.eval()
        captured = {}
        h = m.conv.register_forward_pre_hook(lambda mod, inp: captured.setdefault("x", inp[0]))
        with torch.no_grad():
            m(torch.from_numpy(self.pix).double())
        h.remove()
        x = captured["x"]
        sx, _, _ = m.conv.input_quant()
        pl, acc, _ = m.conv.hw_acc(x)
        yh = acc.double() * m.conv.post_multiplier(sx, pl.F) + m.conv.bias64()
        yi = m.conv._ideal(x, m.conv.fq_weight().detach().double(), None)
        yi = yi.permute(0, 2, 3, 1).reshape(-1, 5)
        notes = meth.bn_notes["conv"]
        self.assertIn("psum_scale_mean", notes)
        np.testing.assert_allclose(yh.std(0).numpy(), yi.std(0).numpy(), rtol=1e-5)
        g = _exact_vs_reference(self, m, self.pix[:6])
        self.assertEqual(len(g.nodes[0].imc.psum_scale), 5)


if __name__ == "__main__":
    unittest.main()
