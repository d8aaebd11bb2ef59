"""hubserve as a Hub, both ways, with no internet: huggingface_hub (0.36 and the newest, each in
its client venv; the pinned one in this process) uploads to the test server (A) and downloads
from it, and a second hubserve application (B, at /mirror, its own store, tokens and pull cache)
pulls A's models on demand through a throttling proxy that tests slow or kill."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from huggingface_hub import HfApi

from hubserve.tokens.auth import AuthStore
from tests.conftest import auth, free_port, server_args
from tests.hub_clients import ClientError, hub_client, uploads_without_xet  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


class Proxy:
    """``tests.throttle_proxy`` on a fixed port, restartable at another rate."""

    def __init__(self, upstream_port: int) -> None:
        self.port, self.upstream_port, self.proc = free_port(), upstream_port, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, bytes_per_s: float = 0) -> None:
        self.stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.throttle_proxy", str(self.port),
                                      str(self.upstream_port), str(bytes_per_s)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout.readline().strip() == b"listening"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class World:
    a: str
    b: str
    writer: str
    stranger: str
    admin: str
    proxy: Proxy
    pulled: Path
    store: Path
    source: Path
    model_bytes: int


@pytest.fixture(scope="module")
def world(server, tiny_store, tmp_path_factory):
    from ray import serve

    from serve_app.app import build_app

    root = tmp_path_factory.mktemp("mirror")
    tokens = AuthStore(server.auth_db)
    writer = tokens.create_token("hubwriter", role="write", org="hubco")[1]
    stranger = tokens.create_token("stranger", role="write")[1]
    (root / "upstream-token").write_text(tokens.create_token("mirrorbot", role="read")[1])
    source = tiny_store / "tiny" / "bert-sentiment"
    size = sum(p.stat().st_size for p in source.iterdir())
    proxy = Proxy(int(server.url.rsplit(":", 1)[1]))
    proxy.start()
    args = server_args(tiny_store)
    args.update(
        model_store=str(root / "store"), data_dir=str(root / "data"), models={}, serve_tasks=["text-classification"],
        # NOTE(hubserve): two ingress replicas: a model is downloaded once for both (the pull cache's lock).
        ingress={"num_cpus": 0, "num_replicas": 2},
        hub={"endpoint": proxy.url, "token_file": str(root / "upstream-token"), "retry_after_s": 1,
             "missing_ttl_s": 0, "check_every_s": 2, "timeout_s": 5, "max_disk_bytes": int(size * 2.5),
             "pull_rate": None},  # this module pulls more than a caller may by default (test_pull_limits)
    )
    serve.run(build_app(args), name="mirror", route_prefix="/mirror")
    yield World(a=server.url, b=f"{server.url}/mirror", writer=writer, stranger=stranger, admin=server.admin_token,
                proxy=proxy, pulled=root / "data" / "hub", store=server.store, source=source, model_bytes=size)
    serve.delete("mirror")
    proxy.stop()


def publish(world: World, repo: str, private: bool = False, token: str = None) -> str:
    """Creates ``repo`` on A and uploads the tiny sentiment model to it; returns its sha."""
    api = HfApi(endpoint=world.a, token=token or world.writer)
    api.create_repo(repo, private=private)
    return api.upload_folder(repo_id=repo, folder_path=str(world.source), commit_message="tiny model").oid


def ask(world: World, repo: str, **headers) -> httpx.Response:
    return httpx.post(f"{world.b}/models/{repo}", json={"inputs": "great"}, headers=headers, timeout=120)


def test_huggingface_hub_uploads_to_hubserve_and_reads_it_back(world, hub_client, tmp_path):
    """Each client (0.36 and the newest, in their own venvs) creates, uploads, reads back, shares
    and deletes a repo: every call as that client sends it."""
    client = hub_client.at(world.a, world.writer, tmp_path / "client-home")
    repo = f"hubco/uploaded-{hub_client.name.replace('.', '')}"
    url = client.api("create_repo", repo, private=True)
    assert url.rstrip("/").endswith(repo)
    with pytest.raises(ClientError) as again:
        client.api("create_repo", repo)
    assert again.value.is_a("HfHubHTTPError") and again.value.status == 409
    assert client.api("create_repo", repo, exist_ok=True).rstrip("/").endswith(repo)
    assert client.api("model_info", repo)["siblings"] == []  # an empty repo is there for its owner
    commit = client.api("upload_folder", repo_id=repo, folder_path=world.source, commit_message="first")
    info = client.api("model_info", repo, files_metadata=True)
    assert info["sha"] == commit["oid"] and info["private"] and info["pipeline_tag"] == "text-classification"
    assert {s["rfilename"]: s["size"] for s in info["siblings"]} == {
        p.name: p.stat().st_size for p in world.source.iterdir()}
    folder = Path(client.api("snapshot_download", repo, cache_dir=tmp_path / "c"))
    for path in world.source.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes(), path.name

    # a README commit, then its deletion: each a new revision that x-sha reports
    card = tmp_path / "README.md"
    card.write_bytes(b"---\npipeline_tag: text-classification\nlicense: mit\n---\n# Tiny\n")
    second = client.api("upload_file", path_or_fileobj=card, path_in_repo="README.md", repo_id=repo)["oid"]
    assert second != commit["oid"]
    answer = httpx.post(f"{world.a}/models/{repo}", json={"inputs": "great"}, headers=auth(world.writer))
    assert answer.status_code == 200 and answer.headers["x-sha"] == second
    client.api("delete_file", "README.md", repo_id=repo)
    assert "README.md" not in [s["rfilename"] for s in client.api("model_info", repo)["siblings"]]

    # private: others see exactly what a missing repo shows
    for token in (None, world.stranger):
        with pytest.raises(ClientError) as hidden:
            hub_client.at(world.a, token, tmp_path / "other-home").api("model_info", repo)
        assert hidden.value.is_a("RepositoryNotFoundError"), hidden.value
    hidden = httpx.get(f"{world.a}/api/models/{repo}", headers=auth(world.stranger))
    missing = httpx.get(f"{world.a}/api/models/hubco/nosuch", headers=auth(world.stranger))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content.replace(repo.encode(), b"hubco/nosuch") == missing.content

    client.api("update_repo_settings", repo, private=False)
    assert hub_client.at(world.a, None, tmp_path / "other-home").api("model_info", repo)["private"] is False
    listed = client.api("list_models", author="hubco", search=repo.split("/")[1])
    assert [m["id"] for m in listed] == [repo]

    env = {**os.environ, "HF_ENDPOINT": world.a, "HF_HOME": str(tmp_path / "home"), "HF_TOKEN": world.writer}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    script = (f"from transformers import pipeline; p = pipeline('text-classification', model='{repo}');"
              "print(sorted(x['label'] for x in p('great', top_k=None)))")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['NEGATIVE', 'POSITIVE']"

    client.api("delete_repo", repo)
    with pytest.raises(ClientError) as gone:
        client.api("model_info", repo)
    assert gone.value.is_a("RepositoryNotFoundError")
    assert not (world.store / repo).exists()


@pytest.mark.parametrize("case", ["anonymous", "stranger", "code", "escape", "unuploaded-lfs", "pickle",
                                  "no-config", "branch"])
def test_hostile_writes_are_refused_and_change_nothing(world, case):
    api = HfApi(endpoint=world.a, token=world.writer)
    repo = f"hubco/hostile-{case}"
    api.create_repo(repo)
    sha = api.model_info(repo).sha
    header = orjson.dumps({"key": "header", "value": {"summary": "x"}})

    def commit(lines, token=world.writer, revision="main"):
        body = b"\n".join([header, *(orjson.dumps(line) for line in lines)])
        return httpx.post(f"{world.a}/api/models/{repo}/commit/{revision}", content=body, timeout=60,
                          headers={**auth(token), "content-type": "application/x-ndjson"})

    config = {"key": "file", "value": {"path": "config.json", "encoding": "base64",
                                       "content": base64.b64encode(b'{"model_type": "bert"}').decode()}}
    inline = {"code": {"path": "modeling_evil.py"}, "escape": {"path": "../../escape.json"},
              "pickle": {"path": "pytorch_model.bin"}}
    if case in ("anonymous", "stranger"):
        r = commit([config], token=None if case == "anonymous" else world.stranger)
        assert r.status_code == (401 if case == "anonymous" else 403), r.text
    elif case in inline:
        r = commit([{"key": "file", "value": {**inline[case], "encoding": "base64", "content": "eA=="}}])
        assert r.status_code == 400 and r.json()["error"], r.text
    elif case == "unuploaded-lfs":
        r = commit([config, {"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256",
                                                         "oid": "c" * 64, "size": 10}}])
        assert r.status_code == 400 and "not uploaded" in r.json()["error"]
    elif case == "no-config":
        r = commit([{"key": "file", "value": {"path": "README.md", "encoding": "base64", "content": "eA=="}}])
        assert r.status_code == 400 and "config.json" in r.json()["error"]
    else:
        r = commit([config], revision="dev")
        assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
    assert api.model_info(repo).sha == sha and api.model_info(repo).siblings == []


def test_lfs_uploads_check_their_bytes_and_tickets_serve_once(world):
    api = HfApi(endpoint=world.a, token=world.writer)
    api.create_repo("hubco/lfs-checks")
    content = b"\x00" * 1000
    oid = hashlib.sha256(content).hexdigest()
    batch = httpx.post(f"{world.a}/hubco/lfs-checks.git/info/lfs/objects/batch", headers=auth(world.writer),
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 1000}]})
    assert batch.status_code == 200 and batch.json()["transfer"] == "basic"
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    wrong = httpx.put(href, content=b"\x01" * 1000)
    assert wrong.status_code == 400 and "sha256" in wrong.json()["error"]
    assert httpx.put(href, content=content).status_code == 404  # the ticket was used
    refused = httpx.post(f"{world.a}/hubco/lfs-checks.git/info/lfs/objects/batch", headers=auth(world.stranger),
                         json={"operation": "upload", "objects": [{"oid": oid, "size": 1000}]})
    assert refused.status_code == 403
    assert httpx.put(f"{world.a}/api/lfs/objects/{'x' * 43}", content=content).status_code == 404


def test_b_pulls_a_model_from_a_on_demand(world):
    sha = publish(world, "hubco/pulled")
    world.proxy.start(bytes_per_s=30_000)  # about 4 s for the tiny model
    try:
        started = time.monotonic()
        first = ask(world, "hubco/pulled", **{"x-wait-for-model": "false"})
        assert first.status_code == 503 and first.headers["retry-after"]
        estimates = [first.json()["estimated_time"]]
        states = []
        while time.monotonic() - started < 60:
            status = httpx.get(f"{world.b}/status/hubco/pulled").json()
            states.append(status["state"])
            if status["state"] != "Downloading":
                break
            assert 0 <= status["bytes_downloaded"] <= status["bytes_total"] > 0
            r = ask(world, "hubco/pulled", **{"x-wait-for-model": "false"})
            if r.status_code == 503:
                estimates.append(r.json()["estimated_time"])
            time.sleep(0.5)
        assert "Downloading" in states
        assert len(set(estimates)) > 1, estimates  # the estimate follows the download
    finally:
        world.proxy.start()
    answer = ask(world, "hubco/pulled")
    assert answer.status_code == 200 and answer.headers["x-sha"] == sha
    assert {x["label"] for x in answer.json()[0]} == {"NEGATIVE", "POSITIVE"}
    warm = time.monotonic()
    again = ask(world, "hubco/pulled")
    assert again.status_code == 200 and time.monotonic() - warm < 2.0
    listed = httpx.get(f"{world.b}/api/models", params={"author": "hubco"}).json()
    assert [(m["id"], m["source"]) for m in listed] == [("hubco/pulled", "hub")]


def test_a_private_model_of_a_is_missing_to_b_without_the_token(world):
    publish(world, "hubco/closed", private=True)
    closed, missing = ask(world, "hubco/closed"), ask(world, "hubco/never-made")
    assert closed.status_code == missing.status_code == 404, (closed.text, missing.text)
    assert closed.json()["error"] == "Model hubco/closed does not exist"
    # B's token owns mirrorbot/: B pulls that private model, and keeps it private
    publish(world, "mirrorbot/own", private=True, token=world.admin)
    assert ask(world, "mirrorbot/own").status_code == 404
    mine = ask(world, "mirrorbot/own", authorization=f"Bearer {world.admin}")
    assert mine.status_code == 200, mine.text
    assert ask(world, "mirrorbot/own").status_code == 404


def test_a_download_cut_mid_way_leaves_no_half_model(world):
    publish(world, "hubco/cut")
    world.proxy.start(bytes_per_s=15_000)
    pending = ask_later(world, "hubco/cut")
    deadline = time.monotonic() + 30
    while httpx.get(f"{world.b}/status/hubco/cut").json().get("state") != "Downloading":
        assert not pending.done(), pending.result().text
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)
    world.proxy.stop()  # the upstream goes away mid-download
    failed = pending.result(timeout=120)
    assert failed.status_code == 503 and failed.json()["error"], failed.text
    assert not (world.pulled / "models--hubco--cut").exists()
    assert httpx.get(f"{world.b}/status/hubco/cut").status_code == 404
    world.proxy.start()
    time.sleep(1.5)  # hub.retry_after_s
    assert ask(world, "hubco/cut").status_code == 200


def ask_later(world: World, repo: str):
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(ask, world, repo)
    pool.shutdown(wait=False)
    return future


def test_pulls_over_max_disk_bytes_evict_the_least_recently_used(world):
    for repo in ("hubco/lru-1", "hubco/lru-2"):
        publish(world, repo)
        assert ask(world, repo).status_code == 200
    assert (world.pulled / "models--hubco--lru-1").exists()
    for folder in world.pulled.glob("models--*"):
        if folder.name != "models--hubco--lru-2":
            os.utime(folder / "hubserve.json", (time.time() - 3600,) * 2)  # used long ago
    publish(world, "hubco/lru-3")
    assert ask(world, "hubco/lru-3").status_code == 200
    held = sorted(p.name for p in world.pulled.glob("models--*"))
    assert "models--hubco--lru-2" in held and "models--hubco--lru-3" in held and len(held) == 2
    total = sum(p.stat().st_size for p in world.pulled.rglob("*") if p.is_file() and "blobs" in p.parts)
    assert total <= world.model_bytes * 2.5


def test_a_new_upload_after_delete_is_served_by_b_under_its_new_sha(world):
    old = publish(world, "hubco/renewed")
    assert ask(world, "hubco/renewed").headers["x-sha"] == old
    api = HfApi(endpoint=world.a, token=world.writer)
    api.delete_repo("hubco/renewed")
    time.sleep(2.5)  # hub.check_every_s: the next request has B check the upstream, in the background
    deadline = time.monotonic() + 30
    while (gone := ask(world, "hubco/renewed")).status_code != 404:
        assert gone.status_code == 200 and time.monotonic() < deadline, gone.text  # the copy answers meanwhile
        time.sleep(0.3)
    assert gone.json()["error"] == "Model hubco/renewed does not exist"
    assert not (world.pulled / "models--hubco--renewed").exists()
    new = publish(world, "hubco/renewed")
    assert new != old
    answer = ask(world, "hubco/renewed")
    assert answer.status_code == 200 and answer.headers["x-sha"] == new
    api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id="hubco/renewed")
    newest = api.model_info("hubco/renewed").sha
    deadline = time.monotonic() + 30
    while ask(world, "hubco/renewed").headers.get("x-sha") != newest:
        assert time.monotonic() < deadline, "B never served the new revision"
        time.sleep(0.5)


def test_the_cli_pulls_ahead_of_time_and_lists_what_was_pulled(world, tmp_path):
    publish(world, "hubco/ahead")
    config = tmp_path / "serve.yaml"
    config.write_text(f"""
