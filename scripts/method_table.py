#!/usr/bin/python3
"""Accuracy of each training method at ADC bits 3-8 on the zoo models (LeNet-5, ResNet-20),
measured by imcsim: runs (or resumes) the fine-tuning runs and regenerates
results/methods/README.md.

    /usr/bin/python3 scripts/method_table.py --run --model lenet5 --jobs 2 --imcsim build/imcsim
    /usr/bin/python3 scripts/method_table.py --run --model resnet20 --jobs 2 --imcsim build/imcsim
    /usr/bin/python3 scripts/method_table.py            # tables only, from the run summaries

Each point fine-tunes the model's trained base (workloads/zoo/<model>: float + ideal-ADC QAT,
8-bit linear ADC) with `scripts/train_zoo.py --base workloads/zoo/<model> --method M
--adc-bits B` (ADC calibration on the first --calib-images training images, the method's
fine-tuning phase, its finalisation, export), and requires PyTorch's accuracy of the exported
model to equal `imcsim run`'s on the first --test-images test images. Where the model's
settings give more imcsim images (--imcsim-images; ResNet-20: the first 2,000), the table
shows imcsim's accuracy on those, from a separate `imcsim run` of the point's graph
(PyTorch's exact forward of ResNet-20 is too slow for thousands of images on every point;
imcsim's native kernels are not). One more point per model,
"ideal-adc", exports the base with an ideal ADC (no fine-tuning) and measures it the same
way: the table's "base" row. Run summaries (JSON: command, settings, accuracies, timings) go
to results/methods/runs/; graphs and state dicts to results/scratch/methods/ (not committed:
rerun the command to regenerate them). Points whose summary exists are kept (--force reruns).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "results" / "methods" / "runs"
SCRATCH = REPO / "results" / "scratch" / "methods"
BITS = (3, 4, 5, 6, 7, 8)
# row name -> (train_zoo --method, extra options)
ROW_ARGS = {
    "plain-qat": ("plain-qat", []),
    "raoq": ("raoq", []),
    "columnquant": ("columnquant", []),
    "pim-qat": ("pim-qat", []),
    "bs-kmq": ("bs-kmq", []),
    "raoq-no-ashift": ("raoq", ["--no-ashift"]),
    "raoq-ashift-only": ("raoq", ["--kurtosis-lambda", "0", "--bitaug-weight", "0",
                                  "--lora-fraction", "0"]),
}
IDEAL_ROW = "ideal-adc"
IDEAL_ARGS = ["--method", "plain-qat", "--adc-kind", "ideal", "--adc-steps", "0"]
# Per-model settings of the table (None = train_zoo's default). test_images: PyTorch and
# imcsim (the contract check); imcsim_images: imcsim only (the table), 0 = test_images;
# row_bits: rows run at these ADC bits only (a diagnosis, not a full row); steps_by_bits:
# fine-tuning steps at these ADC bits instead of `steps` (ResNet-20: to fit the 2 shared cores).
MODELS = {
    "lenet5": dict(title="LeNet-5", base="workloads/zoo/lenet5", steps=20, batch_size=32,
                   calib_images=None, test_images=1000, imcsim_images=0,
                   rows=["plain-qat", "raoq", "columnquant", "pim-qat", "bs-kmq",
                         "raoq-no-ashift"], row_bits={"raoq-no-ashift": (4, 6)}),
    "resnet20": dict(title="ResNet-20 (pre-activation, widths 8/16/32)",
                     base="workloads/zoo/resnet20", steps=20, steps_by_bits={6: 10, 7: 10, 8: 10},
                     batch_size=32, calib_images=256,
                     test_images=200, imcsim_images=2000,
                     rows=["plain-qat", "raoq", "columnquant", "pim-qat", "bs-kmq",
                           "raoq-no-ashift", "raoq-ashift-only"],
                     row_bits={"raoq-no-ashift": (6,), "raoq-ashift-only": (6,)}),
}


def model_settings(model, args):
    """The model's table settings with the command line's overrides."""
    m = dict(MODELS[model])
    m.setdefault("steps_by_bits", {})
    m.setdefault("row_bits", {})
    if args.steps is not None:
        m["steps_by_bits"] = {}
    for k in ("steps", "batch_size", "calib_images", "test_images", "imcsim_images"):
        v = getattr(args, k, None)
        if v is not None:
            m[k] = v
    return m


def steps_at(m, bits):
    """Fine-tuning steps of a point at `bits` ("S" in the commands' listing: any bits)."""
    if bits == "B" and m["steps_by_bits"]:
        return "S"
    return m["steps_by_bits"].get(bits, m["steps"])


def point_args(model, row, bits, m, imcsim="build/imcsim"):
    """train_zoo.py arguments of one point (row IDEAL_ROW: bits ignored)."""
    if row == IDEAL_ROW:
        a = ["--base", m["base"]] + IDEAL_ARGS
    else:
        method, extra = ROW_ARGS[row]
        a = ["--base", m["base"], "--method", method, "--adc-bits", str(bits),
             "--adc-steps", str(steps_at(m, bits)), "--adc-batch-size", str(m["batch_size"])]
    if m["calib_images"] is not None:
        a += ["--calib-images", str(m["calib_images"])]
    a += ["--test-images", str(m["test_images"])]
    a += ["--no-reference", "--monitor-images", "0", "--imcsim", imcsim, "--no-readme",
          "--out-dir", str(SCRATCH.relative_to(REPO))]
    if row != IDEAL_ROW:
        a += extra
    return a


def point_name(model, row, bits):
    return f"{model}_{row}" if row == IDEAL_ROW else f"{model}_{row}_adc{bits}"


def strip_imcsim_only(words):
    """A train_zoo command's words without the options that only concern imcsim runs after
    training (--imcsim-threads, --imcsim-images): a summary with the same remaining words
    holds the same trained graph."""
    w = list(words)
    for opt in ("--imcsim-threads", "--imcsim-images"):
        if opt in w:
            i = w.index(opt)
            del w[i:i + 2]
    return w


def measure_imcsim(s, n_images, args):
    """imcsim run on the point's graph, first n_images test images, 1 thread with --jobs > 1:
    the table's figure, recorded in s["table_imcsim"]."""
    graph = SCRATCH / s["graph"]
    out = SCRATCH / f"sim_{s['name']}"
    cmd = [args.imcsim, "run", "--graph", str(graph.relative_to(REPO)), "--images",
           str(n_images), "-q", "--out", str(out.relative_to(REPO)), "--timing", "analytical"]
    if s.get("arch"):
        cmd += ["--arch", str((SCRATCH / s["arch"]).relative_to(REPO))]
    if args.jobs > 1:
        cmd += ["--threads", "1"]
    t0 = time.time()
    r = subprocess.run(["nice", "-n", "10"] + cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)}: {r.stderr.strip()}")
    rep = json.loads((out / "report.json").read_text())
    s["table_imcsim"] = {"accuracy": rep["accuracy"]["top1"], "images": n_images,
                         "command": shlex.join(cmd), "seconds": time.time() - t0}


