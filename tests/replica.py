"""Runs a task module over a model folder on the PyTorch backend, as a replica does (no Ray)."""

from __future__ import annotations

from pathlib import Path

from deployments.backends import LoadSpec, create_backend
from deployments.loading import LoadedModel
from deployments.work import Answer
from deployments.tasks import get_task
from deployments.tasks.base import Payload
from hubserve.config.deployments import ModelEntry
from hubserve.repos.store import ModelStore


def load(folder: Path, model_id: str, task_name: str, tmp_path: Path, backend: str = "torch"):
    """``(task, LoadedModel)`` of the model in ``folder`` for ``task_name`` on ``backend``
    (ONNX exports are kept under ``tmp_path``)."""
    task = get_task(task_name)
    store = ModelStore(tmp_path, entries={model_id: ModelEntry(path=str(folder))})
    ref = store.resolve(model_id)
    head = task.head_for(ref)
    loaded = create_backend(backend, head)
    loaded.load(LoadSpec(ref.path, head, pipeline=task.pipeline, threads=2, model_id=model_id, revision=ref.sha,
                         cache_dir=tmp_path / "onnx-cache", preprocessors=task.preprocessors,
                         optional_preprocessors=task.optional_preprocessors))
    return task, LoadedModel(ref, loaded, task.prepare(ref, loaded))


def answer(task, model, inputs, extra: dict | None = None, **parameters) -> Answer:
    """The answer to one request (``inputs``, top-level ``extra`` fields and ``parameters``)."""
    request = task.parse(Payload(inputs=inputs, parameters=parameters, extra=extra or {}))
    (out,) = task.run(model, [request])
    assert not isinstance(out, BaseException), out
    return Answer.of(out, "cpu", model.ref.sha)
