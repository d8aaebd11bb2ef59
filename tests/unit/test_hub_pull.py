"""Pulls from an upstream Hub (hubserve.repos.hub) without a network: the upstream's answers mapped to
ours, the back-off, the pull cache the store reads, progress and eviction."""

from __future__ import annotations

import importlib
import os
import time
from types import SimpleNamespace

import orjson
import pytest
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hubserve.config.app import AppConfig
from hubserve.config.sections import HubConfig
from hubserve.errors import ModelNotFound
from hubserve.repos.folders import PULLED_INFO, repo_folder_name
from hubserve.repos.hub import Puller
from hubserve.repos.store import ModelStore
from hubserve.repos.upstream import UpstreamUnavailable, upstream

SHA = "a" * 40
#: The HTTP library huggingface_hub raises its errors from (httpx2 in 2.x).
http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])


def pulled(cache, model_id: str, size: int, used: float, sha: str = SHA, tag: str = "fill-mask"):
    """A repo as a finished pull leaves it in the pull cache."""
    repo = cache / repo_folder_name(model_id)
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "weights").write_bytes(b"\x00" * size)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForMaskedLM"]}')
    os.symlink("../../blobs/weights", snapshot / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    (repo / PULLED_INFO).write_bytes(orjson.dumps({"pipeline_tag": tag, "sha": sha, "endpoint": "http://up"}))
    os.utime(repo / PULLED_INFO, (used, used))
    return repo


def hub(tmp_path, **kw) -> HubConfig:
    return HubConfig(cache_dir=str(tmp_path / "pulled"), **kw)


class FakeApi:
    """What ``HfApi.model_info`` would answer, or raise (each of a list in turn); counts the calls."""

    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    def model_info(self, model_id, **_):
        self.calls += 1
        answer = self.answer.pop(0) if isinstance(self.answer, list) else self.answer
        if isinstance(answer, Exception):
            raise answer
        return answer


def puller_with(tmp_path, answer, **kw):
    clock = [0.0]
    puller = Puller(hub(tmp_path, **kw), env={}, clock=lambda: clock[0])
    api = FakeApi(answer)
    puller._api = lambda: api
    return puller, api, clock


def test_the_endpoint_and_token_come_from_the_config_else_the_environment(tmp_path):
    env = {"HF_ENDPOINT": "http://env-hub/", "HF_TOKEN": "hf_env", "MY_TOKEN": "hf_mine"}
    assert upstream(HubConfig(), {}) == ("https://huggingface.co", None)
    assert upstream(HubConfig(), env) == ("http://env-hub", "hf_env")
    assert upstream(HubConfig(endpoint="http://cfg", token_env="MY_TOKEN"), env) == ("http://cfg", "hf_mine")
    (tmp_path / "token").write_text("hf_file\n")
    assert upstream(HubConfig(token_file=str(tmp_path / "token")), env)[1] == "hf_file"


def test_the_pull_cache_is_in_the_data_dir_by_default(tmp_path):
    config = AppConfig.from_args({"data_dir": str(tmp_path / "data")})
    assert config.hub.cache_dir == str(tmp_path / "data" / "hub")
    assert config.hub.download and "*.safetensors" in config.hub.allow_patterns
    assert not any(p.endswith((".py", ".bin")) for p in config.hub.allow_patterns)


def test_only_allowed_files_are_counted_and_pickles_only_when_trusted(tmp_path):
    siblings = [SimpleNamespace(rfilename=n, size=s) for n, s in
                (("config.json", 10), ("model.safetensors", 1000), ("pytorch_model.bin", 5000), ("modeling.py", 7),
                 ("1_Pooling/config.json", 3), ("README.md", 5))]
    info = SimpleNamespace(sha=SHA, private=False, pipeline_tag="fill-mask", library_name="transformers",
                           siblings=siblings)
    puller, _, _ = puller_with(tmp_path, info)
    remote = puller.remote("acme/bert")
    assert [name for name, _ in remote.files] == ["config.json", "model.safetensors", "1_Pooling/config.json",
                                                  "README.md"]
    assert remote.total_bytes == 1018
    puller.trusted_pickle = lambda model_id: True
    assert "pytorch_model.bin" in dict(puller.remote("acme/bert").files)


def test_an_id_the_upstream_does_not_have_is_not_found_and_remembered(tmp_path):
    response = http.Response(404, request=http.Request("GET", "http://up/api/models/acme/missing"))
    puller, api, clock = puller_with(tmp_path, RepositoryNotFoundError("nope", response=response), missing_ttl_s=60)
    for _ in range(3):
        with pytest.raises(ModelNotFound, match="acme/missing does not exist"):
            puller.remote("acme/missing")
    assert api.calls == 1
    clock[0] = 61
    with pytest.raises(ModelNotFound):
        puller.remote("acme/missing")
    assert api.calls == 2


def test_an_unreachable_upstream_is_a_503_and_retried_after_the_back_off(tmp_path):
    puller, api, clock = puller_with(tmp_path, http.ConnectError("refused"), retry_after_s=30)
    with pytest.raises(UpstreamUnavailable) as first:
        puller.remote("acme/a")
    assert first.value.status_code == 503 and first.value.headers["Retry-After"] == "30"
    assert "cannot be reached" in first.value.message
    clock[0] = 10
    with pytest.raises(UpstreamUnavailable) as second:
        puller.remote("acme/b")  # not tried during the back-off
    assert api.calls == 1 and second.value.headers["Retry-After"] == "20"
    clock[0] = 31
    with pytest.raises(UpstreamUnavailable):
        puller.remote("acme/b")
    assert api.calls == 2


def test_a_connection_dropped_before_any_answer_is_asked_again_once(tmp_path):
    info = SimpleNamespace(sha=SHA, private=False, pipeline_tag="fill-mask", library_name="transformers", siblings=[])
    dropped = http.RemoteProtocolError("Server disconnected without sending a response.")
    puller, api, _ = puller_with(tmp_path, [dropped, info])
    assert puller.remote("acme/bert").sha == SHA and api.calls == 2  # a stale keep-alive connection
    puller, api, _ = puller_with(tmp_path, [dropped, dropped, info])
    with pytest.raises(UpstreamUnavailable, match="RemoteProtocolError"):
        puller.remote("acme/bert")
    assert api.calls == 2


def test_the_store_serves_a_pulled_model_with_the_upstream_task(tmp_path):
    pulled(tmp_path / "pulled", "acme/bert", 10, time.time(), tag="fill-mask")
    (tmp_path / "store").mkdir()
    store = ModelStore(tmp_path / "store", hub_cache=tmp_path / "pulled")
    ref = store.resolve("acme/bert")
    assert (ref.source, ref.sha, ref.pipeline_tag) == ("hub", SHA, "fill-mask")
    assert ref.cache_repo == tmp_path / "pulled" / "models--acme--bert"
    assert store.model_ids() == ["acme/bert"]
    with pytest.raises(ModelNotFound):
        store.resolve("ACME/bert")


def test_a_download_in_flight_reports_its_progress(tmp_path):
    puller, _, _ = puller_with(tmp_path, None)
    assert puller.progress("acme/big") is None
    work = puller.incoming / repo_folder_name("acme/big")
    (work / "blobs").mkdir(parents=True)
    (work / "blobs" / "x.incomplete").write_bytes(b"\x00" * 300)
    puller._record("acme/big").write_bytes(orjson.dumps({"total": 1000, "started": time.time() - 10}))
    assert puller.progress("acme/big") is None  # a record without a live download: it died
    with puller._lock("acme/big"):
        progress = puller.progress("acme/big")
    assert (progress.done, progress.total) == (300, 1000)
    assert progress.seconds_left() == pytest.approx(700 / 30, rel=0.05)  # 30 bytes/s so far


def test_pulled_models_are_evicted_least_recently_used(tmp_path):
    cache = tmp_path / "pulled"
    now = time.time()
    pulled(cache, "acme/old", 400, now - 300)
    pulled(cache, "acme/mid", 400, now - 200)
    pulled(cache, "acme/new", 400, now - 100)
    puller, _, _ = puller_with(tmp_path, None, max_disk_bytes=1000)
    evicted = puller.evict(keep="acme/old")
    assert evicted == [("acme/mid", SHA)]  # the one just pulled is kept even if oldest
    assert sorted(m["model_id"] for m in puller.local()) == ["acme/new", "acme/old"]
    assert not (cache / "models--acme--mid").exists()
    assert puller_with(tmp_path, None)[0].evict() == []  # no limit: nothing is evicted


def test_a_pull_reports_progress_until_its_model_is_in_the_pull_cache(tmp_path, monkeypatch):
    """/status answers Downloading until the store can resolve the model: no moment between."""
    import hubserve.repos.hub

    puller, _, _ = puller_with(tmp_path, None)
    remote = hubserve.repos.upstream.Remote("acme/bert", SHA, False, "fill-mask", "transformers", (("model.safetensors", 10),))

    def fetch(remote, progress_bars):
        work = puller._incoming(remote.model_id)
        snapshot = work / "snapshots" / remote.sha
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForMaskedLM"]}')
        (snapshot / "model.safetensors").write_bytes(b"\x00" * 10)

    seen = []

    def install(work, repo):
        seen.append(puller.progress("acme/bert"))
        real_install(work, repo)

    real_install = hubserve.repos.hub.install
    monkeypatch.setattr(puller, "_fetch", fetch)
    monkeypatch.setattr(hubserve.repos.hub, "install", install)
    puller.pull("acme/bert", remote)
    assert seen and seen[0] is not None and seen[0].total == 10
    assert puller.progress("acme/bert") is None and puller.pulled_sha("acme/bert") == SHA
