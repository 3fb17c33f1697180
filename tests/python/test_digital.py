"""The numpy reference of the digital-unit operations (scripts/imcsim_py/digital.py) against
independent loop / pure-Python versions, hand-derived values, the corpus generator's
reproducibility, and its bad-input errors.

    /usr/bin/python3 -m unittest tests.python.test_digital -v   (from the repository root)
"""

import math
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from imcsim_py import digital as D  # noqa: E402
from imcsim_py import digital_export as DX  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_pb import load_graph  # noqa: E402

CORPUS = REPO / "tests" / "data" / "digital_ops"


class IntegerSqrt(unittest.TestCase):
    def test_equals_math_isqrt(self):
        rng = np.random.default_rng(1)
        v = np.concatenate([np.arange(0, 2000), rng.integers(0, 1 << 62, size=5000),
                            np.array([(1 << 62) - 1, 1 << 62, 2147483647 ** 2, 2147483647 ** 2 - 1])])
        r = D.isqrt(v)
        self.assertEqual([int(x) for x in r], [math.isqrt(int(x)) for x in v])


class Ops(unittest.TestCase):
    def test_softmax_equal_scores_and_table(self):
        tab = DX.softmax_exp_table(0.5, 3)
        self.assertEqual(tab[0], 1 << 30)
        self.assertEqual(tab[2], round((1 << 30) * math.exp(-1.0)))
        y = D.softmax(np.array([[5, 5, 5, 5]]), tab)
        self.assertTrue(np.all(y == 0.25))
        y = D.softmax(np.array([[7, 5]]), tab)     # e = [2^30, E[2]]
        self.assertEqual(y[0, 1], float(tab[2]) / float(tab[0] + tab[2]))

    def test_layer_norm_hand_values(self):
        # x = [0, 2] - 0: S1 = 2, c = [-2, 2], V = 8, R = isqrt(8 * 2) = 4, n = D c / R = [-1, 1].
        y = D.layer_norm(np.array([[0, 2]]), 0, [2.0, 3.0], [0.5, -0.5], 0)
        self.assertEqual(list(y[0]), [-1.5, 2.5])
        # a constant row gives beta whatever eps_int
        for eps in (0, 12345):
            y = D.layer_norm(np.array([[9, 9, 9]]), 3, [2.0, 3.0, 4.0], [0.5, -0.5, 0.0], eps)
            self.assertEqual(list(y[0]), [0.5, -0.5, 0.0])

    def test_attention_against_loops(self):
        rng = np.random.default_rng(2)
        T, T2, Dm, H = 3, 4, 6, 2
        q = rng.integers(0, 16, size=(1, T, Dm))
        k = rng.integers(0, 16, size=(1, T2, Dm))
        y = D.attention_scores(q, 3, 0.5, k, 7, 0.25, H, 0.125)
        dh = Dm // H
        for h in range(H):
            for i in range(T):
                for j in range(T2):
                    acc = sum(int(q[0, i, h * dh + e] - 3) * int(k[0, j, h * dh + e] - 7) for e in range(dh))
                    self.assertEqual(y[0, h, i, j], float(acc) * ((0.5 * 0.25) * 0.125))
        p = rng.integers(0, 256, size=(1, H, T, T2))
        v = rng.integers(0, 16, size=(1, T2, Dm))
        c = D.attention_context(p, 0, 1 / 255, v, 8, 0.1)
        for i in range(T):
            for d in range(Dm):
                h = d // dh
                acc = sum(int(p[0, h, i, j]) * int(v[0, j, d] - 8) for j in range(T2))
                self.assertEqual(c[0, i, d], float(acc) * ((1 / 255) * 0.1))

    def test_depthwise_conv_against_loops(self):
        rng = np.random.default_rng(3)
        x = rng.integers(0, 8, size=(1, 3, 5, 4))
        W = rng.integers(-4, 4, size=(3, 1, 3, 3))
        y = D.digital_conv(x, 2, 0.5, W, [1.0, 2.0, 0.25], [0.0, 0.0, 0.0], False, 3, 3, 2, 1, 1, 1, 3)
        for c in range(3):
            for oy in range(y.shape[2]):
                for ox in range(y.shape[3]):
                    acc = 0
                    for i in range(3):
                        for j in range(3):
                            yy, xx = oy * 2 - 1 + i, ox - 1 + j
                            if 0 <= yy < 5 and 0 <= xx < 4:
                                acc += int(x[0, c, yy, xx] - 2) * int(W[c, 0, i, j])
                    self.assertEqual(y[0, c, oy, ox], float(acc) * (0.5 * [1.0, 2.0, 0.25][c]))


class Corpus(unittest.TestCase):
    def test_goldens_hold(self):
        from imcsim_py import export as E
        for f in sorted(CORPUS.glob("*.imcg")):
            g = load_graph(f)
            self.assertEqual(E.check_goldens(g), [], f.name)

    def test_generator_reproduces_the_corpus(self):
        sys.path.insert(0, str(CORPUS))
        import make_digital_ops as M
        with tempfile.TemporaryDirectory() as tmp:
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                sys.argv = ["make_digital_ops.py", tmp]
                M.main()
            for f in sorted(CORPUS.glob("*.imcg")):
                self.assertEqual((Path(tmp) / f.name).read_bytes(), f.read_bytes(), f.name)

    def test_bad_table_names_the_node(self):
        g = load_graph(CORPUS / "attention.imcg")
        for n in g.nodes:
            if n.name == "softmax":
                del n.softmax.exp_table[-1]
        with self.assertRaisesRegex(R.GraphError, "node 'softmax'.*exp_table"):
            R.Reference(g)
        g = load_graph(CORPUS / "attention.imcg")
        for n in g.nodes:
            if n.name == "gelu":
                n.lut.table.append(0)
        with self.assertRaisesRegex(R.GraphError, "node 'gelu'.*lut.table"):
            R.Reference(g)


if __name__ == "__main__":
    unittest.main()
