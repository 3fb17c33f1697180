#!/usr/bin/env bash
# Quick start 2: install what is missing (PyTorch included: the training tests need it),
# build, and run every test (C++ unit, golden, bad-input catalog, Python reference tests,
# torch_imc tests and the training smoke test) through CTest. CI runs this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --training
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
