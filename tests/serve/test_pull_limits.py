"""Bounded pulls from an upstream Hub, against a real graph: the test server (A) holds 40 tiny
models; two applications of their own (no model replica) pull from it through a throttling
proxy, so that a download lasts seconds: /capped (2 downloads at once, 6 pulls per caller and
window) and /closed (pulls need a token)."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hubserve.tokens.auth import AuthStore
from tests.conftest import server_args
from tests.serve.test_hub_mirror import Proxy

IDS = [f"source/m{i}" for i in range(40)]


@dataclass
class Mirrors:
    open: str
    closed: str
    open_cache: Path
    closed_cache: Path
    token: str


@pytest.fixture(scope="module")
def mirrors(server, tiny_store, tmp_path_factory):
    from ray import serve

    from serve_app.app import build_app

    root = tmp_path_factory.mktemp("pulls")
    for model_id in IDS:
        server.copy_model("tiny/bert-sentiment", model_id)
    proxy = Proxy(int(server.url.rsplit(":", 1)[1]))
    proxy.start(bytes_per_s=20_000)  # about 7 s for one tiny model
    base = server_args(tiny_store)

    def deploy(name: str, **hub) -> Path:
        cache = root / name / "hub"
        args = dict(base, model_store=str(root / name / "store"), models={}, serve_tasks=["text-classification"],
                    ingress={"num_cpus": 0, "num_replicas": 1},
                    deployment_defaults={**base["deployment_defaults"],
                                         "autoscaling": {"min_replicas": 0, "max_replicas": 1}},
                    hub={"endpoint": proxy.url, "cache_dir": str(cache), "missing_ttl_s": 0, "timeout_s": 30, **hub})
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        return cache

    open_cache = deploy("capped", max_concurrent_pulls=2, pull_rate={"requests": 6, "window_s": 600})
    closed_cache = deploy("closed", pull_requires_token=True)
    token = AuthStore(server.auth_db).create_token("puller", role="read")[1]
    yield Mirrors(f"{server.url}/capped", f"{server.url}/closed", open_cache, closed_cache, token)
    serve.delete("capped")
    serve.delete("closed")
    proxy.stop()
    shutil.rmtree(server.store / "source", ignore_errors=True)


def ask(url: str, model_id: str, **headers) -> httpx.Response:
    return httpx.post(f"{url}/models/{model_id}", json={"inputs": "great"}, timeout=120,
                      headers={"x-wait-for-model": "false", **headers})


def downloads(cache: Path) -> set[str]:
    """The repos the pull cache holds or is downloading."""
    return {p.name.removesuffix(".progress") for p in [*cache.glob("models--*"), *cache.glob(".incoming/*.progress")]}


def test_forty_anonymous_pulls_start_at_most_the_configured_downloads(mirrors):
    with ThreadPoolExecutor(len(IDS)) as pool:
        answers = list(pool.map(lambda model_id: ask(mirrors.open, model_id), IDS))
    codes = [answer.status_code for answer in answers]
    started = [model_id for model_id, answer in zip(IDS, answers) if answer.status_code == 503]
    assert 1 <= len(started) <= 2, codes
    refused = [answer for answer in answers if answer.status_code != 503]
    assert all(r.status_code == 429 and int(r.headers["retry-after"]) >= 1 for r in refused), codes
    assert len(downloads(mirrors.open_cache)) <= 2
    # a pull that runs is joined, not counted: this caller is past its pulls, and gets its estimate
    joined = ask(mirrors.open, started[0])
    assert joined.status_code == 503 and joined.json()["estimated_time"] > 0, joined.text
    # the refused ones never started: what the pull cache holds or downloads is what was started
    assert downloads(mirrors.open_cache) <= {f"models--{model_id.replace('/', '--')}" for model_id in started}


def test_where_pulls_need_a_token_an_anonymous_call_is_answered_as_a_missing_model(mirrors):
    held_upstream, missing = ask(mirrors.closed, IDS[0]), ask(mirrors.closed, "source/nosuch")
    assert held_upstream.status_code == missing.status_code == 404
    assert held_upstream.content.replace(IDS[0].encode(), b"source/nosuch") == missing.content
    assert downloads(mirrors.closed_cache) == set()
    started = ask(mirrors.closed, IDS[0], authorization=f"Bearer {mirrors.token}")
    assert started.status_code == 503, started.text
    # NOTE(hubserve): the 503 answers as the pull starts; its record is written a moment later.
    deadline = time.monotonic() + 10
    while downloads(mirrors.closed_cache) != {"models--source--m0"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert downloads(mirrors.closed_cache) == {"models--source--m0"}