def run_point(model, row, bits, m, args):
    """Train (or adopt the scratch summary of an identical training run) and measure one
    point; keeps a point whose run summary has the table's imcsim figure already."""
    name = point_name(model, row, bits)
    out = RUNS / f"{name}.json"
    n_sim = max(m["imcsim_images"], m["test_images"])
    status = "kept"
    if out.exists() and not args.force:
        s = json.loads(out.read_text())
    else:
        pa = point_args(model, row, bits, m, args.imcsim) + ["--name", name]
        cmd = ["nice", "-n", "10", "/usr/bin/python3", "scripts/train_zoo.py"] + pa
        if args.jobs > 1:
            cmd += ["--imcsim-threads", "1"]
        t0 = time.time()
        log = SCRATCH / f"{name}.log"
        summ = SCRATCH / f"{name}.json"
        status = "adopted from " + str(summ.relative_to(REPO))
        want = strip_imcsim_only(["/usr/bin/python3", "scripts/train_zoo.py"] + pa)
        if args.force or not summ.exists() or \
                strip_imcsim_only(shlex.split(json.loads(summ.read_text())["command"])) != want:
            with open(log, "w") as f:
                r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                return name, f"FAILED ({r.returncode}, see {log})"
            status = f"ok in {time.time() - t0:.0f} s"
        s = json.loads(summ.read_text())
        s["table_row"] = row
        s["table_bits"] = bits
    if n_sim > s["test_images"] and s.get("table_imcsim", {}).get("images") != n_sim:
        measure_imcsim(s, n_sim, args)
        status += f"; imcsim on {n_sim} images in {s['table_imcsim']['seconds']:.0f} s"
    RUNS.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return name, status


