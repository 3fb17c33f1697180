#!/usr/bin/python3
"""Array-size sweep figures: utilisation, latency / throughput, energy and area against the
array size for ResNet-18 and VGG-16, both ADC arrangements; writes array_size.{png,pdf} and
table.md here from data_*/sweep.csv.

    /usr/bin/python3 results/array_size/plot.py
"""
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SETS = {"data_adc_per_array": "1 ADC per array", "data_adc_per_64_columns": "1 ADC per 64 columns"}


def load():
    rows = []
    for d, name in SETS.items():
        for r in csv.DictReader(open(os.path.join(HERE, d, "sweep.csv"))):
            r["adc"] = name
            r["net"] = os.path.basename(r["graph"]).split("_")[0]
            r["size"] = int(r["/array/rows"])
            for k in ("utilisation", "latency_ns", "throughput_images_per_s", "energy_pj", "energy_adc_pj",
                      "area_mm2", "area_used_mm2", "tops_per_w"):
                r[k] = float(r[k])
            rows.append(r)
    return rows


def main():
    rows = load()
    panels = [("utilisation", "layer", "cell utilisation of used arrays", False),
              ("latency_ns", "layer", "latency per image, layer by layer (µs)", True),
              ("throughput_images_per_s", "pipelined", "throughput, pipelined + replication (images/s)", True),
              ("energy_pj", "layer", "energy per image (µJ)", True),
              ("area_used_mm2", "layer", "area of the used tiles, layer by layer (mm²)", True),
              ("area_mm2", "layer", "chip area, 1500 tiles (mm²)", False)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    styles = {("resnet18", "1 ADC per array"): ("tab:blue", "-"), ("resnet18", "1 ADC per 64 columns"): ("tab:blue", "--"),
              ("vgg16", "1 ADC per array"): ("tab:orange", "-"), ("vgg16", "1 ADC per 64 columns"): ("tab:orange", "--")}
    for ax, (col, ex, title, logy) in zip(axes.flat, panels):
        for (net, adc), (color, ls) in styles.items():
            sel = sorted([r for r in rows if r["net"] == net and r["adc"] == adc and r["run.execution"] == ex],
                         key=lambda r: r["size"])
            scale = 1e-3 if col == "latency_ns" else 1e-6 if col == "energy_pj" else 1.0
            ax.plot([r["size"] for r in sel], [r[col] * scale for r in sel], color=color, ls=ls, marker="o",
                    label=f"{net}, {adc}")
        ax.set_xscale("log", base=2)
        ax.set_xticks([64, 128, 256, 512])
        ax.set_xticklabels(["64", "128", "256", "512"])
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("array rows = columns")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Array-size sweep on the ISAAC-like default config (shape-only ImageNet networks, 8-bit weights "
                 "and inputs, 2-bit cells, 8-bit SAR)", fontsize=10)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(HERE, f"array_size.{ext}"), dpi=150)
    lines = ["| network | ADCs | size | utilisation | arrays | tiles | latency µs (layer) | images/s (pipelined) "
             "| energy µJ | ADC energy µJ | used mm² (layer) | chip mm² |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for net in ("resnet18", "vgg16"):
        for adc in SETS.values():
            for r in sorted([r for r in rows if r["net"] == net and r["adc"] == adc and r["run.execution"] == "layer"],
                            key=lambda r: r["size"]):
                p = next(q for q in rows if q["net"] == net and q["adc"] == adc and q["size"] == r["size"]
                         and q["run.execution"] == "pipelined")
                lines.append(f"| {net} | {adc} | {r['size']} | {r['utilisation']:.3f} | {r['arrays_used']} | "
                             f"{r['tiles_used']} | {r['latency_ns'] / 1e3:.0f} | {p['throughput_images_per_s']:.0f} | "
                             f"{r['energy_pj'] / 1e6:.0f} | {r['energy_adc_pj'] / 1e6:.0f} | {r['area_used_mm2']:.1f} | "
                             f"{r['area_mm2']:.0f} |")
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
