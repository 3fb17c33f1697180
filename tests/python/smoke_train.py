#!/usr/bin/python3
"""CI smoke test of the training scripts (ctest `train_smoke`, < 2 min on 2 cores):

1. scripts/train_zoo.py from scratch (plain QAT, LeNet-5): a few float, ideal-ADC QAT and
   ADC-in-the-loop steps, export, PyTorch == reference.py == `imcsim run` on a few images;
2. every method (plain-qat, raoq, columnquant, pim-qat, bs-kmq) fine-tuned from the
   committed base workloads/zoo/lenet5 for a few steps at a 4-bit ADC, export, the same
   three-way check (train_zoo exits 1 on any difference);
3. BS-KMQ consistency: torch_imc's NL-ADC references (calibrated on the first N training
   images) equal those `imcsim calibrate --method bs-kmq --bits 4 --images N` fits on the
   exported graph, for every layer, bit for bit.

    /usr/bin/python3 tests/python/smoke_train.py --imcsim build/imcsim

Exit 0 on success, 1 on a failure, 77 (ctest: skipped) when PyTorch is not installed
(`bash scripts/setup.sh --training` installs it; scripts/test.sh does).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

METHODS = ("plain-qat", "raoq", "columnquant", "pim-qat", "bs-kmq")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imcsim", required=True)
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("smoke_train: PyTorch not installed (bash scripts/setup.sh --training): skipped")
        return 77
    torch.set_num_threads(2)
    import train_zoo as TZ
    out = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="train_smoke_"))
    out.mkdir(parents=True, exist_ok=True)
    common = ["--quick", "--test-images", "48", "--calib-images", "32", "--act-images", "256",
              "--monitor-images", "0", "--imcsim", args.imcsim, "--out-dir", str(out),
              "--threads", "2"]
    failures = []
    t_all = time.time()

    def run(label, argv):
        t0 = time.time()
        rc = TZ.main(argv + common)
        print(f"smoke_train: {label}: exit {rc} ({time.time() - t0:.1f} s)", flush=True)
        if rc != 0:
            failures.append(label)

    run("from scratch (plain-qat)", ["--model", "lenet5", "--name", "scratch",
                                     "--float-steps", "10", "--qat-steps", "2",
                                     "--adc-steps", "2", "--adc-batch-size", "16"])
    for m in METHODS:
        run(m, ["--base", "workloads/zoo/lenet5", "--method", m, "--adc-bits", "4",
                "--adc-steps", "2", "--adc-batch-size", "16", "--name", f"lenet5_{m}"])

    # 3. BS-KMQ consistency with imcsim calibrate (references before fine-tuning)
    t0 = time.time()
    if not check_bskmq(args.imcsim, out):
        failures.append("bs-kmq consistency")
    print(f"smoke_train: bs-kmq references == imcsim calibrate: "
          f"{'FAILED' if 'bs-kmq consistency' in failures else 'ok'} ({time.time() - t0:.1f} s)")
    print(f"smoke_train: {'FAILED: ' + ', '.join(failures) if failures else 'OK'} "
          f"({time.time() - t_all:.0f} s)")
    return 1 if failures else 0


def check_bskmq(imcsim, out: Path, n_images: int = 32, bits: int = 4) -> bool:
    import numpy as np
    import torch
    from imcsim_py import idx
    from imcsim_py import torch_imc as ti
    from imcsim_py.graph_pb import load_graph, save_graph
    from imcsim_py.torch_imc import methods as MT
    import train_zoo as TZ
    tr_x, _ = idx.load_fashion_mnist("train")
    te_x, te_y = idx.load_fashion_mnist("t10k")
    meth = MT.BSKMQ()
    cfg = meth.configure(ti.ImcConfig(adc=ti.AdcConfig(bits=bits)))
    model = ti.models.LeNet5(cfg)
    ti.fold_bn(model)
    TZ.load_state(torch, model, torch.load(REPO / "workloads" / "zoo" / "lenet5.pt"))
    ti.prepare(model)
    ti.set_quantized(model, True)
    ti.calibrate_adcs(model, tr_x[:n_images], rule=meth.calib_rule)
    g = ti.export_graph(model, "bskmq_check", golden_pixels=te_x, golden_labels=te_y,
                        provenance=dict(method="bs-kmq"), num_classes=10)
    mine = out / "bskmq_check.imcg"
    theirs = out / "bskmq_check_imcsim.imcg"
    save_graph(g, mine)
    cmd = [imcsim, "calibrate", "--graph", str(mine), "--method", "bs-kmq", "--bits",
           str(bits), "--images", str(n_images), "--out", str(theirs), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"smoke_train: {' '.join(cmd)} failed: {r.stderr.strip()}")
        return False
    a, b = load_graph(mine), load_graph(theirs)
    ok = True
    for na, nb in zip(a.nodes, b.nodes):
        if not na.HasField("imc"):
            continue
        ta, tb = na.imc.adc, nb.imc.adc
        same = (list(ta.thresholds_fx) == list(tb.thresholds_fx) and
                list(ta.levels_fx) == list(tb.levels_fx) and ta.bits == tb.bits)
        if not same:
            print(f"smoke_train: {na.name}: torch_imc thresholds {list(ta.thresholds_fx)} "
                  f"levels {list(ta.levels_fx)}; imcsim calibrate {list(tb.thresholds_fx)} "
                  f"{list(tb.levels_fx)}")
            ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())
