"""The HAProxy wrapper `hubserve serve` and `hubserve cluster up` give Ray: stats and metrics on
loopback, and HAProxy's own errors as hubserve's JSON (checked by HAProxy itself)."""

import json
import subprocess

from hubserve.cli import haproxy_env


def test_the_wrapper_moves_listeners_to_loopback_and_answers_errors_in_json(tmp_path):
    env = haproxy_env(tmp_path)
    stats, metrics = env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]
    ray_errors = tmp_path / "500.http"
    ray_errors.write_text("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 21\r\n\r\nInternal Server Error")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n"
        + "".join(f"    errorfile {code} {ray_errors}\n" for code in (502, 503, 504))
        + f"frontend stats\n    bind *:{stats}\n    default_backend none\n"
        f"frontend metrics\n    bind *:{metrics}\n    default_backend none\n"
        "frontend api\n    bind 127.0.0.1:8000\n    default_backend none\nbackend none\n")
    check = subprocess.run([env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-c", "-f", str(cfg)], capture_output=True, text=True)
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
