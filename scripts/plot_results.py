#!/usr/bin/python3
"""Plots of imcsim results: PNG and PDF, one command (docs/sweep.md, "Plots").

Inputs (any number, mixed):
  * a sweep's sweep.csv or sweep.json (imcsim sweep / sweep-merge): sweep curves (--y against
    --x, one line per value of --group), stacked energy breakdown per point, Pareto front of two
    objectives (--pareto; the front is recomputed for the two plotted objectives, and the
    sweep's own all-objective front is drawn as rings);
  * a run report (report.json of imcsim run): energy and area breakdowns by component, energy
    by node, latency per layer (cycles, with where they went when the SystemC model ran).

    /usr/bin/python3 scripts/plot_results.py OUT/sweep.csv --x /adc/bits --group /adc/kind \\
        --y energy_pj,latency_ns --pareto energy_pj:min,accuracy_top1:max --out-dir plots
    /usr/bin/python3 scripts/plot_results.py results/default/report.json --out-dir plots

Debian's python3 + matplotlib (Agg backend: no display needed).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Columns of a sweep row that are results, not settings (sim/sweep/sweep.h, result_row).
RESULT_COLUMNS = {
    "key", "index", "graph", "images", "accuracy_top1", "latency_cycles", "latency_ns",
    "throughput_images_per_s", "energy_pj", "area_mm2", "area_used_mm2", "tops", "tops_per_w",
    "tops_per_mm2", "utilisation", "arrays_used", "tiles_used", "adc_saturation_rate", "pareto",
    "command",
}

LABELS = {
    "accuracy_top1": "top-1 accuracy",
    "latency_ns": "latency per image (ns)",
    "latency_cycles": "latency per image (cycles)",
    "throughput_images_per_s": "throughput (images/s)",
    "energy_pj": "energy per image (pJ)",
    "area_mm2": "chip area (mm²)",
    "area_used_mm2": "used area (mm²)",
    "tops_per_w": "TOPS/W",
    "tops_per_mm2": "TOPS/mm²",
    "utilisation": "array utilisation",
    "adc_saturation_rate": "ADC saturation rate",
}


def group_label(group, value):
    v = json.loads(value)
    if isinstance(v, str) and "/" in v:
        v = os.path.basename(v)
    return f"{group}={v}"


def label(col):
    return LABELS.get(col, col)


def parse_cell(text):
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        v = int(text)
        return v
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def load_rows(path):
    """Sweep rows from sweep.csv or sweep.json, as dicts of Python values."""
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            return [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
    with open(path) as f:
        doc = json.load(f)
    return doc["points"]


def is_sweep_json(doc):
    return isinstance(doc, dict) and "points" in doc and "sweep_format" in doc


def is_report(doc):
    return isinstance(doc, dict) and "energy" in doc and "latency" in doc and "area" in doc


def save(fig, out_dir, name, written):
    os.makedirs(out_dir, exist_ok=True)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        p = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(p, dpi=150)
        written.append(p)
    plt.close(fig)


def setting_columns(rows):
    if not rows:
        return []
    return [c for c in rows[0] if c not in RESULT_COLUMNS and not (c.startswith("energy_") and c.endswith("_pj"))]


def numeric(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def sort_key(v):
    return (0, v, "") if numeric(v) else (1, 0, str(v))


def pareto_2d(rows, xcol, xdir, ycol, ydir):
    pts = [r for r in rows if numeric(r.get(xcol)) and numeric(r.get(ycol))]
    sx = 1 if xdir == "min" else -1
    sy = 1 if ydir == "min" else -1
    front = []
    for r in pts:
        a = (sx * r[xcol], sy * r[ycol])
        dominated = any((sx * q[xcol] <= a[0] and sy * q[ycol] <= a[1]) and
                        (sx * q[xcol] < a[0] or sy * q[ycol] < a[1]) for q in pts)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r[xcol])


def plot_sweep(rows, args, stem, written):
    if not rows:
        print(f"plot_results: {stem}: no rows", file=sys.stderr)
        return
    settings = setting_columns(rows)
    xcol = args.x or (settings[0] if settings else "index")
    group = args.group
    if group is None and len(settings) > 1:
        others = [c for c in settings if c != xcol and len({json.dumps(r.get(c)) for r in rows}) > 1]
        group = others[0] if len(others) == 1 else None
    ycols = args.y.split(",") if args.y else [c for c in ("accuracy_top1", "energy_pj", "latency_ns", "area_mm2")
                                              if any(numeric(r.get(c)) for r in rows)]
    for col in [xcol] + ycols + ([group] if group else []):
        if col not in rows[0]:
            sys.exit(f"plot_results: {stem}: no column '{col}' (columns: {', '.join(rows[0].keys())})")
    groups = {}
    for r in rows:
        groups.setdefault(json.dumps(r.get(group)) if group else "", []).append(r)
    # Sweep curves: one panel per y column.
    fig, axes = plt.subplots(1, len(ycols), figsize=(4.2 * len(ycols), 3.4), squeeze=False)
    for ax, ycol in zip(axes[0], ycols):
        for g, rs in sorted(groups.items()):
            rs = sorted([r for r in rs if numeric(r.get(ycol))], key=lambda r: sort_key(r.get(xcol)))
            if not rs:
                continue
            xs = [r[xcol] if numeric(r.get(xcol)) else str(r.get(xcol)) for r in rs]
            ax.plot(xs, [r[ycol] for r in rs], marker="o", label=(group_label(group, g) if group else None))
        ax.set_xlabel(label(xcol))
        ax.set_ylabel(label(ycol))
        if args.logy or (ycol in ("energy_pj", "latency_ns") and _spread(rows, ycol) > 30):
            ax.set_yscale("log")
        if args.logx:
            ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    fig.suptitle(args.title or stem, fontsize=10)
    save(fig, args.out_dir, f"{stem}_curves", written)

    # Energy breakdown per point (stacked bars of energy_<component>_pj).
    comps = [c for c in rows[0] if c.startswith("energy_") and c.endswith("_pj") and c != "energy_pj"
             and any(numeric(r.get(c)) and r.get(c) > 0 for r in rows)]
    if comps:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(rows) + 2), 3.8))
        ordered = sorted(rows, key=lambda r: (sort_key(r.get(group)) if group else (0, 0, ""), sort_key(r.get(xcol))))
        names = [f"{r.get(xcol)}" + (f"\n{group_label(group, json.dumps(r.get(group))).split('=', 1)[1]}" if group else "")
                 for r in ordered]
        bottom = [0.0] * len(ordered)
        for c in comps:
            vals = [r.get(c) or 0.0 for r in ordered]
            ax.bar(range(len(ordered)), vals, bottom=bottom, label=c[len("energy_"):-len("_pj")])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(ordered)))
        ax.set_xticklabels(names, fontsize=7, rotation=0 if len(ordered) < 12 else 90)
        ax.set_xlabel(xcol + (f" / {group}" if group else ""))
        ax.set_ylabel("energy per image (pJ)")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(args.title or f"{stem}: energy by component", fontsize=10)
        save(fig, args.out_dir, f"{stem}_energy_breakdown", written)

    # Pareto front of two objectives.
    pareto = args.pareto
    if pareto is None:
        pareto = ("energy_pj:min,accuracy_top1:max" if any(numeric(r.get("accuracy_top1")) for r in rows)
                  else "energy_pj:min,latency_ns:min")
    (pxc, pxd), (pyc, pyd) = [tuple(p.split(":")) for p in pareto.split(",")]
    for col, d in ((pxc, pxd), (pyc, pyd)):
        if col not in rows[0] or d not in ("min", "max"):
            sys.exit(f"plot_results: --pareto {pareto}: expected two COLUMN:min|max of the sweep's columns")
    front = pareto_2d(rows, pxc, pxd, pyc, pyd)
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for g, rs in sorted(groups.items()):
        rs = [r for r in rs if numeric(r.get(pxc)) and numeric(r.get(pyc))]
        ax.scatter([r[pxc] for r in rs], [r[pyc] for r in rs], s=22, alpha=0.8,
                   label=(group_label(group, g) if group else "points"))
    ax.plot([r[pxc] for r in front], [r[pyc] for r in front], "k--", lw=1, label=f"front ({pxc} {pxd}, {pyc} {pyd})")
    marked = [r for r in rows if r.get("pareto") is True and numeric(r.get(pxc)) and numeric(r.get(pyc))]
    if marked:
        ax.scatter([r[pxc] for r in marked], [r[pyc] for r in marked], s=80, facecolors="none", edgecolors="red",
                   label="on the sweep's Pareto front")
    for r in front:
        ax.annotate(str(r.get(xcol)), (r[pxc], r[pyc]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(label(pxc))
    ax.set_ylabel(label(pyc))
    if _spread(rows, pxc) > 30:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(args.title or f"{stem}: Pareto front", fontsize=10)
    save(fig, args.out_dir, f"{stem}_pareto", written)


def _spread(rows, col):
    vals = [r[col] for r in rows if numeric(r.get(col)) and r[col] > 0]
    return max(vals) / min(vals) if vals else 1.0


def plot_report(rep, args, stem, written):
    energy = rep["energy"]["by_component_pj"]
    area = rep["area"]["by_component_mm2"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for ax, data, unit, total in ((a1, energy, "pJ per image", rep["energy"]["pj_per_image"]),
                                  (a2, area, "mm²", rep["area"]["chip_mm2"])):
        items = sorted(((k, v) for k, v in data.items() if v > 0), key=lambda kv: -kv[1])
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="tab:blue")
        for i, (k, v) in enumerate(items[::-1]):
            ax.text(v, i, f" {100 * v / total:.1f} %", va="center", fontsize=7)
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(v for _, v in items) * 1.25)
    a1.set_title(f"energy {rep['energy']['pj_per_image'] / 1e3:.4g} nJ per image", fontsize=9)
    a2.set_title(f"chip area {rep['area']['chip_mm2']:.4g} mm²", fontsize=9)
    fig.suptitle(args.title or f"{stem}: {rep['graph']['name']} on {rep['config']['name']}", fontsize=10)
    save(fig, args.out_dir, f"{stem}_breakdown", written)

    nodes = rep["energy"].get("per_node", [])
    if nodes:
        comps = sorted({c for n in nodes for c, v in n["by_component_pj"].items() if v > 0})
        fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(nodes) + 2), 3.8))
        bottom = [0.0] * len(nodes)
        for c in comps:
            vals = [n["by_component_pj"].get(c, 0.0) for n in nodes]
            ax.bar(range(len(nodes)), vals, bottom=bottom, label=c)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(nodes)))
        ax.set_xticklabels([n["node"] for n in nodes], rotation=90, fontsize=7)
        ax.set_ylabel("energy per image (pJ)")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(args.title or f"{stem}: energy per node", fontsize=10)
        save(fig, args.out_dir, f"{stem}_energy_per_node", written)

    lat = rep["latency"].get("per_node", [])
    if lat:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(lat) + 2), 3.8))
        x = range(len(lat))
        ax.bar([i - 0.2 for i in x], [n["cycles"] for n in lat], width=0.4, label=rep["latency"]["model"])
        if all("analytical_cycles" in n for n in lat):
            ax.bar([i + 0.2 for i in x], [n["analytical_cycles"] for n in lat], width=0.4, label="analytical")
        ax.set_xticks(list(x))
        ax.set_xticklabels([n["node"] for n in lat], rotation=90, fontsize=7)
        ax.set_ylabel("cycles per image")
        if max(n["cycles"] for n in lat) > 100 * max(1, min(n["cycles"] for n in lat)):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title(args.title or f"{stem}: latency per layer ({rep['latency']['cycles_per_image']} cycles, "
                     f"{rep['latency']['ns_per_image'] / 1e3:.4g} us per image)", fontsize=9)
        save(fig, args.out_dir, f"{stem}_latency_per_layer", written)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="sweep.csv / sweep.json / report.json files")
    ap.add_argument("--out-dir", default="results/scratch/plots")
    ap.add_argument("--x", help="sweep: the x column (default: the first setting column)")
    ap.add_argument("--y", help="sweep: comma-separated y columns (default: accuracy, energy, latency, area)")
    ap.add_argument("--group", help="sweep: one line per value of this column (default: the other varying setting)")
    ap.add_argument("--pareto", help="sweep: two objectives X:min|max,Y:min|max (default energy_pj:min,"
                                     "accuracy_top1:max, or energy_pj:min,latency_ns:min without accuracy)")
    ap.add_argument("--logx", action="store_true", help="log2 x axis")
    ap.add_argument("--logy", action="store_true", help="log y axes")
    ap.add_argument("--title", help="title of every figure")
    ap.add_argument("--name", help="file-name stem (default: from the input's file and directory names)")
    args = ap.parse_args(argv)
    written = []
    for path in args.inputs:
        base = os.path.splitext(os.path.basename(path))[0]
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        stem = args.name or (f"{parent}_{base}" if base in ("sweep", "report") else base)
        if path.endswith(".csv"):
            plot_sweep(load_rows(path), args, stem, written)
            continue
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"plot_results: {path}: {e}")
        if is_sweep_json(doc):
            plot_sweep(doc["points"], args, stem, written)
        elif is_report(doc):
            plot_report(doc, args, stem, written)
        else:
            sys.exit(f"plot_results: {path}: neither a sweep (sweep.csv / sweep.json) nor a run report (report.json)")
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
