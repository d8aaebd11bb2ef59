"""`hubserve serve` started in the background of a non-interactive shell (so with SIGINT
ignored, as `make serve &` is) stops everything on SIGTERM within 30 s, without needing to
escalate past the SIGINT that `serve run` shuts down on."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.timeout(300)
def test_a_background_server_stops_on_sigterm(tiny_store, tmp_path):
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        "http_options: {host: 127.0.0.1, port: 8000}\n"
        "applications:\n- name: hubserve\n  route_prefix: /\n  import_path: serve_app.app:build_app\n  args:\n"
        f"    model_store: {tiny_store}\n    data_dir: {tmp_path / 'data'}\n    hf_cache: null\n"
        "    serve_tasks: [text-classification]\n"
        "    deployment_defaults: {num_cpus: 0, threads: 1, autoscaling: {min_replicas: 0, max_replicas: 1}}\n")
    ray_tmp = tempfile.mkdtemp(prefix="hsstop-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HUBSERVE_ADMIN_TOKEN")}
    env["RAY_TMPDIR"] = ray_tmp
    log = tmp_path / "serve.log"
    script = (f"{sys.executable} -m hubserve.cli serve {config} --port {port} --state-dir {tmp_path / 'state'} "
              f"> {log} 2>&1 & echo $!; wait")
    shell = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(shell.stdout.readline())
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and shell.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        assert processes_mentioning(ray_tmp), "Ray should run under its private folder"
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        shell.wait(timeout=60)
        took = time.monotonic() - start
        assert took < 30, (took, log.read_text()[-3000:])
        assert "still running" not in log.read_text(), "serve run should stop on the SIGINT it is sent"
        time.sleep(1)
        assert processes_mentioning(ray_tmp) == [], log.read_text()[-3000:]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if shell.poll() is None:
            shell.kill()
        for leftover in processes_mentioning(ray_tmp):
            os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
