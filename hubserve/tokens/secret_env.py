"""Secrets reach the ingress only: never a model replica, an export child or a Ray node's environment.

A model replica reads files an attacker chose (a model's configs name vocabularies, weights and
templates), so whatever it can read may leak. The server's secrets (the admin token, the upstream
Hub token, the token-store and Redis URLs with their passwords) therefore never enter the
environment that Ray's nodes pass to every worker. ``hubserve serve`` takes them out of it
(``split``) and writes what the ingress needs into a private folder (``write_secrets_dir``): one
file per variable, mode 0600, the layout of a Kubernetes Secret mounted as a volume. The
application's ``secrets_dir`` names that folder; only the ingress reads it (``load_secrets``),
into its own memory (``os.environ`` of a running process is not what ``/proc/<pid>/environ``
shows). The admin token itself never leaves ``hubserve serve``: the ingress gets its hash.

Model replicas and the processes they start drop every secret-looking variable they inherited
anyway (``scrubbed``, ``scrub_process``), for clusters whose nodes were given secrets by others.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, MutableMapping, Optional

from hubserve.config.base import AUTH_DB_ENV, REDIS_ENV
from hubserve.config.secrets_dir import read_secrets_dir, write_secrets_dir

from .access import ADMIN_ENV, ADMIN_FILE_ENV, ADMIN_HASH_ENV, admin_token_hash

#: Variables that hold the server's secrets, whatever the config says.
SECRET_NAMES = frozenset({ADMIN_ENV, ADMIN_FILE_ENV, AUTH_DB_ENV, REDIS_ENV, "HF_TOKEN",
                          "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "PGPASSWORD", "PGPASSFILE",
                          "REDISCLI_AUTH", "DATABASE_URL", "REDIS_URL"})
#: And every variable named like a credential (Ray's own ``RAY_*`` settings excepted: a replica
#: is a Ray worker and needs them).
SECRET_PATTERN = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIALS?|API_KEY|ACCESS_KEY|PRIVATE_KEY)(_FILE|_PATH)?$")

#: What the ingress needs, by variable: the admin token's hash, the token-store and Redis URLs.
INGRESS_NAMES = (ADMIN_HASH_ENV, AUTH_DB_ENV, REDIS_ENV)


def is_secret(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether the variable ``name`` may hold a secret."""
    if name in SECRET_NAMES or name in extra:
        return True
    return not name.startswith("RAY_") and bool(SECRET_PATTERN.search(name.upper()))


def split(env: Mapping[str, str], extra: frozenset[str] = frozenset()) -> tuple[dict, dict]:
    """``(env without secrets, the secrets)``; ``extra`` names more secret variables (the
    config's ``hub.token_env``)."""
    clean, secrets = {}, {}
    for name, value in env.items():
        (secrets if is_secret(name, extra) else clean)[name] = value
    return clean, secrets


def scrubbed(env: Optional[Mapping[str, str]] = None) -> dict:
    """The environment for a child process of a model replica: ``env`` (``os.environ``) without secrets."""
    return split(os.environ if env is None else env)[0]


def scrub_process(env: Optional[MutableMapping[str, str]] = None) -> list[str]:
    """Drops every secret variable from this process's environment (``os.environ``); their names."""
    env = os.environ if env is None else env
    names = [name for name in list(env) if is_secret(name)]
    for name in names:
        del env[name]
    return names


def ingress_secrets(env: Mapping[str, str], upstream_token_env: Optional[str]) -> dict:
    """What the ingress needs of ``env``: the admin token as its hash, the upstream token under
    the name the config reads, the token-store and Redis URLs.

    Raises:
        ValueError: for a short admin token (the server refuses to start).
    """
    found = {name: env[name] for name in (AUTH_DB_ENV, REDIS_ENV) if env.get(name)}
    digest = admin_token_hash(env)
    if digest:
        found[ADMIN_HASH_ENV] = digest
    token_name = upstream_token_env or "HF_TOKEN"
    token = env.get(token_name) or (env.get("HUGGING_FACE_HUB_TOKEN") if token_name == "HF_TOKEN" else None)
    if token:
        found[token_name] = token
    return found


def load_secrets(folder: Optional[str]) -> list[str]:
    """Puts a secrets folder's variables into this process's ``os.environ`` (the ingress, at
    start); their names."""
    if not folder:
        return []
    values = read_secrets_dir(folder)
    os.environ.update(values)
    return sorted(values)


def replica_config(config):
    """``config`` (an ``AppConfig``) as a model replica gets it: without the token store's and
    Redis's URLs (the response cache is the ingress's), the upstream token's file or the secrets
    folder, none of which it uses."""
    return config.model_copy(update={
        "secrets_dir": None,
        "auth": config.auth.model_copy(update={"db": None}),
        "cache": config.cache.model_copy(update={"backend": "memory", "redis_url": None}),
        "limits": config.limits.model_copy(update={"redis_url": None}),
        "hub": config.hub.model_copy(update={"token_file": None}),
    })


def for_local_server(env: Mapping[str, str], upstream_token_env: Optional[str]) -> tuple[dict, Optional[Path]]:
    """``(env, folder)``: the environment of a local Ray head without any secret, and a new
    secrets folder with what the ingress needs of them (None when it needs none).

    Raises:
        ValueError: for a short admin token (the server refuses to start).
    """
    values = ingress_secrets(env, upstream_token_env)
    extra = frozenset({upstream_token_env}) if upstream_token_env else frozenset()
    clean, _ = split(env, extra)
    return clean, (write_secrets_dir(values) if values else None)
