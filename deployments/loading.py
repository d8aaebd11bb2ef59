"""One model load: the folder checked, a backend made (or shared with another task of the
process), the task's state prepared. Runs in a model thread of the server."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from hubserve.config.app import AppConfig
from hubserve.config.limits import LimitsConfig
from hubserve.config.deployments import TaskDeployment
from hubserve.errors import ExportUnsupported, ModelRefused, ModelTooLarge, NeedsTorch
from hubserve.repos.model_files import FolderReport, inspect_folder, refusals, without_pickles
from hubserve.repos.refs import ModelRef

from .backends import LoadSpec, create_backend, needs_torch, resolve_backend
from .tasks.base import Task

logger = logging.getLogger(__name__)


def human_bytes(n: float) -> str:
    """``16GB``-style sizes, as the hosted API's TooBig message shows them."""
    unit = "B"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            break
        n /= 1000
    return f"{n:.0f}{unit}" if unit == "B" or n >= 10 else f"{n:.1f}{unit}"


def too_large(ref: ModelRef, budget: int, task: str) -> Optional[ModelTooLarge]:
    """The 403 of a model larger than a replica's memory budget, else None."""
    if ref.size_bytes <= budget:
        return None
    return ModelTooLarge(
        f"The model {ref.model_id} is too large to be loaded automatically "
        f"({human_bytes(ref.size_bytes)} > {human_bytes(budget)}). "
        f"Raise max_model_bytes of the {task} deployment to serve it."
    )


def check_model_files(ref: ModelRef, trust_pickle: bool, limits: LimitsConfig) -> FolderReport:
    """Refuses a model folder holding code, links or paths that leave it, JSON files past
    ``limits.max_model_json_bytes`` or that do not parse, or only pickle weights (unless
    trusted); see ``hubserve.repos.model_files``.

    Raises:
        ModelRefused: naming each problem.
    """
    # NOTE(hubserve): an HF cache snapshot's files are links into its repo's blobs/.
    blobs = ref.cache_repo / "blobs" if ref.cache_repo is not None else None
    report = inspect_folder(ref.path, limits, links_within=blobs)
    problems = refusals(report, trust_pickle, any_pickle=False)
    if problems:
        raise ModelRefused(f"Model {ref.model_id} is refused: {'; '.join(problems[:5])}")
    return report


class SharedBackends:
    """Backends shared by the task servers of one process: tasks that load the same model
    revision with the same head (sentence-similarity and feature-extraction) hold its
    weights once. A backend closes when its last holder lets it go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple, list] = {}

    def acquire(self, key: tuple, load: Callable[[], Any]) -> tuple[Any, Callable[[], None]]:
        """The backend of ``key`` (``load()`` makes it the first time) and its release."""
        with self._lock:
            entry = self._held.get(key)
            if entry is None:
                entry = self._held[key] = [load(), 0]
            entry[1] += 1
            return entry[0], lambda: self._release(key)

    def _release(self, key: tuple) -> None:
        with self._lock:
            entry = self._held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._held[key]
        entry[0].close()

    def __len__(self) -> int:
        return len(self._held)


class LoadedModel:
    """A model revision loaded for one task: its backend plus task state.

    Args:
        release: lets a shared backend go (default: close the backend).
    """

    def __init__(self, ref: ModelRef, backend, state: Any, release: Optional[Callable[[], None]] = None) -> None:
        self.ref = ref
        self.backend = backend
        self.state = state
        self._release = release

    @property
    def compute_type(self) -> str:
        return self.backend.compute_type

    def __del__(self) -> None:
        # NOTE(hubserve): the multiplexer calls __del__ on LRU eviction; free the weights now.
        backend, self.backend = getattr(self, "backend", None), None
        release, self._release = getattr(self, "_release", None), None
        if release is not None:
            release()
        elif backend is not None:
            backend.close()


class ModelLoad:
    """How one revision loads for one task: the model's config entry over the deployment's options.

    Args:
        ref: the revision, as the disk holds it now.
        task: the task it loads for.
        config: the application config.
        options: the task deployment's options.
        threads: torch/ORT threads of the backend.
        torch: whether the backend may be torch (without it, ``NeedsTorch``).
    """

    def __init__(self, ref: ModelRef, task: Task, config: AppConfig, options: TaskDeployment, threads: int,
                 torch: bool) -> None:
        entry = config.models.get(ref.model_id)
        self.ref = ref
        self.task = task
        self.torch = torch
        self.limits = config.limits
        self.trust_pickle = bool(entry and entry.trust_pickle)
        self.spec = LoadSpec(
            path=ref.path,
            head=task.head_for(ref),
            pipeline=task.pipeline,
            device=(entry and entry.device) or options.device,
            threads=threads,
            model_id=ref.model_id,
            revision=ref.sha,
            cache_dir=Path(config.onnx_cache) if config.onnx_cache else None,
            dtype=(entry and entry.dtype) or options.dtype or "float32",
            preprocessors=task.preprocessors,
            optional_preprocessors=task.optional_preprocessors,
            limits=config.limits,
        )
        configured = (entry and entry.backend) or options.backend
        # NOTE(hubserve): half precision is a torch-on-GPU option.
        self.backend_name = "torch" if configured == "auto" and self.spec.dtype == "float16" else configured

    def run(self, backends: SharedBackends) -> LoadedModel:
        """The loaded model, on a backend shared through ``backends``."""
        report = check_model_files(self.ref, self.trust_pickle, self.limits)
        key = (self.ref.revision_id, self.spec.head.name, self.backend_name, self.spec.device, self.spec.dtype)
        backend, release = backends.acquire(key, lambda: self._new_backend(report))
        try:
            return LoadedModel(self.ref, backend, self.task.prepare(self.ref, backend), release)
        except BaseException:
            release()
            raise

    def _new_backend(self, report: FolderReport):
        head, device = self.spec.head, self.spec.device
        name = resolve_backend(self.backend_name, head, device)
        if not self.torch and needs_torch(name, head, device):
            raise NeedsTorch(f"{self.ref.model_id} needs torch ({name} backend, {head.name} head)")
        backend = create_backend(name, head, device)
        try:
            self._load_into(backend, report)
        except ExportUnsupported as exc:  # a model that loads on torch is never refused for its export
            if not self.torch:
                raise NeedsTorch(f"{self.ref.model_id} needs torch: {exc}") from None
            logger.warning("%s serves on PyTorch: %s", self.ref.model_id, exc)
            backend = create_backend("torch")
            self._load_into(backend, report)
        return backend

    def _load_into(self, backend, report: FolderReport) -> None:
        if report.pickles and not self.trust_pickle:
            # NOTE(hubserve): transformers falls back to pytorch_model.bin when safetensors are
            # incomplete; loading from a view without the pickle files rules that out.
            with without_pickles(self.ref.path, report) as view:
                backend.load(replace(self.spec, path=Path(view)))
        else:
            backend.load(self.spec)
