"""scripts/plot_results.py: the 2-D Pareto front on hand-made rows, and one command making PNG
and PDF from a hand-made sweep CSV and a minimal run report."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import plot_results  # noqa: E402


class ParetoTest(unittest.TestCase):
    def test_front_on_hand_rows(self):
        rows = [
            {"k": "A", "e": 20.0, "acc": 0.80},
            {"k": "B", "e": 10.0, "acc": 0.85},  # dominates A
            {"k": "C", "e": 30.0, "acc": 0.90},
            {"k": "D", "e": 30.0, "acc": 0.89},  # dominated by C
            {"k": "E", "e": 5.0, "acc": None},   # no accuracy: not plotted
        ]
        front = plot_results.pareto_2d(rows, "e", "min", "acc", "max")
        self.assertEqual([r["k"] for r in front], ["B", "C"])
        front = plot_results.pareto_2d(rows, "e", "max", "acc", "min")
        self.assertEqual([r["k"] for r in front], ["A", "D"])

    def test_csv_cells(self):
        self.assertEqual(plot_results.parse_cell("3"), 3)
        self.assertEqual(plot_results.parse_cell("2.5"), 2.5)
        self.assertEqual(plot_results.parse_cell(""), None)
        self.assertEqual(plot_results.parse_cell("true"), True)
        self.assertEqual(plot_results.parse_cell("sar"), "sar")


class OneCommandTest(unittest.TestCase):
    def test_sweep_and_report(self):
        with tempfile.TemporaryDirectory() as d:
            csv_path = os.path.join(d, "sweep.csv")
            with open(csv_path, "w") as f:
                f.write("key,index,/adc/bits,/adc/kind,graph,images,accuracy_top1,latency_ns,energy_pj,"
                        "energy_adc_pj,energy_dac_pj,area_mm2,pareto,command\n")
                for i, (bits, kind) in enumerate([(3, "sar"), (4, "sar"), (3, "ramp"), (4, "ramp")]):
                    f.write(f"k{i},{i},{bits},{kind},g.imcg,10,{0.5 + 0.1 * bits},{100 * bits},{10.0 * bits},"
                            f"{8.0 * bits},{2.0 * bits},1.0,{str(i == 0).lower()},imcsim run\n")
            rep = {
                "graph": {"name": "g"}, "config": {"name": "c"},
                "energy": {"pj_per_image": 10.0, "by_component_pj": {"adc": 8.0, "dac": 2.0},
                           "per_node": [{"node": "conv1", "by_component_pj": {"adc": 8.0, "dac": 2.0}}]},
                "area": {"chip_mm2": 2.0, "by_component_mm2": {"adc": 1.5, "crossbar": 0.5}},
                "latency": {"model": "systemc", "cycles_per_image": 30, "ns_per_image": 25.0,
                            "per_node": [{"node": "conv1", "cycles": 20, "analytical_cycles": 20},
                                         {"node": "fc1", "cycles": 10, "analytical_cycles": 10}]},
            }
            rep_dir = os.path.join(d, "run")
            os.makedirs(rep_dir)
            with open(os.path.join(rep_dir, "report.json"), "w") as f:
                json.dump(rep, f)
            out = os.path.join(d, "plots")
            plot_results.main([csv_path, os.path.join(rep_dir, "report.json"), "--out-dir", out])
            stem = os.path.basename(d) + "_sweep"
            for name in (f"{stem}_curves", f"{stem}_energy_breakdown", f"{stem}_pareto", "run_report_breakdown",
                         "run_report_energy_per_node", "run_report_latency_per_layer"):
                for ext in ("png", "pdf"):
                    p = os.path.join(out, f"{name}.{ext}")
                    self.assertTrue(os.path.getsize(p) > 1000, p)


if __name__ == "__main__":
    unittest.main()
