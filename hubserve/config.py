"""The validated configuration of a hubserve application.

A Serve config (``configs/*.yaml``) passes these fields as the ``args`` of the
``serve_app.app:build_app`` application. ``AppConfig`` checks them: unknown keys,
bad ranges and duplicate model ids are refused with one readable error. Tasks are
checked against the task registry by the caller (``check_tasks``), because this
package does not import the deployments.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
Device = Literal["cpu", "cuda"]
Dtype = Literal["float32", "float16"]

#: The environment variables that override ``model_store``, ``data_dir``, ``auth.db`` and the Redis
#: URL of the cache and the rate limits (a Kubernetes Secret's values arrive this way).
STORE_ENV = "HUBSERVE_MODEL_STORE"
DATA_ENV = "HUBSERVE_DATA_DIR"
AUTH_DB_ENV = "HUBSERVE_AUTH_DB"
REDIS_ENV = "HUBSERVE_REDIS_URL"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Autoscaling(StrictModel):
    """Replica autoscaling of one task deployment (Ray Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)

    def serve_config(self) -> dict:
        """Ray Serve's ``autoscaling_config`` (starting at ``min_replicas``)."""
        return {"min_replicas": self.min_replicas, "initial_replicas": self.min_replicas,
                "max_replicas": self.max_replicas, "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s}

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("autoscaling.max_replicas must be >= min_replicas")
        return self


class TaskDeployment(StrictModel):
    """How the deployment of one task runs its replicas.

    Every field is optional here so that ``tasks.<name>`` can override only some of
    ``deployment_defaults``; ``AppConfig.deployment_for`` merges them.
    """

    num_cpus: Optional[float] = Field(None, ge=0)
    num_gpus: Optional[float] = Field(None, ge=0)
    threads: Optional[int] = Field(None, ge=1, description="torch/ORT threads per replica")
    max_models_per_replica: Optional[int] = Field(None, ge=1)
    max_batch_size: Optional[int] = Field(None, ge=1)
    batch_wait_timeout_s: Optional[float] = Field(None, ge=0)
    max_ongoing_requests: Optional[int] = Field(None, ge=1)
    max_queued_requests: Optional[int] = Field(None, ge=-1)
    max_model_bytes: Optional[int] = Field(
        None, ge=1, description="memory budget for loaded models per replica (weights bytes)"
    )
    autoscaling: Optional[Autoscaling] = None
    max_replicas_per_node: Optional[int] = Field(
        None, ge=1, description="Serve's max_replicas_per_node: 1 spreads the replicas one per node (unset: no limit)")
    backend: Optional[Backend] = None
    device: Optional[Device] = None
    dtype: Optional[Dtype] = Field(None, description="float16 halves GPU memory (torch on cuda only)")


DEFAULT_DEPLOYMENT = TaskDeployment(
    num_cpus=0.1,
    num_gpus=0,
    threads=None,
    max_models_per_replica=4,
    max_batch_size=16,
    batch_wait_timeout_s=0.002,
    max_ongoing_requests=32,
    max_queued_requests=-1,
    max_model_bytes=4 * 1024**3,
    autoscaling=Autoscaling(),
    backend="torch",
    device="cpu",
    dtype="float32",
)


class ModelEntry(StrictModel):
    """Options pinned for one model id. Models need no entry to be served."""

    path: Optional[str] = Field(
        None,
        description="a folder, or pkg://<module> for a package exposing get_model_path()",
    )
    task: Optional[str] = None
    backend: Optional[Backend] = None
    device: Optional[Device] = None
    dtype: Optional[Dtype] = Field(None, description="float16 halves GPU memory (torch on cuda only)")
    preload: Union[bool, list[str]] = Field(
        False, description="load at start: true for the model's task, or a list of tasks"
    )
    trust_pickle: bool = Field(
        False, description="allow pickle weights (.bin, .pt...) for this model: they can run code when loaded"
    )

    def preload_tasks(self, own_task: Optional[str]) -> list[str]:
        """The tasks whose deployments load this model at start."""
        if isinstance(self.preload, list):
            return list(self.preload)
        return [own_task] if self.preload and own_task else []


class IngressDeployment(StrictModel):
    """The HTTP ingress deployment.

    Tasks in ``inline`` run in the ingress replicas themselves when the model runs
    without torch (embedding models on ONNX Runtime): a request then takes one Python
    hop instead of two. Their other models (e.g. an architecture ONNX cannot export)
    go to the task's own deployment.
    """

    num_cpus: float = Field(0.1, ge=0)
    num_replicas: int = Field(1, ge=1, description="replicas when autoscaling is not set")
    autoscaling: Optional[Autoscaling] = None
    max_ongoing_requests: int = Field(512, ge=1)
    max_replicas_per_node: Optional[int] = Field(
        None, ge=1, description="Serve's max_replicas_per_node: 1 gives each node's proxy an ingress replica of its own, "
                                "also after a node comes back")
    inline: list[str] = Field(default_factory=list, description="embedding tasks the ingress runs itself")
    threads: int = Field(1, ge=1, description="ONNX Runtime threads per ingress replica for inline models")
    client_header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a client has to send a request's headers, and an idle connection waits "
                                "for the next request (HAProxy; Serve's proxy: the idle wait only)")
    client_body_timeout_s: float = Field(
        60.0, gt=0, description="seconds a client may pause while it sends a body or reads an answer (HAProxy)")


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
    """Tokens and who may call without one (see ``hubserve.auth``)."""

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


