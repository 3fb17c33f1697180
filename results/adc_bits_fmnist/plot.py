#!/usr/bin/python3
"""ADC-bits sweep figures: accuracy vs energy per inference and vs ADC bits for each
Fashion-MNIST model and reference method, from data/sweep.csv; writes adc_bits.{png,pdf} and
table.md here. The fmnist_cnn accuracies are set beside results/adc_calibration's (same
calibration, all 10,000 test images) when that file is present.

    /usr/bin/python3 results/adc_bits_fmnist/plot.py
"""
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"rescale": ("linear, rescaled (SAR)", "tab:gray"),
           "linear-mse": ("linear, calibrated MSE (SAR)", "tab:blue"),
           "bs-kmq": ("non-linear BS-KMQ (in-memory NL-ADC)", "tab:red")}


def main():
    rows = list(csv.DictReader(open(os.path.join(HERE, "data", "sweep.csv"))))
    for r in rows:
        r["model"] = os.path.basename(r["graph"])[:-len(".imcg")]
        # (columns named by the short keys in the committed data; by their JSON pointers when re-run)
        for short, pointer in (("graph.adc_bits", "/adc/layer_bits_override"),
                               ("graph.adc_method", "/adc/override_references")):
            if short not in r:
                r[short] = r[pointer]
        r["bits"] = int(r["graph.adc_bits"])
        for k in ("accuracy_top1", "energy_pj", "energy_adc_pj", "latency_ns", "images"):
            r[k] = float(r[k])
    models = sorted({r["model"] for r in rows})
    ref = {}
    ref_file = os.path.join(HERE, "..", "adc_calibration", "accuracy.csv")
    if os.path.exists(ref_file):
        for r in csv.DictReader(open(ref_file)):
            ref[(int(r["bits"]), r["method"])] = float(r["top1"])

    fig, axes = plt.subplots(len(models), 3, figsize=(15, 4.2 * len(models)), squeeze=False)
    for row_axes, model in zip(axes, models):
        a_e, a_b, e_b = row_axes
        for m, (name, color) in METHODS.items():
            sel = sorted([r for r in rows if r["model"] == model and r["graph.adc_method"] == m], key=lambda r: r["bits"])
            if not sel:
                continue
            a_e.plot([r["energy_pj"] / 1e3 for r in sel], [100 * r["accuracy_top1"] for r in sel], marker="o",
                     color=color, label=name)
            for r in sel:
                a_e.annotate(f"{r['bits']}b", (r["energy_pj"] / 1e3, 100 * r["accuracy_top1"]), fontsize=6,
                             xytext=(2, 3), textcoords="offset points", color=color)
            front = [r for r in sel if r.get("pareto") == "true"]
            a_e.scatter([r["energy_pj"] / 1e3 for r in front], [100 * r["accuracy_top1"] for r in front], s=90,
                        facecolors="none", edgecolors="k", zorder=3)
            a_b.plot([r["bits"] for r in sel], [100 * r["accuracy_top1"] for r in sel], marker="o", color=color,
                     label=name)
            e_b.plot([r["bits"] for r in sel], [r["energy_pj"] / 1e3 for r in sel], marker="o", color=color,
                     label=name + " total")
            e_b.plot([r["bits"] for r in sel], [r["energy_adc_pj"] / 1e3 for r in sel], marker="x", ls=":",
                     color=color, label=name + " ADC")
        if model == "fmnist_cnn" and ref:
            for m in ("linear-mse", "bs-kmq"):
                bits = sorted(b for (b, mm) in ref if mm == m)
                a_b.plot(bits, [100 * ref[(b, m)] for b in bits], ls="--", color=METHODS[m][1], alpha=0.6,
                         label=f"{m}, results/adc_calibration (10k images)")
        a_e.set_xscale("log")
        a_e.set_xlabel("energy per inference (nJ)")
        a_e.set_ylabel("top-1 accuracy (%)")
        a_e.set_title(f"{model}: accuracy vs energy (rings: Pareto front per network)", fontsize=9)
        a_b.set_xlabel("ADC bits")
        a_b.set_ylabel("top-1 accuracy (%)")
        a_b.set_title(f"{model}: accuracy vs ADC bits", fontsize=9)
        e_b.set_yscale("log")
        e_b.set_xlabel("ADC bits")
        e_b.set_ylabel("energy per inference (nJ)")
        e_b.set_title(f"{model}: energy (solid: total, dotted: ADC)", fontsize=9)
        for ax in row_axes:
            ax.grid(True, alpha=0.3, which="both")
        a_e.legend(fontsize=7, loc="lower right")
        a_b.legend(fontsize=6, loc="lower right")
        e_b.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(HERE, f"adc_bits.{ext}"), dpi=150)

    lines = []
    for model in models:
        n = int(next(r["images"] for r in rows if r["model"] == model))
        lines += [f"### {model} ({n} test images per point)", "",
                  "| bits | " + " | ".join(f"{m} accuracy %" for m in METHODS) + " | SAR energy nJ (ADC) | NL-ADC energy nJ (ADC) |"
                  + (" linear-mse / bs-kmq on 10k (adc_calibration) |" if model == "fmnist_cnn" and ref else ""),
                  "|---:|" + "---:|" * len(METHODS) + "---:|---:|" + ("---:|" if model == "fmnist_cnn" and ref else "")]
        for b in sorted({r["bits"] for r in rows if r["model"] == model}):
            cells = []
            by = {r["graph.adc_method"]: r for r in rows if r["model"] == model and r["bits"] == b}
            for m in METHODS:
                r = by.get(m)
                mark = "**" if r and r.get("pareto") == "true" else ""
                cells.append(f"{mark}{100 * r['accuracy_top1']:.1f}{mark}" if r else "")
            sar, nl = by.get("linear-mse"), by.get("bs-kmq")
            line = (f"| {b} | " + " | ".join(cells) +
                    (f" | {sar['energy_pj'] / 1e3:.0f} ({sar['energy_adc_pj'] / 1e3:.0f})" if sar else " | ") +
                    (f" | {nl['energy_pj'] / 1e3:.0f} ({nl['energy_adc_pj'] / 1e3:.0f}) |" if nl else " | |"))
            if model == "fmnist_cnn" and ref:
                line += f" {100 * ref.get((b, 'linear-mse'), float('nan')):.1f} / {100 * ref.get((b, 'bs-kmq'), float('nan')):.1f} |"
            lines.append(line)
        lines.append("")
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
