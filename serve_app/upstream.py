"""The ingress's side of models pulled from an upstream Hub (``hubserve.repos.hub``).

A request for an id the store does not hold starts (or joins) its download: one task per
model in this replica, one download across replicas (the puller's file lock). The caller
waits, as for a cold load, up to ``cold_start.max_wait_s``; a caller that does not wait gets
the 503 of a loading model, its ``estimated_time`` from the bytes still to come at the speed
measured so far. A pulled model's upstream revision is checked every ``hub.check_every_s``:
a new one is pulled (the old one answers meanwhile), and a model the upstream no longer
has is removed here too.

Pulls are bounded (``pull_limits``): a call that would start one may need a token, each caller
may start ``hub.pull_rate`` of them, and ``hub.max_concurrent_pulls`` download at once; a call
for an id whose pull runs joins it, uncounted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

from hubserve.config.app import AppConfig
from hubserve.errors import ModelLoading, ModelNotFound, RateLimited
from hubserve.repos.hub import puller_for
from hubserve.repos.pull_cache import Progress
from hubserve.repos.refs import ModelRef
from hubserve.repos.store import ModelStore
from hubserve.repos.upstream import Remote, UpstreamUnavailable
from hubserve.tokens.access import Access
from hubserve.tokens.principal import Principal

from deployments.facade import BASE_LOAD_S
from .pull_limits import PullGate, PullSlots
from .security import make_windows

logger = logging.getLogger(__name__)


class Upstream:
    """Pulls for the ingress.

    Args:
        config: the application config.
        store: the model store (it reads the pull cache).
        access: visibility (a model private upstream is private here before it is installed).
        forget: called with each revision a pull evicted or the upstream deleted (to unload it and drop
            its cache entries).
    """

    def __init__(self, config: AppConfig, store: ModelStore, access: Access,
                 forget: Callable[[ModelRef], Awaitable[None]]) -> None:
        self.config = config
        self.store = store
        self.access = access
        self.forget = forget
        self.puller = puller_for(config)
        self.gate = PullGate(config.hub, make_windows(config.limits))
        self.slots = PullSlots(self.puller.locks, config.hub.max_concurrent_pulls)
        self._pulls: dict[str, asyncio.Future] = {}
        self._checked: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.puller.enabled

    async def remote(self, model_id: str) -> Remote:
        """What the upstream holds (the same call, and so the same time, for every id)."""
        if not self.enabled:
            raise ModelNotFound.for_id(model_id)
        return await asyncio.to_thread(self.puller.remote, model_id)

    async def _start(self, remote: Remote, joining: bool) -> asyncio.Future:
        """The pull of ``remote`` running here, else a new one, in a download slot unless it joins
        one running in another process (``joining``).

        Raises:
            RateLimited: every download slot is held.
        """
        running = self._pulls.get(remote.model_id)
        if running is not None:
            return running
        slot = None if joining else await asyncio.to_thread(self.slots.take)
        running = self._pulls.get(remote.model_id)
        if running is not None:  # started while the slot was taken
            if slot is not None:
                await asyncio.to_thread(self.slots.give, slot)
            return running
        if slot is None and not joining:
            raise self.gate.busy(await asyncio.to_thread(self._soonest_end))

        async def run() -> None:
            try:
                evicted = await asyncio.to_thread(self.puller.pull, remote.model_id, remote)
            finally:
                self._pulls.pop(remote.model_id, None)
                if slot is not None:
                    await asyncio.to_thread(self.slots.give, slot)
            self.store.forget(remote.model_id)
            for model_id, sha in evicted:
                await self.forget(ModelRef(model_id=model_id, path=self.puller.repo(model_id), sha=sha, source="hub"))

        future = asyncio.ensure_future(run())
        # NOTE(hubserve): a pull nobody waits for still has its error retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pulls[remote.model_id] = future
        return future

    def _soonest_end(self) -> float:
        """Seconds until the first of this replica's downloads is expected to end (1 if none is known)."""
        ends = [p.seconds_left() for p in map(self.puller.progress, list(self._pulls)) if p is not None]
        return min(ends, default=1.0)

    def _loading(self, remote: Remote) -> ModelLoading:
        progress = self.puller.progress(remote.model_id) or Progress(0, remote.total_bytes, time.time())
        return ModelLoading.for_id(remote.model_id, progress.seconds_left() + BASE_LOAD_S)

    async def obtain(self, model_id: str, principal: Principal, caller: str, wait: bool, shadowed: bool) -> None:
        """Pulls ``model_id`` (or joins its pull); returns once it is in the pull cache.

        Args:
            caller: whom a new pull is counted against (``security.caller_key``).
            wait: whether the caller waits for the download.
            shadowed: a model the caller may not see holds this id here: it is answered, after
                the same upstream call, as an id the upstream does not have.

        Raises:
            ModelNotFound: not upstream (or not visible to ``principal``, or anonymous where a
                pull needs a token).
            ModelLoading: the download runs and the caller does not wait (or waited too long).
            RateLimited: past the caller's ``hub.pull_rate``, or every download slot is held.
            UpstreamUnavailable: the upstream cannot be reached.
        """
        self.gate.may_pull(model_id, principal)
        joining = model_id in self._pulls or await asyncio.to_thread(self.puller.progress, model_id) is not None
        if not joining:
            await self.gate.count(principal, caller)
        remote = await self.remote(model_id)
        if shadowed or (remote.private and not principal.owns(model_id)):
            raise ModelNotFound.for_id(model_id)
        if remote.private:
            # NOTE(hubserve): recorded private before it exists here, as an upload is.
            await asyncio.to_thread(self.access.store.set_private, model_id, True)
            self.access.forget()
        pull = await self._start(remote, joining)
        if not wait:
            if not pull.done():
                raise self._loading(remote)
        try:
            await asyncio.wait_for(asyncio.shield(pull), self.config.cold_start.max_wait_s)
        except asyncio.TimeoutError:
            raise self._loading(remote) from None

    def refresh(self, ref: ModelRef) -> None:
        """Marks a pulled model used, and checks its upstream revision every ``hub.check_every_s``
        in the background (the copy here answers meanwhile): a new revision is pulled, and a model
        the upstream no longer has is removed here too."""
        self.puller.touch(ref.model_id)
        now = time.monotonic()
        if not self.enabled or now - self._checked.get(ref.model_id, now - 1e9) < self.config.hub.check_every_s:
            return
        self._checked[ref.model_id] = now
        check = asyncio.ensure_future(self._check(ref))
        check.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _check(self, ref: ModelRef) -> None:
        try:
            remote = await asyncio.to_thread(self.puller.remote, ref.model_id)
        except UpstreamUnavailable:
            return  # the copy here answers while the upstream is away
        except ModelNotFound:
            logger.info("%s is gone from the upstream Hub; removing the pulled copy", ref.model_id)
            await asyncio.to_thread(self.puller.drop, ref.model_id)
            self.store.forget(ref.model_id)
            await self.forget(ref)
            return
        if remote.sha != ref.sha and ref.model_id not in self._pulls:
            logger.info("%s has a new upstream revision %s; pulling it", ref.model_id, remote.sha[:12])
            try:
                await self._start(remote, joining=False)
            except RateLimited:
                logger.info("%s: every download slot is held; the new revision is pulled after the next check",
                            ref.model_id)

    def status(self, model_id: str, principal: Principal) -> Optional[dict]:
        """The ``/status`` answer of a model being downloaded (that the caller may see), else None."""
        if not self.access.can_read(principal, model_id):
            return None
        progress = self.puller.progress(model_id)
        if progress is None:
            return None
        return {"loaded": False, "state": "Downloading", **progress.as_dict(),
                "estimated_time": round(progress.seconds_left() + BASE_LOAD_S, 3),
                "compute_type": "cpu", "framework": "transformers"}

