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
import time
from collections import Counter, OrderedDict
from typing import Any, Optional

from ray import serve

from hubserve import ray_adapter
from hubserve.config.app import AppConfig
from hubserve.errors import ApiError, BackendFailure, ModelLoadError, NeedsTorch
from hubserve.tokens.secret_env import scrub_process
from hubserve.repos.refs import Revision
from hubserve.repos.store import open_store

from .confine import model_threads, run_in
from .routing import ROUTER_CLASS
from .backends import import_framework, needs_torch
from .loading import LoadedModel, ModelLoad, SharedBackends, too_large
from .tasks import get_task, infer_task
from .tasks.base import TaskRequest
from .work import Answer, WorkItem

logger = logging.getLogger(__name__)
_END = object()


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
        ray_adapter.check_ray_version("a model server")
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
        return ray_adapter.resident(self._load_fn)

    async def _evict(self, revision_id: Optional[str] = None) -> None:
        """Unloads one model (the least recently used one by default) and frees its memory."""
        await ray_adapter.unload(self._load_fn, revision_id)

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
        load = ModelLoad(ref, self.task, self.config, self.options, self.threads, self.torch)
        start = time.perf_counter()
        self.loads[revision_id] += 1
        try:
            model = await run_in(self.model_threads, load.run, self.backends)
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
