"""The response cache: identical deterministic requests are answered at the ingress.

The key is a digest of the model id, its revision sha, the task and the canonical
JSON of the validated request (inputs and parameters), so a changed model never
serves a stale answer. Values are the replica's output as JSON bytes plus the
compute type. Two backends: an in-process LRU bounded in bytes (the default, one
per ingress replica) and Redis, shared by several ingress replicas.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Optional, Protocol

import orjson

logger = logging.getLogger(__name__)


def cache_key(model_id: str, sha: str, task: str, request: Any, scope: str = "") -> str:
    """A stable key for one request of one model revision.

    Args:
        model_id: the model id.
        sha: its revision.
        task: the task that answers.
        request: the validated task request (a pydantic model).
        scope: who may read the entry (e.g. the owner of a private model); ``""`` is public.
    """
    body = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(b"\0".join([model_id.encode(), sha.encode(), task.encode(),
                                        type(request).__qualname__.encode(), scope.encode(), body]))
    return model_prefix(model_id) + digest.hexdigest()


def model_prefix(model_id: str) -> str:
    """The start of every key of ``model_id`` (a digest: keys do not name models)."""
    return hashlib.sha256(model_id.encode()).hexdigest()[:16] + ":"


def encode_entry(output: Any, compute_type: str, headers: Optional[dict] = None) -> bytes:
    """Cache value bytes (numpy arrays become lists, as on the wire; a file answer is kept as
    base64); ``headers`` are the compute headers the replica measured (``x-compute-audio-length``)."""
    entry = {"c": compute_type, "h": headers or {}}
    if isinstance(output, bytes):
        entry["b"] = base64.b64encode(output).decode("ascii")
    else:
        entry["o"] = output
    return orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_entry(raw: bytes) -> tuple[Any, str, dict]:
    """``(output, compute_type, headers)`` of a cache value."""
    data = orjson.loads(raw)
    output = base64.b64decode(data["b"]) if "b" in data else data["o"]
    return output, data["c"], data.get("h") or {}


class CacheBackend(Protocol):
    def get(self, key: str) -> Optional[bytes]: ...

    def set(self, key: str, value: bytes) -> None: ...

    def evict_model(self, model_id: str) -> int: ...


class MemoryCache:
    """An LRU of byte strings bounded by their total size.

    Args:
        max_bytes: the bound; an entry larger than a quarter of it is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[bytes]:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._entries[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.size -= len(evicted)

    def evict_model(self, model_id: str) -> int:
        """Drops every entry of ``model_id``; returns how many."""
        prefix = model_prefix(model_id)
        with self._lock:
            doomed = [k for k in self._entries if k.startswith(prefix)]
            for key in doomed:
                self.size -= len(self._entries.pop(key))
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Entries in Redis with a time to live (bound the memory with Redis's ``maxmemory``).

    Errors reaching Redis are logged and treated as misses: the cache never fails a request.
    """

    PREFIX = "hubserve:cache:"

    def __init__(self, url: str, ttl_s: int) -> None:
        import redis

        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get(self, key: str) -> Optional[bytes]:
        try:
            return self.client.get(self.PREFIX + key)
        except Exception as exc:  # noqa: BLE001 - a cache outage is a miss
            logger.warning("redis cache get failed: %s", exc)
            return None

    def set(self, key: str, value: bytes) -> None:
        try:
            self.client.set(self.PREFIX + key, value, ex=self.ttl_s)
        except Exception as exc:  # noqa: BLE001
            logger.warning("redis cache set failed: %s", exc)

    def evict_model(self, model_id: str) -> int:
        """Drops every entry of ``model_id`` (shared by all ingress replicas); returns how many."""
        try:
            keys = list(self.client.scan_iter(match=self.PREFIX + model_prefix(model_id) + "*", count=1000))
            return int(self.client.delete(*keys)) if keys else 0
        except Exception as exc:  # noqa: BLE001
            logger.warning("redis cache eviction failed: %s", exc)
            return 0


def make_cache(settings) -> Optional[CacheBackend]:
    """The cache a ``CacheConfig`` describes (None when disabled)."""
    if not settings.enabled:
        return None
    if settings.backend == "redis":
        return RedisCache(settings.redis_url, settings.ttl_s)
    return MemoryCache(settings.max_bytes)
