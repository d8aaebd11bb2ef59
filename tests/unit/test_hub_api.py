"""The Hub API's file answers over the store's folder layouts (no Ray)."""

import asyncio
import hashlib
import os

import pytest

from hubserve.repos.refs import ModelRef
from serve_app.hub.api import (
    Digests,
    EntryNotFound,
    RevisionNotFound,
    file_response,
    model_info,
    paths_info,
    tree,
)

SHA = "a" * 40


def hf_cache_snapshot(tmp_path):
    """An HF cache repo: the snapshot's files link into blobs/, as huggingface_hub writes them."""
    repo = tmp_path / "models--acme--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "cfg").write_text('{"model_type": "bert"}')
    snap = repo / "snapshots" / SHA
    snap.mkdir(parents=True)
    os.symlink("../../blobs/cfg", snap / "config.json")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(str(tmp_path / "outside.txt"), snap / "escape.txt")
    return ModelRef("acme/m", snap, SHA, "hf-cache")


def test_files_of_an_hf_cache_snapshot_are_served_but_not_links_out_of_its_repo(tmp_path):
    ref, digests = hf_cache_snapshot(tmp_path), Digests()
    response = asyncio.run(file_response(ref, "main", "config.json", digests))
    digest = hashlib.sha256((ref.path / "config.json").read_bytes()).hexdigest()
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["x-repo-commit"] == SHA
    for name in ("escape.txt", "../outside.txt", ".cache/x", ""):
        with pytest.raises(EntryNotFound):
            asyncio.run(file_response(ref, "main", name, digests))
    with pytest.raises(RevisionNotFound):
        asyncio.run(file_response(ref, "b" * 40, "config.json", digests))
    assert asyncio.run(file_response(ref, SHA, "config.json", digests)).status_code == 200


def test_model_info_lists_files_with_sizes_and_hashes(tmp_path):
    folder = tmp_path / "m"
    (folder / ".hubserve").mkdir(parents=True)
    (folder / ".hubserve" / "stamp").write_text("x")
    (folder / "config.json").write_text("{}")
    (folder / "sub").mkdir()
    (folder / "sub" / "w.bin").write_bytes(b"\0" * 10)
    info = model_info(ModelRef("acme/m", folder, SHA, "store"), private=True, digests=Digests())
    assert info["id"] == "acme/m" and info["sha"] == SHA and info["private"] is True
    assert [(s["rfilename"], s["size"]) for s in info["siblings"]] == [("config.json", 2), ("sub/w.bin", 10)]
    assert info["siblings"][1]["blobId"] == hashlib.sha256(b"\0" * 10).hexdigest()
    assert info["lastModified"].endswith("Z")


def test_tree_and_paths_info(tmp_path):
    folder = tmp_path / "m"
    (folder / "sub" / "deep").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "a.txt").write_text("a")
    (folder / "sub" / "deep" / "b.txt").write_text("bb")
    ref, digests = ModelRef("acme/m", folder, SHA, "store"), Digests()
    top = tree(ref, "main", "", False, digests)
    assert [(e["type"], e["path"]) for e in top] == [("directory", "sub"), ("file", "config.json")]
    everything = tree(ref, SHA, "", True, digests)
    assert {e["path"] for e in everything} == {"sub", "sub/deep", "config.json", "sub/a.txt", "sub/deep/b.txt"}
    assert [e["path"] for e in tree(ref, "main", "sub", False, digests)] == ["sub/deep", "sub/a.txt"]
    with pytest.raises(EntryNotFound):
        tree(ref, "main", "nowhere", False, digests)
    info = paths_info(ref, "main", ["sub/deep/b.txt", "sub", "missing.txt", "../x"], digests)
    assert [(e["type"], e["path"], e.get("size")) for e in info] == [("file", "sub/deep/b.txt", 2), ("directory", "sub", None)]


