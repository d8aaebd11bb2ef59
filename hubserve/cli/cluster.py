"""A Ray cluster of several nodes on one machine, for trying hubserve's scale-out.

``hubserve cluster up --nodes N`` starts a head (``ray start --head --block``) and N-1 worker
nodes, each with its own ``--num-cpus``, temp folder, ports and environment, and stays in the
foreground until SIGINT or SIGTERM (or ``hubserve cluster down``); it then stops every process
the nodes started, by PID, the raylets first (never ``ray stop``, which stops every Ray on the
machine). ``hubserve serve CONFIG --proxy-location EveryNode --address ADDRESS`` deploys onto it.

Every node runs a Serve proxy (``proxy_location: EveryNode``) and they share one machine, so
the head's proxy listens on the config's port and worker node ``i`` on ``http_port + i``
(Ray's ``RAY_SERVE_WORKER_PROXY_HTTP_PORT``). With ``--haproxy`` (the default) each node runs
Ray's HAProxy ingress with files and stats ports of its own.

With ``--gcs-redis redis://[:PASSWORD@]HOST:PORT`` the head keeps the cluster's state in that
Redis (GCS fault tolerance, what KubeRay's ``ray.io/ft-enabled`` sets up), under a namespace of
this cluster's own, and a head that dies is started again, as Kubernetes restarts a head pod: the
worker nodes and their replicas keep serving meanwhile, and the new head takes them back.

``<dir>/cluster.json`` says what is running: the address, the Ray auth token's file (clients
set ``RAY_AUTH_TOKEN_PATH`` to it), the nodes' Ray folder (their logs: ``<ray_tmp>/<node>/session_latest``),
and per node its ``ray start`` PID, proxy port and output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from hubserve.cli.serve import serve_env
from hubserve.config.deployments import IngressDeployment
from hubserve.config.limits import LimitsConfig
from hubserve.cli.haproxy import client_timeouts_env, free_port
from hubserve.cli.process import SERVE_ID_ENV, Stop, alive, become_subreaper, processes_with_env, stop_all

#: How long a node has to say "Ray runtime started".
START_TIMEOUT_S = 90.0
#: Each node's object store: small, the models travel as files, not objects.
OBJECT_STORE_BYTES = 200_000_000


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    http_port: int
    haproxy_dir: Optional[Path]
    argv: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    starts: int = 1

    def started(self, times: int = 1) -> bool:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace").count("Ray runtime started") >= times
        except OSError:
            return False


def _ray() -> str:
    ray = Path(sys.executable).with_name("ray")
    return str(ray) if ray.exists() else (shutil.which("ray") or "ray")


def _node_env(base: dict, haproxy: bool, worker_port: Optional[int]) -> tuple[dict, Optional[Path]]:
    env = dict(base)
    folder = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp")) if haproxy else None
    env.update(serve_env(folder))
    if worker_port is not None:
        env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(worker_port)
    return env, folder


def _spawn(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _start_node(name: str, argv: list[str], env: dict, root: Path, http_port: int,
                haproxy_dir: Optional[Path]) -> Node:
    log = root / f"{name}.log"
    log.write_bytes(b"")
    return Node(name, _spawn(argv, env, log), log, http_port, haproxy_dir, argv, env)


def _session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _restart(node: Node, tag: str) -> None:
    """Starts a node that exited again, with the same command, ports and folders, once what its
    ``ray start`` left (its GCS, raylet, agents) is gone, as a restarted pod's processes are."""
    left = [pid for pid in processes_with_env(SERVE_ID_ENV, tag) if _session_of(pid) == node.proc.pid]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    # NOTE(hubserve): `ray start --head` refuses an address that a raylet on this machine names,
    # and the worker nodes' raylets name the head's: it is another host on a real cluster. The
    # check applies only to the address the node's folder recorded, so that record goes.
    from hubserve.ray_adapter import forget_node_address

    forget_node_address(node.argv[node.argv.index("--temp-dir") + 1])
    with open(node.log, "ab") as out:
        out.write(f"\n--- hubserve: restarting the node ({node.starts + 1}) ---\n".encode())
    node.proc = _spawn(node.argv, node.env, node.log)
    node.starts += 1


