#!/usr/bin/python3
"""Transformer-encoder workloads on Fashion-MNIST (scripts/imcsim_py/transformer.py).

``random``: random weights (seeded): 2 post-LN encoder layers, d = 64, 4 heads, FFN 256,
16 tokens (7x7 patches); golden pairs and the reference accuracy on the first --images test
images, so that `imcsim run` and the golden tests check the whole encoder bit-exactly.

    /usr/bin/python3 scripts/make_transformer_workloads.py random --out workloads/transformer/vit_tiny_random.imcg
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
from imcsim_py import export as E  # noqa: E402
from imcsim_py import idx  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py import transformer as TF  # noqa: E402
from imcsim_py.graph_pb import save_graph  # noqa: E402

EXPORTER = "scripts/make_transformer_workloads.py 1"


def finish(b, args, method, settings, float_acc=None):
    """Goldens, reference accuracy on the first args.images test images, provenance, write."""
    g = b.g
    test_x, test_y = idx.load_fashion_mnist("t10k", args.dataset_dir)
    ref = R.Reference(g)
    t0 = time.time()
    n = min(args.images, len(test_x))
    acc = ref.accuracy(test_x[:n], test_y[:n]) if n else 0.0
    print(f"reference accuracy {acc:.4f} on {n} test images ({time.time() - t0:.1f} s)")
    E.add_goldens(g, test_x, test_y, list(range(args.goldens)), ref)
    problems = E.check_goldens(g, R.Reference(g, use_lut=False))
    if problems:
        raise SystemExit(f"golden self-check failed: {problems[:3]}")
    p = g.provenance
    p.exporter = EXPORTER
    p.command = "/usr/bin/python3 " + " ".join(sys.argv)
    p.seed = args.seed
    p.method = method
    p.method_settings_json = settings
    p.dataset = "fashion-mnist"
    p.reference_accuracy = acc
    p.reference_images = n
    if float_acc is not None:
        p.float_accuracy = float_acc
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_graph(g, args.out)
    print(f"wrote {args.out}: {len(g.nodes)} nodes, {len(g.golden)} golden pairs")


def cmd_random(args):
    cfg = TF.Config(d=args.d, heads=args.heads, ffn=args.ffn, layers=args.layers, patch=args.patch)
    rng = np.random.default_rng(args.seed)
    params = TF.init_params(rng, cfg)
    train_x, _ = idx.load_fashion_mnist("train", args.dataset_dir)
    calib = train_x[:args.calib_images].reshape(-1, 1, 28, 28).astype(np.int64)   # codes = pixels
    b = TF.build_graph(params, cfg, calib, "vit_tiny_random")
    settings = (f'{{"d": {cfg.d}, "heads": {cfg.heads}, "ffn": {cfg.ffn}, "layers": {cfg.layers}, '
                f'"tokens": {cfg.tokens}, "calib_images": {args.calib_images}}}')
    finish(b, args, "random-weights", settings)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random", help="random-weight encoder with goldens")
    for p in (r,):
        p.add_argument("--out", required=True)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--d", type=int, default=64)
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--ffn", type=int, default=256)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--patch", type=int, default=7)
        p.add_argument("--calib-images", type=int, default=128)
        p.add_argument("--images", type=int, default=1000, help="test images for the reference accuracy")
        p.add_argument("--goldens", type=int, default=3)
        p.add_argument("--dataset-dir", default=idx.DEFAULT_FMNIST_DIR)
    args = ap.parse_args()
    {"random": cmd_random}[args.cmd](args)


if __name__ == "__main__":
    main()
