"""The model server: one Serve deployment per task, many models per replica.

``@serve.multiplexed`` keeps an LRU of loaded models per replica (keyed by
``<model id>@<sha>``, so a changed model is a new entry) and ``@serve.batch``
groups concurrent requests; Ray splits a batch by multiplexed model id, and
per-request failures travel back as values so that one bad request never fails
its batch neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ray import serve

from hubserve.config.app import AppConfig
from hubserve.config.limits import LimitsConfig
from hubserve.errors import (ApiError, BackendFailure, ExportUnsupported, ModelLoadError, ModelRefused, ModelTooLarge,
                             NeedsTorch)
from hubserve.repos.model_files import FolderReport, inspect_folder, refusals, without_pickles
from hubserve.tokens.secret_env import scrub_process
from hubserve.repos.refs import ModelRef, Revision
from hubserve.repos.store import open_store

from . import serve_internals
from .confine import model_threads, run_in
from .routing import ROUTER_CLASS
from .backends import LoadSpec, create_backend, import_framework, needs_torch, resolve_backend
from .tasks import get_task, infer_task
from .tasks.base import Measured, TaskRequest

logger = logging.getLogger(__name__)
_END = object()


@dataclass
class WorkItem:
    """One request for the model server.

    Attributes:
        revision_id: ``<model id>@<sha>`` (also the multiplexed model id).
        request: the validated task request.
    """

    revision_id: str
    request: TaskRequest


@dataclass
class Answer:
    """A model server's answer: the output, what computed it, and the compute headers the
    replica measured (``Measured``)."""

    output: Any
    compute_type: str
    sha: str
    headers: dict = field(default_factory=dict)

    @classmethod
    def of(cls, output: Any, compute_type: str, sha: str) -> "Answer":
        if isinstance(output, Measured):
            return cls(output.value, compute_type, sha, output.headers)
        return cls(output, compute_type, sha)


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


class ModelServer:
    """Serves one task for any number of models.

    Args:
        task: the task name.
        config: the application config (``AppConfig`` as a dict).
        torch: whether models may load on PyTorch; without it (the ingress) a model that
            needs torch raises ``NeedsTorch``.
        backends: backends shared with the other task servers of this process.
        threads: torch/ORT threads (default: the task deployment's).
    """

    def __init__(self, task: str, config: dict, *, torch: bool = True,
                 backends: Optional[SharedBackends] = None, threads: Optional[int] = None) -> None:
        serve_internals.check_ray_version()
        self.task = get_task(task)
        self.config = AppConfig.model_validate(config)
        self.options = self.config.deployment_for(task)
        self.store = open_store(self.config)
        self.torch = torch
        self.backends = backends or SharedBackends()
        self.threads = threads or self.options.threads or max(1, int(round(self.options.num_cpus or 1)))
        self.failures: dict[str, tuple[ApiError, float]] = {}
        self.loads: Counter = Counter()
        self.served = 0  # requests this replica took (its share of a hot model's traffic)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # NOTE(hubserve): every load and inference runs here: threads that read model files only.
        self.model_threads = model_threads(self.config, f"hubserve-{task}")

        async def load_model(revision_id: str) -> LoadedModel:
            return await self.load(revision_id)

        # NOTE(hubserve): decorated here, not on the class, so the LRU size comes from the config.
        self._load_fn = load_model
        self.get_model = serve.multiplexed(max_num_models_per_replica=self.options.max_models_per_replica)(
            load_model
        )
        self.run_batch.set_max_batch_size(self.options.max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(self.options.batch_wait_timeout_s)

    async def start(self, preload: bool = True) -> None:
        """Imports the framework and loads the config's preloaded models of this task."""
        # NOTE(hubserve): a replica exists only when its task has traffic (or min_replicas > 0),
        # so paying the framework import here takes it off the first request's latency; an
        # embedding replica on ONNX never imports torch unless a model needs it.
        if self.torch and needs_torch(self.options.backend, self.task.head, self.options.device):
            await asyncio.to_thread(import_framework, self.options.backend)
        if not preload:
            return
        for model_id, entry in self.config.models.items():
            if not entry.preload:
                continue
            ref = self.store.resolve(model_id)
            if self.task.name in entry.preload_tasks(entry.task or infer_task(ref)):
                start = time.perf_counter()
                try:
                    await self.get_model(ref.revision_id)
                except NeedsTorch as exc:  # the task's deployment loads it on its first request
                    logger.info("not preloading %s here: %s", model_id, exc)
                    continue
                logger.info("preloaded %s for %s in %.2fs", model_id, self.task.name, time.perf_counter() - start)

    # -- the resident models ---------------------------------------------------------

    def _resident(self) -> "OrderedDict[str, LoadedModel]":
        return serve_internals.resident(self._load_fn)

    async def _evict(self, revision_id: Optional[str] = None) -> None:
        """Unloads one model (the least recently used one by default) and frees its memory."""
        await serve_internals.unload(self._load_fn, revision_id)

    def resident_bytes(self) -> int:
        return sum(m.ref.size_bytes for m in self._resident().values())

    async def load(self, revision_id: str) -> LoadedModel:
        """Loads ``<id>@<sha>`` in a worker thread (the event loop stays free).

        Called by the multiplexer under its lock. Enforces the memory budget (evicting
        least recently used models until the new one fits), drops older revisions of the
        same model, and reports a recent failure instead of retrying it.
        """
        model_id = Revision.parse(revision_id).model_id
        failed = self.recent_failure(revision_id)
        if failed is not None:
            raise failed
        ref = self.store.resolve_now(model_id)  # a load reads the disk as it is now
        budget = self.options.max_model_bytes
        error = too_large(ref, budget, self.task.name)
        if error is not None:
            raise error
        for other in [r for r in self._held_revisions(model_id) if r != revision_id]:
            await self._evict(other)
        while self._resident() and self.resident_bytes() + ref.size_bytes > budget:
            await self._evict()
        entry = self.config.models.get(model_id)
        trust_pickle = bool(entry and entry.trust_pickle)
        spec = LoadSpec(
            path=ref.path,
            head=self.task.head_for(ref),
            pipeline=self.task.pipeline,
            device=(entry and entry.device) or self.options.device,
            threads=self.threads,
            model_id=ref.model_id,
            revision=ref.sha,
            cache_dir=Path(self.config.onnx_cache) if self.config.onnx_cache else None,
            dtype=(entry and entry.dtype) or self.options.dtype or "float32",
            preprocessors=self.task.preprocessors,
            optional_preprocessors=self.task.optional_preprocessors,
            limits=self.config.limits,
        )
        configured = (entry and entry.backend) or self.options.backend
        if configured == "auto" and spec.dtype == "float16":
            configured = "torch"  # half precision is a torch-on-GPU option

        def _load_with(backend, report: FolderReport) -> None:
            if report.pickles and not trust_pickle:
                # NOTE(hubserve): transformers falls back to pytorch_model.bin when safetensors are
                # incomplete; loading from a view without the pickle files rules that out.
                with without_pickles(ref.path, report) as view:
                    backend.load(replace(spec, path=Path(view)))
            else:
                backend.load(spec)

        def _new_backend(report: FolderReport):
            head = spec.head
            name = resolve_backend(configured, head, spec.device)
            if not self.torch and needs_torch(name, head, spec.device):
                raise NeedsTorch(f"{ref.model_id} needs torch ({name} backend, {head.name} head)")
            backend = create_backend(name, head, spec.device)
            try:
                _load_with(backend, report)
            except ExportUnsupported as exc:  # a model that loads on torch is never refused for its export
                if not self.torch:
                    raise NeedsTorch(f"{ref.model_id} needs torch: {exc}") from None
                logger.warning("%s serves on PyTorch: %s", ref.model_id, exc)
                backend = create_backend("torch")
                _load_with(backend, report)
            return backend

        def _load() -> LoadedModel:
            report = check_model_files(ref, trust_pickle, self.config.limits)
            key = (revision_id, spec.head.name, configured, spec.device, spec.dtype)
            backend, release = self.backends.acquire(key, lambda: _new_backend(report))
            try:
                return LoadedModel(ref, backend, self.task.prepare(ref, backend), release)
            except BaseException:
                release()
                raise

        start = time.perf_counter()
        self.loads[revision_id] += 1
        try:
            model = await run_in(self.model_threads, _load)
        except NeedsTorch:
            raise  # not a failure: the caller runs the model elsewhere
        except Exception as exc:  # noqa: BLE001 - a load failure is reported, never crashes the replica
            if not isinstance(exc, ApiError):
                logger.exception("loading %s failed", revision_id)
                exc = ModelLoadError(f"Failed to load model {model_id}: {type(exc).__name__}: {exc}")
            self.failures[revision_id] = (exc, time.monotonic())
            raise exc from None
        self.failures.pop(revision_id, None)
        logger.info("loaded %s (%s) in %.2fs", revision_id, self.task.name, time.perf_counter() - start)
        return model

    def recent_failure(self, revision_id: str) -> Optional[ApiError]:
        """The error of a load of ``revision_id`` that failed within the back-off, else None."""
        failed = self.failures.get(revision_id)
        if failed and time.monotonic() - failed[1] < self.config.cold_start.retry_failed_after_s:
            return failed[0]
        return None

    def _held_revisions(self, model_id: str) -> list[str]:
        return [r for r in self._resident() if Revision.parse(r).model_id == model_id]

    async def unload(self, model_id: str) -> bool:
        """Unloads every revision of ``model_id`` held here; says whether there was one."""
        held = self._held_revisions(model_id)
        for revision_id in held:
            await self._evict(revision_id)
        return bool(held)

    async def load_model(self, revision_id: str) -> dict:
        """Makes sure ``revision_id`` is loaded here; says whether it already was and how long it took."""
        cached = self.holds(revision_id)
        start = time.perf_counter()
        await self.get_model(revision_id)
        return {"cached": cached, "seconds": time.perf_counter() - start}

    def holds(self, revision_id: str) -> bool:
        return revision_id in self._resident()

    async def model_status(self, revision_id: str) -> dict:
        """Whether this replica holds ``revision_id`` (or the error of its recent failed load),
        and what it holds. The replicas are the one owner of load state: the ingress asks them."""
        return {"loaded": self.holds(revision_id), "failure": self.recent_failure(revision_id),
                "models": list(self._resident()), "resident_bytes": self.resident_bytes(),
                "loads": self.loads[revision_id], "all_loads": sum(self.loads.values()), "pid": os.getpid(),
                "served": self.served}

    async def infer(self, item: WorkItem) -> Answer:
        """Runs one request, batched with its concurrent neighbours."""
        self.served += 1
        result = await self.run_batch(item)
        if isinstance(result, BaseException):
            raise result
        return result

    async def generate_stream(self, item: WorkItem):
        """Streams a generation: first ``{compute_type, sha}``, then the task's events."""
        model = await self.get_model(item.revision_id)
        yield {"compute_type": model.compute_type, "sha": model.ref.sha}
        events = self.task.stream(model, item.request)
        try:
            while (event := await run_in(self.model_threads, next, events, _END)) is not _END:
                yield event
        finally:
            # NOTE(hubserve): the caller may have gone mid-stream; closing the task's generator
            # stops the generation (once the worker thread has handed over its token).
            await run_in(self.model_threads, _close_when_idle, events)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def run_batch(self, items: list[WorkItem]) -> list[Any]:
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.revision_id, []).append(i)
        out: list[Any] = [None] * len(items)
        for revision_id, members in groups.items():
            results = await self._run_group(revision_id, [items[i].request for i in members])
            for i, result in zip(members, results):
                out[i] = result
        return out

    async def _run_group(self, revision_id: str, requests: list[TaskRequest]) -> list[Any]:
        try:
            model = await self.get_model(revision_id)
        except ApiError as exc:
            return [exc] * len(requests)
        except Exception as exc:  # noqa: BLE001
            logger.exception("loading %s failed", revision_id)
            return [ModelLoadError(f"Failed to load model {revision_id}: {exc}")] * len(requests)
        try:
            outputs = await run_in(self.model_threads, self.task.run, model, requests)
        except Exception as exc:  # noqa: BLE001
            if len(requests) > 1:
                # NOTE(hubserve): a task that runs its batch as one pass failed on it: run each
                # request alone, so that only the bad one fails.
                return [(await self._run_group(revision_id, [r]))[0] for r in requests]
            if not isinstance(exc, ApiError):
                logger.exception("%s failed on %s", self.task.name, revision_id)
                exc = BackendFailure("unknown error")
            return [exc]
        return [
            o if isinstance(o, BaseException) else Answer.of(o, model.compute_type, model.ref.sha)
            for o in outputs
        ]

    def check_health(self) -> None:
        """Serve's health probe: the replica is alive if its event loop answers."""