def gcs_storage(url: str, namespace: str) -> tuple[dict, list[str]]:
    """The head's environment and ``ray start`` flags that keep the GCS in the Redis at ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname or not parts.port:
        raise ValueError("--gcs-redis is redis://[:PASSWORD@]HOST:PORT")
    env = {"RAY_REDIS_ADDRESS": f"{parts.hostname}:{parts.port}", "RAY_external_storage_namespace": namespace}
    flags = ["--redis-password", parts.password] if parts.password else []
    if parts.username:
        flags += ["--redis-username", parts.username]
    return env, flags


def _wait_started(node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not node.started(node.starts):
        if node.proc.poll() is not None or time.monotonic() > deadline:
            tail = node.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"the Ray node {node.name} did not start: " + " | ".join(tail))
        time.sleep(0.2)


def up(args: argparse.Namespace) -> int:
    from hubserve.ray_adapter import new_auth_token

    if args.nodes < 1:
        raise ValueError("--nodes is at least 1")
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state = root / "cluster.json"
    token = root / "auth_token"
    token.write_text(new_auth_token(), encoding="utf-8")
    token.chmod(0o600)
    tag = uuid.uuid4().hex
    namespace = f"hubserve-{tag}"  # the GCS's keys in Redis, with --gcs-redis
    storage_env, storage_flags = gcs_storage(args.gcs_redis, namespace) if args.gcs_redis else ({}, [])
    base = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    base[SERVE_ID_ENV] = tag
    base.update(client_timeouts_env(IngressDeployment()))
    base.pop("RAY_ADDRESS", None)
    port = args.port or free_port()
    address = f"{args.node_ip}:{port}"
    common = ["--block", "--node-ip-address", args.node_ip, "--num-cpus", str(args.cpus_per_node),
              "--num-gpus", "0", "--disable-usage-stats", "--object-store-memory", str(OBJECT_STORE_BYTES)]
    # NOTE(hubserve): Ray's socket paths under a node's temp folder must stay short (a Unix
    # socket path is at most 107 bytes), so the nodes' folders live in /tmp, not in --dir.
    ray_tmp = Path(tempfile.mkdtemp(prefix="hsc-", dir="/tmp"))
    nodes: list[Node] = []
    become_subreaper()
    stop = Stop()
    try:
        for i in range(args.nodes):
            name = "head" if i == 0 else f"worker-{i}"
            env, folder = _node_env(base, args.haproxy, None if i == 0 else args.http_port + i)
            # NOTE(hubserve): the ports Ray would otherwise take at fixed numbers get free ones, so
            # that the nodes (and another cluster) on this machine never clash.
            ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
            if i == 0:
                argv = [_ray(), "start", "--head", "--port", str(port), "--include-dashboard=false",
                        "--ray-client-server-port", str(free_port()), *storage_flags]
                env.update(storage_env)
            else:
                argv = [_ray(), "start", "--address", address]
            argv += [*common, *ports, "--temp-dir", str(ray_tmp / name)]
            node = _start_node(name, argv, env, root, args.http_port + i, folder)
            nodes.append(node)
            _wait_started(node)
            if stop.asked:
                break

        def record() -> None:
            state.write_text(json.dumps({
                "address": address, "pid": os.getpid(), "auth_token_path": str(token), "ray_tmp": str(ray_tmp),
                "gcs_namespace": namespace if args.gcs_redis else None,
                "nodes": [{"name": n.name, "pid": n.proc.pid, "http_port": n.http_port, "log": str(n.log),
                           "starts": n.starts} for n in nodes]}, indent=1), encoding="utf-8")

        record()
        print(f"hubserve: a Ray cluster of {len(nodes)} node(s) at {address}; Serve proxies on ports "
              f"{', '.join(str(n.http_port) for n in nodes)} (proxy_location: EveryNode).\n"
              f"  deploy onto it: RAY_AUTH_TOKEN_PATH={token} hubserve serve CONFIG --port {args.http_port} "
              f"--proxy-location EveryNode --address {address}", file=sys.stderr, flush=True)
        gone: set[str] = set()
        while not stop.asked:
            for node in nodes:
                if node.name not in gone and node.proc.poll() is not None:
                    print(f"hubserve: the Ray node {node.name} exited ({node.proc.returncode})",
                          file=sys.stderr, flush=True)
                    if node.name == "head" and args.gcs_redis:
                        # NOTE(hubserve): the GCS's state is in Redis: a new head takes the cluster back.
                        _restart(node, tag)
                        _wait_started(node)
                        record()
                        print("hubserve: the head is back", file=sys.stderr, flush=True)
                    else:
                        gone.add(node.name)
            if "head" in gone:
                break
            time.sleep(0.5)
        return 0 if "head" not in gone else 1
    except RuntimeError as exc:
        print(f"hubserve: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all(tag, LimitsConfig().kill_grace_s)
        if args.gcs_redis:
            _drop_gcs_storage(args.gcs_redis, namespace)
        for node in nodes:
            if node.haproxy_dir is not None:
                shutil.rmtree(node.haproxy_dir, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        state.unlink(missing_ok=True)


def _drop_gcs_storage(url: str, namespace: str) -> None:
    """Deletes what the stopped cluster's GCS kept in Redis (its namespace only), as KubeRay's
    clean-up job does when a fault-tolerant cluster is deleted."""
    from hubserve.ray_adapter import clear_gcs_storage

    parts = urlsplit(url)
    try:
        clear_gcs_storage(parts.hostname, parts.port, parts.password or "", parts.username, namespace)
    except Exception as exc:  # noqa: BLE001 - the cluster is stopped either way
        print(f"hubserve: the cluster's GCS state stays in Redis ({exc})", file=sys.stderr, flush=True)


def down(args: argparse.Namespace) -> int:
    """Asks the ``cluster up`` of ``--dir`` to stop, and waits until it did."""
    state = Path(args.dir) / "cluster.json"
    try:
        pid = json.loads(state.read_text(encoding="utf-8"))["pid"]
    except (OSError, ValueError, KeyError):
        print(f"hubserve: no cluster runs from {args.dir}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state.unlink(missing_ok=True)
        return 0
    deadline = time.monotonic() + 60
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return 0 if not alive(pid) else 1


def add_parser(sub) -> None:
    cluster = sub.add_parser("cluster", help="a Ray cluster of several nodes on this machine (for trying scale-out)")
    actions = cluster.add_subparsers(dest="action", required=True)
    start = actions.add_parser("up", help="start N nodes and stay in the foreground; SIGINT/SIGTERM stops them")
    start.add_argument("--nodes", type=int, default=2)
    start.add_argument("--cpus-per-node", type=int, default=1)
    start.add_argument("--port", type=int, help="the head's GCS port (default: a free one)")
    start.add_argument("--http-port", type=int, default=8000,
                       help="the Serve config's port: the head's proxy; worker node i listens on it + i")
    start.add_argument("--node-ip", default="127.0.0.1")
    start.add_argument("--haproxy", action=argparse.BooleanOptionalAction, default=True,
                       help="Ray's HAProxy ingress on every node (the default)")
    start.add_argument("--gcs-redis", metavar="redis://[:PASSWORD@]HOST:PORT",
                       help="GCS fault tolerance: the head keeps the cluster's state in this Redis and is "
                            "started again when it dies")
    start.set_defaults(func=up)
    stop = actions.add_parser("down", help="stop the cluster that `cluster up --dir DIR` runs")
    stop.set_defaults(func=down)
    for parser_ in (start, stop):
        parser_.add_argument("--dir", default=".hubserve/cluster", help="the cluster's files")
