"""Who is calling, whether they may, and how much: tokens, rate limits, request caps."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from starlette.requests import Request

from hubserve.tokens.principal import ANONYMOUS, Principal
from hubserve.tokens.access import Access, admin_token_hash
from hubserve.tokens.auth import open_auth_store
from hubserve.config.app import AppConfig
from hubserve.config.limits import LimitsConfig, RateLimit
from hubserve.errors import ModelNotFound, RateLimited, Unauthorized
from hubserve.repos.refs import ModelRef, validate_model_id
from hubserve.repos.store import ModelStore

from .client_ip import ClientAddresses

logger = logging.getLogger(__name__)

ANONYMOUS_LIMIT_MESSAGE = "Rate limit reached. Please log in or use a HF access token"


def make_access(config: AppConfig) -> Access:
    """The server's ``Access`` over the configured token store and the admin token."""
    return Access(open_auth_store(config.auth.db), anonymous=config.auth.anonymous,
                  admin_hash=admin_token_hash(), ttl_s=config.auth.cache_ttl_s,
                  unknown_as_anonymous=config.auth.unknown_tokens_as_anonymous)


class MemoryWindows:
    """Fixed windows in this replica's memory: each ingress replica counts the requests it sees."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.windows: dict[str, tuple[float, int]] = {}

    async def take(self, key: str, rule: RateLimit) -> Optional[float]:
        """Counts one request of ``key``: None if admitted, else the seconds until its window resets."""
        now = self.clock()
        start, count = self.windows.get(key, (now, 0))
        if now - start >= rule.window_s:
            start, count = now, 0
        if count >= rule.requests:
            return rule.window_s - (now - start)
        if len(self.windows) > 100_000:
            self.windows = {k: v for k, v in self.windows.items() if now - v[0] < rule.window_s}
        self.windows[key] = (start, count + 1)
        return None


class RedisWindows:
    """Fixed windows in Redis (aligned to multiples of ``window_s``): one count for every replica
    and pod, one asynchronous round trip (bounded by a 0.25 s socket timeout) that never blocks
    the replica's other requests. An unreachable Redis admits the request, and for
    ``RETRY_AFTER_S`` every request without asking again (saying so in the log once a minute):
    the limits protect the service, they must not take it down or slow it."""

    PREFIX = "hubserve:rate:"
    RETRY_AFTER_S = 5.0

    def __init__(self, url: str, clock=time.time) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.clock = clock
        self._warned = 0.0
        self._down_until = 0.0

    async def take(self, key: str, rule: RateLimit) -> Optional[float]:
        import redis

        now = self.clock()
        if now < self._down_until:
            return None
        bucket = int(now // rule.window_s)
        name = f"{self.PREFIX}{key}:{rule.window_s:g}:{bucket}"
        try:
            async with self.client.pipeline() as pipe:
                pipe.incr(name)
                pipe.expire(name, int(rule.window_s) + 1)
                count = (await pipe.execute())[0]
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            self._down_until = now + self.RETRY_AFTER_S
            if now - self._warned > 60:
                logger.warning("rate limits are not enforced: Redis is unreachable (%s)", exc)
                self._warned = now
            return None
        if count > rule.requests:
            return (bucket + 1) * rule.window_s - now
        return None


def make_windows(limits: LimitsConfig, clock=time.monotonic):
    """Rate-limit windows: ``RedisWindows`` with ``limits.redis_url``, else ``MemoryWindows``."""
    return RedisWindows(limits.redis_url) if limits.redis_url else MemoryWindows(clock)


class RateLimiter:
    """Fixed windows per token, and per client address for anonymous calls, counted in
    ``windows`` (``MemoryWindows`` by default; ``RedisWindows`` with ``limits.redis_url``)."""

    def __init__(self, limits: LimitsConfig, clock=time.monotonic, windows=None) -> None:
        self.limits = limits
        self.windows = make_windows(limits, clock) if windows is None else windows

    async def check(self, principal: Principal, client: str) -> None:
        """Counts one request.

        Raises:
            RateLimited: over the limit, with ``ratelimit``/``ratelimit-policy`` headers.
        """
        if principal.admin:
            return
        rule: Optional[RateLimit] = self.limits.anonymous_rate if principal.anonymous else self.limits.token_rate
        if rule is None:
            return
        left = await self.windows.take(caller_key(principal, client), rule)
        if left is None:
            return
        reset = max(1, int(left + 0.999))
        message = ANONYMOUS_LIMIT_MESSAGE if principal.anonymous else (
            f"Rate limit reached: {rule.requests} requests per {rule.window_s:g}s for this token")
        raise RateLimited(message, headers={
            "ratelimit": f'"api";r=0;t={reset}',
            "ratelimit-policy": f'"fixed window";"api";q={rule.requests};w={rule.window_s:g}',
            "Retry-After": str(reset),
        })


def caller_key(principal: Principal, client: str) -> str:
    """Whom a call is counted against: its token, else its client address."""
    return f"ip:{client}" if principal.anonymous else principal.key


class Guard:
    """Admits a request: authenticates it and counts it against its rate limit."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.access = make_access(config)
        self.limiter = RateLimiter(config.limits)
        self.addresses = ClientAddresses(config.limits)

    async def admit(self, request: Request) -> Principal:
        """The caller, counted against its rate limit; a failed authentication counts as an
        anonymous call of its address (so tokens cannot be guessed faster than that). A token
        that must be looked up in the token store is looked up off the event loop, and so is the
        set of private models when its cache has expired (the request's visibility checks then
        never wait on the store on the loop). ``request.state.caller`` is then the caller's
        ``caller_key``."""
        client = self.addresses.of(request.client, request.headers.getlist(self.addresses.header))
        authorization = request.headers.get("authorization")
        try:
            principal = self.access.principal(authorization, lookup=False)
            if principal is None:
                principal = await asyncio.to_thread(self.access.principal, authorization)
        except Unauthorized:
            await self.limiter.check(ANONYMOUS, client)
            raise
        await self.limiter.check(principal, client)
        request.state.caller = caller_key(principal, client)
        if self.access.private_models_due():
            await asyncio.to_thread(self.access.private_models)
        return principal


async def resolve_visible(store: ModelStore, access: Access, principal: Principal, model_id: str,
                          repo: bool = False) -> ModelRef:
    """The model ``model_id`` if ``principal`` may see it, on every route (``repo``: a repo of
    the store that holds no model yet counts, as the Hub API's routes see it).

    A private model of someone else is answered exactly like a missing one: the same
    ``ModelNotFound``, after the same file system work (``store.probe``). A model found on
    disk rather than in the store's memory has its visibility read from the database,
    not the cache, so that a private upload is never shown by a replica whose cache is a
    moment old.

    Raises:
        InvalidInput: a malformed id.
        ModelNotFound: missing, or not visible to ``principal``.
    """
    validate_model_id(model_id)
    if not access.can_read(principal, model_id):
        await asyncio.to_thread(store.probe, model_id)
        raise ModelNotFound.for_id(model_id)
    ref = store.fresh(model_id)
    if ref is not None:
        return ref

    def lookup() -> ModelRef:
        found = store.resolve_repo(model_id) if repo else store.resolve(model_id)
        if not access.can_read_now(principal, model_id):
            raise ModelNotFound.for_id(model_id)
        return found

    return await asyncio.to_thread(lookup)