def fmt(v):
    return "—" if v is None else f"{100 * v:.2f}"


def table_accuracy(s, n_sim):
    """(accuracy, images) of a point as the table shows it: imcsim's figure on the table's
    n_sim images (table_imcsim; None while not measured yet) when n_sim exceeds the contract
    run's images, else the contract run's imcsim figure."""
    if n_sim > s["test_images"]:
        t = s.get("table_imcsim")
        return (t["accuracy"], n_sim) if t and t["images"] == n_sim else (None, n_sim)
    return s.get("imcsim_accuracy"), s["test_images"]


def point_wall_s(s):
    """Wall time of a point at the table's settings: training (calibration + fine-tuning),
    PyTorch and imcsim contract evaluations, export, the table's imcsim run."""
    t = s["times"]
    return sum(t.get(k, 0.0) for k in ("train_total_s", "torch_eval_s", "export_s",
                                        "reference_eval_s", "imcsim_s")) + \
        s.get("table_imcsim", {}).get("seconds", 0.0)


def binomial_se(p, n):
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


MAPPINGS = """| row | mapping and ADC |
|---|---|
| plain-qat | OFFSET weights in 2-bit cells, bit-serial inputs (1-bit DAC), contiguous tiles, linear ADC per layer (unsigned, centre 0, round half away), step from the 99.99 % percentile |
| raoq | as plain-qat + A-shift (sign bit as its own DAC step), W-reshape (kurtosis, λ 6e-4), BitAug (b ± 1), ADC-LoRA (rank 4, second half of the steps) |
| columnquant | channel-aligned tiles; linear ADC with signed codes per (slice, tile, column), centre on a whole code, learned steps (LSQ); LSQ column weight scales |
| pim-qat | bit-serial decomposition (1-bit DAC × 1-bit cells), rescaling, noise-aware training (σ 0.5 LSB), adjusted precision (trained at b − 1), BN calibration on simulated outputs (psum_scale, bias) |
| bs-kmq | as plain-qat but a non-linear ADC (threshold table) per layer, BS-KMQ references (`imcsim calibrate --method bs-kmq` rule), fine-tuned with them |
| raoq-no-ashift | raoq without A-shift (W-reshape, BitAug, ADC-LoRA only) |
| raoq-ashift-only | raoq with A-shift only (no W-reshape, BitAug, ADC-LoRA): plain-qat + A-shift |
| ideal-adc (base row) | the base model exported with an ideal ADC (exact partial sums), no fine-tuning |"""


