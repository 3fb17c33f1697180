#!/usr/bin/python3
"""Accuracy of each training method at ADC bits 3-8 on the zoo LeNet-5, measured by imcsim:
runs (or resumes) the fine-tuning runs and regenerates results/methods/README.md.

    /usr/bin/python3 scripts/method_table.py --run --jobs 2 --imcsim build/imcsim
    /usr/bin/python3 scripts/method_table.py            # table only, from the run summaries

Each point fine-tunes the trained base model (workloads/zoo/lenet5: float + ideal-ADC QAT,
8-bit linear ADC) with `scripts/train_zoo.py --base workloads/zoo/lenet5 --method M
--adc-bits B` (ADC calibration on the first 512 training images, the method's fine-tuning
phase, its finalisation, export), and requires PyTorch's accuracy of the exported model to
equal `imcsim run`'s on the first --images test images (default 1000; the table). Run summaries (JSON: command, settings, accuracies,
timings) go to results/methods/runs/; graphs and state dicts to results/scratch/methods/
(not committed: rerun the command to regenerate them).
"""

from __future__ import annotations

import argparse
import json
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
BASE = "workloads/zoo/lenet5"
BITS = (3, 4, 5, 6, 7, 8)
# (row name, train_zoo --method, extra options)
ROWS = [
    ("plain-qat", "plain-qat", []),
    ("raoq", "raoq", []),
    ("columnquant", "columnquant", []),
    ("pim-qat", "pim-qat", []),
    ("bs-kmq", "bs-kmq", []),
    ("raoq-no-ashift", "raoq", ["--no-ashift"]),
]


def point_args(method, extra, bits, args):
    return ["--base", BASE, "--method", method, "--adc-bits", str(bits),
            "--adc-steps", str(args.steps), "--adc-batch-size", str(args.batch_size),
            "--test-images", str(args.images), "--no-reference", "--monitor-images", "0",
            "--imcsim", args.imcsim, "--no-readme",
            "--out-dir", str(SCRATCH.relative_to(REPO))] + extra


def run_point(row, method, extra, bits, args):
    name = f"lenet5_{row}_adc{bits}"
    out = RUNS / f"{name}.json"
    if out.exists() and not args.force:
        return name, "kept"
    cmd = ["nice", "-n", "10", "/usr/bin/python3", "scripts/train_zoo.py"] + \
        point_args(method, extra, bits, args) + ["--name", name]
    t0 = time.time()
    log = SCRATCH / f"{name}.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return name, f"FAILED ({r.returncode}, see {log})"
    s = json.loads((SCRATCH / f"{name}.json").read_text())
    s["table_row"] = row
    s["table_bits"] = bits
    RUNS.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return name, f"ok in {time.time() - t0:.0f} s"


def fmt(v):
    return "—" if v is None else f"{100 * v:.2f}"


