"""What callers may ask of the upstream Hub: whether a call may start a pull at all
(``hub.pull_requires_token``), pulls per caller and window (``hub.pull_rate``), and downloads
at once (``hub.max_concurrent_pulls``).
"""

from __future__ import annotations

import fcntl
import math
from pathlib import Path
from typing import IO, Optional

from hubserve.config.sections import HubConfig
from hubserve.errors import ModelNotFound, RateLimited
from hubserve.tokens.principal import Principal


class PullSlots:
    """Downloads at once across every process that shares the pull cache: ``count`` lock files,
    each held (``flock``) by one running download; a lock dies with its process.

    Args:
        folder: where the lock files are (in the pull cache).
        count: how many downloads may run at once.
    """

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.count = count

    def take(self) -> Optional[IO]:
        """A free slot, held until ``give``, or None when every slot is held (never blocks)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            handle = open(self.folder / f"pull-slot-{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return handle
        return None

    @staticmethod
    def give(handle: IO) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class PullGate:
    """Admits calls that may start a pull.

    Args:
        hub: the ``hub`` config.
        windows: the rate-limit windows (``security.make_windows``).
    """

    PREFIX = "pull:"

    def __init__(self, hub: HubConfig, windows) -> None:
        self.hub = hub
        self.windows = windows

    def may_pull(self, model_id: str, principal: Principal) -> None:
        """Refuses an anonymous call when pulls need a token, exactly as an id nobody has
        (``ModelNotFound``): a model private here stays a missing one."""
        if self.hub.pull_requires_token and principal.anonymous:
            raise ModelNotFound.for_id(model_id)

    async def count(self, principal: Principal, caller: str) -> None:
        """Counts one new pull of ``caller`` (``security.caller_key``); the admin is not counted.

        Raises:
            RateLimited: past ``hub.pull_rate``, with ``Retry-After``.
        """
        rule = self.hub.pull_rate
        if rule is None or principal.admin:
            return
        left = await self.windows.take(self.PREFIX + caller, rule)
        if left is not None:
            raise RateLimited(f"Too many models pulled from the upstream Hub: {rule.requests} per "
                              f"{rule.window_s:g}s for each caller (hub.pull_rate)",
                              headers={"Retry-After": str(max(1, math.ceil(left)))})

    def busy(self, seconds: float) -> RateLimited:
        """The answer when every download slot is held, ``seconds`` the soonest expected end."""
        return RateLimited(f"{self.hub.max_concurrent_pulls} models are being pulled from the upstream Hub, as many "
                           "as this server pulls at once (hub.max_concurrent_pulls); retry shortly",
                           headers={"Retry-After": str(max(1, math.ceil(seconds)))})
