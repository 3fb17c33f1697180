#!/usr/bin/env bash
# Regenerates results/adc_calibration/: test-set accuracy of the bundled Fashion-MNIST CNN
# versus ADC bits (2..8) for ADC references calibrated with `imcsim calibrate` (three linear
# variants, Lloyd-Max, CDF, k-means, BS-KMQ), evaluated with `imcsim run` on the 10,000 test
# images, plus the per-layer quantisation MSE of every method on identical histograms
# (`--method all`). Rules: docs/calibration.md.
#
#   bash scripts/adc_calibration_sweep.sh            # everything (resumes: finished jobs are kept)
#   FORCE=1 bash scripts/adc_calibration_sweep.sh    # redo every job
#
# Environment: IMCSIM (binary, default build/imcsim), ARCH, GRAPH, JOBS (parallel jobs, default
# 2; each job uses one thread), CALIB_IMAGES (default 512), TEST_IMAGES (0 = all 10,000),
# BITS, METHODS, WORK (calibrated graphs and run reports, default results/scratch/adc_calibration).
set -euo pipefail
cd "$(dirname "$0")/.."

export IMCSIM=${IMCSIM:-build/imcsim}
export ARCH=${ARCH:-arch_configs/default.json}
export GRAPH=${GRAPH:-workloads/fmnist_cnn/fmnist_cnn.imcg}
export CALIB_IMAGES=${CALIB_IMAGES:-512}
export TEST_IMAGES=${TEST_IMAGES:-0}
export WORK=${WORK:-results/scratch/adc_calibration}
export FORCE=${FORCE:-0}
JOBS=${JOBS:-2}
BITS=${BITS:-"2 3 4 5 6 7 8"}
METHODS=${METHODS:-"linear-minmax linear-percentile linear-mse lloyd-max cdf kmeans bs-kmq"}
OUT=results/adc_calibration

[ -x "$IMCSIM" ] || { echo "no imcsim binary at $IMCSIM (build first, or set IMCSIM)" >&2; exit 1; }
mkdir -p "$WORK" "$OUT"

# One job: calibrate the graph with one method at one resolution, then evaluate it.
job() {
  local m=$1 b=$2 g="$WORK/${1}_${2}b.imcg"
  if [ "$FORCE" = 1 ] || [ ! -s "$WORK/cal_${m}_${b}b.json" ]; then
    "$IMCSIM" calibrate --graph "$GRAPH" --arch "$ARCH" --method "$m" --bits "$b" \
      --images "$CALIB_IMAGES" --threads 1 --quiet --out "$g" --report "$WORK/cal_${m}_${b}b.json"
  fi
  if [ "$m" = all ]; then return 0; fi
  if [ "$FORCE" = 1 ] || [ ! -s "$WORK/run_${m}_${b}b/report.json" ]; then
    "$IMCSIM" run --graph "$g" --arch "$ARCH" --images "$TEST_IMAGES" --threads 1 --quiet \
      --out "$WORK/run_${m}_${b}b"
  fi
  echo "done: $m $b bits"
}
export -f job

start=$(date +%s)
{
  for b in $BITS; do echo "all $b"; done          # MSE of every method on identical histograms
  for b in $BITS; do for m in $METHODS; do echo "$m $b"; done; done
} | xargs -P "$JOBS" -L 1 bash -c 'job "$@"' _
echo "sweep finished in $(( $(date +%s) - start )) s (JOBS=$JOBS)"

# The commands, for the record.
{
  echo "# Commands that produced results/adc_calibration (scripts/adc_calibration_sweep.sh)"
  echo "# imcsim $("$IMCSIM" --version 2>/dev/null || true), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  for b in $BITS; do
    echo "$IMCSIM calibrate --graph $GRAPH --arch $ARCH --method all --bits $b --images $CALIB_IMAGES --threads 1 --quiet --out $WORK/all_${b}b.imcg --report $WORK/cal_all_${b}b.json"
  done
  for b in $BITS; do for m in $METHODS; do
    echo "$IMCSIM calibrate --graph $GRAPH --arch $ARCH --method $m --bits $b --images $CALIB_IMAGES --threads 1 --quiet --out $WORK/${m}_${b}b.imcg --report $WORK/cal_${m}_${b}b.json"
    echo "$IMCSIM run --graph $WORK/${m}_${b}b.imcg --arch $ARCH --images $TEST_IMAGES --threads 1 --quiet --out $WORK/run_${m}_${b}b"
  done; done
} > "$OUT/commands.txt"

/usr/bin/python3 scripts/adc_calibration_tables.py --work "$WORK" --out "$OUT" --bits $BITS --methods $METHODS \
  --graph "$GRAPH"