def write_table(args):
    runs = {}
    for p in sorted(RUNS.glob("*.json")):
        s = json.loads(p.read_text())
        runs[(s["table_row"], s["table_bits"])] = s
    base = json.loads((REPO / f"{BASE}.json").read_text())
    head = "| method | " + " | ".join(f"{b} b" for b in BITS) + " |"
    sep = "|---|" + "---|" * len(BITS)
    lines = [head, sep,
             f"| float (no quantisation) | " + " | ".join(
                 fmt(base["float_accuracy"]) for _ in BITS) + " |",
             f"| base: ideal ADC (8-bit QAT, no ADC error) | " + " | ".join(
                 fmt(base["qat_ideal_adc_accuracy"]) for _ in BITS) + " |"]
    checks = []
    for row, _, _ in ROWS:
        cells = []
        for b in BITS:
            s = runs.get((row, b))
            if s is None:
                cells.append("—")
                continue
            cells.append(fmt(s.get("imcsim_accuracy")))
            checks.append((s["name"], s["torch_imc_accuracy"], s["imcsim_accuracy"],
                           s["test_images"], s["times"].get("train_total_s", 0)))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    bad = [c for c in checks if c[2] is None or abs(c[1] - c[2]) > 1e-12]
    cmd_rows = "\n".join(
        "/usr/bin/python3 scripts/train_zoo.py " + shlex.join(
            point_args(m, e, "B", args) + ["--name", f"lenet5_{r}_adcB"]).replace(
            "--imcsim " + args.imcsim, "--imcsim build/imcsim")
        for r, m, e in ROWS)
    text = f"""# Training methods at ADC bits 3-8 (LeNet-5, Fashion-MNIST, measured by imcsim)

Top-1 accuracy (%) of `imcsim run` on the first {args.images} Fashion-MNIST test images, for each method
of `scripts/imcsim_py/torch_imc/methods.py` (documented in
`scripts/imcsim_py/torch_imc/README.md`) at each ADC resolution. Regenerate (resumes; the
table alone without `--run`):

```
/usr/bin/python3 scripts/method_table.py --run --jobs 2 --imcsim build/imcsim
```

{chr(10).join(lines)}

Every point starts from the same trained base, `{BASE}` (float training, BN folding,
ideal-ADC QAT; its float and ideal-ADC accuracies are the first two rows), and runs
`scripts/train_zoo.py --base {BASE} --method M --adc-bits B`: the method's mapping
(below), ADC calibration on the first 512 training images with the method's rule, a short
fine-tuning with the ADC in the forward pass ({args.steps} steps of {args.batch_size} images,
Adam, lr 1e-4, cosine; RAOQ: the second half with ADC-LoRA), the method's finalisation, and
export. The fine-tuning is short because the hardware-exact forward costs ~32-64 convolutions
per layer and the machine has 2 shared cores; the methods' long-training benefits are
therefore not shown here: it is a like-for-like comparison of what each method's parts
(mapping, ADC kind and calibration, learned scales, corrections) give after the same short
fine-tuning.

Mappings (all: 8-bit weights and activations, 128-row arrays, F = 8, seed 0):

| row | mapping and ADC |
|---|---|
| plain-qat | OFFSET weights in 2-bit cells, bit-serial inputs (1-bit DAC), contiguous tiles, linear ADC per layer (unsigned, centre 0, round half away), step from the 99.99 % percentile |
| raoq | as plain-qat + A-shift (sign bit as its own DAC step), W-reshape (kurtosis, λ 6e-4), BitAug (b ± 1), ADC-LoRA (rank 4, second half of the steps) |
| columnquant | channel-aligned tiles; linear ADC with signed codes per (slice, tile, column), centre on a whole code, learned steps (LSQ); LSQ column weight scales |
| pim-qat | bit-serial decomposition (1-bit DAC × 1-bit cells), rescaling, noise-aware training (σ 0.5 LSB), adjusted precision (trained at b − 1), BN calibration on simulated outputs (psum_scale, bias) |
| bs-kmq | as plain-qat but a non-linear ADC (threshold table) per layer, BS-KMQ references (`imcsim calibrate --method bs-kmq` rule), fine-tuned with them |
| raoq-no-ashift | raoq without A-shift (W-reshape, BitAug, ADC-LoRA only) |

Contract: for every point, PyTorch's accuracy of the exported model (torch_imc in eval mode,
exact) equals `imcsim run`'s on the same {args.images} test images:
{len(checks) - len(bad)} / {len(checks)} points equal{"" if not bad else " — MISMATCH: " + ", ".join(b[0] for b in bad)}.
(The per-method graphs in `workloads/zoo/methods/` carry the full 10,000-image check,
PyTorch = reference.py = imcsim, re-checked by the golden tests.)

Per-point summaries (command, settings, per-layer calibration, accuracies, timings):
`results/methods/runs/*.json`. Commands of a point (B = ADC bits):

```
{cmd_rows}
```
"""
    notes = REPO / "results" / "methods" / "NOTES.md"
    if notes.is_file():
        text += "\n" + notes.read_text()
    out = REPO / "results" / "methods" / "README.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(checks)} points)")


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
    ap.add_argument("--force", action="store_true", help="rerun existing points")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--imcsim", default="build/imcsim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=1000,
                    help="test images (the first N) for PyTorch and imcsim (default 1000)")
    ap.add_argument("--rows", default=None, help="comma list of rows to run (default all)")
    ap.add_argument("--bits", default=None, help="comma list of ADC bits (default 3-8)")
    args = ap.parse_args()
    if args.run:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        rows = [r for r in ROWS if args.rows is None or r[0] in args.rows.split(",")]
        bits = BITS if args.bits is None else tuple(int(b) for b in args.bits.split(","))
        todo = [(r, m, e, b) for b in bits for (r, m, e) in rows]
        with ThreadPoolExecutor(max_workers=args.jobs) as ex:
            for name, status in ex.map(lambda t: run_point(*t, args), todo):
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {status}", flush=True)
    write_table(args)
    write_contract_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
