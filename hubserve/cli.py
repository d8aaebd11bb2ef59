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
import shutil
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
from hubserve import secret_env, server
from hubserve.errors import ApiError
from hubserve.haproxy import client_timeouts_env, haproxy_env
from hubserve.process import SERVE_ID_ENV
from hubserve.store import config_file, open_store

DEFAULT_URL = "http://127.0.0.1:8000"


def _check(args: argparse.Namespace) -> int:
    config = check_serve_config(load_yaml(args.config))
    print(f"ok: model store {config.model_store}, {len(config.models)} pinned model(s), "
          f"inline in the ingress: {', '.join(config.ingress.inline) or 'none'}")
    return 0


#: Where the HAProxy that ``hubserve serve`` runs connects from.
LOOPBACK = ("127.0.0.1", "::1")

#: What keeps huggingface_hub and transformers from any download.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def render(path: str, host: Optional[str] = None, port: Optional[int] = None,
           proxy_location: Optional[str] = None, secrets_dir: Optional[Path] = None,
           trusted_proxies: Sequence[str] = ()) -> str:
    """A checked Serve config as YAML text, with another listen address if given.

    With ``hub.download: false``, the application's replicas get ``OFFLINE_ENV`` on every node
    (its ``runtime_env``), not only where the deploy command runs. ``secrets_dir`` becomes the
    application's ``secrets_dir``; ``trusted_proxies`` (the HAProxy the server runs) join
    ``limits.trusted_proxies``.
    """
    data = load_yaml(path)
    offline = not check_serve_config(data).hub.download
    for app in data.get("applications") or []:
        if app.get("import_path") != APP_IMPORT_PATH:
            continue
        if offline:
            runtime_env = app["runtime_env"] = dict(app.get("runtime_env") or {})
            runtime_env["env_vars"] = {**OFFLINE_ENV, **(runtime_env.get("env_vars") or {})}
        args = app["args"] = dict(app.get("args") or {})
        if secrets_dir is not None:
            args["secrets_dir"] = str(secrets_dir)
        if trusted_proxies:
            limits = args["limits"] = dict(args.get("limits") or {})
            limits["trusted_proxies"] = list(dict.fromkeys([*(limits.get("trusted_proxies") or []),
                                                            *trusted_proxies]))
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


def _serve(args: argparse.Namespace) -> int:
    admin_token_hash()  # refuses to start with a short admin token
    config = _app_config(args.config)
    state = server.StateFolder(args.state_dir, server.listen_port(args.config, args.port))
    folders: list[Optional[Path]] = []
    try:
        # NOTE(hubserve): a local head's nodes (and so every model replica) get no secret; the
        # ingress reads its own from a private folder. A cluster's nodes bring their own.
        joined = (args.address or os.environ.get("RAY_ADDRESS", "")) not in ("", "local")
        env, secrets_dir = (dict(os.environ), None) if joined else \
            secret_env.for_local_server(os.environ, config.hub.token_env)
        folders.append(secrets_dir)
        # NOTE(hubserve): on a cluster this joins, the nodes' own environment chose the proxy.
        haproxy = args.haproxy and not joined
        python_proxy = not (haproxy or joined)
        # NOTE(hubserve): the HAProxy it runs replaces what a client says in X-Forwarded-For.
        text = render(args.config, args.host, args.port, args.proxy_location, secrets_dir,
                      LOOPBACK if haproxy else ())
        state.config.write_text(server.with_client_timeouts(text, config.ingress) if python_proxy else text,
                                encoding="utf-8")
        if not config.hub.download:
            # NOTE(hubserve): nothing pulls from an upstream Hub, and nothing else ever downloads:
            # models load from local folders only.
            env.update(OFFLINE_ENV)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        env.setdefault("RAY_AUTH_MODE", "token")
        env[SERVE_ID_ENV] = uuid.uuid4().hex
        if not joined:
            # NOTE(hubserve): uvicorn (Serve's proxy, a replica's own server) keeps the peer's
            # address; which forwarding headers to believe is limits.trusted_proxies' call.
            env["FORWARDED_ALLOW_IPS"] = ""
        if args.address:
            env["RAY_ADDRESS"] = args.address
        haproxy_dir = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp")) if haproxy else None
        folders.append(haproxy_dir)
        env.update(serve_env(haproxy_dir))
        env.update(client_timeouts_env(config.ingress))
        return server.run(state, env, config.limits, args.dashboard)
    finally:
        for folder in folders:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


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
    serve.add_argument("--state-dir", default=".hubserve",
                       help="the server's files go in STATE_DIR/PORT (its rendered config, its Ray node's address)")
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
