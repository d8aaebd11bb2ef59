"""The one owner of load state the ingress asks: whether a model is ready for a task, its load
(started once per model revision, however many requests wait), and its answer.

Cold requests wait here, in the ingress, on one shared load per model revision: twenty concurrent
requests for a cold model trigger one load and hold no replica slot while they wait. What it
knows comes from the replicas (each one's loaded models and recent failed loads), Serve's router
view of them (``hubserve.ray_adapter.holders``), and the loads that went through here
(``ModelTracker``); ``TaskModels`` says where a task's models run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Awaitable, Callable, Optional

from hubserve.errors import ApiError, ModelLoading, RouteNotFound, ServiceUnavailable
from hubserve.repos.refs import ModelRef

from .load_tracker import ModelKey, ModelTracker
from .loading import too_large
from .placement import TaskModels
from .tasks.base import TaskRequest
from .work import Answer, WorkItem

logger = logging.getLogger(__name__)


class ModelGate:
    """Decides, per request, whether a model is ready, loads it, or answers 503.

    Args:
        models: where the task model servers are.
        config: the application config.
    """

    def __init__(self, models: TaskModels, config) -> None:
        self.models = models
        self.config = config
        self.tracker = ModelTracker()
        self._options: dict[str, object] = {}

    def options(self, task: str):
        if task not in self._options:
            self._options[task] = self.config.deployment_for(task)
        return self._options[task]

    def check_deployed(self, task: str) -> None:
        if not self.models.deployed(task):
            raise RouteNotFound(f"The task `{task}` is not deployed on this server")

    def _loader(self, task: str, ref: ModelRef) -> Callable[[], Awaitable[dict]]:
        return lambda: self.models.load_model(task, ref)

    def _seen_held(self, key: ModelKey, ref: ModelRef) -> Optional[bool]:
        """What is known without asking a replica: True (loaded through here, and Serve's view
        still shows it held), False (no replica of the task runs), None (ask one)."""
        seen = self.models.holders(key.task, ref)
        if seen is None:
            return None
        replicas, holding = seen
        if not holding:
            self.tracker.loaded.discard(key)  # evicted, or lost with its replica
            return False if replicas == 0 else None
        return True if key in self.tracker.loaded else None

    async def _state(self, key: ModelKey, ref: ModelRef) -> tuple[bool, Optional[ApiError]]:
        """Whether a replica holds ``ref`` for the task, else the error of its recent failed load."""
        seen = self._seen_held(key, ref)
        if seen is not None:
            return seen, None
        status = await self.models.model_status(key.task, ref)
        if status["loaded"]:
            self.tracker.loaded.add(key)
        return bool(status["loaded"]), status["failure"]

    async def ready(self, task: str, ref: ModelRef, wait: Optional[bool], load: Optional[bool]) -> None:
        """Returns once ``ref`` is loaded for ``task``, or raises.

        Args:
            wait: the caller's wait_for_model (None: the configured default).
            load: False when the caller said ``X-Load-Model: 0`` (never trigger a load).

        Raises:
            ModelTooLarge: the model exceeds the replicas' memory budget.
            ModelLoading: not loaded, and the caller does not wait (or the wait ran out).
            ApiError: a recent load of this revision failed.
        """
        self.check_deployed(task)
        error = too_large(ref, self.options(task).max_model_bytes, task)
        if error is not None:
            raise error
        key = ModelKey.of(task, ref)
        # NOTE(hubserve): the replicas' view, not this replica's memory of past loads: a model
        # evicted since (LRU, memory budget, a replica restart, a scale-down) answers a no-wait
        # call with 503, never loads inline. A model loaded through here and still held costs no hop.
        held, failure = await self._state(key, ref)
        if held:
            return
        if failure is not None:
            raise failure
        if wait is None:
            wait = self.config.cold_start.wait_by_default
        if load is False or not wait:
            if load is not False:
                self.tracker.start(key, ref, self._loader(task, ref))
            raise ModelLoading.for_id(ref.model_id, self.tracker.remaining(key, ref))
        try:
            await self.tracker.wait(key, ref, self._loader(task, ref), self.config.cold_start.max_wait_s)
        except asyncio.TimeoutError:
            raise ModelLoading.for_id(ref.model_id, self.tracker.remaining(key, ref)) from None

    async def answer(self, task: str, ref: ModelRef, request: TaskRequest, wait: Optional[bool],
                     load: Optional[bool]) -> Answer:
        """``request``'s answer from ``ref`` once it is ready (``ready``), within the request timeout.

        Raises:
            ServiceUnavailable: past ``request_timeout_s``.
        """
        await self.ready(task, ref, wait, load)
        timeout = self.config.request_timeout_s
        request.set_deadline(time.time() + timeout)
        try:
            return await asyncio.wait_for(self.models.infer(task, ref, WorkItem(ref.revision_id, request)), timeout)
        except asyncio.TimeoutError:
            raise ServiceUnavailable(f"Request timed out after {timeout:g}s", headers={"Retry-After": "1"}) from None

    async def stream(self, task: str, ref: ModelRef, request: TaskRequest, wait: Optional[bool],
                     load: Optional[bool]) -> AsyncIterator[dict]:
        """``request``'s stream events once ``ref`` is ready: first ``{compute_type, sha}``, then the task's."""
        await self.ready(task, ref, wait, load)
        request.set_deadline(time.time() + self.config.request_timeout_s)
        return self.models.stream(task, ref, WorkItem(ref.revision_id, request))

    def seen_loaded(self, ref: ModelRef) -> bool:
        """Whether ``ref`` loaded through here for some task and Serve's view still shows it held."""
        return any(self._seen_held(key, ref) for key in list(self.tracker.loaded) if key.revision == ref.revision)

    async def unload(self, ref: ModelRef) -> int:
        """Unloads ``ref``'s model from the replicas of every deployed task; forgets its state."""
        self.tracker.forget_model(ref.model_id)
        return await self.models.unload(ref)

    async def status(self, task: str, ref: ModelRef) -> dict:
        """The legacy ``/status`` answer of a model."""
        options = self.options(task)
        entry = self.config.models.get(ref.model_id)
        device = (entry and entry.device) or options.device
        if too_large(ref, options.max_model_bytes, task) is not None:
            return self._status(False, "TooBig", device)
        held, failure = await self._state(ModelKey.of(task, ref), ref)
        return self._status(held, "Loaded" if held else "Error" if failure is not None else "Loadable", device)

    @staticmethod
    def _status(loaded: bool, state: str, device: str) -> dict:
        return {"loaded": loaded, "state": state, "compute_type": "gpu" if device == "cuda" else "cpu",
                "framework": "transformers"}
