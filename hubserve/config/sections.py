"""The response cache, cold starts, tokens and the upstream Hub: sections of the app config."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .base import StrictModel
from .limits import RateLimit

class CacheConfig(StrictModel):
    """The response cache of the ingress."""

    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    max_bytes: int = Field(256 * 1024**2, ge=1024, description="memory backend: bound of all entries")
    redis_url: Optional[str] = None
    ttl_s: int = Field(3600, ge=1, description="redis backend: time to live of an entry")

    @model_validator(mode="after")
    def _redis_needs_url(self):
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("cache.redis_url is required with cache.backend: redis")
        return self


class ColdStartConfig(StrictModel):
    """What a request for a model that is not loaded does."""

    wait_by_default: bool = Field(
        True, description="wait for the load unless asked not to (false: the hosted API's old 503)"
    )
    max_wait_s: float = Field(120.0, gt=0, description="longest wait before answering 503 anyway")
    retry_failed_after_s: float = Field(30.0, ge=0, description="back-off before a failed load is retried")


class AuthConfig(StrictModel):
    """Tokens and who may call without one (see ``hubserve.tokens.auth``)."""

    db: Optional[str] = Field(
        None, description="the SQLite file (default: <data_dir>/auth.sqlite), or a postgresql:// URL shared by "
                          "every replica and pod ($HUBSERVE_AUTH_DB overrides)")
    anonymous: bool = Field(True, description="calls without a token may use public models")
    unknown_tokens_as_anonymous: bool = Field(
        False, description="with anonymous on, a token this server never issued (e.g. a huggingface.co token "
                           "the client sends by itself) counts as no token instead of a 401")
    cache_ttl_s: float = Field(2.0, ge=0, description="how long token and visibility lookups are reused")


#: What a pull fetches of a repo by default: configs, tokenizer, processor and generation files,
#: safetensors weights (and their index), the model card; never code, never pickle weights.
DEFAULT_ALLOW_PATTERNS = (
    "*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "README.md",
)

class HubConfig(StrictModel):
    """The upstream Hub that model ids the server does not hold are pulled from (``hubserve.repos.hub``)."""

    endpoint: Optional[str] = Field(
        None, description="the upstream Hub (default: $HF_ENDPOINT, else https://huggingface.co)")
    token_env: Optional[str] = Field(
        None, description="the environment variable holding the upstream token (default: HF_TOKEN)")
    token_file: Optional[str] = Field(None, description="a file holding the upstream token (wins over token_env)")
    download: bool = Field(True, description="pull unknown model ids from the upstream (HF_HUB_OFFLINE=1: never)")
    cache_dir: Optional[str] = Field(None, description="where pulled models go (default: <data_dir>/hub)")
    max_disk_bytes: Optional[int] = Field(
        None, ge=1, description="pulled models are evicted least recently used above this (placed ones never)")
    allow_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW_PATTERNS))
    check_every_s: float = Field(
        300.0, ge=0, description="how often a pulled model's upstream revision is checked (a new one is pulled)")
    timeout_s: float = Field(10.0, gt=0, description="one upstream call's connect and read timeout")
    retry_after_s: float = Field(30.0, ge=0, description="back-off after the upstream could not be reached")
    missing_ttl_s: float = Field(60.0, ge=0, description="how long an id the upstream does not have is remembered")
    max_concurrent_pulls: int = Field(
        4, ge=1, description="downloads running at once, across the ingress replicas sharing cache_dir; a pull "
                             "past it is a 429")
    pull_rate: Optional[RateLimit] = Field(
        RateLimit(requests=10, window_s=600),
        description="per caller (token, else client address): requests that look up an id not held here upstream "
                    "and pull it, past it a 429; joining a running pull is not counted (null: no limit)")
    pull_requires_token: bool = Field(
        False, description="only a call with a token starts a pull: an anonymous call for an id not held here is "
                           "answered as a missing model")
