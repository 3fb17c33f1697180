#!/usr/bin/env bash
# Quick start 1: install what is missing, build, and run the default job: the bundled
# Fashion-MNIST CNN (workloads/fmnist_cnn/fmnist_cnn.imcg) on arch_configs/default.json over
# the whole 10,000-image test set. Writes results/default/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/imcsim run --graph workloads/fmnist_cnn/fmnist_cnn.imcg --arch arch_configs/default.json \
  --dataset-dir /usr/share/datasets/fashion-mnist --out results/default "$@"
