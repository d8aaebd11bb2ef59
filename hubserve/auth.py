"""Tokens, users, organisations and model visibility, kept in one SQLite file (one machine) or
in PostgreSQL (``auth.db: postgresql://...``: every pod and ingress replica of a cluster reads
the same tables).

Tokens look like the hosted ones (``hf_`` + 34 letters), come from ``secrets`` and
are stored only as SHA-256 hashes (they are random, so a fast hash is enough). A
token belongs to a user and has a role: ``read`` (inference), ``write`` (also
upload, change and delete models in the user's and its organisations'
namespaces). The bootstrap admin token is never stored: it comes from
``HUBSERVE_ADMIN_TOKEN`` or the file named by ``HUBSERVE_ADMIN_TOKEN_FILE``.

A model is public unless the ``models`` table says otherwise; a private model is
visible only to its namespace (the user, or members of the organisation) and to
admins. ``Access`` is the server side: it caches lookups for ``ttl_s`` seconds,
so a revoked token stops working within that time on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import string
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from .errors import InvalidInput, Unauthorized

TOKEN_PREFIX = "hf_"
TOKEN_LENGTH = 34
ROLES = ("read", "write")
ADMIN_ENV = "HUBSERVE_ADMIN_TOKEN"
ADMIN_FILE_ENV = "HUBSERVE_ADMIN_TOKEN_FILE"
#: The admin token's hash (``token_hash``), in place of the token: all the server needs to check it.
ADMIN_HASH_ENV = "HUBSERVE_ADMIN_TOKEN_HASH"
#: The shortest admin token the server accepts (it opens every model and namespace).
MIN_ADMIN_TOKEN_CHARS = 32
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# NOTE(hubserve): one SQL for both databases: "user" quoted (a reserved word in PostgreSQL),
# DOUBLE PRECISION times (PostgreSQL's REAL is 4 bytes), ON CONFLICT upserts.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, hash TEXT UNIQUE NOT NULL, "user" TEXT NOT NULL, role TEXT NOT NULL,
    hint TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, revoked DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS members (org TEXT NOT NULL, "user" TEXT NOT NULL, PRIMARY KEY (org, "user"))""",
    """CREATE TABLE IF NOT EXISTS models (model_id TEXT PRIMARY KEY, private INTEGER NOT NULL,
    updated DOUBLE PRECISION NOT NULL)""",
)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def check_name(name: str, what: str = "name") -> str:
    """A user or organisation name: letters, digits, ``.``, ``_``, ``-`` (at most 96)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"Invalid {what} {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def new_token() -> str:
    """A fresh token: ``hf_`` and 34 letters from the OS's secure random source."""
    return TOKEN_PREFIX + "".join(secrets.choice(string.ascii_letters) for _ in range(TOKEN_LENGTH))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def namespace_of(model_id: str) -> Optional[str]:
    """The owner of ``org/name`` (None for a legacy id without a namespace)."""
    return model_id.split("/", 1)[0] if "/" in model_id else None


@dataclass(frozen=True)
class Principal:
    """Who is calling: anonymous, a token's user (with its organisations), or the admin."""

    user: Optional[str] = None
    role: str = "anonymous"
    orgs: frozenset = field(default_factory=frozenset)
    token_id: Optional[str] = None

    @property
    def anonymous(self) -> bool:
        return self.role == "anonymous"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def key(self) -> str:
        """A stable key for caches and rate limits."""
        return "admin" if self.admin else f"token:{self.token_id}" if self.token_id else "anonymous"

    def owns(self, model_id: str) -> bool:
        """Whether ``model_id`` lives in this principal's namespaces (the admin owns all)."""
        if self.admin:
            return True
        namespace = namespace_of(model_id)
        return namespace is not None and (namespace == self.user or namespace in self.orgs)

    def can_write(self, model_id: str) -> bool:
        return self.admin or (self.role == "write" and self.owns(model_id))


ANONYMOUS = Principal()
ADMIN = Principal(user="admin", role="admin")