def model_section(model, m, runs):
    base = json.loads((REPO / f"{m['base']}.json").read_text())
    ideal = runs.get((model, IDEAL_ROW, None))
    n_sim = max(m["imcsim_images"], m["test_images"])
    subset = n_sim > m["test_images"]
    head = "| method | " + " | ".join(f"{b} b" for b in BITS) + " | min / point |"
    sep = "|---|" + "---|" * (len(BITS) + 1)
    f_n = base["test_images"]
    steps_row = []
    if m["steps_by_bits"]:
        steps_row = ["| (fine-tuning steps) | " + " | ".join(str(steps_at(m, b)) for b in BITS)
                     + " | |"]
    lines = [head, sep] + steps_row + [
             f"| float (no quantisation; PyTorch, first {f_n} images) | " + " | ".join(
                 fmt(base["float_accuracy"]) for _ in BITS) + " | |"]
    if ideal is not None:
        acc, n = table_accuracy(ideal, n_sim)
        lines.append(f"| base: ideal ADC (8-bit QAT, no ADC error; imcsim) | " +
                     " | ".join(fmt(acc) for _ in BITS) +
                     f" | {point_wall_s(ideal) / 60:.1f} |")
    else:
        lines.append(f"| base: ideal ADC (8-bit QAT, no ADC error; PyTorch, first {f_n} "
                     f"images) | " + " | ".join(fmt(base["qat_ideal_adc_accuracy"])
                                                for _ in BITS) + " | |")
    checks = []
    if ideal is not None:
        checks.append(ideal)
    sub_lines = [head.replace(" min / point |", ""), "|---|" + "---|" * len(BITS)]
    if ideal is not None:
        sub_lines.append("| ideal ADC | " + " | ".join(
            fmt(ideal["torch_imc_accuracy"]) + " / " + fmt(ideal.get("imcsim_accuracy"))
            for _ in BITS) + " |")
    times = []
    for row in m["rows"]:
        cells, sub, row_t = [], [], []
        for b in BITS:
            s = runs.get((model, row, b))
            if s is None:
                cells.append("—")
                sub.append("—")
                continue
            acc, _ = table_accuracy(s, n_sim)
            cells.append(fmt(acc))
            sub.append(fmt(s["torch_imc_accuracy"]) + " / " + fmt(s.get("imcsim_accuracy")))
            checks.append(s)
            row_t.append(point_wall_s(s))
        times += row_t
        mins = f"{sum(row_t) / len(row_t) / 60:.1f}" if row_t else ""
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {mins} |")
        sub_lines.append(f"| {row} | " + " | ".join(sub) + " |")
    bad = [c["name"] for c in checks if c.get("imcsim_accuracy") is None or
           abs(c["torch_imc_accuracy"] - c["imcsim_accuracy"]) > 1e-12]
    n_chk = sorted({c["test_images"] for c in checks})
    se50 = 100 * binomial_se(0.5, n_sim)
    se90 = 100 * binomial_se(0.9, n_sim)
    sub_text = ""
    if subset:
        se_sub = 100 * binomial_se(0.5, m["test_images"])
        sub_text = f"""
The contract check of every point, PyTorch / imcsim accuracy (%) on the first
{m['test_images']} test images (standard error {se_sub:.1f} points at 50 %; the check is that
the two are equal, not the value):

{chr(10).join(sub_lines)}
"""
    cmd_rows = "\n".join(
        "/usr/bin/python3 scripts/train_zoo.py " + shlex.join(
            point_args(model, r, "B", m) + ["--name", point_name(model, r, "B")])
        for r in m["rows"])
    ideal_cmd = "/usr/bin/python3 scripts/train_zoo.py " + shlex.join(
        point_args(model, IDEAL_ROW, None, m) + ["--name", point_name(model, IDEAL_ROW, None)])
    calib = m["calib_images"] or 512
    steps_txt = str(m["steps"]) if not m["steps_by_bits"] else (
        f"{m['steps']} (S; " + ", ".join(f"{v} at {b} bits" for b, v in
                                         sorted(m["steps_by_bits"].items())) + ")")
    more = (f"imcsim's accuracy on the first {n_sim} test images"
            if m["imcsim_images"] > m["test_images"] else
            f"the accuracy on the first {m['test_images']} test images")
    mean_min = (sum(times) / len(times) / 60) if times else float("nan")
    sim_text = "" if not subset else f"""
then the table's figure (method_table.py records it as `table_imcsim` in the run summary;
`--arch` only for PIM-QAT's 1-bit cells):

```
build/imcsim run --graph results/scratch/methods/NAME.imcg --images {n_sim} -q --out results/scratch/methods/sim_NAME --timing analytical [--arch results/scratch/methods/NAME.arch.json]
```
"""
    return f"""## {m['title']}

Top-1 accuracy (%): {more}
(binomial standard error {se50:.2f} points at 50 % accuracy, {se90:.2f} at 90 %; "min /
point": mean wall time of a point on the shared 2-core machine).

{chr(10).join(lines)}
{sub_text}
Base `{m['base']}` (`{base['command']}`). Every point: {steps_txt} fine-tuning steps of
{m['batch_size']} images (lr {base['settings']['qat_adc']['lr']:g} from the base's settings,
Adam, cosine), ADC calibration on the first {calib} training images.
Contract: PyTorch's accuracy of the exported model (torch_imc in eval mode, exact) equals
`imcsim run`'s on the first {', '.join(str(n) for n in n_chk) or '—'} test images:
{len(checks) - len(bad)} / {len(checks)} points equal{"" if not bad else " — MISMATCH: " + ", ".join(bad)}.
Mean wall time of a point {mean_min:.1f} min (per-phase timings in the run summaries).

Commands of a point (B = ADC bits, S = fine-tuning steps; `method_table.py --run` adds `--imcsim-threads 1` with
`--jobs 2`, which does not change any number):

```
{ideal_cmd}
{cmd_rows}
```
{sim_text}"""


