"""`hubserve serve` as `make serve` runs it (HAProxy in front): HAProxy listens on the
server's host only, no Ray driver or monitor idles beside the server, and, started in the
background of a non-interactive shell (so with SIGINT ignored, as `make serve &` is), it stops
everything on SIGTERM within 30 s. A config that fails to deploy exits 1 with its cause."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from hubserve.cli import processes_with_env
from tests.conftest import free_port


def leftovers(ray_tmp: str) -> list[int]:
    """Every process of that server: all of them (Ray's workers, in process groups of their own,
    included) inherit its environment."""
    return processes_with_env("RAY_TMPDIR", ray_tmp)


def kill_leftovers(ray_tmp: str) -> None:
    """SIGKILL to whatever a failed test's server left, then its Ray folder removed."""
    for leftover in leftovers(ray_tmp):
        try:
            os.kill(leftover, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(ray_tmp, ignore_errors=True)


def command(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def config_file(tmp_path, store, extra: str = "", tasks: str = "[text-classification]") -> str:
    config = tmp_path / "serve.yaml"
    config.write_text(
        "http_options: {host: 127.0.0.1, port: 8000}\n"
        "applications:\n- name: hubserve\n  route_prefix: /\n  import_path: serve_app.app:build_app\n  args:\n"
        f"    model_store: {store}\n    data_dir: {tmp_path / 'data'}\n    hf_cache: null\n"
        f"    serve_tasks: {tasks}\n"
        "    deployment_defaults: {num_cpus: 0, threads: 1, autoscaling: {min_replicas: 0, max_replicas: 1}}\n"
        + extra)
    return str(config)


def listeners() -> list[tuple[str, list[int], str]]:
    """``(local address, pids, command)`` of each listening TCP socket (``ss``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        users = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        if users:
            found.append((fields[3], [int(pid) for _, pid in users], users[0][0]))
    return found


@pytest.mark.timeout(300)
def test_a_background_server_stops_on_sigterm(tiny_store, tmp_path):
    port = free_port()
    config = config_file(tmp_path, tiny_store)
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
                if (httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
                        and "hubserve: serving on" in log.read_text()):
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and shell.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        assert leftovers(ray_tmp), "Ray should run under its private folder"
        running = [command(p) for p in leftovers(ray_tmp)]
        for idle in ("hubserve.serve_run", "log_monitor.py", "autoscaler/_private/monitor.py", "ray_client"):
            assert not any(idle in line for line in running), (idle, running)
        haproxy = [line for line in listeners() if set(line[1]) & set(leftovers(ray_tmp)) and line[2] == "haproxy"]
        assert haproxy and all(address.startswith("127.0.0.1:") for address, _, _ in haproxy), haproxy
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        shell.wait(timeout=60)
        took = time.monotonic() - start
        assert took < 30, (took, log.read_text()[-3000:])
        assert "still running" not in log.read_text(), "serve run should stop on the SIGINT it is sent"
        time.sleep(1)
        assert leftovers(ray_tmp) == [], log.read_text()[-3000:]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if shell.poll() is None:
            shell.kill()
        kill_leftovers(ray_tmp)


@pytest.mark.timeout(330)
def test_a_config_that_fails_to_deploy_exits_1_with_its_cause(tiny_store, tmp_path):
    # The ingress runs feature-extraction itself and preloads the model, so its start fails.
    config = config_file(tmp_path, tiny_store, (
        "    ingress: {inline: [feature-extraction]}\n"
        "    models:\n      acme/gone: {path: pkg://no_such_package_hs, task: feature-extraction, "
        "preload: [feature-extraction]}\n"), tasks="[feature-extraction]")
    ray_tmp = tempfile.mkdtemp(prefix="hsfail-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HUBSERVE_ADMIN_TOKEN")}
    env["RAY_TMPDIR"] = ray_tmp
    try:
        # NOTE(hubserve): Serve's own proxy: what this checks is the report of the failed deployment.
        done = subprocess.run([sys.executable, "-m", "hubserve.cli", "serve", config, "--port", str(free_port()),
                               "--state-dir", str(tmp_path / "state"), "--no-haproxy"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "failed to deploy" in done.stderr and "no_such_package_hs" in done.stderr, done.stderr[-3000:]
        time.sleep(1)
        assert leftovers(ray_tmp) == []
    finally:
        kill_leftovers(ray_tmp)