applications:
  - name: hubserve
    import_path: serve_app.app:build_app
    args:
      model_store: {tmp_path / 'store'}
      data_dir: {tmp_path / 'data'}
      hf_cache: null
      hub: {{endpoint: "{world.a}"}}
""")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_TOKEN"] = world.writer
    run = [sys.executable, "-m", "hubserve.cli.main", "models"]
    pulled = subprocess.run([*run, "pull", "hubco/ahead", "--config", str(config)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.split("\t")[0] == "hubco/ahead"
    listed = subprocess.run([*run, "local", "--config", str(config)], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "hubco/ahead\thub\t" in listed.stdout and "pulled from the upstream Hub" in listed.stdout
    missing = subprocess.run([*run, "pull", "hubco/nothing-here", "--config", str(config)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_bad_bodies_on_the_hub_write_routes_are_clear_400s(world):
    api = HfApi(endpoint=world.a, token=world.writer)
    api.create_repo("hubco/bodies")
    h = auth(world.writer)
    a = world.a
    lfs = f"{a}/hubco/bodies.git/info/lfs/objects/batch"
    cases = [
        ("POST", f"{a}/api/validate-yaml", {"json": {"content": "---\nkey: [unclosed\n---\n"}}),
        ("POST", f"{a}/api/validate-yaml", {"json": {"content": 42}}),
        ("PUT", f"{a}/api/models/hubco/bodies/settings", {"json": {"gated": "auto"}}),
        ("PUT", f"{a}/api/models/hubco/bodies/settings", {"json": {"private": "yes"}}),
        ("PUT", f"{a}/api/models/hubco/bodies/settings", {"content": b"not json"}),
        ("POST", f"{a}/api/models/hubco/bodies/preupload/main", {"json": {"files": [{"path": "../x", "size": 1}]}}),
        ("POST", f"{a}/api/models/hubco/bodies/preupload/main", {"json": {"files": [{"path": "a.json", "size": -1}]}}),
        ("POST", f"{a}/api/models/hubco/bodies/preupload/main", {"json": {"files": "a.json"}}),
        ("POST", lfs, {"json": {"operation": "download", "objects": []}}),
        ("POST", lfs, {"json": {"operation": "upload", "objects": [{"oid": "../../etc", "size": 1}]}}),
        ("POST", lfs, {"json": {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}] * 10_001}}),
        ("POST", f"{a}/api/repos/create", {"json": {"name": "d", "organization": "hubco", "type": "dataset"}}),
        ("POST", f"{a}/api/repos/create", {"json": {"name": "../x", "organization": "hubco"}}),
        ("POST", f"{a}/api/models/hubco/bodies/commit/main?create_pr=1", {"content": b"{}"}),
        ("POST", f"{a}/api/models/hubco/bodies/commit/main", {"content": b"{not json\n"}),
    ]
    for method, url, kwargs in cases:
        r = httpx.request(method, url, headers=h, timeout=30, **kwargs)
        assert r.status_code == 400 and isinstance(r.json()["error"], str), (url, kwargs, r.status_code, r.text)
    big = httpx.post(lfs, headers=h, json={"operation": "upload", "objects": [{"oid": "b" * 64, "size": 10**15}]})
    assert big.status_code == 200 and big.json()["objects"][0]["error"]["code"] == 422  # per object, as LFS says
    assert api.model_info("hubco/bodies").siblings == []


def test_b_refuses_a_pulled_model_whose_files_point_outside_it(world):
    """A nested path field (sentence-transformers reads a tokenizer from ``tokenizer_name_or_path``)."""
    folder = world.store / "hubco" / "reads-proc"
    shutil.copytree(world.source, folder)
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 8, "tokenizer_name_or_path": "/proc/self"}')
    refused = ask(world, "hubco/reads-proc")
    assert refused.status_code == 400, refused.text
    assert "`tokenizer_name_or_path` points outside the model folder ('/proc/self')" in refused.json()["error"]
    assert not (world.pulled / "models--hubco--reads-proc").exists()