def write_table(args):
    runs = {}
    for p in sorted(RUNS.glob("*.json")):
        s = json.loads(p.read_text())
        runs[(s["model"], s["table_row"], s["table_bits"])] = s
    sections = "\n".join(model_section(k, model_settings(k, args), runs) for k in MODELS)
    text = f"""# Training methods at ADC bits 3-8 (Fashion-MNIST zoo models, measured by imcsim)

Top-1 accuracy (%) of `imcsim run` for each method of
`scripts/imcsim_py/torch_imc/methods.py` (documented in `scripts/imcsim_py/torch_imc/README.md`)
at each ADC resolution, on LeNet-5 and ResNet-20. Regenerate (resumes: points with a summary in
`results/methods/runs/` are kept; the tables alone without `--run`):

```
/usr/bin/python3 scripts/method_table.py --run --model lenet5 --jobs 2 --imcsim build/imcsim
/usr/bin/python3 scripts/method_table.py --run --model resnet20 --jobs 2 --imcsim build/imcsim
```

Every point of a model starts from the same trained base, `workloads/zoo/<model>` (float
training, BN folding, ideal-ADC QAT, 8-bit ADC QAT), and runs `scripts/train_zoo.py --base
workloads/zoo/<model> --method M --adc-bits B`: the method's mapping (below), ADC calibration
on the first training images with the method's rule, a short fine-tuning with the ADC in the
forward pass (RAOQ: the second half with ADC-LoRA), the method's finalisation, and export.
The fine-tuning is short because the hardware-exact forward costs ~32-64 convolutions per
layer and the machine has 2 shared cores; the methods' long-training benefits are therefore
not shown here: it is a like-for-like comparison of what each method's parts (mapping, ADC
kind and calibration, learned scales, corrections) give after the same short fine-tuning.

Mappings (all: 8-bit weights and activations, 128-row arrays, F = 8, seed 0):

{MAPPINGS}

(The per-method graphs in `workloads/zoo/methods/` carry the full 10,000-image contract check
on LeNet-5, PyTorch = reference.py = imcsim, re-checked by the golden tests.) Per-point
summaries (command, settings, per-layer calibration, accuracies, timings):
`results/methods/runs/*.json`.

{sections}"""
    notes = REPO / "results" / "methods" / "NOTES.md"
    if notes.is_file():
        text += "\n" + notes.read_text()
    out = REPO / "results" / "methods" / "README.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(runs)} points)")


CONTRACT = REPO / "workloads" / "zoo" / "methods"
CONTRACT_CMD = ("nice -n 10 /usr/bin/python3 scripts/train_zoo.py --base workloads/zoo/lenet5 "
                "--method {m} --adc-bits 4 --adc-steps 10 --adc-batch-size 32 "
                "--monitor-images 0 --no-reference --imcsim build/imcsim --no-readme "
                "--out-dir workloads/zoo/methods --name lenet5_{m}_adc4")


