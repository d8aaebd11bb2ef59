"""Models pulled on demand from an upstream Hub: huggingface.co, or another hubserve.

A model id the store does not hold is looked up upstream (``HfApi.model_info``, with file
sizes), then fetched with ``huggingface_hub.snapshot_download`` (only the files
``hub.allow_patterns`` names: configs, tokenizers, safetensors, the card) into the pull cache,
an HF cache layout that ``ModelStore`` reads as the ``hub`` source. One download runs per
model however many requests or processes want it: a file lock per repo in the pull cache. A
download goes to ``.incoming/`` and appears whole (its ``refs/main`` written last, the repo
folder renamed into place), so a download that dies leaves nothing servable; the next try
resumes its files. Pulled repos beyond ``hub.max_disk_bytes`` are evicted least recently used;
models the operator placed in the store or the HF cache are never touched.

Errors: an id the upstream does not have (404, or 401 for a private one without the token)
is ``ModelNotFound`` (remembered ``missing_ttl_s``); an upstream that cannot be reached is a
503 for ``retry_after_s``, after which the next request tries again.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import orjson

from .config import AppConfig, HubConfig, LimitsConfig
from .errors import InvalidInput, ModelNotFound, ModelTooLarge, ServiceUnavailable
from .model_files import inspect_folder, refusals
from .store import PULLED_INFO, cached_snapshot, pulled_info, repo_folder_name, validate_model_id
from .uploads import install

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
#: The download speed assumed before one was measured (bytes per second).
PRIOR_BYTES_PER_S = 20e6
_SHA = re.compile(r"[0-9a-f]{40}")
#: How often a running download's progress is logged.
LOG_EVERY_S = 5.0


class UpstreamUnavailable(ServiceUnavailable):
    """The upstream Hub cannot be reached or failed (503)."""


def upstream(hub: HubConfig, env: Optional[Mapping[str, str]] = None) -> tuple[str, Optional[str]]:
    """The upstream endpoint and token: the config, else ``HF_ENDPOINT``/``HF_TOKEN``, as every Hub tool."""
    env = os.environ if env is None else env
    endpoint = (hub.endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = None
    if hub.token_file:
        token = Path(hub.token_file).expanduser().read_text(encoding="utf-8").strip() or None
    if token is None:
        token = env.get(hub.token_env or "HF_TOKEN") or None
    return endpoint, token


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) in the server's environment."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _upstream_only() -> None:
    """Sends huggingface_hub's requests to the upstream alone: 2.x builds its user agent from a
    registry of AI agents that it fetches from ``HF_ENDPOINT`` (huggingface.co by default, not
    the endpoint of the call) unless telemetry is off. A server talks to ``hub.endpoint`` only."""
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True


@dataclass(frozen=True)
class Remote:
    """What the upstream says of one repo revision."""

    model_id: str
    sha: str
    private: bool
    pipeline_tag: Optional[str]
    library_name: Optional[str]
    files: tuple[tuple[str, int], ...]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


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


class Puller:
    """Pulls models from the upstream Hub into the pull cache.

    Args:
        hub: the ``hub`` config (``cache_dir`` set).
        trusted_pickle: whether a model id's pickle weights are trusted (they are then fetched).
        env: the environment (endpoint and token where the config names none).
        clock: a monotonic clock.
        limits: the server's ``limits`` a pulled model's files are checked under.
    """

    def __init__(self, hub: HubConfig, trusted_pickle: Callable[[str], bool] = lambda _: False,
                 env: Optional[Mapping[str, str]] = None, clock: Callable[[], float] = time.monotonic,
                 limits: LimitsConfig = LimitsConfig()) -> None:
        self.hub = hub
        self.limits = limits
        self.cache = Path(hub.cache_dir)
        self.incoming = self.cache / ".incoming"
        self.locks = self.cache / ".locks"
        self.endpoint, self.token = upstream(hub, env)
        self.trusted_pickle = trusted_pickle
        self.clock = clock
        self._missing: dict[str, float] = {}
        self._down_until = 0.0
        self._down_reason = ""
        self._used: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.hub.download and not offline()

    def _api(self):
        from huggingface_hub import HfApi

        _upstream_only()
        return HfApi(endpoint=self.endpoint, token=self.token or False)

    def patterns(self, model_id: str) -> list[str]:
        extra = ["*.bin", "*.pt", "*.pth"] if self.trusted_pickle(model_id) else []
        return [*self.hub.allow_patterns, *extra]

    # -- the upstream ------------------------------------------------------------------

    def remote(self, model_id: str, revision: Optional[str] = None) -> Remote:
        """What the upstream holds for ``model_id``.

        Raises:
            ModelNotFound: the upstream does not have it, or not for our token (also remembered).
            UpstreamUnavailable: it cannot be reached now (and will not be tried for a while).
        """
        validate_model_id(model_id)
        now = self.clock()
        if now < self._missing.get(model_id, -1.0):
            raise ModelNotFound.for_id(model_id)
        if now < self._down_until:
            raise self._unavailable()
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            info = self._model_info(model_id, revision)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return self._not_found(model_id)
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403, 404):
                return self._not_found(model_id)
            raise self._down(f"the upstream Hub answered {status}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors, timeouts, malformed answers
            raise self._down(type(exc).__name__, detail=str(exc)) from None
        if not isinstance(info.sha, str) or not _SHA.fullmatch(info.sha):
            raise self._down(f"the upstream Hub answered a malformed revision {info.sha!r}")
        patterns = self.patterns(model_id)
        files = tuple((s.rfilename, int(s.size or 0)) for s in (info.siblings or ())
                      if _matches(s.rfilename, patterns))
        # NOTE(hubserve): an upstream may say `visibility` (as 2.x clients send it) rather than `private`.
        private = info.private if info.private is not None else getattr(info, "visibility", None) == "private"
        return Remote(model_id=model_id, sha=info.sha, private=bool(private), pipeline_tag=info.pipeline_tag,
                      library_name=info.library_name, files=files)

    def _model_info(self, model_id: str, revision: Optional[str]):
        """``model_info``, asked again once when the connection failed before any answer: a pooled
        keep-alive connection the upstream closed as it was reused is not an upstream that is down."""
        from huggingface_hub.errors import HfHubHTTPError

        http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])  # its HTTP library
        api = self._api()
        for attempt in (1, 2):
            try:
                return api.model_info(model_id, revision=revision, files_metadata=True, timeout=self.hub.timeout_s)
            except (http.RemoteProtocolError, http.ReadError, http.WriteError):
                if attempt == 2:
                    raise

    def _not_found(self, model_id: str):
        if len(self._missing) > 10_000:
            self._missing.clear()
        self._missing[model_id] = self.clock() + self.hub.missing_ttl_s
        raise ModelNotFound.for_id(model_id)

    def _down(self, reason: str, detail: str = "") -> UpstreamUnavailable:
        """Starts the back-off; the caller sees ``reason``, the log also ``detail``."""
        self._down_until = self.clock() + self.hub.retry_after_s
        self._down_reason = reason
        logger.warning("the upstream Hub %s cannot be reached (%s%s); retrying in %gs", self.endpoint, reason,
                       f": {detail}" if detail else "", self.hub.retry_after_s)
        return self._unavailable()

    def _unavailable(self) -> UpstreamUnavailable:
        wait = max(1, int(self._down_until - self.clock() + 0.999))
        return UpstreamUnavailable(f"The upstream Hub {self.endpoint} cannot be reached ({self._down_reason}); "
                                   f"retry in {wait}s", headers={"Retry-After": str(wait)})

    # -- the pull cache ----------------------------------------------------------------

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

    def pull(self, model_id: str, remote: Optional[Remote] = None, revision: Optional[str] = None,
             progress_bars: bool = False) -> list[tuple[str, str]]:
        """Downloads ``model_id`` (``remote``, or what the upstream holds now) unless the pull cache
        already has that revision; blocks while another process pulls it.

        Returns:
            ``(model id, sha)`` of the models evicted to stay under ``max_disk_bytes``.

        Raises:
            ModelNotFound, UpstreamUnavailable: as ``remote``.
            ModelTooLarge: the repo alone is larger than ``max_disk_bytes``.
            InvalidInput: the model holds what no model may (code, links out of it).
        """
        remote = remote or self.remote(model_id, revision)
        limit = self.hub.max_disk_bytes
        if limit is not None and remote.total_bytes > limit:
            raise ModelTooLarge(f"Model {model_id} is {remote.total_bytes} bytes, more than this server keeps of "
                                f"pulled models ({limit} bytes, hub.max_disk_bytes)")
        with self._lock(model_id):
            if self.pulled_sha(model_id) == remote.sha:
                return []
            self._download(remote, progress_bars)
        self.touch(model_id, force=True)
        return self.evict(keep=model_id)

    def _download(self, remote: Remote, progress_bars: bool) -> None:
        model_id = remote.model_id
        record = self._record(model_id)
        self.incoming.mkdir(parents=True, exist_ok=True)
        record.write_bytes(orjson.dumps({"total": remote.total_bytes, "started": time.time(), "sha": remote.sha}))
        started = time.monotonic()
        stop = threading.Event()
        watcher = threading.Thread(target=self._log_progress, args=(model_id, stop), daemon=True)
        watcher.start()
        logger.info("pulling %s@%s from %s: %d files, %d bytes", model_id, remote.sha[:12], self.endpoint,
                    len(remote.files), remote.total_bytes)
        # NOTE(hubserve): the record lives until the model is installed (or refused), so that
        # /status never finds the model neither downloading nor in the store.
        try:
            self._fetch(remote, progress_bars)
            self._install(remote)
        finally:
            stop.set()
            record.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        logger.info("pulled %s@%s in %.1fs (%.1f MB/s)", model_id, remote.sha[:12], seconds,
                    remote.total_bytes / max(seconds, 1e-6) / 1e6)

    def _fetch(self, remote: Remote, progress_bars: bool) -> None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        model_id = remote.model_id
        _upstream_only()
        try:
            if not progress_bars:
                from huggingface_hub.utils import disable_progress_bars

                disable_progress_bars()
            snapshot_download(model_id, revision=remote.sha, cache_dir=self.incoming, endpoint=self.endpoint,
                              token=self.token or False, allow_patterns=self.patterns(model_id),
                              etag_timeout=self.hub.timeout_s, max_workers=4)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            self._not_found(model_id)
        except Exception as exc:  # noqa: BLE001 - the connection died, a file failed: nothing is installed
            raise self._down(f"the download of {model_id} failed: {type(exc).__name__}", detail=str(exc)) from None

    def _install(self, remote: Remote) -> None:
        """Checks the downloaded snapshot and moves it into the pull cache."""
        model_id = remote.model_id
        work = self._incoming(model_id)
        snapshot = work / "snapshots" / remote.sha
        report = inspect_folder(snapshot, self.limits, links_within=work)
        problems = refusals(report, self.trusted_pickle(model_id), any_pickle=False)
        if problems:
            shutil.rmtree(work, ignore_errors=True)
            raise InvalidInput(f"Model {model_id} from {self.endpoint} is refused: {'; '.join(problems[:5])}",
                               errors=problems)
        (work / "refs").mkdir(parents=True, exist_ok=True)
        (work / "refs" / "main").write_text(remote.sha)
        (work / PULLED_INFO).write_bytes(orjson.dumps({
            "endpoint": self.endpoint, "sha": remote.sha, "private": remote.private,
            "pipeline_tag": remote.pipeline_tag, "library_name": remote.library_name, "pulled": time.time()}))
        install(work, self.repo(model_id))

    def _log_progress(self, model_id: str, stop: threading.Event) -> None:
        while not stop.wait(LOG_EVERY_S):
            progress = self.progress(model_id)
            if progress is not None:
                logger.info("pulling %s: %.1f of %.1f MB", model_id, progress.done / 1e6, progress.total / 1e6)

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


def puller_for(config: AppConfig) -> Puller:
    """The ``Puller`` of an application config (pickle weights fetched for trusted models only)."""
    trusted = {model_id for model_id, entry in config.models.items() if entry.trust_pickle}
    return Puller(config.hub, trusted_pickle=trusted.__contains__, limits=config.limits)
