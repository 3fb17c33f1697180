#!/usr/bin/env bash
# Timing benchmark: whole-inference timing of the shape-only ResNet-18 (ImageNet shapes) on
# the default architecture, analytical and cycle-accurate SystemC, with wall time and peak
# memory. Prints the figures; targets: SystemC <= 10 s, analytical <= 0.1 s, <= 2 GiB.
# Usage: scripts/bench_timing.sh [imcsim binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/imcsim}
graph=workloads/shapes/resnet18_imagenet.imcg
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-28s %14s %12s %10s %12s\n' mode cycles_per_image wall_s model_s peak_rss_mib
for mode in analytical systemc "systemc pipelined x16" "pipelined x4 repl mesh32"; do
  args=(--timing-only --graph "$graph" --arch arch_configs/default.json -q --out "$out/r")
  case "$mode" in
    analytical) args+=(--timing analytical) ;;
    systemc) args+=(--timing systemc) ;;
    "systemc pipelined x16") args+=(--timing systemc --execution pipelined --stream-images 16) ;;
    # Replicated layers (each weight copy its own pipeline with its own route) on a mesh of
    # 32-bit links: the links near the global buffer are shared by every copy and stall.
    *) args+=(--timing systemc --execution pipelined --stream-images 4 --replication auto
              --set interconnect.kind=mesh --set interconnect.link_bits=32) ;;
  esac
  /usr/bin/time -f '%e %M' -o "$out/time" "$bin" run "${args[@]}"
  read -r wall rss < "$out/time"
  /usr/bin/python3 - "$out/r/report.json" "$mode" "$wall" "$rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["latency"]
model_s = r.get("systemc_wall_s", float("nan"))
print(f"{sys.argv[2]:<28} {r['cycles_per_image']:>14} {float(sys.argv[3]):>12.3f} {model_s:>10.3f} {int(sys.argv[4])/1024:>12.1f}")
if r["cycles_per_image"] != r["analytical_cycles_per_image"]:
    print(f"{'  analytical latency':<28} {r['analytical_cycles_per_image']:>14}")
if "interval_cycles" in r and r.get("execution") == "pipelined":
    print(f"{'  steady-state interval':<28} {r['interval_cycles']:>14}  (analytical {r['analytical_interval_cycles']})")
    b = r["busy_stalled_by_component"]["interconnect"]
    print(f"{'  interconnect busy/stalled':<28} {b['busy']:>14} / {b['stalled']}")
PY
done
