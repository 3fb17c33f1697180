#!/bin/bash
# Benchmarks of the bit-exact functional kernels (docs/fast_kernels.md), one line of figures per
# run from build/imcsim_bench_kernels (wall and CPU seconds, images/s, effective G MAC/s, peak RSS):
#   W1        512x512 layer (1x1 conv on 512x32x32: 1024 input vectors), 8-bit weights and codes,
#             128-row arrays, 2-bit cells, 1-bit DAC, 6-bit linear ADC per layer, both cores on
#             one image; native, portable and reference kernels; with ADC noise (sigma 1 LSB: the
#             affine noise path's lattice form; 0.37 LSB: its blocked form) and with a 6-bit
#             non-linear ADC
#   ResNet-20 workloads/zoo/resnet20.imcg on Fashion-MNIST test images, images over both cores,
#             without and with ADC noise (sigma 1 LSB: affine path; 0.37: fused noise kernel)
#   ResNet-18 ImageNet shapes with random weights, one image on both cores: time, peak RSS
# Random-weight graphs are generated into $OUT (scratch, not committed) by
# scripts/make_shape_workloads.py --random-weights. The machine is shared: the load average is
# printed before each figure; compare cpu_s (CPU time of this process) when the load is high.
#
#   bash scripts/bench_kernels.sh [--quick]     (BUILD=build OUT=results/scratch/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-results/scratch/bench}
BENCH=$BUILD/imcsim_bench_kernels
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
[ -x "$BENCH" ] || { echo "bench_kernels.sh: build first (cmake --build $BUILD --target imcsim_bench_kernels)" >&2; exit 1; }
mkdir -p "$OUT/nl"
if [ ! -f "$OUT/w1_layer_random.imcg" ] || [ ! -f "$OUT/resnet18_imagenet_random.imcg" ]; then
  /usr/bin/python3 scripts/make_shape_workloads.py --random-weights 1 --models w1,resnet18 --adc-bits 6 --out-dir "$OUT"
fi
if [ ! -f "$OUT/nl/w1_layer_random.imcg" ]; then
  /usr/bin/python3 scripts/make_shape_workloads.py --random-weights 1 --models w1 --adc-bits 6 --adc-kind nonlinear \
    --out-dir "$OUT/nl"
fi
W1="$OUT/w1_layer_random.imcg"
R20_IMAGES=2000
W1_IMAGES=32
if [ $QUICK = 1 ]; then R20_IMAGES=200; W1_IMAGES=2; fi

run() {
  local label=$1; shift
  echo "# $label   [load: $(cut -d' ' -f1-3 /proc/loadavg)]"
  "$BENCH" "$@"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
run "W1 native (default)"   --graph "$W1" --images $W1_IMAGES --image-threads 2
run "W1 portable"           --graph "$W1" --images $W1_IMAGES --image-threads 2 --kernel portable
run "W1 reference engine"   --graph "$W1" --images 1 --image-threads 2 --kernel reference
run "W1 ADC noise 1 LSB"    --graph "$W1" --images $W1_IMAGES --image-threads 2 --noise 1
run "W1 ADC noise 0.37 LSB (sigma 2^11 not an integer: blocked form)" --graph "$W1" --images $W1_IMAGES \
  --image-threads 2 --noise 0.37
run "W1 non-linear ADC"     --graph "$OUT/nl/w1_layer_random.imcg" --images $W1_IMAGES --image-threads 2
run "ResNet-20 (zoo), Fashion-MNIST test images" --graph workloads/zoo/resnet20.imcg --dataset --images $R20_IMAGES --threads 2
run "ResNet-20 (zoo) + ADC noise 1 LSB" --graph workloads/zoo/resnet20.imcg --dataset --images $R20_IMAGES --threads 2 --noise 1
run "ResNet-20 (zoo) + ADC noise 0.37 LSB (fused noise kernel)" --graph workloads/zoo/resnet20.imcg --dataset \
  --images $R20_IMAGES --threads 2 --noise 0.37
run "ResNet-18 ImageNet shapes, random weights, one image" --graph "$OUT/resnet18_imagenet_random.imcg" --images 1 --image-threads 2
run "ResNet-18 ImageNet shapes + ADC noise 1 LSB, one image" --graph "$OUT/resnet18_imagenet_random.imcg" --images 1 --image-threads 2 --noise 1
