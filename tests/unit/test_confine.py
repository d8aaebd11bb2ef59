"""Model threads read the model folders and the Python installation, nothing else: not another
folder of the machine, not another process's environment, not through a child they start."""

import asyncio
import subprocess
import tempfile
from pathlib import Path

import pytest

from deployments.confine import model_threads, run_in
from hubserve.config.app import AppConfig


@pytest.fixture
def setup(tmp_path):
    store = tmp_path / "store"
    (store / "acme" / "model").mkdir(parents=True)
    (store / "acme" / "model" / "config.json").write_text("{}")
    secret = tmp_path / "elsewhere" / "admin-token"
    secret.parent.mkdir()
    secret.write_text("hf_secret")
    config = {"model_store": str(store), "data_dir": str(tmp_path / "data"), "hf_cache": None}
    return config, store, secret


def run(pool, fn, *args):
    return asyncio.run(run_in(pool, fn, *args))


def test_a_model_thread_reads_its_models_and_nothing_else(setup):
    config, store, secret = setup
    pool = model_threads(AppConfig.from_args(config, env={}), "test-confined")
    try:
        assert run(pool, (store / "acme" / "model" / "config.json").read_text) == "{}"
        pulled = store.parent / "data" / "hub" / "models--acme--pulled" / "config.json"  # after the rules
        pulled.parent.mkdir(parents=True)
        pulled.write_text("{}")
        assert run(pool, pulled.read_text) == "{}"
        assert run(pool, lambda: __import__("json").dumps({"a": 1})) == '{"a": 1}'
        with pytest.raises(PermissionError):
            run(pool, secret.read_text)
        for environ in ("/proc/1/environ", "/proc/self/environ"):
            with pytest.raises(PermissionError):
                run(pool, lambda: open(environ, "rb").read())
        assert run(pool, lambda: open("/proc/self/status").read()).startswith("Name:")
        with run(pool, tempfile.NamedTemporaryFile) as scratch:  # temp files land where it may read
            assert Path(scratch.name).parent.parent == store.parent / "data" / "tmp"
            assert run(pool, Path(scratch.name).read_bytes) == b""
        tokens = store.parent / "data" / "auth.sqlite"  # the server's own data folder
        tokens.parent.mkdir(exist_ok=True)
        tokens.write_bytes(b"token hashes")
        with pytest.raises(PermissionError):
            run(pool, tokens.read_bytes)
        child = run(pool, lambda: subprocess.run(["cat", str(secret)], capture_output=True, text=True))
        assert child.returncode != 0 and "Permission denied" in child.stderr and "hf_secret" not in child.stdout
    finally:
        pool.shutdown()
    assert secret.read_text() == "hf_secret", "only the pool's threads are confined"


def test_confinement_can_be_turned_off(setup):
    config, _, secret = setup
    pool = model_threads(AppConfig.from_args({**config, "confine_models": False}, env={}), "test-open")
    try:
        assert run(pool, secret.read_text) == "hf_secret"
    finally:
        pool.shutdown()
