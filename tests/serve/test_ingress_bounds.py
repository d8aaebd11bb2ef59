"""The ingress under hostile bodies and forged client addresses, against a real graph: an
application of its own (at /bounds, no model replica) with 25 MB bodies, 1,000 JSON values per
body, 5 anonymous calls per address and window, and one trusted proxy: 127.0.0.2."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import orjson
import pytest

from hubserve.tokens.auth import AuthStore
from tests.conftest import server_args

TEXT = "tiny/bert-sentiment"
GENERATION = "tiny/gpt2"
REPO = "bounds/repo"


@pytest.fixture(scope="module")
def bounds(server, tiny_store):
    from ray import serve

    from serve_app.app import build_app

    args = server_args(tiny_store)
    args.update(
        serve_tasks=["text-classification", "text-generation"], max_body_bytes=25_000_000,
        limits={**args.get("limits", {}), "max_json_values": 1000, "anonymous_rate": {"requests": 5, "window_s": 600},
                "trusted_proxies": ["127.0.0.2"]},
        ingress={"num_cpus": 0, "num_replicas": 1},
        deployment_defaults={**args["deployment_defaults"], "autoscaling": {"min_replicas": 0, "max_replicas": 1}},
    )
    serve.run(build_app(args), name="bounds", route_prefix="/bounds")
    token = AuthStore(server.auth_db).create_token("boundsuser", role="write", org="bounds")[1]
    url = f"{server.url}/bounds"
    created = httpx.post(f"{url}/api/repos/create", json={"name": "repo", "organization": "bounds"},
                         headers={"authorization": f"Bearer {token}"})
    assert created.status_code == 200, created.text
    yield url, {"authorization": f"Bearer {token}"}
    serve.delete("bounds")


def client(source: str, url: str) -> httpx.Client:
    """A client whose connections come from the loopback address ``source``."""
    return httpx.Client(base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=source))


# -- bodies ---------------------------------------------------------------------------

def test_ten_million_items_are_a_fast_400_while_health_answers(bounds):
    url, writer = bounds
    body = b'{"inputs":"hi","parameters":{"x":[' + b",".join([b"0"] * 10_000_000) + b"]}}"
    assert len(body) > 20_000_000
    answer, stalls, done = {}, [], threading.Event()

    def send():
        started = time.monotonic()
        answer["response"] = httpx.post(f"{url}/models/{TEXT}", content=body, headers=writer, timeout=120)
        answer["seconds"] = time.monotonic() - started
        done.set()

    def watch():
        with httpx.Client(timeout=30) as health:
            while not done.is_set():
                started = time.monotonic()
                assert health.get(f"{url}/health").status_code == 200
                stalls.append(time.monotonic() - started)
                time.sleep(0.02)

    threads = [threading.Thread(target=send), threading.Thread(target=watch)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    response = answer["response"]
    assert response.status_code == 400 and "limits.max_json_values" in response.json()["error"], response.text
    assert answer["seconds"] < 5, answer["seconds"]
    assert stalls and max(stalls) < 0.5, sorted(stalls)[-5:]


WIDE = {"x": [0] * 5000}
DEEP = b"[" * 100_000 + b"]" * 100_000
ROUTES = [
    ("POST", f"/models/{TEXT}", lambda wide: {"inputs": "hi", "parameters": wide}),
    ("POST", f"/models/{TEXT}", lambda wide: {"inputs": "hi", "extra": wide}),
    ("POST", f"/models/{TEXT}/pipeline/text-classification", lambda wide: {"inputs": [wide]}),
    ("POST", f"/pipeline/text-classification/{TEXT}", lambda wide: {"inputs": "hi", "options": wide}),
    ("POST", f"/models/{GENERATION}/v1/completions", lambda wide: {"prompt": "hi", "logit_bias": wide}),
    ("POST", f"/models/{GENERATION}/v1/chat/completions", lambda wide: {"messages": [wide]}),
    ("POST", "/v1/chat/completions", lambda wide: {"model": GENERATION, "messages": [], "tools": [wide]}),
    ("POST", "/api/repos/create", lambda wide: {"name": "other", "organization": "bounds", "x": wide}),
    ("DELETE", "/api/repos/delete", lambda wide: {"name": "other", "x": wide}),
    ("PUT", f"/api/models/{REPO}/settings", lambda wide: {"private": True, "x": wide}),
    ("POST", "/api/validate-yaml", lambda wide: {"content": "---\n---\n", "x": wide}),
    ("POST", f"/api/models/{REPO}/preupload/main", lambda wide: {"files": [wide]}),
    ("POST", f"/{REPO}.git/info/lfs/objects/batch", lambda wide: {"operation": "upload", "objects": [wide]}),
    ("PATCH", f"/api/models/{REPO}", lambda wide: {"private": True, "x": wide}),
]


@pytest.mark.parametrize("method,route,shape", ROUTES, ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_wide_and_deep_bodies_are_400s_on_every_route(bounds, method, route, shape):
    url, writer = bounds
    for body in (orjson.dumps(shape(WIDE)), DEEP):
        started = time.monotonic()
        response = httpx.request(method, f"{url}{route}", content=body, timeout=60,
                                 headers={**writer, "content-type": "application/json"})
        assert response.status_code == 400 and "limits.max_json_values" in response.json()["error"], response.text
        assert time.monotonic() - started < 5
    assert httpx.get(f"{url}/api/models/{REPO}", headers=writer).json()["private"] is False  # nothing changed


# -- client addresses -----------------------------------------------------------------

def info(http: httpx.Client, forwarded: str = None, token: str = None) -> int:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return http.get(f"/models/{TEXT}/info", headers=headers).status_code


def test_a_new_forwarded_for_per_request_does_not_dodge_the_anonymous_limit(bounds):
    with client("127.0.0.1", bounds[0]) as http:
        codes = [info(http, f"198.51.100.{i}") for i in range(6)]
    assert codes.count(429) >= 1 and set(codes) <= {200, 429}, codes


def test_a_new_forwarded_for_per_guess_does_not_dodge_the_failed_login_throttle(bounds):
    with client("127.0.0.1", bounds[0]) as http:
        codes = [info(http, f"198.51.100.{i}", token=f"hf_guess{uuid.uuid4().hex}") for i in range(6)]
    assert codes.count(429) >= 1 and set(codes) <= {401, 429}, codes


def test_a_forged_forwarded_for_cannot_lock_another_address_out(bounds):
    with client("127.0.0.1", bounds[0]) as attacker:
        for _ in range(6):
            info(attacker, "127.0.0.3")
    with client("127.0.0.3", bounds[0]) as victim:
        assert info(victim) == 200


def test_the_forwarded_for_of_a_trusted_proxy_names_the_client(bounds):
    with client("127.0.0.2", bounds[0]) as proxy:
        assert [info(proxy, "10.1.1.1, 198.51.100.7") for _ in range(5)] == [200] * 5
        assert info(proxy, "10.1.1.2, 198.51.100.7") == 429  # the same client, whatever precedes it
        assert info(proxy, "198.51.100.8") == 200  # another client behind the proxy
    with client("127.0.0.4", bounds[0]) as stranger:  # not a trusted proxy: its header is ignored
        codes = [info(stranger, f"198.51.100.{20 + i}") for i in range(6)]
    assert codes == [200] * 5 + [429], codes
