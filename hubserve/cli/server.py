"""One ``hubserve serve``: its state folder, and its Ray node started, watched and stopped.

A server's files (the rendered Serve config, its Ray node's ``ray.json``) live in
``<state dir>/<port>/``, locked for the server's life: two servers started from one checkout on
two ports each have their own, and a second server on the port of one that runs from the same
folder is refused before it starts anything (Ray would start a node, then fail to bind the port).

``run`` starts the node in a short-lived child (``hubserve.cli.serve_run deploy``), watches it, and
whatever ends it (SIGINT, SIGTERM, a Ray process that exited, an exception) stops everything
the server started, each step bounded: Serve gets ``limits.stop_grace_s`` to shut down (skipped
when the node's GCS is gone), then every process is stopped by PID (``hubserve.cli.process``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO, Optional

import yaml

from hubserve.cli.process import SERVE_ID_ENV, Stop, alive, become_subreaper, reap, run_child, say, stop_all
from hubserve.config.base import load_yaml
from hubserve.config.deployments import IngressDeployment
from hubserve.config.limits import LimitsConfig
from hubserve.errors import Conflict

#: Serve's default port, where a config names none.
DEFAULT_PORT = 8000


class StateFolder:
    """``<state dir>/<port>/``, held by this process (an ``flock`` the kernel drops when it exits)."""

    def __init__(self, state_dir: str, port: int) -> None:
        self.path = Path(state_dir).resolve() / str(port)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock: IO = open(self.path / "server.lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            owner = self._lock.read().strip() or "?"
            self._lock.close()
            raise Conflict(f"another hubserve serve (pid {owner}) serves port {port} from {self.path}; "
                           "stop it, or give this one another --port") from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self.config = self.path / "serve.yaml"
        self.ray = self.path / "ray.json"
        self.ray.unlink(missing_ok=True)


def listen_port(config: str, port: Optional[int]) -> int:
    """The port a server of ``config`` listens on (``port``, else the config's)."""
    return port or (load_yaml(config).get("http_options") or {}).get("port") or DEFAULT_PORT


def with_client_timeouts(text: str, ingress: IngressDeployment) -> str:
    """A rendered Serve config for Serve's Python proxy: an idle connection waits
    ``ingress.client_header_timeout_s`` for its next request (``keep_alive_timeout_s``) unless
    the config says otherwise. Uvicorn, which that proxy runs, bounds nothing else of a client."""
    data = yaml.safe_load(text)
    http = data["http_options"] = dict(data.get("http_options") or {})
    http.setdefault("keep_alive_timeout_s", max(1, round(ingress.client_header_timeout_s)))
    return yaml.safe_dump(data, sort_keys=False)


def _listen_url(rendered: Path) -> str:
    http = load_yaml(str(rendered)).get("http_options") or {}
    return f"http://{http.get('host', '127.0.0.1')}:{http.get('port', DEFAULT_PORT)}"


def _node(ray_state: Path) -> dict:
    try:
        node = json.loads(ray_state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return node if isinstance(node, dict) else {}


def _watch(node: dict, stop: Stop) -> int:
    """0 once a stop is asked, 1 if a process of the node exits first."""
    pids = [pid for kind in (node.get("pids") or {}).values() for pid in kind]
    while not stop.asked:
        reap()
        if not all(alive(pid) for pid in pids):
            say("a Ray process of the server exited; stopping")
            return 1
        time.sleep(0.5)
    return 0


def _stop(node: dict, env: dict, limits: LimitsConfig) -> None:
    """Serve's shutdown, bounded, unless the node's GCS is gone; then every process by PID."""
    gcs = (node.get("pids") or {}).get("gcs_server") or []
    if node.get("address") and all(alive(pid) for pid in gcs):
        run_child(["shutdown", node["address"], *(node.get("applications") or [])], env, None,
                  timeout_s=limits.stop_grace_s)
    left = stop_all(env[SERVE_ID_ENV], limits.kill_grace_s)
    if left:
        say(f"processes still running after the stop: {left}")


def run(state: StateFolder, env: dict, limits: LimitsConfig, dashboard: bool) -> int:
    """Deploys ``state.config`` onto a Ray node of its own (or ``RAY_ADDRESS``'s cluster) with
    ``env``, serves until SIGINT or SIGTERM, and stops what it started; the exit code."""
    become_subreaper()
    stop = Stop()
    node: dict = {}
    try:
        code = run_child(["deploy", str(state.config), str(state.ray), *(["--dashboard"] if dashboard else [])],
                         env, stop)
        node = _node(state.ray)
        if code != 0:
            return 0 if code is None else code
        say(f"serving on {_listen_url(state.config)}" +
            (f" (Serve's logs: {node['logs']})" if node.get("logs") else ""))
        return _watch(node, stop)
    finally:
        _stop(node or _node(state.ray), env, limits)
