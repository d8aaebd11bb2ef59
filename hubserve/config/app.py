"""The validated configuration of a hubserve application.

A Serve config (``configs/*.yaml``) passes these fields as the ``args`` of the
``serve_app.app:build_app`` application. ``AppConfig`` checks them: unknown keys,
bad ranges and duplicate model ids are refused with one readable error. Tasks are
checked against the task registry by the caller (``check_tasks``), because this
package does not import the deployments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import Field, model_validator

from .base import AUTH_DB_ENV, DATA_ENV, REDIS_ENV, STORE_ENV, StrictModel, load_yaml
from .deployments import DEFAULT_DEPLOYMENT, IngressDeployment, ModelEntry, TaskDeployment
from .limits import LimitsConfig
from .secrets_dir import read_secrets_dir
from .sections import AuthConfig, CacheConfig, ColdStartConfig, HubConfig

class AppConfig(StrictModel):
    """Everything ``build_app`` needs, validated."""

    model_store: str = "./model_store"
    hf_cache: Optional[str] = Field(
        "auto", description="an HF hub cache folder read read-only; auto = HF_HUB_CACHE or ~/.cache"
    )
    data_dir: str = Field("./data", description="the server's own files: tokens, uploads in progress")
    onnx_cache: Optional[str] = Field(
        None, description="where ONNX exports are kept (default: <model_store>/.onnx-cache)"
    )
    max_body_bytes: int = Field(20_000_000, ge=1024, description="bytes of one request body (images and audio included)")
    request_timeout_s: float = Field(300.0, gt=0)
    zero_shot_format: Literal["auto", "dict", "list"] = "auto"
    serve_tasks: Optional[list[str]] = Field(
        None, description="deploy only these tasks (default: every registered task)"
    )
    confine_models: bool = Field(
        True, description="model loads and inference run on threads that may read only the model folders, "
                          "the Python installation and system libraries (Landlock, where the kernel has it)")
    secrets_dir: Optional[str] = Field(
        None, description="a folder of the ingress's secrets, one file per variable (HUBSERVE_ADMIN_TOKEN_HASH, "
                          "HUBSERVE_AUTH_DB, HUBSERVE_REDIS_URL, HF_TOKEN): read by the ingress only, never by a "
                          "model replica; `hubserve serve` makes one from its environment")
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    cache: CacheConfig = CacheConfig()
    cold_start: ColdStartConfig = ColdStartConfig()
    hub: HubConfig = HubConfig()
    ingress: IngressDeployment = IngressDeployment()
    deployment_defaults: TaskDeployment = TaskDeployment()
    tasks: dict[str, TaskDeployment] = Field(default_factory=dict)
    models: dict[str, ModelEntry] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _reject_duplicate_ids(cls, data: Any):
        # NOTE(hubserve): YAML maps silently keep the last duplicate key, so the
        # loader below turns them into lists we can see; a dict here is clean.
        if isinstance(data, Mapping) and isinstance(data.get("models"), list):
            raise ValueError("models must be a mapping of model id to options")
        return data

    @classmethod
    def from_args(cls, args: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> "AppConfig":
        """Builds the config from application args, applying environment overrides.

        Args:
            args: the ``args`` of the Serve application (may be empty).
            env: the environment (``os.environ`` by default), and the variables of the args'
                ``secrets_dir`` over it.

        Returns:
            The validated config, with absolute paths.
        """
        env = os.environ if env is None else env
        data = dict(args or {})
        if data.get("secrets_dir"):
            env = {**env, **read_secrets_dir(data["secrets_dir"])}
        if env.get(STORE_ENV):
            data["model_store"] = env[STORE_ENV]
        if env.get(DATA_ENV):
            data["data_dir"] = env[DATA_ENV]
        if env.get(AUTH_DB_ENV):
            data["auth"] = {**(data.get("auth") or {}), "db": env[AUTH_DB_ENV]}
        if env.get(REDIS_ENV):
            for section in ("cache", "limits"):
                data[section] = {**(data.get(section) or {}), "redis_url": env[REDIS_ENV]}
        config = cls.model_validate(data)
        store = Path(config.model_store).expanduser().resolve()
        onnx_cache = Path(config.onnx_cache).expanduser().resolve() if config.onnx_cache else store / ".onnx-cache"
        data_dir = Path(config.data_dir).expanduser().resolve()
        db = config.auth.db or data_dir / "auth.sqlite"
        if not str(db).startswith(("postgresql://", "postgres://")):
            db = Path(db).expanduser().resolve()
        models = {
            model_id: entry if not entry.path or entry.path.startswith("pkg://") else
            entry.model_copy(update={"path": str(Path(entry.path).expanduser().resolve())})
            for model_id, entry in config.models.items()
        }
        hub_cache = Path(config.hub.cache_dir).expanduser().resolve() if config.hub.cache_dir else data_dir / "hub"
        return config.model_copy(update={
            "model_store": str(store), "onnx_cache": str(onnx_cache), "data_dir": str(data_dir),
            "auth": config.auth.model_copy(update={"db": str(db)}), "models": models,
            "hub": config.hub.model_copy(update={"cache_dir": str(hub_cache)}),
        })

    @classmethod
    def from_file(cls, path: str | os.PathLike, env: Mapping[str, str] | None = None) -> "AppConfig":
        """Reads the hubserve args of the first application in a Serve config file."""
        return cls.from_args(hubserve_args(load_yaml(path)), env)

    def deployment_for(self, task: str) -> TaskDeployment:
        """The options of ``task``'s deployment: built-in defaults, then ``deployment_defaults``,
        then ``tasks.<task>``."""
        merged = DEFAULT_DEPLOYMENT.model_dump()
        for layer in (self.deployment_defaults, self.tasks.get(task) or TaskDeployment()):
            merged.update(layer.model_dump(exclude_none=True))
        return TaskDeployment.model_validate(merged)

    def check_tasks(self, known: set[str]) -> None:
        """Refuses task names that no registered task module serves.

        Raises:
            ValueError: naming each unknown task and the known ones.
        """
        bad = sorted({t for t in [*self.tasks, *(self.serve_tasks or []), *self.ingress.inline] if t not in known})
        for mid, entry in self.models.items():
            bad += [f"{mid}: {t}" for t in [entry.task, *entry.preload_tasks(None)] if t and t not in known]
        if bad:
            raise ValueError(f"unknown task(s) {bad}; known tasks: {sorted(known)}")
        if self.serve_tasks is not None and (missing := set(self.ingress.inline) - set(self.serve_tasks)):
            raise ValueError(f"ingress.inline {sorted(missing)} are not in serve_tasks")

#: The builder of the hubserve application.
APP_IMPORT_PATH = "serve_app.app:build_app"


def hubserve_args(serve_config: Mapping[str, Any]) -> dict:
    """The ``args`` of the hubserve application inside a Serve config."""
    for app in serve_config.get("applications") or []:
        if app.get("import_path") == APP_IMPORT_PATH:
            return dict(app.get("args") or {})
    raise ValueError(f"no application with import_path {APP_IMPORT_PATH} in this Serve config")


def check_serve_config(serve_config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> AppConfig:
    """Validates the hubserve application's args inside a whole Serve config.

    Raises:
        ValueError: naming what is wrong.
    """
    return AppConfig.from_args(hubserve_args(serve_config), env)
