"""Contract test of torch_imc (scripts/imcsim_py/torch_imc): the PyTorch layers in eval mode
compute bit-exactly what reference.py (docs/SEMANTICS.md) computes for the exported graph,
and the exporter's golden pairs verify.

Run from the repository root (about 10-20 s on the shared 2 cores, no GPU):
    /usr/bin/python3 -m unittest tests.python.test_torch_imc -v
    /usr/bin/python3 -m unittest discover -s tests/python -v

The slow end-to-end check (trained LeNet-5 on the 10k test set: PyTorch == imcsim run) is
`scripts/train_zoo.py` (see workloads/zoo/README.md), not part of this file.
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
    import torch.nn.functional as Fn
    HAVE_TORCH = True
except ImportError:          # pragma: no cover
    HAVE_TORCH = False

from imcsim_py import export as E  # noqa: E402
from imcsim_py import reference as R  # noqa: E402

if HAVE_TORCH:
    from imcsim_py import torch_imc as ti  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _pixels(rng, n, shape):
    return rng.integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)


if HAVE_TORCH:
    class OneLayer(nn.Module):
        """ImcInput -> IMC conv (-> pool) -> flatten -> IMC linear (float logits)."""

        def __init__(self, cfg, cfg2, *, in_shape=(2, 9, 9), cout=5, k=3, stride=1, pad=1,
                     relu=True, act_bits=8, in_kw=None, pool=None, out_signed=False,
                     classes=4):
            super().__init__()
            self.inp = ti.ImcInput(in_shape, **(in_kw or {}))
            self.conv = ti.ImcConv2d(in_shape[0], cout, k, stride, pad, relu=relu,
                                     out_bits=act_bits, out_signed=out_signed, cfg=cfg)
            H = (in_shape[1] + 2 * pad - k) // stride + 1
            if pool == "max":
                self.pool = nn.MaxPool2d(2, 2, 1)
                H = (H + 2 - 2) // 2 + 1
            elif pool == "avg":
                self.pool = ti.QAvgPool2d(2, 2, 1, out_bits=act_bits)
                H = (H + 2 - 2) // 2 + 1
            else:
                self.pool = nn.Identity()
            self.fc = ti.ImcLinear(cout * H * H, classes, out_bits=0, cfg=cfg2)

        def forward(self, x):
            x = self.pool(self.conv(self.inp(x)))
            return self.fc(torch.flatten(x, 1))

    class SmallResNet(nn.Module):
        """Residual CNN using every supported digital op."""

        def __init__(self, cfg):
            super().__init__()
            self.inp = ti.ImcInput((1, 28, 28), mean=0.3, std=0.35, scale=4.0 / 255,
                                   zero_point=32, bits=7)
            self.stem = ti.ImcConv2d(1, 4, 3, 2, 1, relu=True, cfg=cfg)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.relu1 = ti.QReLU(6)
            self.c1 = ti.ImcConv2d(4, 6, 3, 1, 1, relu=True, cfg=cfg, out_bits=6)
            self.c2 = ti.ImcConv2d(6, 4, 3, 1, 1, cfg=cfg, out_signed=True)
            self.add = ti.QAdd(relu=False, out_bits=8, out_signed=True)
            self.relu2 = nn.ReLU()
            self.gap = ti.QAvgPool2d(None, out_bits=8)
            self.fc = ti.ImcLinear(4, 10, out_bits=8, out_signed=True, cfg=cfg)

        def forward(self, x):
            x = self.pool(self.stem(self.inp(x)))
            y = self.c2(self.c1(self.relu1(x)))
            x = Fn.relu(self.relu2(self.add(y, x)))
            return self.fc(self.gap(x).flatten(1))


def _calibrated(model, pixels, adc=True):
    ti.prepare(model)
    ti.init_act_ranges(model, pixels)
    ti.set_quantized(model, True)
    if adc:
        ti.calibrate_adcs(model, pixels, percentile=99.0)
    model.eval()
    return model


def _torch_eval(model, pixels):
    shape = next(m for m in model.modules() if isinstance(m, ti.ImcInput)).shape
    with torch.no_grad():
        return model(torch.from_numpy(pixels).float().reshape((len(pixels),) + shape))


def _node_codes(model):
    """Forward hooks collecting every quantised module output as codes {graph node: codes}."""
    an = ti.analyse(model)
    store, hooks = {}, []
    for o in an.ops:
        src = o.params.get("out_src")
        if o.module is None or src is None:
            continue

        def hook(_m, _i, out, name=o.name, src=src):
            s, z, _ = src.quant_tuple()
            store[name] = (torch.round(out.double() / s) + z).to(torch.int64).numpy()
        hooks.append(o.module.register_forward_hook(hook))
    return store, hooks


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestLayerConfigs(unittest.TestCase):
    """Random small layers over encodings x tilings x ADCs x granularities x bits."""

    def setUp(self):
        torch.set_num_threads(1)

    def check_model(self, model, pixels, tag, record=True):
        g = ti.export_graph(model, tag, golden_pixels=pixels, golden_indices=(0, 1))
        ref = R.Reference(g)
        tensors = {}
        out_ref = ref.run(ref.input_codes(pixels), tensors=tensors)
        store, hooks = _node_codes(model)
        try:
            out = _torch_eval(model, pixels).numpy()
        finally:
            for h in hooks:
                h.remove()
        last = ref.output_info
        if last.bits == 0:
            self.assertTrue(np.array_equal(out, out_ref), f"{tag}: logits differ")
        else:
            codes = np.rint(out / last.scale) + last.zero_point
            self.assertTrue(np.array_equal(codes, out_ref), f"{tag}: output codes differ")
        for name, codes in store.items():
            node = next(n for n in g.nodes if n.name == name)
            self.assertTrue(np.array_equal(codes.reshape(len(pixels), -1),
                                           tensors[node.output].reshape(len(pixels), -1)),
                            f"{tag}: codes of node {name} differ")
        if record:
            # psums, ADC codes and accumulators of image 0 against the reference trace
            layers = ti.imc_layers(model)
            for _, m in layers:
                m.record = True
            try:
                _torch_eval(model, pixels[:1])
            finally:
                for _, m in layers:
                    m.record = False
            tr = {t.name: t for t in ref.trace(ref.input_codes(pixels[:1])[0])}
            for name, m in layers:
                rec = m.last_record
                t = tr[name]
                self.assertTrue(np.array_equal(rec["psums"][0].numpy(), t.psums), f"{tag}/{name} psums")
                self.assertTrue(np.array_equal(rec["codes"][0].numpy(), t.codes), f"{tag}/{name} codes")
                self.assertTrue(np.array_equal(rec["acc"][0].numpy(), t.acc), f"{tag}/{name} acc")
        self.assertEqual(E.check_goldens(g), [])
        return g

    def test_random_configurations(self):
        rng = np.random.default_rng(1)
        encodings = ["offset", "twos_complement", "differential_digital", "differential_analog"]
        adcs = [dict(adc_kind="ideal"),
                dict(adc_kind="linear", adc_bits=5, adc_rounding="floor"),
                dict(adc_kind="linear", adc_bits=4, adc_rounding="half_away", adc_signed=True),
                dict(adc_kind="linear", adc_bits=7, adc_rounding="half_away"),
                dict(adc_kind="nonlinear", adc_bits=3),
                dict(adc_kind="nonlinear", adc_bits=4)]
        grans = ["layer", "column", "slice_tile_column"]
        combos = list(itertools.product(encodings, adcs, grans))
        picks = rng.permutation(len(combos))[:14]
        for i, ci in enumerate(picks):
            enc, adc, gran = combos[ci]
            seed = int(rng.integers(1 << 30))
            torch.manual_seed(seed)
            r = np.random.default_rng(seed)
            cfg = ti.ImcConfig(
                weight_bits=int(r.integers(3, 9)), cell_bits=int(r.integers(1, 4)),
                dac_bits=int(r.integers(1, 4)), encoding=enc,
                tiling=["contiguous", "channel_aligned"][int(r.integers(2))],
                array_rows=int(r.choice([9, 16, 20, 128])), ashift=bool(r.integers(2)),
                adc=ti.AdcConfig(frac_bits=int(r.choice([0, 4, 8])))).replace(
                    adc_granularity=gran, **adc)
            cfg2 = cfg.replace(array_rows=int(r.choice([7, 32])), ashift=bool(r.integers(2)))
            signed_in = bool(r.integers(2))
            in_kw = dict(mean=0.5, std=0.5, scale=2.0 / 127, zero_point=64, bits=7) \
                if signed_in else dict(bits=int(r.integers(4, 9)),
                                       scale=1.0 / ((1 << int(r.integers(4, 9))) - 1))
            model = OneLayer(cfg, cfg2, in_shape=(int(r.integers(1, 4)), 7, 7),
                             cout=int(r.integers(2, 6)), k=int(r.choice([1, 3])),
                             stride=int(r.choice([1, 2])), pad=int(r.integers(0, 2)),
                             relu=bool(r.integers(2)), act_bits=int(r.integers(3, 9)),
                             in_kw=in_kw, pool=[None, "max", "avg"][int(r.integers(3))],
                             out_signed=bool(r.integers(2)))
            pixels = _pixels(r, 24, model.inp.shape)
            _calibrated(model, pixels)
            tag = f"config {i} ({enc}, {adc}, {gran}, seed {seed})"
            with self.subTest(tag):
                self.check_model(model, pixels, tag)

    def test_lut_equals_direct(self):
        torch.manual_seed(3)
        r = np.random.default_rng(3)
        cfg = ti.ImcConfig(array_rows=16).replace(adc_kind="nonlinear", adc_bits=4,
                                                  adc_granularity="column")
        model = OneLayer(cfg, cfg.replace(adc_kind="linear", adc_rounding="floor"))
        pixels = _pixels(r, 16, model.inp.shape)
        _calibrated(model, pixels)
        a = _torch_eval(model, pixels)
        for _, m in ti.imc_layers(model):
            m.use_lut = False
            m.invalidate()
        b = _torch_eval(model, pixels)
        self.assertTrue(torch.equal(a, b))

    def test_cached_plan_follows_new_weights(self):
        torch.manual_seed(4)
        r = np.random.default_rng(4)
        cfg = ti.ImcConfig(array_rows=16).replace(adc_kind="linear", adc_bits=6)
        model = OneLayer(cfg, cfg)
        pixels = _pixels(r, 8, model.inp.shape)
        _calibrated(model, pixels)
        a = _torch_eval(model, pixels)
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        sd["conv.weight"] = -sd["conv.weight"]
        sd["fc.adc_step_fx"] = sd["fc.adc_step_fx"] + 3
        model.load_state_dict(sd)                 # still in eval mode
        b = _torch_eval(model, pixels)
        self.assertFalse(torch.equal(a, b))
        g = ti.build_graph(model, "reloaded")
        ref = R.Reference(g)
        self.assertTrue(np.array_equal(b.numpy(), ref.run(ref.input_codes(pixels))))


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestModels(unittest.TestCase):
    def setUp(self):
        torch.set_num_threads(1)
        if (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
            from imcsim_py import idx
            self.pixels, self.labels = idx.load_fashion_mnist("t10k", FMNIST)
        else:                                   # pragma: no cover
            r = np.random.default_rng(0)
            self.pixels = _pixels(r, 64, (28, 28))
            self.labels = r.integers(0, 10, 64)

    def test_small_resnet_all_ops(self):
        torch.manual_seed(5)
        cfg = ti.ImcConfig(array_rows=32, tiling="channel_aligned", ashift=True,
                           encoding="differential_analog", dac_bits=2).replace(
            adc_kind="linear", adc_bits=6, adc_signed=True, adc_granularity="slice_tile_column")
        model = SmallResNet(cfg)
        pix = self.pixels[:24]
        _calibrated(model, pix)
        g = TestLayerConfigs.check_model(self, model, pix, "small_resnet", record=False)
        ops = {n.WhichOneof("op") for n in g.nodes}
        self.assertEqual(ops, {"imc", "max_pool", "avg_pool", "add", "relu", "flatten"})

    def test_zoo_models_export_exactly(self):
        for name, kw in (("lenet5", {}),
                         ("resnet8", dict(depth=8, widths=(4, 8, 8)))):
            torch.manual_seed(7)
            cls = ti.models.LeNet5 if name == "lenet5" else ti.models.PreActResNet
            model = cls(ti.ImcConfig(), **kw)
            ti.fold_bn(model)
            pix = self.pixels[:12]
            _calibrated(model, pix)
            with self.subTest(name):
                TestLayerConfigs.check_model(self, model, pix, name, record=False)

    def test_training_forward_is_the_hardware_forward(self):
        """QAT forward (train mode, observers frozen) equals the exact eval forward up to
        float32 rounding; gradients reach every weight."""
        torch.manual_seed(11)
        model = ti.models.LeNet5(ti.ImcConfig())
        pix = self.pixels[:32]
        _calibrated(model, pix)
        ev = _torch_eval(model, pix)
        model.train()
        for _, q in ti.act_quants(model):
            q.observe = False
        x = torch.from_numpy(pix).float().unsqueeze(1)
        out = model(x)
        # the float32 training path may round differently at rare requantisation ties
        agree = (out.argmax(1) == ev.argmax(1)).float().mean().item()
        self.assertGreaterEqual(agree, 0.9)
        self.assertLess((out.double() - ev).abs().median().item(), 0.05)
        loss = Fn.cross_entropy(out, torch.from_numpy(self.labels[:32].astype(np.int64)))
        loss.backward()
        for n, p in model.named_parameters():
            self.assertIsNotNone(p.grad, n)
            self.assertTrue(torch.isfinite(p.grad).all(), n)


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestMethods(unittest.TestCase):
    def test_raoq_switch(self):
        from imcsim_py.torch_imc import methods as MT
        g = torch.Generator().manual_seed(0)
        self.assertAlmostEqual(float(MT.kurtosis(torch.rand(200000, generator=g))), 1.8, 1)
        self.assertAlmostEqual(float(MT.kurtosis(torch.randn(200000, generator=g))), 3.0, 1)
        meth = MT.METHODS["raoq"](kurtosis_lambda=1e-2)
        cfg = meth.configure(ti.ImcConfig())
        self.assertTrue(cfg.ashift)
        torch.manual_seed(0)
        model = ti.models.LeNet5(cfg)
        ti.prepare(model)
        ti.set_quantized(model, True)
        loss = meth.penalty(model)
        loss.backward()
        self.assertGreater(float(loss), 0)
        self.assertTrue(all(m.weight.grad is not None and float(m.weight.grad.abs().sum()) > 0
                            for _, m in ti.imc_layers(model)))
        self.assertIsNone(MT.METHODS["plain-qat"]().penalty(model))


@unittest.skipUnless(HAVE_TORCH, "PyTorch not installed")
class TestExporterErrors(unittest.TestCase):
    def assertUnsupported(self, model, *needles):
        with self.assertRaises(ti.UnsupportedLayer) as cm:
            ti.analyse(model)
        msg = str(cm.exception)
        for n in needles:
            self.assertIn(n, msg)

    def test_unsupported_module_named(self):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp = ti.ImcInput((1, 8, 8))
                self.body = nn.Sequential(ti.ImcConv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
                self.fc = ti.ImcLinear(32, 2, out_bits=0)

            def forward(self, x):
                return self.fc(self.body(self.inp(x)).flatten(1))
        self.assertUnsupported(M(), "body.1", "torch.nn.modules.conv.Conv2d",
                               "ImcConv2d")

    def test_plain_add_rejected(self):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp = ti.ImcInput((1, 8, 8))
                self.c = ti.ImcConv2d(1, 1, 3, padding=1)
                self.fc = ti.ImcLinear(64, 2, out_bits=0)

            def forward(self, x):
                x = self.inp(x)
                return self.fc((self.c(x) + x).flatten(1))
        self.assertUnsupported(M(), "QAdd", "add")

    def test_float_output_must_be_last(self):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp = ti.ImcInput((1, 4, 4))
                self.a = ti.ImcLinear(16, 4, out_bits=0)
                self.b = ti.ImcLinear(4, 2, out_bits=0)

            def forward(self, x):
                return self.b(self.a(self.inp(x).flatten(1)))
        self.assertUnsupported(M(), "only the last layer")

    def test_bn_and_prepare_errors(self):
        m = ti.models.LeNet5()
        ti.set_quantized(m, True)
        m.eval()
        with self.assertRaisesRegex(RuntimeError, "prepare"):
            m(torch.zeros(1, 1, 28, 28))
        m = ti.models.PreActResNet(depth=8, widths=(2, 2, 2))
        ti.set_quantized(m, True)
        m.eval()
        ti.prepare(m)
        with self.assertRaisesRegex(RuntimeError, "fold_bn"):
            m(torch.zeros(1, 1, 28, 28))


if __name__ == "__main__":
    unittest.main()
