#!/usr/bin/python3
"""Transformer-encoder workloads on Fashion-MNIST (scripts/imcsim_py/transformer.py).

``random``: random weights (seeded): 2 post-LN encoder layers, d = 64, 4 heads, FFN 256,
16 tokens (7x7 patches); golden pairs and the reference accuracy on the first --images test
images, so that `imcsim run` and the golden tests check the whole encoder bit-exactly.

    /usr/bin/python3 scripts/make_transformer_workloads.py random --out workloads/transformer/vit_tiny_random.imcg

``train``: the same architecture trained in float with PyTorch on the training set, then
quantised after training (8-bit weights per output channel, 8-bit activations calibrated on
training images); float accuracy, reference accuracy and goldens recorded in the graph.

    /usr/bin/python3 scripts/make_transformer_workloads.py train --out workloads/transformer/vit_fmnist.imcg
"""
from __future__ import annotations

import argparse
import math
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


def train_params(args, cfg):
    """Trains the float encoder with PyTorch (AdamW, cosine schedule); returns the numpy
    parameters (transformer.init_params names) and the float test accuracy."""
    import torch
    import torch.nn as nn
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(args.seed)
    train_x, train_y = idx.load_fashion_mnist("train", args.dataset_dir)
    test_x, test_y = idx.load_fashion_mnist("t10k", args.dataset_dir)
    P, n = cfg.patch, cfg.image // cfg.patch

    def tokens(x):
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, n, P, n, P) / 255.0
        return x.permute(0, 1, 3, 2, 4).reshape(x.shape[0], n * n, P * P)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(cfg.d, cfg.d) for _ in range(4))
            self.ffn1, self.ffn2 = nn.Linear(cfg.d, cfg.ffn), nn.Linear(cfg.ffn, cfg.d)
            self.ln1, self.ln2 = nn.LayerNorm(cfg.d, eps=cfg.ln_eps), nn.LayerNorm(cfg.d, eps=cfg.ln_eps)

        def forward(self, h):
            B, T, _ = h.shape
            dh = cfg.d // cfg.heads
            split = lambda z: z.reshape(B, T, cfg.heads, dh).transpose(1, 2)  # noqa: E731
            s = split(self.q(h)) @ split(self.k(h)).transpose(2, 3) / math.sqrt(dh)
            c = (s.softmax(-1) @ split(self.v(h))).transpose(1, 2).reshape(B, T, cfg.d)
            h = self.ln1(h + self.o(c))
            return self.ln2(h + self.ffn2(nn.functional.gelu(self.ffn1(h))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(cfg.patch_dim, cfg.d)
            self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.d) * 0.1)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.head = nn.Linear(cfg.d, cfg.classes)

        def forward(self, t):
            h = self.embed(t) + self.pos
            for blk in self.blocks:
                h = blk(h)
            return self.head(h.mean(1))

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.05)
    n_train = min(args.train_images, len(train_x))
    X, Y = tokens(train_x[:n_train]), torch.as_tensor(train_y[:n_train].astype(np.int64))
    steps = args.epochs * (len(X) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for ep in range(args.epochs):
        perm = torch.randperm(len(X), generator=g)
        net.train()
        for i in range(len(X) // args.batch):
            j = perm[i * args.batch:(i + 1) * args.batch]
            loss = nn.functional.cross_entropy(net(X[j]), Y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {ep + 1}/{args.epochs}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(tokens(test_x[i:i + 1000])).argmax(1) for i in range(0, len(test_x), 1000)])
    float_acc = float((pred.numpy() == test_y).mean())
    print(f"float test accuracy {float_acc:.4f}")
    sd = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    p = {"embed.w": sd["embed.weight"], "embed.b": sd["embed.bias"], "pos": sd["pos"],
         "head.w": sd["head.weight"], "head.b": sd["head.bias"]}
    for i in range(cfg.layers):
        for nm in ("q", "k", "v", "o", "ffn1", "ffn2"):
            p[f"l{i}.{nm}.w"], p[f"l{i}.{nm}.b"] = sd[f"blocks.{i}.{nm}.weight"], sd[f"blocks.{i}.{nm}.bias"]
        for ln in ("ln1", "ln2"):
            p[f"l{i}.{ln}.g"], p[f"l{i}.{ln}.b"] = sd[f"blocks.{i}.{ln}.weight"], sd[f"blocks.{i}.{ln}.bias"]
    return p, float_acc


def cmd_train(args):
    cfg = TF.Config(d=args.d, heads=args.heads, ffn=args.ffn, layers=args.layers, patch=args.patch)
    params, float_acc = train_params(args, cfg)
    test_x, _ = idx.load_fashion_mnist("t10k", args.dataset_dir)
    numpy_float = TF.float_forward(params, cfg, test_x[:500])
    train_x, _ = idx.load_fashion_mnist("train", args.dataset_dir)
    calib = train_x[:args.calib_images].reshape(-1, 1, 28, 28).astype(np.int64)
    b = TF.build_graph(params, cfg, calib, "vit_fmnist")
    settings = (f'{{"d": {cfg.d}, "heads": {cfg.heads}, "ffn": {cfg.ffn}, "layers": {cfg.layers}, '
                f'"tokens": {cfg.tokens}, "epochs": {args.epochs}, "batch": {args.batch}, "lr": {args.lr}, '
                f'"train_images": {args.train_images}, "calib_images": {args.calib_images}, '
                f'"quantisation": "post-training, 8-bit"}}')
    del numpy_float
    finish(b, args, "float-training + post-training quantisation", settings, float_acc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random", help="random-weight encoder with goldens")
    t = sub.add_parser("train", help="train the float encoder (PyTorch), quantise, export with goldens")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--train-images", type=int, default=60000, help="the first N training images")
    for p in (r, t):
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
    {"random": cmd_random, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
