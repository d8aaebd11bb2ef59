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

import importlib
import logging
import re
import shutil
import threading
import time
from typing import Callable, Mapping, Optional

import orjson

from hubserve.config.app import AppConfig
from hubserve.config.limits import LimitsConfig
from hubserve.config.sections import HubConfig
from hubserve.errors import InvalidInput, ModelNotFound, ModelTooLarge

from .folders import PULLED_INFO
from .model_files import inspect_folder, refusals
from .pull_cache import PullCache
from .refs import validate_model_id
from .uploads import install
from .upstream import Remote, UpstreamUnavailable, matches, offline, upstream, upstream_only

logger = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{40}")
#: How often a running download's progress is logged.
LOG_EVERY_S = 5.0


class Puller(PullCache):
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
        super().__init__(hub, clock)
        self.limits = limits
        self.endpoint, self.token = upstream(hub, env)
        self.trusted_pickle = trusted_pickle
        self._missing: dict[str, float] = {}
        self._down_until = 0.0
        self._down_reason = ""

    @property
    def enabled(self) -> bool:
        return self.hub.download and not offline()

    def _api(self):
        from huggingface_hub import HfApi

        upstream_only()
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
                      if matches(s.rfilename, patterns))
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
        upstream_only()
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

def puller_for(config: AppConfig) -> Puller:
    """The ``Puller`` of an application config (pickle weights fetched for trusted models only)."""
    trusted = {model_id for model_id, entry in config.models.items() if entry.trust_pickle}
    return Puller(config.hub, trusted_pickle=trusted.__contains__, limits=config.limits)
