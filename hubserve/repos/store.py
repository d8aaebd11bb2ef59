"""The model store: the self-hosted "hub" that model ids resolve against.

A model id resolves, in this order, to:

1. the ``path`` of its entry in the config (a folder, or ``pkg://<module>`` for a
   Python package that ships weights and exposes ``get_model_path()``);
2. ``<store>/<org>/<name>/`` (or ``<store>/<name>/`` for legacy ids like ``gpt2``);
3. a Hugging Face cache folder, read-only:
   ``<cache>/models--<org>--<name>/snapshots/<refs/main>/``;
4. the same layout in the folder of models pulled from an upstream Hub (``hubserve.repos.hub``),
   whose ``hubserve.json`` beside ``snapshots/`` keeps the upstream ``pipeline_tag``.

Any folder holding a ``config.json`` (transformers) or a ``model_index.json``
(a diffusers pipeline) is servable by its id on demand: nothing has
to be listed or restarted. Resolution is cached for ``ttl_s`` seconds so that the
request path does not walk the file system every time, while a folder copied in
(or changed) is seen within that delay.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional

from hubserve.errors import InvalidInput, ModelNotFound

from .folders import (CONFIG_FILES, DIFFUSERS, PKG_SCHEME, TIMM, TIMM_ARCHITECTURE, cached_snapshot, config_file,
                      hf_cache_dir, pulled_info, read_front_matter, repo_folder_name, resolve_pkg_path, scan_folder)
from .refs import ModelRef, validate_model_id

logger = logging.getLogger(__name__)


class ModelStore:
    """Resolves model ids to folders and revisions.

    Args:
        root: the store folder.
        hf_cache: an HF hub cache folder to read, or None.
        entries: model id to pinned ``path``/``task`` from the config.
        ttl_s: how long a resolution is reused before the disk is checked again.
        hub_cache: the folder of models pulled from an upstream Hub (HF cache layout), or None.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        hf_cache: Optional[Path] = None,
        entries: Optional[Mapping[str, object]] = None,
        ttl_s: float = 1.0,
        hub_cache: Optional[Path] = None,
    ) -> None:
        self.root = Path(root)
        self.hf_cache = hf_cache
        self.hub_cache = hub_cache
        self.entries = dict(entries or {})
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ModelRef]] = {}
        self._lock = threading.Lock()

    def _candidate(self, model_id: str) -> Optional[tuple[Path, str, Optional[str]]]:
        """The folder of ``model_id``: every source is looked at whether or not an earlier one
        holds it, so that finding a model costs the same file system work as missing it."""
        found: list[tuple[Path, str, Optional[str]]] = []
        entry = self.entries.get(model_id)
        path = getattr(entry, "path", None)
        if path:
            folder = resolve_pkg_path(path) if path.startswith(PKG_SCHEME) else Path(path).expanduser()
            found.append((folder, "config", None))
        folder = self.root / model_id
        if config_file(folder) is not None:
            found.append((folder, "store", None))
        for cache, source in ((self.hf_cache, "hf-cache"), (self.hub_cache, "hub")):
            if cache is None:
                continue
            snapshot = cached_snapshot(cache / repo_folder_name(model_id))
            if snapshot is not None:
                found.append((snapshot[0], source, snapshot[1]))
        return found[0] if found else None

    def _spelled_as_stored(self, model_id: str, source: str) -> bool:
        """Whether the folder found has exactly this id's spelling: on a case-insensitive file
        system ``ACME/Secret`` opens ``acme/secret``, and must not be a second id for it."""
        if source == "store":
            parent, parts = self.root, model_id.split("/")
        elif source in ("hf-cache", "hub"):
            parent = self.hf_cache if source == "hf-cache" else self.hub_cache
            parts = [repo_folder_name(model_id)]
        else:
            return True
        for part in parts:
            try:
                if part not in os.listdir(parent):
                    return False
            except OSError:
                return False
            parent = parent / part
        return True

    def probe(self, model_id: str) -> None:
        """The file system work of looking ``model_id`` up, without its answer: what the server
        does for an id the caller may not see, so that it costs what a missing one does."""
        validate_model_id(model_id)
        self._candidate(model_id)

    def resolve(self, model_id: str) -> ModelRef:
        """The current revision of ``model_id``.

        Raises:
            InvalidInput: for an unsafe id.
            ModelNotFound: when no folder holds it.
        """
        validate_model_id(model_id)
        now = time.monotonic()
        hit = self.fresh(model_id)
        if hit is not None:
            return hit
        found = self._candidate(model_id)
        if found is None or config_file(found[0]) is None or not self._spelled_as_stored(model_id, found[1]):
            with self._lock:
                self._cache.pop(model_id, None)
            raise ModelNotFound.for_id(model_id)
        folder, source, sha = found
        digest, size = scan_folder(folder)
        ref = self.describe_folder(model_id, folder, source, sha or digest, size)
        with self._lock:
            self._cache[model_id] = (now, ref)
        return ref

    def fresh(self, model_id: str) -> Optional[ModelRef]:
        """The cached resolution of ``model_id`` if it is younger than ``ttl_s``: no disk access.

        Only ids that passed validation are ever cached, so any string may be looked up.
        """
        with self._lock:
            hit = self._cache.get(model_id)
        if hit and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    def resolve_now(self, model_id: str) -> ModelRef:
        """``resolve`` without the cached answer (right after this process changed the model)."""
        self.forget(model_id)
        return self.resolve(model_id)

    def forget(self, model_id: str) -> None:
        """Drops the cached resolution of ``model_id`` (after this process deleted it)."""
        with self._lock:
            self._cache.pop(model_id, None)

    def describe_folder(self, model_id: str, folder: Path, source: str, sha: str, size: int) -> ModelRef:
        """The ``ModelRef`` of a model folder (read from its config and model card)."""
        path = config_file(folder)
        try:
            config = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            config = {}
        config = config if isinstance(config, dict) else {}
        if path is not None and path.name == "model_index.json":
            name = config.get("_class_name")
            config = {"architectures": [name] if isinstance(name, str) else [], "model_type": DIFFUSERS}
        elif isinstance(config.get("architecture"), str) and "model_type" not in config:
            # NOTE(hubserve): a timm checkpoint; transformers loads it through its TimmWrapper.
            config = {"architectures": [TIMM_ARCHITECTURE], "model_type": TIMM}
        card = read_front_matter(folder / "README.md")
        tag = card.get("pipeline_tag")
        if source == "hub" and not isinstance(tag, str):
            tag = pulled_info(folder.parent.parent).get("pipeline_tag")
        entry = self.entries.get(model_id)
        return ModelRef(
            model_id=model_id,
            path=folder,
            sha=sha,
            source=source,
            architectures=tuple(config.get("architectures") or ()),
            model_type=str(config.get("model_type") or ""),
            pipeline_tag=tag if isinstance(tag, str) else None,
            sentence_transformers=(folder / "modules.json").is_file(),
            size_bytes=size,
            config_task=getattr(entry, "task", None),
        )

    def resolve_repo(self, model_id: str) -> ModelRef:
        """``resolve``, or, for a folder of the store that holds no model yet (a repo made by
        the Hub API's ``create_repo``), a ``ModelRef`` of it: the Hub API lists and commits to it.

        Raises:
            InvalidInput: for an unsafe id.
            ModelNotFound: when no folder holds it.
        """
        try:
            return self.resolve(model_id)
        except ModelNotFound:
            folder = self.root / model_id
            if "/" not in model_id or not folder.is_dir() or not self._spelled_as_stored(model_id, "store"):
                raise
        digest, size = scan_folder(folder)
        return ModelRef(model_id=model_id, path=folder, sha=digest, source="store", size_bytes=size)

    def model_ids(self) -> list[str]:
        """Every id servable now: config entries, store folders and cached repos."""
        ids: set[str] = set(self.entries)
        if self.root.is_dir():
            for cfg in _glob_depth(self.root, [f"{depth}{name}" for name in CONFIG_FILES for depth in ("*/", "*/*/")]):
                rel = cfg.parent.relative_to(self.root).as_posix()
                try:
                    ids.add(validate_model_id(rel))
                except InvalidInput:
                    continue
        for cache in (self.hf_cache, self.hub_cache):
            if cache is not None and cache.is_dir():
                ids.update(repo.name[len("models--"):].replace("--", "/") for repo in cache.glob("models--*"))
        out = []
        for model_id in sorted(ids):
            try:
                self.resolve(model_id)
            except (ModelNotFound, InvalidInput):
                continue
            out.append(model_id)
        return out


def _glob_depth(root: Path, patterns: Iterable[str]) -> Iterable[Path]:
    for pattern in patterns:
        yield from root.glob(pattern)


def open_store(config, env: Optional[Mapping[str, str]] = None) -> ModelStore:
    """The ``ModelStore`` an ``AppConfig`` describes."""
    env = os.environ if env is None else env
    hub_cache = Path(config.hub.cache_dir) if config.hub.cache_dir else None
    return ModelStore(config.model_store, hf_cache_dir(config.hf_cache, env), config.models, hub_cache=hub_cache)
