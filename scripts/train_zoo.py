#!/usr/bin/python3
"""Train a torch_imc model-zoo CNN on Fashion-MNIST and export it to the imcsim graph format.

    /usr/bin/python3 scripts/train_zoo.py --model lenet5            # full run -> workloads/zoo/
    /usr/bin/python3 scripts/train_zoo.py --model resnet20
    /usr/bin/python3 scripts/train_zoo.py --model lenet5 --quick    # smoke run (< 2 min)
    /usr/bin/python3 scripts/train_zoo.py --verify workloads/zoo/lenet5 --imcsim build/imcsim
                                                                    # slow contract check

Pipeline (default method "plain-qat"; "raoq" adds A-shift and the kurtosis penalty during
both QAT phases; every phase is seeded and deterministic):
 1. float training (Adam, cosine schedule; BatchNorm where the model has it);
 2. BatchNorm folded into the convolutions; activation ranges = max over calibration images
    of the float model;
 3. QAT with an IDEAL ADC (fake-quantised weights per column and activations, STE);
 4. ADC calibration (scripts/imcsim_py/calibrate.py rules, exact partial-sum histograms,
    layer by layer) and QAT fine-tuning with the calibrated ADC in the forward pass
    (hardware numerics forward, straight-through backward), activation ranges frozen;
 5. evaluation of the exact torch_imc model (eval mode = docs/SEMANTICS.md) on the test set;
    export with torch_imc.export_graph (golden pairs of test images 0-3 by reference.py);
    reference.py accuracy of the exported graph; optionally `imcsim run` on it (--imcsim).
The run fails (exit 1) if the PyTorch and the reference (or imcsim) accuracies differ.

Writes <out-dir>/<name>.imcg, <name>.pt (the trained torch_imc state dict, for --verify),
<name>.json (settings, accuracies, timings) and regenerates <out-dir>/README.md from every
<name>.json there (plus <out-dir>/NOTES.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402

from imcsim_py import idx  # noqa: E402
from imcsim_py import reference as R  # noqa: E402
from imcsim_py.graph_pb import save_graph  # noqa: E402

EXPORTER = "scripts/train_zoo.py 1 (torch_imc)"
GOLDEN_INDICES = (0, 1, 2, 3)

# Per-model defaults (full runs). Steps are optimiser steps; epochs are over the training set.
ZOO = {
    "lenet5": dict(
        desc="LeNet-5-like: conv(1->6, 5x5, pad 2)+ReLU, maxpool 2, conv(6->16, 5x5)+ReLU, "
             "maxpool 2, fc(400->120)+ReLU, fc(120->84)+ReLU, fc(84->10)",
        float_epochs=10, float_lr=2e-3, qat_epochs=1, qat_lr=2e-4, adc_steps=400, adc_lr=1e-4,
        batch_size=128, adc_batch_size=64),
    "resnet20": dict(
        desc="pre-activation ResNet-20 (3 stages x 3 blocks, widths {w}), BN folded, "
             "1x1-conv shortcuts at stage changes, global average pool, fc",
        widths=(8, 16, 32), float_epochs=3, float_lr=3e-3, qat_epochs=0.5, qat_lr=2e-4,
        adc_steps=150, adc_lr=5e-5, batch_size=128, adc_batch_size=32),
}
QUICK = dict(float_steps=250, qat_steps=60, adc_steps=25, calib_images=64, act_images=512,
             test_images=500, train_images=16000, base_steps=4)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(ti, name, cfg, widths=None):
    if name == "lenet5":
        return ti.models.LeNet5(cfg)
    return ti.models.PreActResNet(cfg, depth=20, widths=tuple(widths))


def evaluate(torch, model, x, y, bs=500):
    """Top-1 accuracy and predictions of `model` (its current mode: float or quantised;
    eval() => exact) on uint8 pixels x [n][28][28]."""
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = torch.from_numpy(x[i:i + bs]).float().unsqueeze(1)
            preds.append(model(xb).argmax(1).numpy())
    p = np.concatenate(preds)
    return float(np.mean(p == y[:len(p)])), p


def train_phase(torch, model, X, Y, steps, groups, bs, gen, label, method, log_every=100):
    """Adam (parameter groups `groups`, each with its lr) with a cosine schedule to lr/20
    over `steps` steps of batches of `bs`; loss = method.loss(...), method.after_step after
    each step."""
    if steps <= 0:
        return 0.0
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps,
                                                       eta_min=groups[0]["lr"] / 20)
    lossf = torch.nn.CrossEntropyLoss()
    model.train()
    t0 = time.time()
    perm = torch.randperm(len(X), generator=gen)
    pos, tot, n = 0, 0.0, 0
    for step in range(steps):
        if pos + bs > len(X):
            perm = torch.randperm(len(X), generator=gen)
            pos = 0
        b = perm[pos:pos + bs]
        pos += bs
        opt.zero_grad()
        loss = method.loss(model, X[b], Y[b], lossf)
        loss.backward()
        opt.step()
        sched.step()
        method.after_step(model)
        tot += float(loss) * len(b)
        n += len(b)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log(f"{label} step {step + 1}/{steps}: loss {tot / n:.4f} "
                f"({time.time() - t0:.0f} s)")
            tot, n = 0.0, 0
    return time.time() - t0


def arch_config_for(cfg: dict):
    """Partial arch config (docs/arch_config.md; omitted keys take the defaults of
    arch_configs/default.json) whose array / DAC match a graph's mapping, or None when the
    default architecture fits (2-bit cells, 1-bit DAC, 128 rows, ADC <= 8 bits)."""
    arch = {}
    if cfg["cell_bits"] != 2 or cfg["array_rows"] != 128:
        arch["array"] = {"cell_bits": cfg["cell_bits"], "rows": cfg["array_rows"]}
    if cfg["dac_bits"] != 1:
        arch["dac"] = {"bits": cfg["dac_bits"]}
    if cfg["adc"]["kind"] != "ideal" and cfg["adc"]["bits"] > 8:
        arch["adc"] = {"bits": cfg["adc"]["bits"]}
    if not arch:
        return None
    return dict(name="train_zoo mapping", description="arch_configs/default.json with the "
                "array / DAC / ADC of the exported graph's mapping", **arch)


def run_imcsim(binary, graph, n_images, out_dir, dataset_dir, arch=None, threads=0):
    cmd = [str(binary), "run", "--graph", str(graph), "--images", str(n_images), "-q",
           "--out", str(out_dir), "--dataset-dir", str(dataset_dir), "--timing", "analytical"]
    if threads:
        cmd += ["--threads", str(threads)]
    if arch is not None:
        cmd += ["--arch", str(arch)]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"imcsim failed ({shlex.join(cmd)}): {res.stderr.strip()}")
    rep = json.loads((Path(out_dir) / "report.json").read_text())
    return rep["accuracy"], time.time() - t0, shlex.join(cmd)


def method_args(ap):
    g = ap.add_argument_group("methods (scripts/imcsim_py/torch_imc/methods.py)")
    g.add_argument("--method", choices=["plain-qat", "raoq", "columnquant", "pim-qat", "bs-kmq"],
                   default="plain-qat",
                   help="plain-qat; raoq (A-shift, W-reshape kurtosis penalty, BitAug, "
                        "ADC-LoRA); columnquant (channel-aligned tiles, LSQ column weight "
                        "scales, learned per-(slice, tile, column) psum steps); pim-qat "
                        "(decomposition scheme, rescaling, noise-aware training, adjusted "
                        "precision, BN calibration); bs-kmq (NL-ADC, BS-KMQ references, "
                        "low-bit fine-tuning)")
    g.add_argument("--kurtosis-lambda", type=float, default=6e-4, help="raoq: penalty weight")
    g.add_argument("--kurtosis-target", type=float, default=1.8, help="raoq: target kurtosis")
    g.add_argument("--no-ashift", action="store_true", help="raoq: without A-shift")
    g.add_argument("--bitaug-offsets", default="-1,1",
                   help="raoq: BitAug ADC bit offsets b' - b (comma list; '' = off)")
    g.add_argument("--bitaug-weight", type=float, default=1.0, help="raoq: BitAug loss weight")
    g.add_argument("--lora-rank", type=int, default=4, help="raoq: ADC-LoRA rank")
    g.add_argument("--lora-fraction", type=float, default=0.5,
                   help="raoq: fraction of the ADC fine-tuning steps done with ADC-LoRA "
                        "(frozen weights)")
    g.add_argument("--lora-lr", type=float, default=1e-3, help="raoq: ADC-LoRA learning rate")
    g.add_argument("--scale-lr-factor", type=float, default=0.01,
                   help="columnquant: LSQ weight-scale lr = factor x mean initial scale")
    g.add_argument("--adc-step-lr", type=float, default=5e-3,
                   help="columnquant: lr of the log ADC steps")
    g.add_argument("--pim-scheme", choices=["bit-serial", "differential", "multi-bit"],
                   default="bit-serial", help="pim-qat: decomposition scheme")
    g.add_argument("--noise-sigma", type=float, default=0.5,
                   help="pim-qat: training noise, partial-sum LSB")
    g.add_argument("--precision-delta", type=int, default=1,
                   help="pim-qat: train the ADC at b - delta bits")
    g.add_argument("--rescale-momentum", type=float, default=0.9, help="pim-qat: rescaling EMA")


def make_method(MT, args):
    offs = tuple(int(v) for v in args.bitaug_offsets.split(",") if v.strip())
    return MT.METHODS[args.method](
        kurtosis_lambda=args.kurtosis_lambda, kurtosis_target=args.kurtosis_target,
        ashift=not args.no_ashift, bitaug_offsets=offs, bitaug_weight=args.bitaug_weight,
        lora_rank=args.lora_rank, lora_fraction=args.lora_fraction,
        scale_lr_factor=args.scale_lr_factor, adc_step_lr=args.adc_step_lr,
        scheme=args.pim_scheme, noise_sigma=args.noise_sigma,
        precision_delta=args.precision_delta, rescale_momentum=args.rescale_momentum,
        seed=args.seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--model", choices=sorted(ZOO), default="lenet5")
    method_args(ap)
    ap.add_argument("--base", metavar="BASE",
                    help="fine-tune from a trained zoo model (BASE.pt / BASE.json, e.g. "
                         "workloads/zoo/lenet5): skip float training and ideal-ADC QAT, keep "
                         "its weights and activation ranges; calibrate the ADC on the first "
                         "--calib-images training images; fine-tune --adc-steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None,
                    help="output folder (default workloads/zoo; --quick: "
                         "results/scratch/zoo_quick)")
    ap.add_argument("--name", default=None, help="graph / file name (default: the model)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['float_steps']}+{QUICK['qat_steps']}+"
                         f"{QUICK['adc_steps']} steps on {QUICK['train_images']} training "
                         f"images, {QUICK['calib_images']} calibration images, "
                         f"{QUICK['test_images']} test images (with --base: "
                         f"{QUICK['base_steps']} fine-tuning steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--float-epochs", type=float)
    ap.add_argument("--qat-epochs", type=float)
    ap.add_argument("--adc-steps", type=int)
    ap.add_argument("--float-steps", type=int, help="override the float training steps")
    ap.add_argument("--qat-steps", type=int, help="override the ideal-ADC QAT steps")
    ap.add_argument("--adc-lr", type=float, default=None, help="lr of the ADC fine-tuning")
    ap.add_argument("--adc-batch-size", type=int, default=None)
    ap.add_argument("--widths", default=None, help="resnet20 stage widths, e.g. 8,16,32")
    ap.add_argument("--adc-bits", type=int, default=8)
    ap.add_argument("--adc-kind", choices=["linear", "nonlinear", "ideal"], default="linear")
    ap.add_argument("--adc-granularity", choices=["layer", "column", "slice_tile_column"],
                    default="layer")
    ap.add_argument("--adc-rounding", choices=["half_away", "floor"], default="half_away")
    ap.add_argument("--adc-signed", action="store_true", help="signed ADC codes")
    ap.add_argument("--encoding", default="offset",
                    choices=["offset", "twos_complement", "differential_digital",
                             "differential_analog"])
    ap.add_argument("--tiling", choices=["contiguous", "channel_aligned"], default="contiguous")
    ap.add_argument("--cell-bits", type=int, default=2)
    ap.add_argument("--dac-bits", type=int, default=1)
    ap.add_argument("--array-rows", type=int, default=128)
    ap.add_argument("--monitor-images", type=int, default=2000,
                    help="test images for the accuracy printed after ADC calibration "
                         "(before fine-tuning; default 2000; 0 = skip)")
    ap.add_argument("--calib-images", type=int, default=512,
                    help="training images for ADC calibration (default 512)")
    ap.add_argument("--act-images", type=int, default=5120,
                    help="training images for the activation ranges (default 5120)")
    ap.add_argument("--percentile", type=float, default=99.99,
                    help="ADC range percentile of the partial sums (default 99.99)")
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--reference-workers", type=int, default=1)
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference.py evaluation (the graph then records no "
                         "reference accuracy; --imcsim still checks PyTorch == imcsim)")
    ap.add_argument("--imcsim", default=None,
                    help="imcsim binary: also run the exported graph on the test images and "
                         "require the same accuracy")
    ap.add_argument("--imcsim-images", type=int, default=0,
                    help="with --imcsim: also run imcsim on this many test images (e.g. all "
                         "10000 when --test-images is smaller), recorded as "
                         "imcsim_accuracy_more")
    ap.add_argument("--imcsim-threads", type=int, default=0,
                    help="with --imcsim: imcsim run --threads (default 0 = all cores)")
    ap.add_argument("--data-dir", default=str(idx.DEFAULT_FMNIST_DIR))
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--verify", metavar="BASE",
                    help="no training: reload BASE.pt (the trained model) and BASE.json, "
                         "check that exporting it reproduces BASE.imcg and its goldens, "
                         "evaluate it with PyTorch on --test-images and (with --imcsim) "
                         "require imcsim's accuracy to be the same; e.g. workloads/zoo/lenet5")
    args = ap.parse_args(argv)
    if args.verify:
        return verify(args)

    command = shlex.join(["/usr/bin/python3", "scripts/train_zoo.py"] +
                         (sys.argv[1:] if argv is None else list(argv)))
    import torch
    from imcsim_py import torch_imc as ti
    from imcsim_py.torch_imc import methods as MT
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    base_summary = None
    if args.base:
        base_summary = json.loads(Path(args.base).with_suffix(".json").read_text())
        args.model = base_summary["model"]
    spec = dict(ZOO[args.model])
    name = args.name or (args.model if not args.base else f"{args.model}_{args.method}")
    out_dir = Path(args.out_dir or ("results/scratch/zoo_quick" if args.quick else
                                    "workloads/zoo"))
    out_dir.mkdir(parents=True, exist_ok=True)
    widths = tuple(int(v) for v in args.widths.split(",")) if args.widths else spec.get("widths")
    if base_summary is not None:
        widths = base_summary["settings"].get("widths") or widths

    tr_x, tr_y = idx.load_fashion_mnist("train", args.data_dir)
    te_x, te_y = idx.load_fashion_mnist("t10k", args.data_dir)
    n_test = min(args.test_images, len(te_x))
    if args.quick:
        sel = np.sort(rng.permutation(len(tr_x))[:QUICK["train_images"]])
        trn_x, trn_y = tr_x[sel], tr_y[sel]
        n_test = min(n_test, QUICK["test_images"])
        args.calib_images = min(args.calib_images, QUICK["calib_images"])
        args.act_images = min(args.act_images, QUICK["act_images"])
        args.monitor_images = min(args.monitor_images, QUICK["test_images"])
    else:
        trn_x, trn_y = tr_x, tr_y
    X = torch.from_numpy(trn_x).float().unsqueeze(1)
    Y = torch.from_numpy(trn_y.astype(np.int64))
    bs = spec["batch_size"]
    abs_ = args.adc_batch_size or spec["adc_batch_size"]
    adc_lr = args.adc_lr if args.adc_lr is not None else spec["adc_lr"]
    per_epoch = (len(X) + bs - 1) // bs
    if args.quick:
        f_steps, q_steps, a_steps = QUICK["float_steps"], QUICK["qat_steps"], QUICK["adc_steps"]
        if args.base:
            a_steps = QUICK["base_steps"]
        if args.adc_steps is not None:
            a_steps = args.adc_steps
    else:
        f_steps = int(round((args.float_epochs or spec["float_epochs"]) * per_epoch))
        q_steps = int(round((args.qat_epochs if args.qat_epochs is not None
                             else spec["qat_epochs"]) * per_epoch))
        a_steps = args.adc_steps if args.adc_steps is not None else spec["adc_steps"]
    if args.float_steps is not None:
        f_steps = args.float_steps
    if args.qat_steps is not None:
        q_steps = args.qat_steps
    if args.base:
        f_steps = q_steps = 0
    first_n = bool(args.base) or args.method == "bs-kmq"
    calib_idx = (np.arange(args.calib_images) if first_n else
                 np.sort(rng.permutation(len(tr_x))[:args.calib_images]))
    act_idx = np.sort(rng.permutation(len(tr_x))[:args.act_images])

    method = make_method(MT, args)
    cfg = ti.ImcConfig(weight_bits=8, cell_bits=args.cell_bits, dac_bits=args.dac_bits,
                       encoding=args.encoding, tiling=args.tiling, array_rows=args.array_rows,
                       array_cols=128, ashift=False,
                       adc=ti.AdcConfig(kind=args.adc_kind, bits=args.adc_bits, frac_bits=8,
                                        rounding=args.adc_rounding, signed=args.adc_signed,
                                        granularity=args.adc_granularity))
    cfg = method.configure(cfg)
    model = build(ti, args.model, cfg, widths)
    times = {}
    t_all = time.time()
    plain = MT.PlainQAT()

    if args.base:
        ti.fold_bn(model)
        load_state(torch, model, torch.load(Path(args.base).with_suffix(".pt")))
        ti.prepare(model)
        ti.set_quantized(model, True)
        float_acc = float(base_summary["float_accuracy"])
        qat_acc = float(base_summary["qat_ideal_adc_accuracy"])
        ranges = {n: float(q.amax) for n, q in ti.act_quants(model)}
        log(f"{name}: fine-tuning from {args.base} (float {float_acc:.4f}, ideal-ADC QAT "
            f"{qat_acc:.4f}, recorded on {base_summary['test_images']} test images)")
    else:
        ti.prepare(model)
        # 1. float
        ti.set_quantized(model, False)
        log(f"{name}: float training, {f_steps} steps of {bs}")
        times["float_train_s"] = train_phase(
            torch, model, X, Y, f_steps, plain.setup(model, spec["float_lr"]), bs, gen,
            "float", plain)
        ti.fold_bn(model)
        float_acc, _ = evaluate(torch, model, te_x[:n_test], te_y)
        log(f"float accuracy {float_acc:.4f} ({n_test} test images)")
        # 2-3. QAT, ideal ADC
        ranges = ti.init_act_ranges(model, tr_x[act_idx])
        ti.set_quantized(model, True)
        log(f"QAT (ideal ADC), {q_steps} steps of {bs}")
        pen = MT.PlainQAT()
        pen.penalty = method.penalty
        times["qat_train_s"] = train_phase(torch, model, X, Y, q_steps,
                                           plain.setup(model, spec["qat_lr"]), bs, gen, "QAT",
                                           pen)
        t0 = time.time()
        qat_acc, _ = evaluate(torch, model, te_x[:n_test], te_y)
        times["qat_eval_s"] = time.time() - t0
        log(f"QAT (ideal ADC) torch_imc accuracy {qat_acc:.4f} ({times['qat_eval_s']:.0f} s)")

    # 4. ADC calibration + fine-tuning with the ADC in the loop (the method's own phase)
    for _, q in ti.act_quants(model):
        q.observe = False
    t0 = time.time()
    notes = ti.calibrate_adcs(model, tr_x[calib_idx], percentile=args.percentile,
                              rule=method.calib_rule)
    times["adc_calibration_s"] = time.time() - t0
    n_mon = min(n_test, args.monitor_images)
    pre_acc = None
    if n_mon > 0:
        pre_acc, _ = evaluate(torch, model, te_x[:n_mon], te_y)
        log(f"ADC calibrated ({method.calib_rule}, {times['adc_calibration_s']:.0f} s): "
            f"accuracy before fine-tuning {pre_acc:.4f} ({n_mon} test images)")
    groups = method.setup(model, adc_lr)
    lora_steps = int(round(a_steps * method.lora_fraction)) if isinstance(method, MT.RAOQ) \
        and method.lora_rank > 0 else 0
    log(f"{method.name}: fine-tuning with the ADC, {a_steps - lora_steps} steps of {abs_}")
    times["adc_train_s"] = train_phase(torch, model, X, Y, a_steps - lora_steps, groups, abs_,
                                       gen, "QAT+ADC", method, log_every=25)
    if lora_steps:
        log(f"ADC-LoRA (rank {method.lora_rank}, weights frozen), {lora_steps} steps")
        times["lora_train_s"] = train_phase(torch, model, X, Y, lora_steps,
                                            method.start_lora(model, args.lora_lr), abs_, gen,
                                            "ADC-LoRA", method, log_every=25)
    final_notes = method.finalize(model, tr_x[calib_idx])
    model.eval()
    times["train_total_s"] = time.time() - t_all

    # 5. evaluation and export
    t0 = time.time()
    torch_acc, torch_pred = evaluate(torch, model, te_x[:n_test], te_y)
    times["torch_eval_s"] = time.time() - t0
    log(f"torch_imc (exact) accuracy {torch_acc:.4f} on {n_test} test images "
        f"({times['torch_eval_s']:.0f} s)")

    settings = {
        "model": args.model, "description": spec["desc"].format(w=widths),
        "widths": list(widths) if widths else None,
        "imc_config": cfg.to_dict(),
        "activations": "8-bit; unsigned (zero point 0) after ReLU, signed (zero point 128) on "
                       "the residual stream; scale = max over calibration images (float "
                       "model) / qmax, then EMA (0.99) of the batch max during ideal-ADC QAT, "
                       "frozen for ADC QAT",
        "weights": ("8-bit symmetric per output column, LSQ-learned s_w" if
                    args.method == "columnquant" else
                    "8-bit symmetric per output column, s_w = max|W[n]|/127, STE"),
        "input": "codes = raw pixels (scale 1/255, zero point 0, 8 bits)",
        "base": args.base, "base_command": base_summary["command"] if base_summary else None,
        "float": {"steps": f_steps, "batch_size": bs, "optimizer": "adam",
                  "lr": spec["float_lr"], "schedule": "cosine to lr/20",
                  "train_images": int(len(X))},
        "qat_ideal_adc": {"steps": q_steps, "batch_size": bs, "lr": spec["qat_lr"],
                          "schedule": "cosine to lr/20"},
        "qat_adc": {"steps": a_steps, "batch_size": abs_, "lr": adc_lr,
                    "lora_steps": lora_steps, "schedule": "cosine to lr/20",
                    "gradient": "STE: forward = exact hardware numerics, backward = ideal MAC"},
        "act_range_images": int(args.act_images),
        "adc_calibration": {"images": int(args.calib_images), "percentile": args.percentile,
                            "source": ("training set, first N images" if first_n else
                                       "training set, seeded subset"),
                            "rule": method.calib_rule,
                            "order": "layer by layer, upstream ADCs calibrated",
                            "layers": notes},
        "activation_ranges_initial": ranges,
        "method": args.method, "method_settings": method.settings(),
        "method_finalize": final_notes,
        "quick": args.quick, "threads": args.threads,
        "weight_kurtosis": MT.weight_kurtosis(model),
        # PyTorch's (exact) accuracy of the exported model on the first N test images
        # (also fake_quant_accuracy); tests/golden re-measures it with the C++ engine
        "torch_imc_accuracy": torch_acc, "torch_imc_test_images": n_test,
    }
    prov = dict(exporter=EXPORTER, command=command, seed=args.seed, method=args.method,
                method_settings_json=json.dumps(settings, sort_keys=True),
                dataset="fashion-mnist", float_accuracy=float_acc,
                fake_quant_accuracy=torch_acc,
                created_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                torch_version=torch.__version__)
    t0 = time.time()
    g = ti.export_graph(model, name, golden_pixels=te_x, golden_labels=te_y,
                        golden_indices=GOLDEN_INDICES, provenance=prov, num_classes=10)
    times["export_s"] = time.time() - t0
    ok = True
    ref_acc = None
    same = None
    if not args.no_reference:
        t0 = time.time()
        ref = R.Reference(g)
        _, ref_pred = ref.predict(te_x[:n_test], workers=args.reference_workers)
        ref_acc = float(np.mean(ref_pred == te_y[:n_test]))
        times["reference_eval_s"] = time.time() - t0
        same = int(np.sum(ref_pred == torch_pred))
        log(f"reference.py accuracy {ref_acc:.4f} ({times['reference_eval_s']:.0f} s); "
            f"{same}/{n_test} predictions identical to PyTorch's")
        g.provenance.reference_accuracy = ref_acc
        g.provenance.reference_images = n_test
        ok = same == n_test and ref_acc == torch_acc
    path = out_dir / f"{name}.imcg"
    save_graph(g, path)
    log(f"wrote {path} ({path.stat().st_size} bytes)")
    arch = arch_config_for(cfg.to_dict())
    arch_path = None
    if arch is not None:
        arch_path = out_dir / f"{name}.arch.json"
        arch_path.write_text(json.dumps(arch, indent=1) + "\n")
        log(f"wrote {arch_path} (imcsim run --arch: the default architecture does not fit)")
    torch.save(model.state_dict(), out_dir / f"{name}.pt")

    summary = {"name": name, "command": command, "seed": args.seed, "method": args.method,
               "model": args.model, "description": settings["description"],
               "base": args.base,
               "float_accuracy": float_acc, "qat_ideal_adc_accuracy": qat_acc,
               "adc_calibrated_accuracy_before_finetune": pre_acc,
               "adc_calibrated_accuracy_images": n_mon,
               "torch_imc_accuracy": torch_acc, "reference_accuracy": ref_acc,
               "test_images": n_test, "predictions_identical": same,
               "imcsim_accuracy": None, "imcsim_command": None, "times": times,
               "torch_version": torch.__version__, "threads": args.threads,
               "settings": settings, "graph": path.name, "bytes": path.stat().st_size,
               "arch": arch_path.name if arch_path else None,
               "created_utc": prov["created_utc"]}
    if args.imcsim:
        sim_out = REPO / "results" / "scratch" / f"zoo_{name}"
        acc, t_sim, sim_cmd = run_imcsim(args.imcsim, path, n_test, sim_out, args.data_dir,
                                         arch_path, args.imcsim_threads)
        times["imcsim_s"] = t_sim
        summary["imcsim_accuracy"] = acc.get("top1")
        summary["imcsim_command"] = sim_cmd
        log(f"imcsim accuracy {acc.get('top1')} ({t_sim:.0f} s)")
        ok = ok and abs(float(acc.get("top1")) - torch_acc) < 1e-12
        if args.imcsim_images > n_test:
            acc2, t2, cmd2 = run_imcsim(args.imcsim, path, args.imcsim_images, sim_out,
                                        args.data_dir, arch_path, args.imcsim_threads)
            times["imcsim_more_s"] = t2
            summary["imcsim_accuracy_more"] = acc2.get("top1")
            summary["imcsim_images_more"] = args.imcsim_images
            summary["imcsim_command_more"] = cmd2
            log(f"imcsim accuracy {acc2.get('top1')} on {args.imcsim_images} images "
                f"({t2:.0f} s)")
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if not args.no_readme and not args.quick and not args.base:
        write_readme(out_dir)
    log(f"done in {time.time() - t_all:.0f} s: float {float_acc:.4f}, torch_imc {torch_acc:.4f}"
        + (f", reference {ref_acc:.4f}" if ref_acc is not None else "")
        + (f", imcsim {summary['imcsim_accuracy']}" if args.imcsim else ""))
    if not ok:
        log("ERROR: PyTorch (torch_imc) and the reference / imcsim disagree")
        return 1
    return 0


def load_state(torch, model, sd):
    """Load a torch_imc state dict saved by this script: tolerates state dicts from before
    psum_scale existed, recreates LSQ weight scales (columnquant) and ignores ADC buffers
    whose shape differs (a base model fine-tuned with another ADC: recalibrated)."""
    from imcsim_py import torch_imc as ti
    from imcsim_py.torch_imc import methods as MT
    for n, m in ti.imc_layers(model):
        if f"{n}.w_scale" in sd and m.w_scale is None:
            MT.enable_lsq_weights(m)
    own = model.state_dict()
    keep = {}
    for k, v in sd.items():
        if k in own and own[k].shape != v.shape and ".adc_" in k:
            continue
        keep[k] = v
    missing, unexpected = model.load_state_dict(keep, strict=False)
    missing = [k for k in missing if not k.endswith("psum_scale") and ".adc_" not in k]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    for _, m in ti.imc_layers(model):
        m.invalidate()


def load_trained(ti, torch, base: Path):
    """(model, summary) of a trained zoo model saved by this script."""
    summ = json.loads(base.with_suffix(".json").read_text())
    st = summ["settings"]
    c = dict(st["imc_config"])
    c["adc"] = ti.AdcConfig(**c["adc"])
    cfg = ti.ImcConfig(**c)
    model = build(ti, summ["model"], cfg, st.get("widths"))
    ti.fold_bn(model)
    load_state(torch, model, torch.load(base.with_suffix(".pt")))
    ti.set_quantized(model, True)
    ti.prepare(model)
    model.eval()
    return model, summ


def verify(args):
    """The slow contract check of a saved zoo model: PyTorch == imcsim on the test set."""
    import torch
    from imcsim_py import export as E
    from imcsim_py import torch_imc as ti
    from imcsim_py.graph_pb import load_graph
    torch.set_num_threads(args.threads)
    base = Path(args.verify)
    model, summ = load_trained(ti, torch, base)
    g_file = load_graph(base.with_suffix(".imcg"))
    g_new = ti.build_graph(model, g_file.name, num_classes=g_file.num_classes)
    ok = True
    if list(g_new.nodes) != list(g_file.nodes) or g_new.input != g_file.input:
        log(f"ERROR: exporting {base}.pt does not reproduce {base}.imcg")
        ok = False
    problems = E.check_goldens(g_file)
    if problems:
        log(f"ERROR: goldens of {base}.imcg: {problems[:3]}")
        ok = False
    te_x, te_y = idx.load_fashion_mnist("t10k", args.data_dir)
    n = min(args.test_images, len(te_x))
    t0 = time.time()
    acc, _ = evaluate(torch, model, te_x[:n], te_y)
    log(f"{base}: PyTorch (torch_imc, exact) accuracy {acc:.4f} on {n} test images "
        f"({time.time() - t0:.0f} s); recorded: torch_imc {summ['torch_imc_accuracy']:.4f} on "
        f"{summ['test_images']}")
    if args.imcsim:
        out = REPO / "results" / "scratch" / f"zoo_verify_{base.name}"
        arch = base.parent / f"{base.name}.arch.json"
        sim, t_sim, cmd = run_imcsim(args.imcsim, base.with_suffix(".imcg"), n, out,
                                     args.data_dir, arch if arch.is_file() else None)
        log(f"imcsim accuracy {sim.get('top1')} ({t_sim:.0f} s): {cmd}")
        if abs(float(sim.get("top1")) - acc) > 1e-12:
            log("ERROR: PyTorch and imcsim accuracies differ")
            ok = False
    log("verify: OK" if ok else "verify: FAILED")
    return 0 if ok else 1


def write_readme(out_dir: Path):
    rows = []
    entries = []
    for p in sorted(out_dir.glob("*.json")):
        try:
            s = json.loads(p.read_text())
        except ValueError:
            continue
        if "torch_imc_accuracy" not in s:
            continue
        entries.append(s)
        t = s["times"]
        sim = "—" if s.get("imcsim_accuracy") is None else f"**{s['imcsim_accuracy']:.4f}**"
        c = s["settings"]["imc_config"]
        a = c["adc"]
        mapping = (f"{s['method']}; {c['encoding']}, Bc {c['cell_bits']}, Bdac {c['dac_bits']}, "
                   f"{c['tiling']} {c['array_rows']} rows{', A-shift' if c['ashift'] else ''}; "
                   f"{a['bits']}-bit {a['kind']} ADC ({a['granularity']})")
        rows.append(
            f"| `{s['graph']}` | {s['model']} | {mapping} | {s['seed']} | "
            f"{s['float_accuracy']:.4f} | "
            f"{s['qat_ideal_adc_accuracy']:.4f} | **{s['torch_imc_accuracy']:.4f}** | "
            f"{s['reference_accuracy']:.4f} | {sim} | {s['test_images']} | "
            f"{t['train_total_s'] / 60:.1f} min | {s['bytes'] // 1024} KiB |")
    cmds = "\n".join(f"/usr/bin/python3 {e['command'].split('/usr/bin/python3 ', 1)[-1]}"
                     for e in entries)
    text = f"""# Model zoo (torch_imc, Fashion-MNIST)