def _close_when_idle(generator, wait_s: float = 10.0) -> None:
    """Closes a generator another thread may still be running (``next`` in a worker)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            generator.close()
            return
        except ValueError:  # "generator already executing"
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


class ModelServerDeployment(ModelServer):
    """A task's model server as a Serve deployment of its own (``build_model_server``)."""

    async def __init__(self, task: str, config: dict) -> None:
        # NOTE(hubserve): a replica reads files its models name: it keeps no secret its node
        # may have been given (nor passes one on to the processes it starts).
        scrub_process()
        super().__init__(task, config)
        # NOTE(hubserve): the ingress runs its inline tasks' models; this deployment gets only
        # those that need torch, so preloading them here would hold a second copy.
        await self.start(preload=task not in self.config.ingress.inline)


def build_model_server(task: str, config: AppConfig):
    """The bound Serve deployment of ``task``, with the config's replica options.

    Args:
        task: a registered task name.
        config: the application config.

    Returns:
        A bound ``Application`` for the ingress to hold a handle to.
    """
    opts = config.deployment_for(task)
    placement = {} if opts.max_replicas_per_node is None else {"max_replicas_per_node": opts.max_replicas_per_node}
    deployment = serve.deployment(
        ModelServerDeployment,
        name=task,
        ray_actor_options={"num_cpus": opts.num_cpus, "num_gpus": opts.num_gpus or 0},
        max_ongoing_requests=opts.max_ongoing_requests,
        max_queued_requests=opts.max_queued_requests,
        autoscaling_config=opts.autoscaling.serve_config(),
        request_router_config={"request_router_class": ROUTER_CLASS,
                               "request_router_kwargs": {"spread_above": opts.autoscaling.target_ongoing_requests}},
        **placement,
    )
    return deployment.bind(task, config.model_dump(mode="json"))
