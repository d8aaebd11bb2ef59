"""The embedding servers the benchmarks start, one at a time, on loopback: hubserve on
``configs/bench.yaml``, the naive baseline (``bench/naive_server.py``) and infinity-emb; and how
they are awaited and stopped (which the other benchmarks use too).

Each runs in a session of its own with its output in a log file; ``stop`` sends it SIGINT and
kills the whole group when it does not exit within a minute.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from bench.loadgen import run

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCE = "A man is eating food."


@dataclass
class Target:
    """A running server: how to reach it and the root of its process tree."""

    name: str
    url: str
    body: Callable[[object], bytes]
    proc: subprocess.Popen
    headers: dict


def free_port() -> int:
    """A loopback port free now (the server started next binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(target: Target, timeout_s: float) -> None:
    """Returns once ``target`` answers an embedding request, after a short warm-up.

    Raises:
        RuntimeError: the server exited, or did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode}")
        try:
            result = run(target.url, target.body(SENTENCE), 1, requests=1, headers=target.headers) \
                if _port_open(target.url) else None
        except (OSError, asyncio.IncompleteReadError):  # listening, but not serving yet
            result = None
        if result is not None and result.latencies:
            # NOTE(hubserve): a warm-up, and time for the proxy to settle (HAProxy reloads as
            # replicas come up).
            run(target.url, target.body(SENTENCE), 4, duration_s=3, headers=target.headers)
            time.sleep(2)
            return
        time.sleep(1)
    raise RuntimeError(f"{target.name} did not answer within {timeout_s:.0f}s")


def _port_open(url: str) -> bool:
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to a server; its whole process group is killed if it has not exited in a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_hubserve(work: Path, log: Path, haproxy: bool = True) -> Target:
    """hubserve on ``configs/bench.yaml``, called on ``/models/{id}``."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="hubserve-", dir=work))
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "hubserve"), "serve", "configs/bench.yaml", "--port", str(port),
         "--state-dir", str(state), "--haproxy" if haproxy else "--no-haproxy"],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Target("hubserve" + ("" if haproxy else "/proxy"), f"http://127.0.0.1:{port}/models/{MODEL_ID}",
                  lambda inputs: orjson.dumps({"inputs": inputs}), proc, {"x-use-cache": "false"})


def start_naive(model_path: str, log: Path) -> Target:
    """The naive baseline (FastAPI + sentence-transformers under uvicorn) on ``model_path``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.naive_server:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "BENCH_MODEL_PATH": model_path, "HF_HUB_OFFLINE": "1"},
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Target("naive", f"http://127.0.0.1:{port}/embed",
                  lambda inputs: orjson.dumps({"inputs": inputs}), proc, {})


def infinity_model(work: Path, model_path: str) -> str:
    """MiniLM plus hubserve's ONNX exports (infinity's ONNX engine needs the .onnx files next to
    the model and prefers the quantized one on CPU: the same int8 model hubserve serves)."""
    from hubserve.config.app import AppConfig
    from hubserve.repos.store import open_store

    folder = Path(tempfile.mkdtemp(prefix="infinity-minilm-", dir=work))
    shutil.copytree(model_path, folder, dirs_exist_ok=True)
    config = AppConfig.from_file(ROOT / "configs" / "bench.yaml")
    sha = open_store(config).resolve(MODEL_ID).sha
    exports = sorted(Path(config.onnx_cache).glob(f"{sha}/base-*/*.onnx"))
    if not exports:
        raise RuntimeError(f"no ONNX export of MiniLM under {config.onnx_cache}: run hubserve first")
    for onnx in exports:
        shutil.copy(onnx, folder / onnx.name)
    return str(folder)


def start_infinity(python: str, work: Path, model_path: str, log: Path) -> Target:
    """infinity-emb on its ONNX engine, run by ``python`` (its own venv's)."""
    port = free_port()
    proc = subprocess.Popen(
        [python, str(ROOT / "bench" / "infinity_launch.py"), "v2", "--model-id", infinity_model(work, model_path),
         "--served-model-name", "minilm", "--engine", "optimum", "--device", "cpu",
         "--port", str(port), "--host", "127.0.0.1", "--no-model-warmup"],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"},
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Target("infinity-emb", f"http://127.0.0.1:{port}/embeddings",
                  lambda inputs: orjson.dumps({"input": inputs, "model": "minilm"}), proc, {})