Trained and exported by `scripts/train_zoo.py` with the IMC-aware layers of
`scripts/imcsim_py/torch_imc/` (this file is regenerated by it from the `*.json` summaries
next to the graphs; the notes at the end are kept by hand in `NOTES.md`).

Hardware numerics of every IMC layer (default, method **plain-qat**): 8-bit weights
(symmetric, one scale per output column), OFFSET encoding in 2-bit cells, bit-serial inputs
(1-bit DAC), 8-bit activations, 128-row arrays with CONTIGUOUS row tiling, no A-shift, an
8-bit LINEAR ADC (round half away, unsigned codes, one step per layer, F = 8) calibrated on
training images (99.99 % percentile of the partial sums; rules of
`scripts/imcsim_py/calibrate.py`). The table's third column gives each graph's mapping.
Training: float (Adam, cosine), BN folded, QAT with an ideal ADC, then QAT with the
calibrated ADC in the forward pass (exact hardware forward, straight-through backward).

Accuracies on the Fashion-MNIST test set (number of images in the column "images"):
float = the float model in PyTorch; QAT = torch_imc with an ideal ADC; **torch_imc** = the
final model evaluated by PyTorch in eval mode (exact `docs/SEMANTICS.md` numerics, ADC
included); reference = `scripts/imcsim_py/reference.py` on the exported graph; imcsim =
`imcsim run` on the exported graph. Training time on the shared 2-core machine, 1 thread.

