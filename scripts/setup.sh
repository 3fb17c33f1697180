#!/usr/bin/env bash
# Installs what imcsim needs from Debian 12's packages (only what is missing).
# Usage: scripts/setup.sh [--training]
#   --training adds PyTorch (python3-torch) for the training side: scripts/train_zoo.py,
#   scripts/imcsim_py/torch_imc/, scripts/imcsim_py/export.py and their tests
#   (scripts/test.sh passes it: CI runs the torch_imc tests and the training smoke test).
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libsystemc-dev libprotobuf-dev protobuf-compiler libfmt-dev nlohmann-json3-dev
  libboost-iostreams-dev libboost-program-options-dev libgtest-dev libbenchmark-dev
  dataset-fashion-mnist
  python3 python3-numpy python3-protobuf python3-matplotlib libopenblas0-pthread
)
if [[ "${1:-}" == "--training" ]]; then packages+=(python3-torch); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
