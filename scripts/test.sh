#!/usr/bin/env bash
# Quick start 2: install what is missing, build, and run every test (C++ unit, golden,
# bad-input catalog, Python reference tests) through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
