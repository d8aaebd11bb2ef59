"""What the ingress knows about model loads: which are loading, which loaded through it, and
how long loads take. The replicas own load state; the ingress asks them, or Serve's view of them.

Cold requests wait here, in the ingress, on one shared load per model revision:
twenty concurrent requests for a cold model trigger one load and hold no replica
slot while they wait. ``estimated_time`` comes from the measured load time of
that model, or, before any, from its size and the load speed measured so far.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple, Optional

from deployments.model_server import too_large
from deployments.serve_internals import holders
from hubserve.errors import ApiError, ModelLoadError, ModelLoading, NeedsTorch, RouteNotFound
from hubserve.repos.refs import ModelRef, Revision

logger = logging.getLogger(__name__)

#: Prior load speed (weights bytes per second) and fixed cost, before any load was measured.
PRIOR_BYTES_PER_S = 100e6
BASE_LOAD_S = 1.0


class ModelKey(NamedTuple):
    """A model revision as one task's deployment holds it."""

    task: str
    revision: Revision

    @classmethod
    def of(cls, task: str, ref: ModelRef) -> "ModelKey":
        return cls(task, ref.revision)


class ModelTracker:
    """The loads this ingress runs or saw finish, per ``ModelKey``.

    ``loaded`` is only what went through here: the gate trusts it while Serve's view of the
    replicas still shows the model held, and forgets it as soon as that view does not.
    Failed loads are remembered by the replica that tried (``ModelServer.recent_failure``).

    Args:
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.loaded: set[ModelKey] = set()
        self.loading: dict[ModelKey, tuple[asyncio.Future, float]] = {}
        self.load_seconds: dict[str, float] = {}
        self.bytes_per_s: Optional[float] = None

    def estimate(self, ref: ModelRef) -> float:
        """Seconds a load of ``ref`` takes: measured for this model, else from its size."""
        if ref.model_id in self.load_seconds:
            return self.load_seconds[ref.model_id]
        return BASE_LOAD_S + ref.size_bytes / (self.bytes_per_s or PRIOR_BYTES_PER_S)

    def remaining(self, key: ModelKey, ref: ModelRef) -> float:
        """Seconds left until ``key`` is loaded (the full estimate if no load runs)."""
        started = self.loading.get(key, (None, None))[1]
        if started is None:
            return self.estimate(ref)
        return max(0.5, self.estimate(ref) - (self.clock() - started))

    def forget_model(self, model_id: str) -> None:
        """Drops every revision of ``model_id`` (it was deleted or changed)."""
        self.loaded = {key for key in self.loaded if key.revision.model_id != model_id}

    def start(self, key: ModelKey, ref: ModelRef, load: Callable[[], Awaitable[dict]]) -> asyncio.Future:
        """The running load of ``key``, or a new one (single flight)."""
        running = self.loading.get(key)
        if running is not None:
            return running[0]
        future = asyncio.ensure_future(self._run(key, ref, load))
        # NOTE(hubserve): a background load nobody waits for still has its error retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.loading[key] = (future, self.clock())
        return future

    async def _run(self, key: ModelKey, ref: ModelRef, load: Callable[[], Awaitable[dict]]) -> None:
        try:
            result = await load()
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - raised to every waiter as the API's error
            raise ModelLoadError(f"Failed to load model {ref.model_id}: {exc}") from None
        finally:
            self.loading.pop(key, None)
        if not result.get("cached"):
            seconds = float(result["seconds"])
            self.load_seconds[ref.model_id] = seconds
            if ref.size_bytes and seconds > 0:
                speed = ref.size_bytes / seconds
                self.bytes_per_s = speed if self.bytes_per_s is None else 0.7 * self.bytes_per_s + 0.3 * speed
            logger.info("loaded %s for %s in %.2fs", key.revision, key.task, seconds)
        self.loaded.add(key)

    async def wait(self, key: ModelKey, ref: ModelRef, load: Callable[[], Awaitable[dict]], timeout: float) -> None:
        """Waits for ``key`` to load (starting the load if needed), at most ``timeout`` seconds.

        Raises:
            asyncio.TimeoutError: when the load takes longer (it goes on in the background).
            ApiError: when the load failed.
        """
        await asyncio.wait_for(asyncio.shield(self.start(key, ref, load)), timeout)


class TaskModels:
    """Where each task's models run: this replica's own model servers (the ingress's
    inline tasks), else the task's deployment behind a Serve ``DeploymentHandle``.

    A model an inline server cannot run without torch (``NeedsTorch``) goes to the
    task's deployment from then on.

    Args:
        handles: task name to the ``DeploymentHandle`` of its model server.
        local: task name to a ``ModelServer`` running in this replica.
    """

    def __init__(self, handles: dict, local: Optional[dict] = None) -> None:
        self.handles = dict(handles)
        self.local = dict(local or {})
        self.elsewhere: set[ModelKey] = set()

    def deployed(self, task: str) -> bool:
        return task in self.handles or task in self.local

    def tasks(self) -> list[str]:
        return sorted({*self.handles, *self.local})

    def handle(self, task: str, ref: ModelRef):
        """The model server handle of ``task``, routed to replicas holding ``ref``."""
        if task not in self.handles:
            raise RouteNotFound(f"The task `{task}` is not deployed on this server")
        return self.handles[task].options(multiplexed_model_id=ref.revision_id)

    def _server(self, task: str, ref: ModelRef):
        server = self.local.get(task)
        if server is None or ModelKey.of(task, ref) in self.elsewhere:
            return None
        return server

    async def _route(self, task: str, ref: ModelRef, here: Callable, there: Callable):
        server = self._server(task, ref)
        if server is not None:
            try:
                return await here(server)
            except NeedsTorch as exc:
                if task not in self.handles:
                    raise ModelLoadError(str(exc)) from None
                logger.info("%s goes to the %s deployment: %s", ref.model_id, task, exc)
                self.elsewhere.add(ModelKey.of(task, ref))
        return await there()

    async def load_model(self, task: str, ref: ModelRef) -> dict:
        return await self._route(task, ref, lambda s: s.load_model(ref.revision_id),
                                 lambda: self.handle(task, ref).load_model.remote(ref.revision_id))

    def holders(self, task: str, ref: ModelRef) -> Optional[tuple[int, int]]:
        """(running replicas, replicas holding or loading ``ref``) without asking any replica:
        this replica's own server, or Serve's view of the deployment (None before it has one)."""
        server = self._server(task, ref)
        if server is not None:
            return 1, int(server.holds(ref.revision_id))
        handle = self.handles.get(task)
        if handle is None:
            return None
        return holders(handle.app_name, handle.deployment_name, ref.revision_id)

    async def model_status(self, task: str, ref: ModelRef) -> dict:
        """What a replica says of ``ref`` (the router asks one holding it, if any)."""
        server = self._server(task, ref)
        if server is not None:
            return await server.model_status(ref.revision_id)
        return await self.handle(task, ref).model_status.remote(ref.revision_id)

    def running_replicas(self) -> dict[str, int]:
        """Running replicas per task deployment, from one question to the Serve controller."""
        from ray import serve

        app = serve.status().applications.get(serve.get_replica_context().app_name)
        counts = {}
        for task in self.handles:
            deployment = app.deployments.get(task) if app else None
            counts[task] = int(deployment.replica_states.get("RUNNING", 0)) if deployment else 0
        return counts

    async def unload(self, ref: ModelRef) -> int:
        """Unloads ``ref``'s model here and from every running replica of every task (none is
        started for it): the router sends each call to a replica holding the model, until none does."""
        done = 0
        for server in self.local.values():
            done += int(await server.unload(ref.model_id))
        for task, running in (await asyncio.to_thread(self.running_replicas)).items():
            for _ in range(running):
                try:
                    if not await self.handle(task, ref).unload.remote(ref.model_id):
                        break
                except Exception as exc:  # noqa: BLE001 - a replica going away holds nothing
                    logger.info("unloading %s from %s: %s", ref.model_id, task, exc)
                    break
                done += 1
        return done

    async def _remote_infer(self, task: str, ref: ModelRef, item):
        response = self.handle(task, ref).infer.remote(item)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise

    async def infer(self, task: str, ref: ModelRef, item):
        return await self._route(task, ref, lambda s: s.infer(item), lambda: self._remote_infer(task, ref, item))

    def stream(self, task: str, ref: ModelRef, item):
        server = self._server(task, ref)
        if server is not None:
            return server.generate_stream(item)
        return self.handle(task, ref).options(stream=True).generate_stream.remote(item)


class ModelGate:
    """Decides, per request, whether a model is ready, loads it, or answers 503.

    Args:
        models: where the task model servers are (``TaskModels``).
        config: the application config.
    """

    def __init__(self, models, config) -> None:
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
