#!/usr/bin/python3
"""BS-KMQ system claim vs imcsim: speedup and energy-efficiency ratios of each design point of
results/bskmq_system/data/sweep.csv over the ISAAC-like 8-bit SAR baseline, at the same
execution mode; writes ratios.md / ratios.csv and ratios.{png,pdf} here.

    /usr/bin/python3 results/bskmq_system/compare.py
"""
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHED_SPEEDUP, PUBLISHED_EFFICIENCY = 4.0, 24.0

VARIANTS = {  # graph suffix, ADC conversion cycles -> name
    ("i8w8_lin8", "1"): "baseline: 8b in / 8b w, 8-bit SAR at 1.28 GS/s (ISAAC)",
    ("i8w8_lin8", "0"): "8b in / 8b w, 8-bit SAR at 8 cycles/conversion",
    ("i6w2_lin8", "1"): "6b in / 2b w, 8-bit SAR (precision only)",
    ("i6w2_nl3", "0"): "BS-KMQ (a): 6b in / 2b w, 3-bit in-memory NL-ADC (nl-imc)",
    ("i8w6_nl3", "0"): "BS-KMQ (b): 8b in / 6b w, 3-bit in-memory NL-ADC (nl-imc)",
}


def variant(r):
    g = os.path.basename(r["graph"])[len("resnet18_imagenet_"):-len(".imcg")]
    return VARIANTS[(g, r["/adc/conversion_cycles"])]


def main():
    rows = list(csv.DictReader(open(os.path.join(HERE, "data", "sweep.csv"))))
    for r in rows:
        r["variant"] = variant(r)
        for k in ("latency_ns", "throughput_images_per_s", "energy_pj", "energy_fixed_blocks_pj", "energy_adc_pj",
                  "tops_per_w", "area_mm2", "area_used_mm2"):
            r[k] = float(r[k])
        r["dynamic_pj"] = r["energy_pj"] - r["energy_fixed_blocks_pj"]
    base = {r["run.execution"]: r for r in rows
            if r["variant"].startswith("baseline") and r["/adc/columns_per_adc"] == "128"}
    out = []
    for r in rows:
        b = base[r["run.execution"]]
        # Speed: per-image latency (layer by layer) or steady-state throughput (pipelined).
        speedup = (b["latency_ns"] / r["latency_ns"] if r["run.execution"] == "layer"
                   else r["throughput_images_per_s"] / b["throughput_images_per_s"])
        out.append({
            "variant": r["variant"], "columns_per_adc": r["/adc/columns_per_adc"], "execution": r["run.execution"],
            "speedup": speedup,
            "efficiency_ratio_total": b["energy_pj"] / r["energy_pj"],
            "efficiency_ratio_dynamic": b["dynamic_pj"] / r["dynamic_pj"],
            "adc_energy_ratio": b["energy_adc_pj"] / r["energy_adc_pj"],
            "latency_us": r["latency_ns"] / 1e3, "throughput_images_per_s": r["throughput_images_per_s"],
            "energy_uj": r["energy_pj"] / 1e6, "dynamic_uj": r["dynamic_pj"] / 1e6, "area_mm2": r["area_mm2"],
            "area_used_mm2": r["area_used_mm2"],
        })
    with open(os.path.join(HERE, "ratios.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    lines = ["| design | cols/ADC | execution | speedup | energy-eff. (total) | energy-eff. (dynamic) | ADC energy ratio "
             "| latency µs | images/s | energy µJ (dynamic) | chip mm² (used) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for o in out:
        lines.append(f"| {o['variant']} | {o['columns_per_adc']} | {o['execution']} | {o['speedup']:.2f}× | "
                     f"{o['efficiency_ratio_total']:.2f}× | {o['efficiency_ratio_dynamic']:.2f}× | "
                     f"{o['adc_energy_ratio']:.1f}× | {o['latency_us']:.0f} | {o['throughput_images_per_s']:.0f} | "
                     f"{o['energy_uj']:.0f} ({o['dynamic_uj']:.1f}) | {o['area_mm2']:.1f} ({o['area_used_mm2']:.1f}) |")
    with open(os.path.join(HERE, "ratios.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # Picture: speedup and efficiency ratios of the BS-KMQ points against the published claim.
    pts = [o for o in out if o["variant"].startswith("BS-KMQ") or o["variant"].startswith("6b")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, ex in zip(axes, ("layer", "pipelined")):
        sel = [o for o in pts if o["execution"] == ex]
        for o in sel:
            marker = {"128": "o", "16": "s", "1": "^"}[o["columns_per_adc"]]
            color = ("tab:green" if "(a)" in o["variant"] else "tab:purple" if "(b)" in o["variant"] else "tab:gray")
            ax.scatter(o["speedup"], o["efficiency_ratio_dynamic"], marker=marker, color=color, s=50,
                       label=f"{o['variant'].split(':')[0]}, {o['columns_per_adc']} col/ADC, dynamic")
            ax.scatter(o["speedup"], o["efficiency_ratio_total"], marker=marker, facecolors="none",
                       edgecolors=color, s=50)
        ax.scatter([PUBLISHED_SPEEDUP], [PUBLISHED_EFFICIENCY], marker="*", s=200, color="red",
                   label="published: up to 4× / 24×")
        ax.axhline(1, color="k", lw=0.5)
        ax.axvline(1, color="k", lw=0.5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("speedup over ISAAC-like 8-bit SAR" + (" (latency)" if ex == "layer" else " (throughput)"))
        ax.set_ylabel("energy-efficiency ratio (filled: dynamic, open: total)")
        ax.set_title(f"ResNet-18, {ex} execution", fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
    axes[1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(HERE, f"ratios.{ext}"), dpi=150)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
