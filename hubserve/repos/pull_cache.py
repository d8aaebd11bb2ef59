"""The pull cache: the models pulled from the upstream Hub, in an HF cache layout (one repo folder
each, its ``hubserve.json`` beside ``snapshots/``), the downloads running into ``.incoming/``,
a file lock per repo, and the eviction of the least recently used above ``hub.max_disk_bytes``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import orjson

from hubserve.config.sections import HubConfig

from .folders import PULLED_INFO, cached_snapshot, pulled_info, repo_folder_name

logger = logging.getLogger(__name__)

#: The download speed assumed before one was measured (bytes per second).
PRIOR_BYTES_PER_S = 20e6


@dataclass(frozen=True)
class Progress:
    """A running download: bytes on disk so far, of the total, since ``started`` (wall clock)."""

    done: int
    total: int
    started: float

    def seconds_left(self) -> float:
        elapsed = time.time() - self.started
        speed = self.done / elapsed if elapsed > 1.0 and self.done > 0 else PRIOR_BYTES_PER_S
        return max(0.0, self.total - self.done) / speed

    def as_dict(self) -> dict:
        return {"bytes_downloaded": self.done, "bytes_total": self.total}


def _matches(path: str, patterns: list[str]) -> bool:
    from huggingface_hub.utils import filter_repo_objects

    return bool(list(filter_repo_objects([path], allow_patterns=patterns)))


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(Path(root, name)).st_size
            except OSError:
                continue
    return total


class PullCache:
    """The pulled models and the downloads in progress, shared by every process that uses ``cache_dir``.

    Args:
        hub: the ``hub`` config (``cache_dir`` set).
        clock: a monotonic clock.
    """

    def __init__(self, hub: HubConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.cache = Path(hub.cache_dir)
        self.incoming = self.cache / ".incoming"
        self.locks = self.cache / ".locks"
        self.clock = clock
        self._used: dict[str, float] = {}

    def repo(self, model_id: str) -> Path:
        return self.cache / repo_folder_name(model_id)

    def _incoming(self, model_id: str) -> Path:
        return self.incoming / repo_folder_name(model_id)

    def _record(self, model_id: str) -> Path:
        return self.incoming / f"{repo_folder_name(model_id)}.progress"

    def pulled_sha(self, model_id: str) -> Optional[str]:
        found = cached_snapshot(self.repo(model_id))
        return found[1] if found else None

    @contextmanager
    def _lock(self, model_id: str, blocking: bool = True) -> Iterator[bool]:
        self.locks.mkdir(parents=True, exist_ok=True)
        with open(self.locks / f"{repo_folder_name(model_id)}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def progress(self, model_id: str) -> Optional[Progress]:
        """The download of ``model_id`` running now, in any process, or None."""
        record = self._record(model_id)
        try:
            data = orjson.loads(record.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        with self._lock(model_id, blocking=False) as free:
            if free:
                return None  # a record left by a download that died
        blobs = self._incoming(model_id) / "blobs"
        done = _tree_bytes(blobs) if blobs.is_dir() else 0
        return Progress(done=min(done, int(data["total"])), total=int(data["total"]), started=float(data["started"]))
    def drop(self, model_id: str) -> bool:
        """Removes a pulled model (the upstream deleted it, or eviction); False if none was pulled."""
        target = self.repo(model_id)
        if not target.exists():
            return False
        with self._lock(model_id):
            self.incoming.mkdir(parents=True, exist_ok=True)
            doomed = self.incoming / f"{uuid.uuid4().hex}.old"
            try:
                os.rename(target, doomed)
            except OSError:
                return False
        shutil.rmtree(doomed, ignore_errors=True)
        self._used.pop(model_id, None)
        logger.info("removed the pulled model %s", model_id)
        return True

    def touch(self, model_id: str, force: bool = False) -> None:
        """Marks a pulled model used now (its least-recently-used rank), at most once a minute."""
        now = self.clock()
        if not force and now - self._used.get(model_id, -1e9) < 60.0:
            return
        self._used[model_id] = now
        try:
            os.utime(self.repo(model_id) / PULLED_INFO)
        except OSError:
            pass

    def local(self) -> list[dict]:
        """The pulled models: id, sha, bytes on disk, last use (wall clock), upstream facts."""
        out = []
        if not self.cache.is_dir():
            return out
        for repo in sorted(self.cache.glob("models--*")):
            found = cached_snapshot(repo)
            if found is None:
                continue
            info = pulled_info(repo)
            try:
                used = (repo / PULLED_INFO).stat().st_mtime
            except OSError:
                used = 0.0
            out.append({"model_id": repo.name[len("models--"):].replace("--", "/"), "sha": found[1],
                        "bytes": _tree_bytes(repo / "blobs"), "last_used": used,
                        "pipeline_tag": info.get("pipeline_tag"), "private": bool(info.get("private")),
                        "endpoint": info.get("endpoint")})
        return out

    def evict(self, keep: Optional[str] = None) -> list[tuple[str, str]]:
        """Removes the least recently used pulled models while they exceed ``max_disk_bytes``."""
        limit = self.hub.max_disk_bytes
        if limit is None:
            return []
        pulled = sorted(self.local(), key=lambda m: m["last_used"])
        total = sum(m["bytes"] for m in pulled)
        evicted = []
        for model in pulled:
            if total <= limit:
                break
            if model["model_id"] == keep:
                continue
            if self.drop(model["model_id"]):
                total -= model["bytes"]
                evicted.append((model["model_id"], model["sha"]))
                logger.info("evicted the pulled model %s (%d bytes) to stay under hub.max_disk_bytes",
                            model["model_id"], model["bytes"])
        return evicted
