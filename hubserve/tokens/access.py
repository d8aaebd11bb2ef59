"""The server side of tokens: the bootstrap admin token (from the environment, as its hash) and
``Access``, which authenticates callers and checks visibility with caches reused for ``ttl_s``
seconds, so a revoked token stops working within that time on every replica.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from pathlib import Path
from typing import Mapping, Optional

from hubserve.errors import Unauthorized

from .auth import AuthStore
from .principal import ADMIN, ANONYMOUS, Principal, token_hash

ADMIN_ENV = "HUBSERVE_ADMIN_TOKEN"
ADMIN_FILE_ENV = "HUBSERVE_ADMIN_TOKEN_FILE"
#: The admin token's hash (``token_hash``), in place of the token: all the server needs to check it.
ADMIN_HASH_ENV = "HUBSERVE_ADMIN_TOKEN_HASH"
#: The shortest admin token the server accepts (it opens every model and namespace).
MIN_ADMIN_TOKEN_CHARS = 32
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def admin_token_hash(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The hash of the bootstrap admin token from the environment (its hash, the token, or its
    file), if any.

    Raises:
        ValueError: for a token shorter than ``MIN_ADMIN_TOKEN_CHARS`` (the server refuses to start).
    """
    env = os.environ if env is None else env
    digest = env.get(ADMIN_HASH_ENV, "").strip().lower()
    if digest:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"{ADMIN_HASH_ENV} is not the SHA-256 hex digest of a token "
                             "(printf %s \"$TOKEN\" | sha256sum)")
        return digest
    token = env.get(ADMIN_ENV, "").strip()
    source = ADMIN_ENV
    if not token and env.get(ADMIN_FILE_ENV):
        token = Path(env[ADMIN_FILE_ENV]).read_text(encoding="utf-8").strip()
        source = f"the file {env[ADMIN_FILE_ENV]} ({ADMIN_FILE_ENV})"
    if token and len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise ValueError(f"the admin token in {source} has {len(token)} characters; it must have at least "
                         f"{MIN_ADMIN_TOKEN_CHARS} (make one with: python -c 'import secrets; "
                         f"print(\"hf_\" + secrets.token_urlsafe(32))')")
    return token_hash(token) if token else None


class Access:
    """Authentication and visibility checks for the server, with short-lived caches.

    Args:
        store: the auth store.
        anonymous: whether calls without a token may use public models.
        admin_hash: the bootstrap admin token's hash, if any.
        ttl_s: how long a token or visibility lookup is reused.
        unknown_as_anonymous: treat a token this server never issued as no token (when
            anonymous calls are allowed); revoked tokens are refused all the same.
    """

    def __init__(self, store: AuthStore, anonymous: bool = True, admin_hash: Optional[str] = None,
                 ttl_s: float = 2.0, unknown_as_anonymous: bool = False) -> None:
        self.store = store
        self.anonymous = anonymous
        self.unknown_as_anonymous = unknown_as_anonymous and anonymous
        self.admin_hash = admin_hash
        self.ttl_s = ttl_s
        self._tokens: dict[str, tuple[object, float]] = {}
        self._private: tuple[frozenset, float] = (frozenset(), -1e9)

    def principal(self, authorization: Optional[str], lookup: bool = True) -> Optional[Principal]:
        """The caller of a request with this ``Authorization`` header; with ``lookup=False``,
        None where the answer needs a read of the token store (a token not in the cache).

        Raises:
            Unauthorized: a bad, unknown or revoked token, or no token where one is required.
        """
        if not authorization:
            if self.anonymous:
                return ANONYMOUS
            raise Unauthorized("An access token is required: send `Authorization: Bearer hf_...`")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(INVALID_CREDENTIALS)
        hashed = token_hash(token)
        if self.admin_hash is not None and hmac.compare_digest(hashed, self.admin_hash):
            return ADMIN
        now = time.monotonic()
        cached = self._tokens.get(hashed)
        if cached is None or now - cached[1] > self.ttl_s:
            if not lookup:
                return None
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            cached = (self.store.lookup(token), now)
            self._tokens[hashed] = cached
        found = cached[0]
        if isinstance(found, Principal):
            return found
        if found is None and self.unknown_as_anonymous:
            return ANONYMOUS
        raise Unauthorized(INVALID_CREDENTIALS)

    def private_models_due(self) -> bool:
        """Whether the next ``private_models`` reads the store (its cache has expired)."""
        return time.monotonic() - self._private[1] > self.ttl_s

    def private_models(self) -> frozenset:
        models, at = self._private
        if self.private_models_due():
            models = frozenset(self.store.private_models())
            self._private = (models, time.monotonic())
        return models

    def is_private(self, model_id: str) -> bool:
        return model_id in self.private_models()

    def can_read(self, principal: Principal, model_id: str) -> bool:
        return not self.is_private(model_id) or principal.owns(model_id)

    def can_read_now(self, principal: Principal, model_id: str) -> bool:
        """``can_read`` from the database itself, for a model this process has just found on disk:
        another replica may have installed it private a moment ago. A private answer is kept in
        the cache."""
        if self.store.is_private(model_id):
            models, at = self._private
            self._private = (models | {model_id}, at)
            return principal.owns(model_id)
        return True

    def forget(self) -> None:
        """Drops the caches (after a change made by this process)."""
        self._tokens.clear()
        self._private = (frozenset(), -1e9)