class RateLimit(StrictModel):
    """A fixed window: at most ``requests`` per ``window_s`` seconds."""

    requests: int = Field(..., ge=1)
    window_s: float = Field(..., gt=0)


class HubConfig(StrictModel):
    """The upstream Hub that model ids the server does not hold are pulled from (``hubserve.hub``)."""

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


class LimitsConfig(StrictModel):
    """Caps on what one request may ask for, and request rates."""

    max_inputs: int = Field(256, ge=1, description="inputs in one request (a list's length)")
    max_input_chars: int = Field(100_000, ge=1, description="characters of one input string")
    max_new_tokens: int = Field(
        1024, ge=1, description="tokens one generation may ask for, under every alias (max_new_tokens, max_length, "
                                "min_length, max_tokens, max_completion_tokens, generate_parameters.*)")
    max_num_beams: int = Field(8, ge=1, description="beams of one beam-search generation")
    max_return_sequences: int = Field(10, ge=1, description="sequences one generation may return (n)")
    max_top_k: int = Field(1000, ge=1, description="top_k of every task")
    max_stop_sequences: int = Field(4, ge=0, description="stop sequences of one generation")
    max_stop_chars: int = Field(128, ge=1, description="characters of one stop sequence")
    max_candidate_labels: int = Field(64, ge=1, description="candidate labels (or fill-mask targets) of one request")
    max_question_answering_tokens: int = Field(
        4096, ge=1, description="question-answering max_seq_len, max_question_len, max_answer_len and doc_stride")
    max_document_words: int = Field(
        10_000, ge=1, description="words (with their boxes) of one document-question-answering page")
    max_table_cells: int = Field(10_000, ge=1, description="cells of one table-question-answering table")
    max_inference_steps: int = Field(100, ge=1, description="denoising steps of one text-to-image request")
    max_output_pixels: int = Field(
        1024 * 1024, ge=64 * 64, description="pixels (width x height) of one generated image")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="pixels (width x height) of one input image, checked before it is decoded")
    max_audio_seconds: float = Field(
        600.0, gt=0, description="seconds of one input audio; decoding stops just past it")
    max_template_seconds: float = Field(
        2.0, gt=0, description="seconds one rendering of a model's chat template may take (its process is then "
                               "stopped and the request refused)")
    max_template_chars: int = Field(
        1_000_000, ge=1, description="characters of the prompt a model's chat template renders")
    max_template_memory_bytes: int = Field(
        512 * 1024**2, ge=64 * 1024**2, description="address space of the process that renders chat templates")
    export_timeout_s: float = Field(
        1800.0, gt=0, description="seconds one ONNX export (with its fidelity gate) may take; past it the model "
                                  "serves on torch")
    export_memory_bytes: int = Field(
        16 * 1024**3, ge=1024**3, description="address space of the process that exports a model to ONNX")
    max_upload_bytes: int = Field(20 * 1024**3, ge=1024, description="size of one uploaded model archive")
    stop_grace_s: float = Field(
        10.0, gt=0, description="seconds Serve has to shut down when `hubserve serve` stops, before every process "
                                "the server started is stopped by PID")
    kill_grace_s: float = Field(
        2.0, gt=0, description="seconds a process of a stopping server has between SIGTERM and SIGKILL")
    max_model_json_bytes: int = Field(
        64 * 1024**2, ge=1024, description="size of one JSON file of a model (every one is parsed and checked; a "
                                           "larger one refuses the model); real tokenizer.json files reach 35 MB")
    max_repo_files: int = Field(
        10_000, ge=1, description="files of one model repo, entries of one archive, operations of one commit or "
                                  "preupload, paths of one paths-info request")
    max_path_part_bytes: int = Field(
        255, ge=1, le=255, description="UTF-8 bytes of one name in a repo path (a file or folder name)")
    max_path_bytes: int = Field(1024, ge=1, description="UTF-8 bytes of one whole repo path (a/b/c.json)")
    max_lfs_objects_in_flight: int = Field(
        10_000, ge=1, description="LFS objects one token may hold announced or uploaded but not yet committed")
    max_lfs_bytes_in_flight: int = Field(
        40 * 1024**3, ge=1, description="bytes of the LFS objects one token may hold announced or uploaded but not "
                                        "yet committed")
    lfs_unclaimed_ttl_s: float = Field(
        24 * 3600.0, gt=0, description="an uploaded LFS object no commit took is removed after this long")
    lfs_ticket_ttl_s: float = Field(
        3600.0, gt=0, description="how long an LFS upload URL the batch API hands out stays valid")
    max_form_bytes: int = Field(
        1024**2, ge=1024, description="bytes of one JSON or form body of the Hub routes (create, delete, settings, "
                                      "preupload, LFS batch, paths-info)")
    anonymous_rate: Optional[RateLimit] = Field(
        None, description="per client address, calls without a token (and failed authentications); "
                          "off unless set: a local server does not throttle its own user")
    token_rate: Optional[RateLimit] = Field(None, description="per token; off unless set")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses and networks (CIDR) of the reverse proxies in front whose "
                                          "client_ip_header is believed: the client is the right-most address "
                                          "there that none of them added (empty: the socket's peer, always)")
    client_ip_header: str = Field(
        "x-forwarded-for", min_length=1, description="the header a trusted proxy appends the client address to")
    max_json_values: int = Field(
        200_000, ge=1, description="values (object members included) of one JSON request body, counted before "
                                   "it is parsed")
    inline_parse_bytes: int = Field(
        65_536, ge=0, description="a JSON request body larger than this is parsed and checked off the event loop "
                                  "(a worker thread)")
    redis_url: Optional[str] = Field(
        None, description="keep the rate-limit windows in this Redis, exact across replicas and pods (default: "
                          "each ingress replica counts what it sees)")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        # NOTE(hubserve): a malformed entry would trust nothing, silently: refused here instead.
        try:
            return [str(ipaddress.ip_network(entry.strip(), strict=False)) for entry in value]
        except ValueError as exc:
            raise ValueError(f"limits.trusted_proxies: {exc}") from None


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
            from .secret_env import read_secrets_dir

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (e.g. a model id twice)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | os.PathLike) -> dict:
    """Parses a YAML file safely, refusing duplicate keys."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_UniqueKeyLoader) or {}


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
