"""Two hubserve "pods" (applications with their own data folders) sharing a real PostgreSQL
token store and a real Redis for rate limits: they agree on who may do what, and count one
window."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hubserve.tokens.auth import open_auth_store
from tests.conftest import server_args


@pytest.fixture(scope="module")
def pods(server, tiny_store, tmp_path_factory, postgres_url, redis_url):
    from ray import serve

    from serve_app.app import build_app

    names = []
    for name in ("pod-a", "pod-b"):
        root = tmp_path_factory.mktemp(name)
        args = server_args(tiny_store)
        args.update(
            data_dir=str(root / "data"), models={}, serve_tasks=["text-classification"],
            auth={"db": postgres_url, "cache_ttl_s": 0},
            limits={"token_rate": {"requests": 3, "window_s": 3600}, "redis_url": redis_url},
            ingress={"num_cpus": 0, "num_replicas": 1},
            deployment_defaults={**args["deployment_defaults"], "autoscaling": {"min_replicas": 0, "max_replicas": 1}},
        )
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        names.append(name)
    yield [f"{server.url}/{name}" for name in names]
    for name in names:
        serve.delete(name)


def whoami(base: str, token: str) -> httpx.Response:
    return httpx.get(f"{base}/api/whoami-v2", headers={"authorization": f"Bearer {token}"}, timeout=30)


def test_a_token_revoked_once_is_refused_by_every_pod(pods, postgres_url):
    tokens = open_auth_store(postgres_url)
    user = f"ivy{uuid.uuid4().hex[:6]}"
    token_id, token = tokens.create_token(user, org="shared")
    for pod in pods:
        answer = whoami(pod, token)
        assert answer.status_code == 200 and answer.json()["name"] == user
        assert answer.json()["orgs"] == [{"type": "org", "name": "shared"}]
    assert tokens.revoke(token_id)
    for pod in pods:
        refused = whoami(pod, token)
        assert refused.status_code == 401 and refused.json()["error"] == "Invalid credentials in Authorization header"


def test_pods_count_one_rate_limit_window(pods, postgres_url):
    token = open_auth_store(postgres_url).create_token(f"jay{uuid.uuid4().hex[:6]}")[1]
    first, second = pods
    assert [whoami(pod, token).status_code for pod in (first, second, first)] == [200, 200, 200]
    limited = whoami(second, token)
    assert limited.status_code == 429, limited.text
    assert limited.headers["ratelimit-policy"] == '"fixed window";"api";q=3;w=3600'
    assert int(limited.headers["retry-after"]) > 0
