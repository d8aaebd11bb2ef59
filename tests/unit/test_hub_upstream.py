"""Pulls through the installed huggingface_hub itself (``HfApi.model_info``, ``snapshot_download``)
against an upstream Hub that answers from a function: the library's own HTTP client with a mock
transport, no network. Each upstream answer maps to the same status whatever the library version
(``requests`` in 0.x, ``httpx`` in 1.x, ``httpx2`` in 2.x)."""

from __future__ import annotations

import hashlib
import importlib
from typing import Callable

import orjson
import pytest
from huggingface_hub.errors import HfHubHTTPError

from hubserve.config.sections import HubConfig
from hubserve.errors import ModelNotFound
from hubserve.repos.hub import Puller
from hubserve.repos.store import ModelStore
from hubserve.repos.upstream import UpstreamUnavailable

SHA = "b" * 40
FILES = {"config.json": b'{"model_type": "bert", "architectures": ["BertForMaskedLM"]}',
         "model.safetensors": b"\x00" * 64, "modeling_evil.py": b"import os"}
#: The HTTP library huggingface_hub raises its errors from (httpx2 in 2.x).
http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])


@pytest.fixture
def upstream():
    """``upstream.answer = fn(request) -> response``: what the upstream Hub answers; every request
    is kept in ``upstream.seen``."""
    from huggingface_hub.utils import _http

    class Upstream:
        answer: Callable = staticmethod(lambda request: http.Response(500))
        seen: list = []

    state = Upstream()
    state.seen = []

    def handle(request):
        state.seen.append((request.method, request.url.path, dict(request.url.params)))
        return state.answer(request)

    _http.set_client_factory(lambda: http.Client(transport=http.MockTransport(handle), follow_redirects=True))
    yield state
    _http.set_client_factory(_http.default_client_factory)


def puller(tmp_path) -> Puller:
    config = HubConfig(endpoint="http://upstream.test", cache_dir=str(tmp_path / "pulled"), retry_after_s=30)
    return Puller(config, env={})


def info(private=True, sha=SHA, **extra) -> dict:
    siblings = [{"rfilename": name, "size": len(data)} for name, data in FILES.items()]
    return {"id": "acme/bert", "sha": sha, "private": private, "pipeline_tag": "fill-mask",
            "library_name": "transformers", "siblings": siblings, **extra}


