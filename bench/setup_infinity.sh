#!/usr/bin/env bash
# infinity-emb (the best-performing peer) in its own venv, for bench/embeddings.py --infinity.
# CPU-only torch from the same pin as hubserve; its other dependencies as infinity-emb asks.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-infinity
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "infinity-emb[server,optimum]==0.0.78" "torch==2.13.0+cpu"
echo "$(pwd)/$VENV/bin/infinity_emb"
