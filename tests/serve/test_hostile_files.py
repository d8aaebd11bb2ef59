"""Model files that point a loader outside the model folder, padded past the size up to which
JSON files were once the only ones read, against the real graph: a fill-mask model whose
tokenizer config names ``/proc/self/environ`` as its vocabulary would answer the replica's
environment as tokens."""

import json

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hubserve.tokens.auth import AuthStore

#: Past the 5 MB up to which JSON files were once the only ones parsed.
PADDING = " " * (5 * 1024**2 + 1)


def environ_vocabulary(folder) -> bytes:
    """The folder's tokenizer config, padded with spaces, its vocabulary the process environment."""
    config = json.loads((folder / "tokenizer_config.json").read_text())
    text = json.dumps(dict(config, vocab_file="/proc/self/environ"))
    return (text[:1] + PADDING + text[1:]).encode()


def assert_refused(message: str) -> None:
    assert "tokenizer_config.json: `vocab_file` points outside the model folder ('/proc/self/environ')" in message


def test_a_store_folder_reading_the_environment_is_refused(http, server, tiny_models):
    target = server.copy_model(tiny_models["fill-mask"], "hostilefiles/environ")
    (target / "tokenizer_config.json").write_bytes(environ_vocabulary(target))
    resp = http.post("/models/hostilefiles/environ", json={"inputs": "Paris is the [MASK] of France."})
    assert resp.status_code == 403 and resp.json()["error_type"] == "load", resp.text
    assert_refused(resp.json()["error"])
    assert "token_str" not in resp.text


def test_the_same_files_pushed_through_the_hub_commit_api_are_a_400(server, tiny_models, tmp_path):
    writer = AuthStore(server.auth_db).create_token("filepusher", role="write", org="hostilefiles")[1]
    api = HfApi(endpoint=server.url, token=writer)
    api.create_repo("hostilefiles/pushed")
    source = server.store / tiny_models["fill-mask"]
    folder = tmp_path / "pushed"
    folder.mkdir()
    for path in source.iterdir():
        folder.joinpath(path.name).write_bytes(path.read_bytes())
    (folder / "tokenizer_config.json").write_bytes(environ_vocabulary(source))
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_folder(repo_id="hostilefiles/pushed", folder_path=str(folder))
    assert refused.value.response.status_code == 400
    assert_refused(refused.value.response.json()["error"])
    assert "tokenizer_config.json" not in api.list_repo_files("hostilefiles/pushed")
