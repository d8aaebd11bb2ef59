"""The upstream Hub models are pulled from: its endpoint and token, whether downloads are off, and
what it says of one repo revision (``Remote``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from hubserve.config.sections import HubConfig
from hubserve.errors import ServiceUnavailable

DEFAULT_ENDPOINT = "https://huggingface.co"


class UpstreamUnavailable(ServiceUnavailable):
    """The upstream Hub cannot be reached or failed (503)."""


def upstream(hub: HubConfig, env: Optional[Mapping[str, str]] = None) -> tuple[str, Optional[str]]:
    """The upstream endpoint and token: the config, else ``HF_ENDPOINT``/``HF_TOKEN``, as every Hub tool."""
    env = os.environ if env is None else env
    endpoint = (hub.endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = None
    if hub.token_file:
        token = Path(hub.token_file).expanduser().read_text(encoding="utf-8").strip() or None
    if token is None:
        token = env.get(hub.token_env or "HF_TOKEN") or None
    return endpoint, token


def offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) in the server's environment."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)

def upstream_only() -> None:
    """Sends huggingface_hub's requests to the upstream alone: 2.x builds its user agent from a
    registry of AI agents that it fetches from ``HF_ENDPOINT`` (huggingface.co by default, not
    the endpoint of the call) unless telemetry is off. A server talks to ``hub.endpoint`` only."""
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True


@dataclass(frozen=True)
class Remote:
    """What the upstream says of one repo revision."""

    model_id: str
    sha: str
    private: bool
    pipeline_tag: Optional[str]
    library_name: Optional[str]
    files: tuple[tuple[str, int], ...]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def matches(path: str, patterns: list[str]) -> bool:
    from huggingface_hub.utils import filter_repo_objects

    return bool(list(filter_repo_objects([path], allow_patterns=patterns)))
