"""Tokens and private models against the real graph: the auth matrix, uploads, the CLI."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import httpx
import pytest

from hubserve.tokens.access import INVALID_CREDENTIALS
from hubserve.tokens.auth import AuthStore
from tests.conftest import auth

VOLATILE = {"date", "x-request-id", "x-compute-time"}


@pytest.fixture(scope="module")
def world(server, tiny_store):
    """acme/public, acme/secret (private) and the people of the matrix."""
    store = AuthStore(server.auth_db)
    server.copy_model("tiny/bert-sentiment", "acme/public")
    server.copy_model("tiny/bert-sentiment", "acme/secret")
    store.set_private("acme/secret", True)
    people = {
        "anonymous": None,
        "owner": store.create_token("alice", role="write", org="acme")[1],
        "member": store.create_token("bob", role="read", org="acme")[1],
        "other": store.create_token("carol", role="write")[1],
        "bad": "hf_" + "x" * 34,
    }
    revoked_id, people["revoked"] = store.create_token("dave", org="acme")
    store.revoke(revoked_id)
    return people


def strip(resp):
    return resp.status_code, resp.content, {k: v for k, v in resp.headers.items() if k not in VOLATILE}


ACTIONS = {
    "inference": lambda c, m, h: c.post(f"/models/{m}", json={"inputs": "great"}, headers=h),
    "direct": lambda c, m, h: c.post(f"/pipeline/text-classification/{m}", json={"inputs": "great"}, headers=h),
    "status": lambda c, m, h: c.get(f"/status/{m}", headers=h),
    "info": lambda c, m, h: c.get(f"/models/{m}/info", headers=h),
    "api-get": lambda c, m, h: c.get(f"/api/models/{m}", headers=h),
    "hub-revision": lambda c, m, h: c.get(f"/api/models/{m}/revision/main", headers=h),
    "hub-file": lambda c, m, h: c.get(f"/{m}/resolve/main/config.json", headers=h),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_the_auth_matrix_for_reads(http, world, action):
    call = ACTIONS[action]
    for who, token in world.items():
        headers = auth(token)
        public, secret, missing = (call(http, m, headers) for m in ("acme/public", "acme/secret", "acme/nosuch"))
        if who in ("bad", "revoked"):
            for resp in (public, secret, missing):
                assert resp.status_code == 401 and resp.json()["error"] == INVALID_CREDENTIALS, (who, resp.text)
            continue
        assert public.status_code == 200, (who, public.text)
        assert missing.status_code == 404, (who, missing.text)
        if who in ("owner", "member"):
            assert secret.status_code == 200, (who, secret.text)
        else:
            # a private model of someone else is byte-identical to a missing one (an id of equal length)
            assert secret.status_code == missing.status_code == 404
            assert secret.content.replace(b"secret", b"nosuch") == missing.content
            assert strip(secret)[2] == strip(missing)[2]


def test_listings_show_only_what_the_caller_may_see(http, world):
    for who, token in world.items():
        for path in ("/models", "/api/models"):
            resp = http.get(path, headers=auth(token))
            if who in ("bad", "revoked"):
                assert resp.status_code == 401
                continue
            ids = {m["model_id"] for m in resp.json()}
            assert "acme/public" in ids
            assert ("acme/secret" in ids) == (who in ("owner", "member")), (who, path)
    mine = {m["model_id"]: m for m in http.get("/api/models", headers=auth(world["owner"])).json()}
    assert mine["acme/secret"]["private"] is True and mine["acme/public"]["private"] is False
    assert mine["acme/secret"]["task"] == "text-classification" and len(mine["acme/secret"]["sha"]) == 40


def test_private_cache_entries_are_never_served_to_other_tokens(http, world, server):
    store = AuthStore(server.auth_db)
    store.create_token("erin", org="acme")  # erin joins acme
    erin = store.create_token("erin")[1]
    body = {"inputs": "a sentence only the owner asked about"}
    first = http.post("/models/acme/secret", json=body, headers=auth(world["owner"]))
    again = http.post("/models/acme/secret", json=body, headers=auth(world["owner"]))
    other_member = http.post("/models/acme/secret", json=body, headers=auth(erin))
    assert first.status_code == again.status_code == other_member.status_code == 200
    assert again.headers["x-compute-type"] == "cache"
    assert other_member.headers["x-compute-type"] != "cache" and other_member.json() == first.json()
    public = http.post("/models/acme/public", json=body)
    assert http.post("/models/acme/public", json=body, headers=auth(erin)).headers["x-compute-type"] == "cache"
    assert public.status_code == 200


def test_a_private_model_on_the_pipeline_route_is_missing_to_others(http, world, server):
    server.copy_model("tiny/sentence-bert", "acme/secret-st")
    AuthStore(server.auth_db).set_private("acme/secret-st", True)
    body = {"inputs": "x"}
    mine = http.post("/pipeline/feature-extraction/acme/secret-st", json=body, headers=auth(world["owner"]))
    assert mine.status_code == 200
    for who in ("anonymous", "other"):
        hidden = http.post("/pipeline/feature-extraction/acme/secret-st", json=body, headers=auth(world[who]))
        twin = http.post("/pipeline/feature-extraction/acme/nosuch-st", json=body, headers=auth(world[who]))
        assert hidden.status_code == twin.status_code == 404
        assert hidden.content.replace(b"secret", b"nosuch") == twin.content
        assert strip(hidden)[2] == strip(twin)[2]
    bad = http.post("/pipeline/feature-extraction/acme/secret-st", json=body, headers=auth(world["bad"]))
    assert bad.status_code == 401 and bad.json()["error"] == INVALID_CREDENTIALS


# -- uploads --------------------------------------------------------------------------

def tar_of(folder: Path, *, prefix: str = "", extra: dict | None = None, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=prefix + path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def zip_of(folder: Path, extra: dict | None = None, skip: tuple = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name not in skip:
                zf.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def leftovers(server) -> list:
    """What uploads left behind: staged folders and archive parts (the per-model lock files and
    the LFS objects' folder stay, by design)."""
    staged = server.store / ".uploads"
    parts = server.auth_db.parent / "uploads"
    return [p for d in (staged, parts) if d.exists() for p in d.iterdir() if p.name not in ("locks", "lfs")]


def upload(http, model_id, data, token, **params):
    return http.post(f"/api/models/{model_id}", content=data, headers=auth(token), params=params)


def test_upload_round_trip_tar_and_zip(http, world, server):
    folder = server.store / "tiny" / "bert-sentiment"
    created = upload(http, "alice/uploaded", tar_of(folder, prefix="bert-sentiment/"), world["owner"], private="true")
    assert created.status_code == 201, created.text
    meta = created.json()
    assert meta["task"] == "text-classification" and meta["private"] is True and meta["source"] == "store"
    assert http.post("/models/alice/uploaded", json={"inputs": "great"}, headers=auth(world["owner"])).status_code == 200
    assert http.post("/models/alice/uploaded", json={"inputs": "great"}).status_code == 404
    zipped = upload(http, "acme/zipped", zip_of(folder), world["owner"])
    assert zipped.status_code == 201 and zipped.json()["private"] is False
    assert http.post("/models/acme/zipped", json={"inputs": "great"}).status_code == 200
    replaced = upload(http, "acme/zipped", zip_of(folder, {"README.md": b"v2"}), world["owner"])
    assert replaced.status_code == 201 and replaced.json()["sha"] != zipped.json()["sha"]
    assert (server.store / "acme" / "zipped" / "README.md").read_bytes() == b"v2"
    assert leftovers(server) == []


@pytest.mark.parametrize("case", ["zip-slip", "tar-slip", "absolute", "symlink", "pickle-only", "no-config",
                                  "not-an-archive", "bad-task", "duplicate"])
def test_bad_uploads_are_refused_and_leave_nothing(http, world, server, case):
    folder = server.store / "tiny" / "bert-sentiment"
    data = {
        "zip-slip": lambda: zip_of(folder, {"../../evil.txt": b"x"}),
        "tar-slip": lambda: tar_of(folder, extra={"sub/../../evil.txt": b"x"}),
        "absolute": lambda: tar_of(folder, extra={"/tmp/evil.txt": b"x"}),
        "symlink": lambda: tar_of(folder, link="passwd"),
        "pickle-only": lambda: zip_of(folder, {"pytorch_model.bin": b"\x80\x04pickle"}, skip=("model.safetensors",)),
        "no-config": lambda: zip_of(folder, skip=("config.json",)),
        "not-an-archive": lambda: b"just some bytes, not an archive",
        "bad-task": lambda: zip_of(folder, {"config.json": json.dumps({"model_type": "nothing"}).encode()},
                                   skip=("config.json",)),
        "duplicate": lambda: tar_of(folder, extra={"config.json": b"{}"}),
    }[case]()
    resp = upload(http, f"acme/bad-{case}", data, world["owner"])
    assert resp.status_code == 400, resp.text
    assert not (server.store / "acme" / f"bad-{case}").exists()
    assert not list(server.store.parent.rglob("evil.txt"))
    assert leftovers(server) == []
    if case == "pickle-only":
        assert "pickle" in resp.json()["error"].lower()


def test_an_interrupted_upload_leaves_nothing(world, server):
    import socket
    import time

    folder = server.store / "tiny" / "bert-sentiment"
    data = tar_of(folder)
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall((f"POST /api/models/acme/interrupted HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world['owner']}"
                      f"\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data[: len(data) // 2])
        time.sleep(0.5)
    deadline = time.time() + 20
    while leftovers(server) and time.time() < deadline:
        time.sleep(0.2)
    assert leftovers(server) == [] and not (server.store / "acme" / "interrupted").exists()


def test_concurrent_uploads_of_one_id_end_with_one_whole_model(world, server):
    folder = server.store / "tiny" / "bert-sentiment"
    archives = [tar_of(folder, extra={"README.md": f"version {i}".encode() * 1000}) for i in range(4)]
    results = [None] * len(archives)

    def send(i):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            results[i] = upload(c, "acme/raced", archives[i], world["owner"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(archives))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    final = server.store / "acme" / "raced"
    readme = (final / "README.md").read_text()
    assert readme in {f"version {i}" * 1000 for i in range(len(archives))}
    assert {p.name for p in final.iterdir()} == {p.name for p in folder.iterdir()} | {"README.md"}
    assert leftovers(server) == []


def test_upload_size_limit(http, world, server):
    data = tar_of(server.store / "tiny" / "bert-sentiment")
    resp = http.post("/legacy/api/models/acme/too-big", content=data, headers=auth(world["owner"]))
    assert resp.status_code == 413 and "limit" in resp.json()["error"]
    assert leftovers(server) == [] and not (server.store / "acme" / "too-big").exists()


def test_write_permissions_patch_and_delete(http, world, server):
    folder = server.store / "tiny" / "bert-sentiment"
    for model_id in ("acme/doomed-public", "acme/doomed-private"):
        assert upload(http, model_id, tar_of(folder), world["owner"],
                      private=str(model_id.endswith("private")).lower()).status_code == 201
    expected = {  # who -> (public, private, missing)
        "anonymous": (401, 401, 401), "bad": (401, 401, 401), "revoked": (401, 401, 401),
        "member": (403, 403, 403), "other": (403, 403, 403),
    }
    for who, codes in expected.items():
        for model_id, code in zip(("acme/doomed-public", "acme/doomed-private", "acme/nothing"), codes):
            assert http.delete(f"/api/models/{model_id}", headers=auth(world[who])).status_code == code, (who, model_id)
            patched = http.patch(f"/api/models/{model_id}", json={"private": False}, headers=auth(world[who]))
            assert patched.status_code == code, (who, model_id, patched.text)
            assert upload(http, model_id, b"x", world[who]).status_code == code, (who, model_id)
    # the owner makes the private one public, then deletes both (the first after it answered once)
    made_public = http.patch("/api/models/acme/doomed-private", json={"private": False}, headers=auth(world["owner"]))
    assert made_public.status_code == 200 and made_public.json()["private"] is False
    assert http.post("/models/acme/doomed-private", json={"inputs": "hi"}).status_code == 200
    sha = made_public.json()["sha"]
    assert server.replica_status("text-classification", f"acme/doomed-private@{sha}")["loaded"]
    gone = http.delete("/api/models/acme/doomed-private", headers=auth(world["owner"]))
    assert gone.status_code == 200 and gone.json()["unloaded_replicas"] >= 1
    assert not server.replica_status("text-classification", f"acme/doomed-private@{sha}")["loaded"]
    assert http.post("/models/acme/doomed-private", json={"inputs": "hi"}).status_code == 404
    assert http.delete("/api/models/acme/doomed-public", headers=auth(server.admin_token)).status_code == 200
    assert not (server.store / "acme" / "doomed-public").exists()
    assert http.delete("/api/models/tiny/bert-sentiment", headers=auth(world["owner"])).status_code == 403


def test_the_cli_manages_tokens_and_models_against_a_real_server(tmp_path, server, world):
    config = tmp_path / "serve.yaml"
    config.write_text("applications:\n- name: hubserve\n  import_path: serve_app.app:build_app\n  args:\n"
                      f"    model_store: {server.store}\n    data_dir: {server.auth_db.parent}\n")
    cli = [sys.executable, "-m", "hubserve.cli.main"]
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}

    def run(*args, token=None):
        extra = {"HF_TOKEN": token} if token else {}
        return subprocess.run([*cli, *args], capture_output=True, text=True, env={**env, **extra}, timeout=120)

    created = run("token", "create", "--user", "gina", "--org", "gstudio", "--role", "write", "--config", str(config))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("hf_") and len(token) == 37 and created.stdout.count("\n") == 1
    listed = run("token", "list", "--config", str(config))
    assert "gina" in listed.stdout and token not in listed.stdout and token[-4:] in listed.stdout
    folder = server.store / "tiny" / "bert-sentiment"
    up = run("models", "upload", str(folder), "gstudio/cli-model", "--private", "--url", server.url, token=token)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["private"] is True
    mine = run("models", "list", "--url", server.url, token=token)
    assert "gstudio/cli-model" in {m["model_id"] for m in json.loads(mine.stdout)}
    theirs = run("models", "list", "--url", server.url, token=world["other"])
    assert "gstudio/cli-model" not in {m["model_id"] for m in json.loads(theirs.stdout)}
    assert run("models", "delete", "gstudio/cli-model", "--url", server.url, token=world["other"]).returncode == 1
    assert run("models", "delete", "gstudio/cli-model", "--url", server.url, token=token).returncode == 0
    token_id = next(line.split("\t")[0] for line in run("token", "list", "--config", str(config)).stdout.splitlines()
                    if "\tgina\t" in line)
    assert run("token", "revoke", token_id, "--config", str(config)).returncode == 0
    denied = run("models", "list", "--url", server.url, token=token)
    assert denied.returncode == 1 and INVALID_CREDENTIALS in denied.stderr


# -- the Hub's own API: huggingface_hub reads models from hubserve ---------------------------

def test_huggingface_hub_reads_models_from_hubserve(server, world, tiny_store, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    owner = HfApi(endpoint=server.url, token=world["owner"])
    info = owner.model_info("acme/secret", files_metadata=True)
    files = {s.rfilename: s for s in info.siblings}
    source = server.store / "acme" / "secret"
    assert info.private is True and len(info.sha) == 40 and info.pipeline_tag == "text-classification"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert files["model.safetensors"].size == (source / "model.safetensors").stat().st_size
    assert owner.whoami()["name"] == "alice" and {o["name"] for o in owner.whoami()["orgs"]} == {"acme"}
    listed = {f.path: f for f in owner.list_repo_tree("acme/secret", recursive=True)}
    assert set(listed) == set(files) and listed["config.json"].size == files["config.json"].size
    (info_of,) = owner.get_paths_info("acme/secret", ["config.json", "missing.json"])
    assert info_of.path == "config.json" and info_of.blob_id == files["config.json"].blob_id
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=server.url).get_paths_info("acme/secret", ["config.json"], token=False)

    folder = Path(snapshot_download("acme/secret", endpoint=server.url, token=world["owner"],
                                    cache_dir=tmp_path / "cache"))
    for name in files:
        assert (folder / name).read_bytes() == (source / name).read_bytes(), name
    public_sha = HfApi(endpoint=server.url).model_info("acme/public").sha
    pinned = hf_hub_download("acme/public", "config.json", revision=public_sha, endpoint=server.url,
                             cache_dir=tmp_path / "cache2")
    assert Path(pinned).read_bytes() == (server.store / "acme" / "public" / "config.json").read_bytes()

    for repo, token in (("acme/secret", None), ("acme/secret", world["other"]), ("acme/nosuch", world["owner"])):
        with pytest.raises(RepositoryNotFoundError):
            snapshot_download(repo, endpoint=server.url, token=token or False, cache_dir=tmp_path / "c3")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("acme/public", "config.json", revision="f" * 40, endpoint=server.url,
                        cache_dir=tmp_path / "c4")


def test_from_pretrained_with_hf_endpoint_loads_from_hubserve(server, world, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": world["member"], "HF_HOME": str(tmp_path)}
    env.pop("HF_HUB_OFFLINE", None)
    script = ("from transformers import AutoModelForSequenceClassification as M, AutoTokenizer as T;"
              "m = M.from_pretrained('acme/secret'); t = T.from_pretrained('acme/secret');"
              "print(m.config.num_labels, len(t('great')['input_ids']) > 0)")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "True"]


def test_resolve_serves_ranges_and_the_hub_headers(http, world):
    path = "/acme/public/resolve/main/model.safetensors"
    whole = http.get(path)
    assert whole.status_code == 200 and whole.headers["x-repo-commit"] and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"].strip('"') == hashlib.sha256(whole.content).hexdigest()
    part = http.get(path, headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == whole.content[:10]
    head = http.head(path)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(whole.content)
    secret, missing = (http.head(f"/acme/{m}/resolve/main/model.safetensors") for m in ("secret", "nosuch"))
    assert secret.status_code == missing.status_code == 404 and strip(secret)[2] == strip(missing)[2]
    assert secret.headers["x-error-code"] == "RepoNotFound"
    for bad in ("/acme/public/resolve/main/../secret/config.json", "/acme/public/resolve/main/.hidden",
                "/acme/public/resolve/main/nothing.json"):
        r = http.get(bad)
        # NOTE: the client normalizes main/../secret to the revision `secret`.
        assert r.json()["error"]
        assert r.status_code == 404 and r.headers["x-error-code"] in ("EntryNotFound", "RevisionNotFound"), r.text


def test_hostile_calls_on_the_hub_routes(http, world):
    r = http.post("/api/models/acme/public/paths-info/main", content=b"paths=" + b"x" * (2 * 1024**2),
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "paths-info" in r.json()["error"]
    listed = http.post("/api/models/acme/public/paths-info/main", data={"paths": ["../secret/config.json", "/etc/passwd"]})
    assert listed.status_code == 200 and listed.json() == []
    for path in ("/api/models/acme/public/tree/main/..%2Fsecret", "/api/models/acme/public/tree/nosuchrev"):
        r = http.get(path)
        assert r.status_code == 404 and r.json()["error"], r.text
    anonymous = http.get("/api/whoami-v2")
    assert anonymous.status_code == 401 and anonymous.json()["error"]
    bad = http.get("/api/whoami-v2", headers=auth(world["bad"]))
    assert bad.status_code == 401 and bad.json()["error"] == INVALID_CREDENTIALS