class AuthStore:
    """The tables of tokens, organisation members and model visibility.

    ``AuthStore(path)`` is the SQLite file (created, with its folder, on the first write);
    ``open_auth_store`` picks PostgreSQL for a ``postgresql://`` URL. Subclasses provide
    ``_read`` and ``_write``; the SQL is the same.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _connect(self, write: bool = False) -> Optional[sqlite3.Connection]:
        if not write and not self.path.exists():
            return None
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        if write:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        return conn

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = self._connect()
        if conn is None:
            return []
        with closing(conn):
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

    def _write(self, sql: str, args: tuple = ()) -> int:
        with closing(self._connect(write=True)) as conn:
            return conn.execute(sql, args).rowcount

    # -- tokens -----------------------------------------------------------------------

    def create_token(self, user: str, role: str = "read", org: Optional[str] = None) -> tuple[str, str]:
        """Creates a token for ``user`` (making it a member of ``org`` if given).

        Returns:
            ``(token id, token)``; the token itself is not kept and cannot be shown again.
        """
        check_name(user, "user")
        if role not in ROLES:
            raise InvalidInput(f"Invalid role {role!r}: one of {', '.join(ROLES)}")
        if org is not None:
            check_name(org, "organisation")
            self._write('INSERT INTO members (org, "user") VALUES (?, ?) ON CONFLICT DO NOTHING', (org, user))
        token, token_id = new_token(), secrets.token_hex(4)
        self._write('INSERT INTO tokens (id, hash, "user", role, hint, created) VALUES (?, ?, ?, ?, ?, ?)',
                    (token_id, token_hash(token), user, role, token[-4:], time.time()))
        return token_id, token

    def list_tokens(self) -> list[dict]:
        rows = self._read('SELECT id, "user", role, hint, created, revoked FROM tokens ORDER BY created')
        members = self._read('SELECT org, "user" FROM members')
        return [{"id": i, "user": u, "role": r, "hint": f"hf_...{h}", "created": c, "revoked": v,
                 "orgs": sorted(o for o, mu in members if mu == u)} for i, u, r, h, c, v in rows]

    def revoke(self, token_id: str) -> bool:
        """Revokes a token; False when no active token has this id."""
        return self._write("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                           (time.time(), token_id)) == 1

    def lookup(self, token: str) -> "Principal | str | None":
        """The principal of an active token, ``"revoked"`` for a revoked one, None if unknown."""
        rows = self._read('SELECT id, "user", role, revoked FROM tokens WHERE hash = ?', (token_hash(token),))
        if not rows:
            return None
        token_id, user, role, revoked = rows[0]
        if revoked is not None:
            return "revoked"
        orgs = frozenset(o for (o,) in self._read('SELECT org FROM members WHERE "user" = ?', (user,)))
        return Principal(user=user, role=role, orgs=orgs, token_id=token_id)

    # -- models -----------------------------------------------------------------------

    def set_private(self, model_id: str, private: bool) -> None:
        self._write("INSERT INTO models (model_id, private, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(model_id) DO UPDATE SET private = excluded.private, updated = excluded.updated",
                    (model_id, int(private), time.time()))

    def forget_model(self, model_id: str) -> None:
        self._write("DELETE FROM models WHERE model_id = ?", (model_id,))

    def private_models(self) -> set[str]:
        return {m for (m,) in self._read("SELECT model_id FROM models WHERE private = 1")}

    def is_private(self, model_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM models WHERE model_id = ? AND private = 1", (model_id,)))


class PostgresAuthStore(AuthStore):
    """The same tables in PostgreSQL (``psycopg``): one connection per process, opened on first
    use and again after it breaks; the schema is made on first use.

    Args:
        url: a ``postgresql://user:password@host:port/database`` URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.split("@")[-1])  # for messages only: never the password
        self._conn = None
        self._lock = threading.Lock()

    def _execute(self, sql: str, args: tuple, fetch: bool):
        import psycopg

        sql = sql.replace("?", "%s")
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                        for statement in _SCHEMA:
                            try:
                                self._conn.execute(statement)
                            except psycopg.errors.UniqueViolation:
                                pass  # another process made the table at the same moment
                    cursor = self._conn.execute(sql, args)
                    return cursor.fetchall() if fetch else cursor.rowcount
                except psycopg.OperationalError:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        return [tuple(row) for row in self._execute(sql, args, fetch=True)]

    def _write(self, sql: str, args: tuple = ()) -> int:
        return self._execute(sql, args, fetch=False)


def open_auth_store(db: str | os.PathLike) -> AuthStore:
    """The auth store of ``auth.db``: a ``postgresql://`` URL, else a SQLite file."""
    if isinstance(db, str) and db.startswith(POSTGRES_SCHEMES):
        return PostgresAuthStore(db)
    return AuthStore(db)


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
