"""The token store: tokens, users, organisations and model visibility, kept in one SQLite file
(one machine) or in PostgreSQL (``auth.db: postgresql://...``: every pod and ingress replica of a
cluster reads the same tables).

Tokens are stored only as hashes (``hubserve.tokens.principal``). The bootstrap admin token is
never stored: it comes from ``HUBSERVE_ADMIN_TOKEN`` or the file named by
``HUBSERVE_ADMIN_TOKEN_FILE`` (``hubserve.tokens.access``).

A model is public unless the ``models`` table says otherwise; a private model is
visible only to its namespace (the user, or members of the organisation) and to
admins.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Optional

from hubserve.errors import InvalidInput

from .principal import ROLES, Principal, check_name, new_token, token_hash

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
