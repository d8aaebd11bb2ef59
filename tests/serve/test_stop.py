"""`hubserve serve` as `make serve` runs it (HAProxy in front): HAProxy listens on the
server's host only, no Ray driver or monitor idles beside the server, and, started in the
background of a non-interactive shell (so with SIGINT ignored, as `make serve &` is), it stops
everything it started on SIGTERM to its process group under load within 30 s, and leaves no
child and no temp folder behind (its children die with it, even when it is SIGKILLed). Two
servers run from one checkout on two ports, a third on a port in use is refused, and slow
clients are cut off. A config that fails to deploy exits 1 with its cause."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from hubserve.cli.process import alive, descendants, processes_with_env
from tests.conftest import free_port
from tests.slow_client import headers_cut_off_after, idle_cut_off_after

#: Short bounds of the servers below: what a stop and a slow client may take.
SHORT_BOUNDS = ("    ingress: {client_header_timeout_s: 2, client_body_timeout_s: 4}\n"
                "    limits: {stop_grace_s: 3, kill_grace_s: 1}\n")


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


def start_time(pid: int):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Started:
    """Every process a server started (its process tree and whatever carries its Ray folder in
    its environment), sampled until ``close``: ``(pid, start time)``, so that a reused PID is
    not taken for a survivor."""

    def __init__(self, root: int, ray_tmp: str) -> None:
        self.root, self.ray_tmp, self.seen, self.done = root, ray_tmp, set(), threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.is_set():
            for pid in [self.root, *descendants(self.root), *leftovers(self.ray_tmp)]:
                started = start_time(pid)
                if started is not None:
                    self.seen.add((pid, started, command(pid)))
            time.sleep(0.5)

    def alive(self) -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, started, cmd in self.seen if alive(pid) and start_time(pid) == started]

    def close(self) -> None:
        self.done.set()
        self.thread.join()


class Load:
    """Client threads asking ``url`` until ``stop``."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.answers, self.done = url, 0, threading.Event()
        self.threads = [threading.Thread(target=self._ask, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _ask(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.done.is_set():
                try:
                    self.answers += client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    time.sleep(0.05)

    def stop(self) -> int:
        self.done.set()
        for thread in self.threads:
            thread.join()
        return self.answers


class Server:
    """`hubserve serve` in the background of a non-interactive shell (SIGINT ignored, as
    `make serve &` has it), in a process group of its own, with a Ray folder of its own."""

    def __init__(self, config: str, port: int, cwd: Path, log: Path, *flags: str) -> None:
        self.port, self.log = port, log
        self.ray_tmp = tempfile.mkdtemp(prefix="hsstop-", dir="/tmp")  # short: Ray's socket paths must fit
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HUBSERVE_ADMIN_TOKEN")}
        env["RAY_TMPDIR"] = self.ray_tmp
        script = (f"{sys.executable} -m hubserve.cli.main serve {config} --port {port} {' '.join(flags)} "
                  f"> {log} 2>&1 & echo $!; wait")
        self.shell = subprocess.Popen(["bash", "-c", script], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        self.pid = int(self.shell.stdout.readline())
        self.started = Started(self.pid, self.ray_tmp)

    def wait_serving(self, timeout_s: float = 240) -> None:
        deadline = time.time() + timeout_s
        while True:
            try:
                if (httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
                        and "hubserve: serving on" in self.log.read_text()):
                    return
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and self.shell.poll() is None, self.log.read_text()[-3000:]
            time.sleep(1)

    def haproxy_dir(self) -> str:
        """The server's HAProxy folder (/tmp/hs-*), read from its Ray processes' environment."""
        for pid in leftovers(self.ray_tmp):
            try:
                for item in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                    if item.startswith(b"RAY_SERVE_HAPROXY_SERVER_STATE_BASE="):
                        return item.split(b"=", 1)[1].decode()
            except OSError:
                continue
        raise AssertionError("no HAProxy folder in the server's environment")

    def assert_stopped_by(self, deadline: float) -> None:
        """Nothing the server started is alive by ``deadline`` (``time.monotonic``; generous: the
        bounds above add up to about 10 s)."""
        while self.started.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.started.close()
        assert not self.started.alive(), (self.started.alive(), self.log.read_text()[-3000:])
        assert not any("hubserve.cli.serve_run" in command(pid) for pid in leftovers(self.ray_tmp))

    def kill(self) -> None:
        """What a failed test left: a stop asked (SIGTERM), then SIGKILL to whatever is left."""
        if self.shell.poll() is None:
            os.killpg(self.shell.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.started.alive() and time.monotonic() < deadline:
                time.sleep(0.5)
        self.started.close()
        for pid, _ in self.started.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_leftovers(self.ray_tmp)


@pytest.mark.timeout(600)
def test_a_background_server_stops_on_sigterm_to_its_group_under_load(tiny_store, tmp_path):
    server = Server(config_file(tmp_path, tiny_store, SHORT_BOUNDS), free_port(), tmp_path, tmp_path / "serve.log",
                    "--state-dir", str(tmp_path / "state"))
    try:
        server.wait_serving()
        assert leftovers(server.ray_tmp), "Ray should run under its private folder"
        running = [command(p) for p in leftovers(server.ray_tmp)]
        for idle in ("hubserve.cli.serve_run", "log_monitor.py", "autoscaler/_private/monitor.py", "ray_client"):
            assert not any(idle in line for line in running), (idle, running)
        haproxy = [line for line in listeners()
                   if set(line[1]) & set(leftovers(server.ray_tmp)) and line[2] == "haproxy"]
        assert haproxy and all(address.startswith("127.0.0.1:") for address, _, _ in haproxy), haproxy
        folder = server.haproxy_dir()
        load = Load(f"http://127.0.0.1:{server.port}/health")
        time.sleep(2)
        os.killpg(server.shell.pid, signal.SIGTERM)  # what a terminal or a service manager sends
        server.assert_stopped_by(time.monotonic() + 30)
        assert load.stop() > 0
        assert not os.path.exists(folder), folder
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=2)
    finally:
        server.kill()


@pytest.mark.timeout(600)
def test_two_servers_from_one_checkout_each_serve_their_port_and_bound_slow_clients(tiny_store, tmp_path):
    """Both started as `make serve PORT=...` would (the default state folder, one checkout); the
    first behind HAProxy, the second on Serve's proxy (--no-haproxy)."""
    config = config_file(tmp_path, tiny_store, SHORT_BOUNDS)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    ports = free_port(), free_port()
    servers = []
    try:
        for port, name, flags in ((ports[0], "a.log", ()), (ports[1], "b.log", ("--no-haproxy",))):
            servers.append(Server(config, port, checkout, tmp_path / name, *flags))
            servers[-1].wait_serving()
        for server in servers:
            assert f"serving on http://127.0.0.1:{server.port}" in server.log.read_text()
            assert (checkout / ".hubserve" / str(server.port) / "serve.yaml").exists()
        # A third on a port one of them serves is refused before it starts anything.
        third = subprocess.run([sys.executable, "-m", "hubserve.cli.main", "serve", config, "--port", str(ports[0])],
                               cwd=checkout, capture_output=True, text=True, timeout=120,
                               env={k: v for k, v in os.environ.items() if k != "HUBSERVE_ADMIN_TOKEN"})
        assert third.returncode == 2 and "another hubserve serve" in third.stderr, third.stderr[-2000:]
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/health", timeout=5).status_code == 200
        # Headers sent a line every 0.5 s are cut off (ingress.client_header_timeout_s: 2) by HAProxy.
        took = headers_cut_off_after(ports[0], every_s=0.5, give_up_s=30)
        assert took is not None and took < 20, took
        # Serve's proxy closes an idle connection after the same 2 s (its keep_alive_timeout_s).
        idle = idle_cut_off_after(ports[1], give_up_s=30)
        assert idle is not None and idle < 20, idle
        # Both stop under load: the first on SIGTERM to its group, the second as a service
        # manager stops a control group, every process of it at once.
        folder = servers[0].haproxy_dir()
        loads = [Load(f"http://127.0.0.1:{port}/health", threads=2) for port in ports]
        time.sleep(1)
        deadline = time.monotonic() + 30
        os.killpg(servers[0].shell.pid, signal.SIGTERM)
        for pid, _ in servers[1].started.alive():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for server in servers:
            server.assert_stopped_by(deadline)
        for load in loads:
            load.stop()
        assert not os.path.exists(folder), folder
    finally:
        for server in servers:
            server.kill()


ORPHAN = """
import os, sys
from hubserve.cli.process import run_child
print(os.getpid(), flush=True)
# Ray's driver retries an address where no GCS answers for as long as it is let.
run_child(["shutdown", "127.0.0.1:9"], dict(os.environ), None, timeout_s=600)
"""


@pytest.mark.timeout(120)
def test_the_shutdown_child_dies_with_the_server_even_against_a_dead_gcs():
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while child is None and time.monotonic() < deadline:
            child = next(iter(descendants(pid)), None)
            time.sleep(0.1)
        assert child is not None
        time.sleep(3)  # the child is in Ray's connection retries
        assert alive(child)
        os.kill(pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "the child outlived the server"
    finally:
        parent.kill()
        parent.wait()
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)


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
        done = subprocess.run([sys.executable, "-m", "hubserve.cli.main", "serve", config, "--port", str(free_port()),
                               "--state-dir", str(tmp_path / "state"), "--no-haproxy"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "failed to deploy" in done.stderr and "no_such_package_hs" in done.stderr, done.stderr[-3000:]
        time.sleep(1)
        assert leftovers(ray_tmp) == []
    finally:
        kill_leftovers(ray_tmp)
