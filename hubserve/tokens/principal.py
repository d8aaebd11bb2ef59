"""Who calls: tokens (``hf_`` + 34 letters, from ``secrets``, kept only as SHA-256 hashes: they
are random, so a fast hash is enough), their roles and the ``Principal`` a token stands for.

A token belongs to a user and has a role: ``read`` (inference), ``write`` (also upload, change and
delete models in the user's and its organisations' namespaces).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Optional

from hubserve.errors import InvalidInput

TOKEN_PREFIX = "hf_"
TOKEN_LENGTH = 34
ROLES = ("read", "write")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


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
