"""Readies the models a config pins ahead of their first request: ``make setup`` runs it.

    python -m deployments.prepare configs/default.yaml

Each model entry is loaded once for each task it serves, through that task's own model server
code, so that its ONNX Runtime export lands where a replica will look for it (the config's
``onnx_cache``, keyed by the model's revision and the library versions), then released. A
replica then loads the export in seconds instead of exporting on the first request. A model
that runs on PyTorch has nothing to export: loading it checks it. Run with the environment the
server will have (``HUBSERVE_MODEL_STORE`` included): the paths resolve the same way.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from hubserve.config.app import AppConfig, hubserve_args
from hubserve.config.base import load_yaml
from hubserve.errors import ApiError
from hubserve.repos.store import open_store

from .model_server import ModelServer
from .tasks import infer_task


async def prepare(config: AppConfig) -> int:
    """Loads (and so exports) every pinned model for each of its tasks; the number that failed."""
    store = open_store(config)
    failed = 0
    for model_id, entry in config.models.items():
        try:
            ref = store.resolve(model_id)
            tasks = dict.fromkeys([entry.task or infer_task(ref), *entry.preload_tasks(entry.task)])
        except ApiError as exc:
            print(f"{model_id}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        for task in tasks:
            start = time.perf_counter()
            try:
                model = await ModelServer(task, config.model_dump()).load(ref.revision_id)
            except ApiError as exc:
                print(f"{model_id} ({task}): {exc.message}", file=sys.stderr)
                failed += 1
                continue
            print(f"{model_id} ({task}): ready on {model.compute_type} in {time.perf_counter() - start:.1f}s")
            figures = getattr(model.backend, "figures", None)
            if figures:  # the fidelity gate's figures of the export it serves
                print(f"  {model_id} ({task}): " + ", ".join(f"{k} {v}" for k, v in figures.items() if k != "reason"))
            model.__del__()
    return failed


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m deployments.prepare CONFIG.yaml", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    config = AppConfig.from_args(hubserve_args(load_yaml(args[0])))
    return 1 if asyncio.run(prepare(config)) else 0


if __name__ == "__main__":
    sys.exit(main())