def test_a_model_deleted_while_the_list_is_built_is_left_out(tmp_path, monkeypatch):
    """``GET /api/models`` walks the folders off the event loop; a model that disappears between
    finding its id and reading its folder is missing from the list, not a 404 of the list."""
    import threading

    from starlette.requests import Request

    from hubserve.config.app import AppConfig
    from hubserve.repos.store import open_store
    from hubserve.tokens.access import ADMIN_ENV
    from serve_app.hub.management import ModelAdmin
    from serve_app.security import Guard

    monkeypatch.delenv(ADMIN_ENV, raising=False)
    config = AppConfig.from_args({"data_dir": str(tmp_path)}, env={})
    for model_id in ("acme/kept", "acme/gone"):
        folder = tmp_path / "models" / model_id
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    config = config.model_copy(update={"model_store": str(tmp_path / "models")})
    store = open_store(config)
    store.ttl_s = 0.0  # every resolution reads the disk, as one past the cache's life does
    walks = []
    real_ids, real_resolve = store.model_ids, store.resolve

    def model_ids():
        ids = real_ids()
        (tmp_path / "models" / "acme" / "gone" / "config.json").unlink()  # deleted meanwhile
        return ids

    def resolve(model_id):
        walks.append(threading.current_thread() is threading.main_thread())
        return real_resolve(model_id)

    monkeypatch.setattr(store, "model_ids", model_ids)
    monkeypatch.setattr(store, "resolve", resolve)

    class Gate:
        def seen_loaded(self, ref):
            return False

    admin = ModelAdmin(config, store, Guard(config), Gate())
    listed = asyncio.run(admin.list(Request({"type": "http", "headers": [], "client": ("10.3.3.3", 1),
                                             "query_string": b""})))
    assert [entry["id"] for entry in listed] == ["acme/kept"]
    assert walks and not any(walks), "every folder walk runs off the event loop"


# -- repo bodies, as each client generation sends them ------------------------------------

def test_visibility_and_private_are_both_honoured_and_must_agree():
    from hubserve.errors import InvalidInput
    from serve_app.hub.repo_bodies import create_body, settings_body

    # huggingface_hub 1.x and later
    assert create_body({"name": "m", "organization": "acme", "visibility": "private", "type": "model"}) == (
        "m", "acme", True)
    assert create_body({"name": "m", "organization": None, "visibility": "public"}) == ("m", None, False)
    # huggingface_hub 0.x
    assert create_body({"name": "m", "organization": "acme", "private": True}) == ("m", "acme", True)
    assert create_body({"name": "m", "private": True, "visibility": "private"})[2] is True
    assert create_body({"name": "m"})[2] is False
    assert settings_body({"visibility": "public"}) is False and settings_body({"private": True}) is True
    assert settings_body({"gated": False, "xetEnabled": False}) is None
    for body in ({"name": "m", "private": True, "visibility": "public"}, {"name": "m", "visibility": "protected"},
                 {"name": "m", "visibility": "PRIVATE"}, {"name": "m", "private": "yes"}):
        with pytest.raises(InvalidInput):
            create_body(body)


@pytest.mark.parametrize("field", ["resourceGroupId", "sdk", "hardware", "secrets", "region", "unknownField"])
def test_a_field_the_server_does_not_serve_is_refused_by_name(field):
    from hubserve.errors import InvalidInput
    from serve_app.hub.repo_bodies import create_body, delete_body, settings_body

    for parse, body in ((create_body, {"name": "m"}), (delete_body, {"name": "m"}), (settings_body, {})):
        with pytest.raises(InvalidInput, match=field):
            parse({**body, field: "x"})
    if field != "unknownField":
        assert create_body({"name": "m", field: None}) == ("m", None, False)  # null: not set by the client
    else:
        with pytest.raises(InvalidInput, match=field):
            create_body({"name": "m", field: None})


def test_a_path_with_a_control_character_is_never_routed():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serve_app.whole_paths import WholePaths

    app = FastAPI()
    app.add_middleware(WholePaths)

    @app.get("/models/{model_id:path}")
    def model(model_id: str):
        return {"id": model_id}

    client = TestClient(app)
    assert client.get("/models/acme/m").json() == {"id": "acme/m"}
    for suffix in ("%0A", "%0D", "%00", "%7F", "%0A%0A"):
        resp = client.get(f"/models/acme/m{suffix}")
        assert resp.status_code == 400 and "control character" in resp.json()["error"], suffix


# -- the routes huggingface_hub 2.x calls besides the model API ---------------------------------

def test_xet_token_paths_are_told_from_model_ids():
    from serve_app.hub.extras import NO_AGENTS, NO_XET, split_xet_route

    assert split_xet_route("acme/m/xet-write-token/main") == ("acme/m", "write", "main")
    assert split_xet_route("gpt2/xet-read-token/" + SHA) == ("gpt2", "read", SHA)
    assert split_xet_route("acme/m/xet-write-token/refs/pr/1") == ("acme/m", "write", "refs/pr/1")
    for model_path in ("acme/xet-write-token", "acme/m", "acme/m/revision/main", "a/b/c/xet-write-token/main"):
        assert split_xet_route(model_path) is None, model_path
    assert "HF_HUB_DISABLE_XET=1" in NO_XET
    assert NO_AGENTS == {"standardEnvVars": [], "harnesses": {}}  # the Hub's shape, no agent
