"""Who is calling, whether they may, and how much: tokens, rate limits, request caps."""

from __future__ import annotations

import time
from typing import Any, Optional

from starlette.requests import Request

from hubserve.auth import Access, AuthStore, Principal, admin_token_hash
from hubserve.config import AppConfig, LimitsConfig, RateLimit
from hubserve.errors import InvalidInput, RateLimited

ANONYMOUS_LIMIT_MESSAGE = "Rate limit reached. Please log in or use a HF access token"


def make_access(config: AppConfig) -> Access:
    """The server's ``Access`` over the configured token store and the admin token."""
    return Access(AuthStore(config.auth.db), anonymous=config.auth.anonymous,
                  admin_hash=admin_token_hash(), ttl_s=config.auth.cache_ttl_s,
                  unknown_as_anonymous=config.auth.unknown_tokens_as_anonymous)


class RateLimiter:
    """Fixed windows per token, and per client address for anonymous calls.

    Counts live in this replica's memory: with several ingress replicas each
    enforces the limit on the requests it sees.
    """

    def __init__(self, limits: LimitsConfig, clock=time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.windows: dict[str, tuple[float, int]] = {}

    def check(self, principal: Principal, client: str) -> None:
        """Counts one request.

        Raises:
            RateLimited: over the limit, with ``ratelimit``/``ratelimit-policy`` headers.
        """
        if principal.admin:
            return
        rule: Optional[RateLimit] = self.limits.anonymous_rate if principal.anonymous else self.limits.token_rate
        if rule is None:
            return
        key = f"ip:{client}" if principal.anonymous else principal.key
        now = self.clock()
        start, count = self.windows.get(key, (now, 0))
        if now - start >= rule.window_s:
            start, count = now, 0
        if count >= rule.requests:
            reset = max(1, int(rule.window_s - (now - start) + 0.999))
            message = ANONYMOUS_LIMIT_MESSAGE if principal.anonymous else (
                f"Rate limit reached: {rule.requests} requests per {rule.window_s:g}s for this token")
            raise RateLimited(message, headers={
                "ratelimit": f'"api";r=0;t={reset}',
                "ratelimit-policy": f'"fixed window";"api";q={rule.requests};w={rule.window_s:g}',
                "Retry-After": str(reset),
            })
        if len(self.windows) > 100_000:
            self.windows = {k: v for k, v in self.windows.items() if now - v[0] < rule.window_s}
        self.windows[key] = (start, count + 1)


def client_address(request: Request, header: Optional[str]) -> str:
    """The caller's address: the last entry of ``header`` when configured, else the peer."""
    if header:
        forwarded = request.headers.get(header, "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return request.client.host if request.client else "unknown"


class Guard:
    """Admits a request: authenticates it and counts it against its rate limit."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.access = make_access(config)
        self.limiter = RateLimiter(config.limits)

    def admit(self, request: Request) -> Principal:
        principal = self.access.principal(request.headers.get("authorization"))
        self.limiter.check(principal, client_address(request, self.config.limits.client_ip_header))
        return principal


def check_inputs(inputs: Any, limits: LimitsConfig) -> None:
    """Refuses too many inputs, or an input string that is too long (400)."""
    if isinstance(inputs, list) and len(inputs) > limits.max_inputs:
        raise InvalidInput(f"Too many inputs: {len(inputs)} in one request, the limit is {limits.max_inputs}")
    todo = [inputs]
    while todo:
        value = todo.pop()
        if isinstance(value, str):
            if len(value) > limits.max_input_chars:
                raise InvalidInput(f"An input has {len(value)} characters, the limit is {limits.max_input_chars}")
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.values())


GENERATION_LIMITS = ("max_new_tokens", "max_tokens", "max_completion_tokens")


def check_generation(task_request: Any, limits: LimitsConfig) -> None:
    """Refuses a generation request asking for more tokens than the server allows (400)."""
    for holder in (task_request, getattr(task_request, "parameters", None)):
        for name in GENERATION_LIMITS:
            value = getattr(holder, name, None) if holder is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > limits.max_new_tokens:
                raise InvalidInput(f"`{name}` is {value}; this server allows at most {limits.max_new_tokens}")