| graph | model | method; mapping; ADC | seed | float | QAT (ideal ADC) | torch_imc | reference | imcsim | images | training | size |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Each graph's provenance holds the command, the seed, all settings
(`method_settings_json`: mapping, ADC, calibration per layer, schedules) and the float,
torch_imc (`fake_quant_accuracy`) and reference accuracies; each has 4 golden pairs (test
images 0-3) computed by reference.py. Per-phase timings are in `<name>.json`.

## Regenerate

```
{cmds}
```

Smoke run (a few hundred steps, < 2 min on an idle 2-core machine; writes to
`results/scratch/zoo_quick/`, fails if PyTorch and reference.py disagree):

```
/usr/bin/python3 scripts/train_zoo.py --model lenet5 --quick
```

Contract check by hand, without retraining (about 2 min for LeNet-5 on the 10k test set):
reloads `<name>.pt`, checks that exporting it reproduces `<name>.imcg` bit for bit and that
the goldens verify, evaluates it with PyTorch (torch_imc, eval = exact) and runs
`imcsim run` on the graph; fails unless both top-1 accuracies are equal:

```
/usr/bin/python3 scripts/train_zoo.py --verify workloads/zoo/lenet5 --imcsim build/imcsim --test-images 10000
```

(a full training run with `--imcsim BINARY` does the same check at its end.)
"""
    notes = out_dir / "NOTES.md"
    if notes.is_file():
        text += "\n" + notes.read_text()
    (out_dir / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
