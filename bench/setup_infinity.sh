#!/usr/bin/env bash
# Creates .venv-infinity: infinity-emb on its ONNX engine, the peer that bench/embeddings.py
# compares against (`--infinity .venv-infinity/bin/python`). Its own venv, so that its
# dependencies (numpy<2 among them) never touch hubserve's; bench/infinity-constraints.txt pins
# the tree that was measured: hubserve's torch, transformers and optimum, infinity's numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv-infinity}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c bench/infinity-constraints.txt torch "infinity-emb[optimum,server]==0.0.78"
"$VENV/bin/python" -c "import infinity_emb, optimum.onnxruntime; print('infinity-emb', infinity_emb.__version__)"
