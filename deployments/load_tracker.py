"""What the ingress knows of model loads: which are loading, which loaded through it, and how
long loads take. ``estimated_time`` comes from the measured load time of that model, or, before
any, from its size and the load speed measured so far.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple, Optional

from hubserve.errors import ApiError, ModelLoadError
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