ANSWERS = {  # the upstream's answer to model_info -> what the caller gets
    "missing": (404, {"X-Error-Code": "RepoNotFound"}, ModelNotFound),
    "private-without-token": (401, {}, ModelNotFound),
    "gated": (403, {"X-Error-Code": "GatedRepo"}, ModelNotFound),
    "disabled": (403, {"X-Error-Message": "Access to this resource is disabled."}, ModelNotFound),
    "forbidden": (403, {}, ModelNotFound),
    "no-revision": (404, {"X-Error-Code": "RevisionNotFound"}, ModelNotFound),
    "egress-limit": (402, {"X-Error-Code": "EgressLimitReached"}, UpstreamUnavailable),
    "bad-request": (400, {}, UpstreamUnavailable),
    "rate-limited": (429, {}, UpstreamUnavailable),
    "down": (500, {}, UpstreamUnavailable),
    "unavailable": (503, {}, UpstreamUnavailable),
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_each_upstream_error_maps_to_the_same_answer(tmp_path, upstream, case):
    status, headers, expected = ANSWERS[case]
    upstream.answer = lambda request: http.Response(status, headers=headers, json={"error": case})
    with pytest.raises(expected) as caught:
        puller(tmp_path).remote("acme/bert")
    if expected is UpstreamUnavailable:
        assert caught.value.status_code == 503 and caught.value.headers["Retry-After"] == "30"
    assert [(m, p) for m, p, _ in upstream.seen] == [("GET", "/api/models/acme/bert")]


def test_an_upstream_that_cannot_be_reached_or_answers_nonsense_is_unavailable(tmp_path, upstream):
    def refuse(request):
        raise http.ConnectError("connection refused", request=request)

    for answer in (refuse, lambda request: http.Response(200, json=info(sha="not-a-sha")),
                   lambda request: http.Response(200, content=b"<html>")):
        upstream.answer = answer
        with pytest.raises(UpstreamUnavailable):
            puller(tmp_path).remote("acme/bert")


def test_model_info_is_read_with_file_sizes_and_visibility(tmp_path, upstream):
    upstream.answer = lambda request: http.Response(200, json=info(private=True))
    remote = puller(tmp_path).remote("acme/bert")
    assert (remote.sha, remote.private, remote.pipeline_tag) == (SHA, True, "fill-mask")
    assert dict(remote.files) == {"config.json": len(FILES["config.json"]), "model.safetensors": 64}
    assert upstream.seen[0][2].get("blobs") in ("True", "true", "1")  # files_metadata=True
    # an upstream that says `visibility` rather than `private`
    upstream.answer = lambda request: http.Response(200, json={**info(), "private": None, "visibility": "private"})
    assert puller(tmp_path).remote("acme/bert").private is True


def hub_files(request):
    """An upstream holding ``FILES`` at ``SHA``: model info, tree listing and files, as the Hub."""
    path = request.url.path
    if path in (f"/api/models/acme/bert/revision/{SHA}", "/api/models/acme/bert"):
        return http.Response(200, json=info())
    if path == f"/api/models/acme/bert/tree/{SHA}":
        return http.Response(200, json=[{"type": "file", "path": name, "size": len(data),
                                         "oid": hashlib.sha1(data).hexdigest()} for name, data in FILES.items()])
    name = path.removeprefix(f"/acme/bert/resolve/{SHA}/")
    if name not in FILES:
        return http.Response(404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": SHA})
    data = FILES[name]
    headers = {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
               "Content-Length": str(len(data))}
    return http.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)


def test_a_pull_downloads_the_allowed_files_and_the_store_serves_them(tmp_path, upstream):
    upstream.answer = hub_files
    pulling = puller(tmp_path)
    assert pulling.pull("acme/bert") == []
    snapshot = tmp_path / "pulled" / "models--acme--bert" / "snapshots" / SHA
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]
    assert (snapshot / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not any("modeling_evil.py" in path for _, path, _ in upstream.seen)  # never fetched
    assert orjson.loads((snapshot.parents[1] / "hubserve.json").read_bytes())["private"] is True
    (tmp_path / "store").mkdir()
    ref = ModelStore(tmp_path / "store", hub_cache=tmp_path / "pulled").resolve("acme/bert")
    assert (ref.source, ref.sha) == ("hub", SHA)
    assert pulling.pull("acme/bert") == [] and pulling.pulled_sha("acme/bert") == SHA


@pytest.mark.parametrize("status,expected", [(500, UpstreamUnavailable), (404, ModelNotFound)])
def test_a_pull_whose_listing_fails_installs_nothing(tmp_path, upstream, monkeypatch, status, expected):
    from huggingface_hub.utils import _http

    waits = []  # 2.x retries a listing that fails with a 5xx (about 23 s): not waited for here
    monkeypatch.setattr(_http.time, "sleep", waits.append)

    def failing(request):
        if "/tree/" in request.url.path or "/revision/" in request.url.path:
            return http.Response(status, headers={"X-Error-Code": "RepoNotFound"} if status == 404 else {})
        return hub_files(request)

    upstream.answer = failing
    pulling = puller(tmp_path)
    remote = pulling.remote("acme/bert")
    with pytest.raises(expected):
        pulling.pull("acme/bert", remote)
    assert pulling.pulled_sha("acme/bert") is None
    assert not (tmp_path / "pulled" / "models--acme--bert").exists()


def test_a_file_that_fails_mid_pull_installs_nothing(tmp_path, upstream):
    def failing(request):
        if request.url.path.endswith("model.safetensors") and request.method == "GET":
            return http.Response(500)
        return hub_files(request)

    upstream.answer = failing
    pulling = puller(tmp_path)
    with pytest.raises(UpstreamUnavailable):
        pulling.pull("acme/bert")
    assert not (tmp_path / "pulled" / "models--acme--bert").exists()
