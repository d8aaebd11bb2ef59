"""The HAProxy wrapper `hubserve serve` and `hubserve cluster up` give Ray: stats and metrics on
loopback, HAProxy's own errors as hubserve's JSON (checked by HAProxy itself), slow clients cut
off (but not a client waiting for a slow answer), and X-Forwarded-For set by HAProxy alone (a real HAProxy in front of a small echo server)."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from hubserve.cli.haproxy import client_timeouts_env, haproxy_env
from hubserve.config.deployments import IngressDeployment
from tests.conftest import free_port, wait_serving
from tests.slow_client import body_cut_off_after, headers_cut_off_after

ECHO = """
import http.server, json, sys, time
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(float(self.path.rsplit("/", 1)[1]))
        body = json.dumps({k.lower(): self.headers.get_all(k) for k in self.headers.keys()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.do_GET()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


def ray_like_config(path, stats: str, metrics: str, errors, api_port: int, backend_port: int) -> None:
    """The parts of the configuration Ray writes that the wrapper rewrites."""
    path.write_text(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 3600s\n    timeout server 30s\n"
        + "".join(f"    errorfile {code} {errors}\n" for code in (502, 503, 504))
        + f"frontend stats\n    bind *:{stats}\n    default_backend none\n"
        f"frontend prometheus\n    bind :{metrics}\n    default_backend none\n"
        f"frontend http_frontend\n    bind 127.0.0.1:{api_port}\n    default_backend app\n"
        f"backend app\n    server s1 127.0.0.1:{backend_port}\nbackend none\n")


@pytest.fixture
def wrapper(tmp_path):
    env = haproxy_env(tmp_path)
    timeouts = client_timeouts_env(IngressDeployment(client_header_timeout_s=1.5, client_body_timeout_s=4))
    errors = tmp_path / "500.http"
    errors.write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 21\r\n\r\nInternal Server Error")
    return env, {**os.environ, **timeouts}, errors


def test_the_wrapper_moves_listeners_to_loopback_and_answers_errors_in_json(wrapper, tmp_path):
    env, run_env, ray_errors = wrapper
    stats, metrics = env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]
    cfg = tmp_path / "haproxy.cfg"
    ray_like_config(cfg, stats, metrics, ray_errors, 8000, 8001)
    check = subprocess.run([env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-c", "-f", str(cfg)], env=run_env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    text = cfg.read_text()
    assert f"bind 127.0.0.1:{stats}" in text and f"bind 127.0.0.1:{metrics}" in text and "*:" not in text
    assert str(ray_errors) not in text
    for code, retry in ((502, True), (503, True), (504, False)):
        path = next(line.split()[-1] for line in text.splitlines() if line.strip().startswith(f"errorfile {code}"))
        head, body = open(path, "rb").read().split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert lines[0].split()[1] == ("504" if code == 504 else "503")
        assert "Content-Type: application/json" in lines and f"Content-Length: {len(body)}" in lines
        assert ("Retry-After: 1" in lines) is retry and json.loads(body)["error"]


def test_the_wrapper_bounds_slow_clients_and_sets_x_forwarded_for_itself(wrapper, tmp_path):
    env, run_env, ray_errors = wrapper
    api, backend = free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    ray_like_config(cfg, env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"],
                    ray_errors, api, backend)
    echo = subprocess.Popen([sys.executable, "-c", ECHO, str(backend)])
    proxy = subprocess.Popen([env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-f", str(cfg)], env=run_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(proxy, lambda: httpx.get(f"http://127.0.0.1:{api}/", timeout=5).raise_for_status(),
                     httpx.HTTPError, timeout_s=30)
        text = cfg.read_text()
        assert "timeout http-request 1500ms" in text and "timeout client 4000ms" in text and "3600s" not in text
        # A client's own X-Forwarded-For (and Serve's request hints) never reach the server.
        seen = httpx.get(f"http://127.0.0.1:{api}/", timeout=5, headers={
            "X-Forwarded-For": "203.0.113.7", "x-request-timeout-seconds": "0",
            "x-request-disconnect-disabled": "?1"}).json()
        assert seen["x-forwarded-for"] == ["127.0.0.1"], seen
        assert "x-request-timeout-seconds" not in seen and "x-request-disconnect-disabled" not in seen
        # A header line every 0.3 s: cut off once the headers took 1.5 s.
        took = headers_cut_off_after(api, every_s=0.3, give_up_s=20)
        assert took is not None and took < 15, took
        # A body that stops coming: cut off after a 4 s pause.
        took = body_cut_off_after(api, give_up_s=30)
        assert took is not None and took < 20, took
        # An answer that takes longer than that pause (a model loading on its first request) still arrives.
        assert httpx.get(f"http://127.0.0.1:{api}/slow/6", timeout=30).status_code == 200
    finally:
        for proc in (proxy, echo):
            proc.kill()
            proc.wait()