def write_contract_readme():
    """workloads/zoo/methods/README.md from the per-method summaries there."""
    rows = []
    for p in sorted(CONTRACT.glob("*.json")):
        s = json.loads(p.read_text())
        if "torch_imc_accuracy" not in s:
            continue
        c = s["settings"]["imc_config"]
        a = c["adc"]
        mapping = (f"{c['encoding']}, Bc {c['cell_bits']}, Bdac {c['dac_bits']}, {c['tiling']}"
                   f"{', A-shift' if c['ashift'] else ''}; {a['bits']}-bit {a['kind']} ADC "
                   f"({a['granularity']}{', signed' if a['signed'] else ''})")
        sim = s.get("imcsim_accuracy")
        same = sim is not None and abs(sim - s["torch_imc_accuracy"]) < 1e-12
        rows.append(f"| `{s['graph']}` | {s['method']} | {mapping} | "
                    f"{s['torch_imc_accuracy']:.4f} | {'—' if sim is None else f'{sim:.4f}'} | "
                    f"{s['test_images']} | {'yes' if same else 'NO'} | "
                    f"{s.get('arch') or 'default'} |")
    if not rows:
        return
    text = f"""# Per-method contract graphs (LeNet-5, 4-bit ADC)

One graph per training method of `scripts/imcsim_py/torch_imc/methods.py`, each fine-tuned
from `workloads/zoo/lenet5` for a few steps (the contract, not accuracy, is the point here;
accuracies per method and ADC resolution: `results/methods/README.md`). For each, the
accuracy PyTorch measures for the exported model (torch_imc in eval mode, exact
docs/SEMANTICS.md numerics) on all 10,000 Fashion-MNIST test images equals what `imcsim run`
measures on the same images. PyTorch's accuracy is recorded in the graph's provenance
(`fake_quant_accuracy`, and `torch_imc_accuracy` / `torch_imc_test_images` in
`method_settings_json`); the golden test `TestSetAccuracyEqualsPyTorch` re-measures it with
the C++ engine on every build, and `EngineMatchesPythonReferenceBitExactly` checks the four
golden pairs (test images 0-3, computed by reference.py) bit-exactly on every integer
quantity (partial sums, ADC codes, accumulators, node outputs) and on the float64 logits.

| graph | method | mapping; ADC | PyTorch | imcsim | images | equal | arch |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

`<name>.json`: command, settings (per-layer calibration, method options), timings;
`<name>.pt`: the state dict (`train_zoo.py --verify workloads/zoo/methods/<name> --imcsim
build/imcsim` reloads it, re-exports, and re-checks PyTorch == imcsim); `<name>.arch.json`:
the architecture matching a mapping the default config does not fit (PIM-QAT bit-serial:
1-bit cells; pass it as `imcsim run --arch`).

Regenerate (each a few minutes on 2 shared cores):

```
for m in plain-qat raoq columnquant pim-qat bs-kmq; do
  {CONTRACT_CMD.format(m="$m")}
done
/usr/bin/python3 scripts/method_table.py    # rewrites this file and results/methods/README.md
```
"""
    (CONTRACT / "README.md").write_text(text)
    print(f"wrote {CONTRACT / 'README.md'} ({len(rows)} graphs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="store_true", help="run the missing points")
    ap.add_argument("--model", choices=sorted(MODELS), default="lenet5",
                    help="model whose points --run runs (default lenet5)")
    ap.add_argument("--force", action="store_true", help="rerun existing points")
    ap.add_argument("--jobs", type=int, default=1,
                    help="points in parallel (> 1: each imcsim run uses 1 thread)")
    ap.add_argument("--imcsim", default="build/imcsim")
    ap.add_argument("--steps", type=int, default=None, help="override the model's steps")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--calib-images", type=int, default=None)
    ap.add_argument("--test-images", type=int, default=None,
                    help="test images (the first N) for PyTorch and imcsim (the contract "
                         "check; LeNet-5 1000, ResNet-20 200)")
    ap.add_argument("--imcsim-images", type=int, default=None,
                    help="test images for imcsim only (the table; ResNet-20 2000)")
    ap.add_argument("--rows", default=None, help="comma list of rows to run (default the "
                    "model's rows and ideal-adc)")
    ap.add_argument("--bits", default=None, help="comma list of ADC bits (default 3-8)")
    args = ap.parse_args()
    if args.run:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        m = model_settings(args.model, args)
        rows = [r for r in [IDEAL_ROW] + m["rows"]
                if args.rows is None or r in args.rows.split(",")]
        bits = BITS if args.bits is None else tuple(int(b) for b in args.bits.split(","))
        todo = [(args.model, IDEAL_ROW, None, m)] if IDEAL_ROW in rows else []
        todo += [(args.model, r, b, m) for b in bits for r in rows
                 if r != IDEAL_ROW and b in m["row_bits"].get(r, BITS)]
        with ThreadPoolExecutor(max_workers=args.jobs) as ex:
            for name, status in ex.map(lambda t: run_point(*t, args), todo):
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {status}", flush=True)
    write_table(args)
    write_contract_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
