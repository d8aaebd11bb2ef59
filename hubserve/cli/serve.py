"""The ``hubserve serve`` and ``hubserve config check|render`` commands.

``serve`` renders the Serve config (listen address, secrets folder, the HAProxy it runs),
prepares the Ray nodes' environment and runs the server (``hubserve.cli.server``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Optional, Sequence

import yaml

from hubserve.cli import server
from hubserve.cli.haproxy import client_timeouts_env, haproxy_env
from hubserve.cli.process import SERVE_ID_ENV
from hubserve.config.app import APP_IMPORT_PATH, AppConfig, check_serve_config, hubserve_args
from hubserve.config.base import load_yaml
from hubserve.tokens import secret_env
from hubserve.tokens.access import admin_token_hash

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
    config = app_config(args.config)
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


def app_config(path: str) -> AppConfig:
    """The hubserve args of the Serve config at ``path``, validated."""
    return AppConfig.from_args(hubserve_args(load_yaml(path)))


def add_parsers(sub) -> None:
    """Adds ``config check``, ``config render`` and ``serve`` to the command line.

    Args:
        sub: the subparsers of the ``hubserve`` parser.
    """
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
    render_ = config.add_parser("render", help="copy a Serve config with another host/port")
    render_.add_argument("config")
    render_.add_argument("--host")
    render_.add_argument("--port", type=int)
    render_.add_argument("--output", "-o")
    render_.set_defaults(func=_render)
