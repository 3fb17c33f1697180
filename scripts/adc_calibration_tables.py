#!/usr/bin/python3
"""Tables and plot of results/adc_calibration from the reports of scripts/adc_calibration_sweep.sh.

Writes, into --out:
  accuracy.csv   bits, method, top1, correct, images, calibration and run seconds, the written
                 method's per-layer MSE (from its own calibration chain)
  mse.csv        bits, layer, method, MSE in LSB^2 on identical histograms (--method all runs)
  mse_ratios.csv bits, layer, method, MSE(method) / MSE(bs-kmq) and / MSE(kmeans)
  tables.md      the accuracy table, the MSE-ratio tables, timings
  accuracy_vs_bits.png (if matplotlib is installed)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

LINEAR = ["linear-minmax", "linear-percentile", "linear-mse"]


def load(path):
    with open(path) as f:
        return json.load(f)


def fmt_ratio(a, b):
    if b == 0:
        return "=" if a == 0 else "inf"
    return f"{a / b:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", nargs="+", type=int, required=True)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--graph", default="workloads/fmnist_cnn/fmnist_cnn.imcg")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    acc, cal_s, run_s, rows = {}, 0.0, 0.0, []
    for b in a.bits:
        for m in a.methods:
            cal = load(f"{a.work}/cal_{m}_{b}b.json")
            run = load(f"{a.work}/run_{m}_{b}b/report.json")
            top1 = run["accuracy"]["top1"]
            acc[(m, b)] = top1
            cal_s += cal["total_seconds"]
            run_s += run["run"]["wall_s"]
            layer_mse = {l["node"]: l["mse_lsb2"][m] for l in cal["layers"]}
            rows.append(dict(bits=b, method=m, top1=f"{top1:.4f}", correct=run["accuracy"]["correct"],
                             images=run["accuracy"]["images"], calibrate_s=f"{cal['total_seconds']:.1f}",
                             run_s=f"{run['run']['wall_s']:.1f}",
                             **{f"mse_{k}": f"{v:.6g}" for k, v in layer_mse.items()}))
    with open(f"{a.out}/accuracy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    mse, layers, all_s = {}, [], 0.0
    for b in a.bits:
        cal = load(f"{a.work}/cal_all_{b}b.json")
        all_s += cal["total_seconds"]
        for l in cal["layers"]:
            if l["node"] not in layers:
                layers.append(l["node"])
            for m, v in l["mse_lsb2"].items():
                mse[(b, l["node"], m)] = v
    all_methods = [m for m in a.methods]
    with open(f"{a.out}/mse.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["bits", "layer", "method", "mse_lsb2"])
        for b in a.bits:
            for l in layers:
                for m in all_methods:
                    w.writerow([b, l, m, f"{mse[(b, l, m)]:.6g}"])
    with open(f"{a.out}/mse_ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["bits", "layer", "method", "mse_over_bskmq", "mse_over_kmeans"])
        for b in a.bits:
            for l in layers:
                for m in all_methods:
                    v = mse[(b, l, m)]
                    w.writerow([b, l, m, fmt_ratio(v, mse[(b, l, "bs-kmq")]), fmt_ratio(v, mse[(b, l, "kmeans")])])

    best_linear = max((m for m in a.methods if m in LINEAR), key=lambda m: sum(acc[(m, b)] for b in a.bits),
                      default=None)
    g = None
    try:
        sys.path.insert(0, "scripts")
        from imcsim_py import graph_pb, imcg_file  # noqa: E402
        g = imcg_file.read_imcg(a.graph, graph_pb.Graph)
    except Exception:  # the reference accuracy line is optional
        pass

    md = []
    md.append("## Test-set accuracy (top-1, 10,000 Fashion-MNIST test images) versus ADC bits\n")
    if g is not None:
        md.append(f"Bundled graph `{a.graph}` (exporter's 8-bit linear ADC, 99.99 % percentile): "
                  f"{100 * g.provenance.reference_accuracy:.2f} %; PyTorch fake-quant (no ADC) "
                  f"{100 * g.provenance.fake_quant_accuracy:.2f} %.\n")
    md.append("| method | " + " | ".join(f"{b} b" for b in a.bits) + " |")
    md.append("|---|" + "---|" * len(a.bits))
    for m in a.methods:
        name = m + (" (best linear)" if m == best_linear else "")
        md.append(f"| {name} | " + " | ".join(f"{100 * acc[(m, b)]:.2f}" for b in a.bits) + " |")
    md.append("")
    md.append("## Per-layer quantisation MSE on identical histograms (`--method all`)\n")
    md.append("MSE in LSB² of the partial sums over every conversion of the layer on the calibration "
              "images; upstream layers hold the per-layer lowest-MSE fit. Ratio = MSE(method) / "
              "MSE(BS-KMQ); `=` both zero (lossless), `inf` BS-KMQ zero but not the method.\n")
    for b in a.bits:
        md.append(f"**{b} bits**\n")
        md.append("| layer | BS-KMQ MSE | " + " | ".join(m for m in all_methods if m != "bs-kmq") + " |")
        md.append("|---|---|" + "---|" * (len(all_methods) - 1))
        for l in layers:
            ref = mse[(b, l, "bs-kmq")]
            md.append(f"| {l} | {ref:.4g} | " + " | ".join(fmt_ratio(mse[(b, l, m)], ref)
                                                          for m in all_methods if m != "bs-kmq") + " |")
        md.append("")
    # geometric mean over layers and bits of the ratios that are finite and non-trivial
    md.append("**Geometric mean of MSE(method) / MSE(BS-KMQ) over layers and bits** (cases where both are "
              "non-zero):\n")
    md.append("| method | geo-mean ratio | cases |")
    md.append("|---|---|---|")
    for m in all_methods:
        if m == "bs-kmq":
            continue
        rs = [mse[(b, l, m)] / mse[(b, l, "bs-kmq")] for b in a.bits for l in layers
              if mse[(b, l, "bs-kmq")] > 0 and mse[(b, l, m)] > 0]
        gm = math.exp(sum(math.log(r) for r in rs) / len(rs)) if rs else float("nan")
        md.append(f"| {m} | {gm:.3f} | {len(rs)} |")
    md.append("")
    md.append(f"Timings: {len(rows)} calibrations {cal_s:.0f} s and {len(rows)} test-set runs {run_s:.0f} s "
              f"(one thread each, summed), {len(a.bits)} `--method all` calibrations {all_s:.0f} s.\n")
    with open(f"{a.out}/tables.md", "w") as f:
        f.write("\n".join(md) + "\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return 0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for m in a.methods:
        ax.plot(a.bits, [100 * acc[(m, b)] for b in a.bits], marker="o",
                linestyle="--" if m in LINEAR else "-", label=m)
    if g is not None:
        ax.axhline(100 * g.provenance.reference_accuracy, color="grey", linewidth=0.8, linestyle=":",
                   label="bundled 8-bit linear")
    ax.set_xlabel("ADC bits")
    ax.set_ylabel("top-1 accuracy on 10k test images (%)")
    ax.set_title("fmnist_cnn: accuracy vs ADC bits (per-layer ADC)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for m in all_methods:
        ys = []
        for b in a.bits:
            tot = [mse[(b, l, m)] for l in layers]
            ys.append(sum(tot) / len(tot))
        ax.plot(a.bits, ys, marker="o", linestyle="--" if m in LINEAR else "-", label=m)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("ADC bits")
    ax.set_ylabel("mean over layers of the partial-sum MSE (LSB², symlog)")
    ax.set_title("quantisation error on identical histograms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{a.out}/accuracy_vs_bits.png", dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
