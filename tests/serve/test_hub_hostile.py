"""The Hub routes against an attacker and against today's clients, on the real graph: repos made
private by huggingface_hub 0.36 and the newest one and their `hf` CLIs (in the tests' client
venvs), private repos and their aliases seen from outside, over-long paths, a commit's staging,
LFS quotas."""

from __future__ import annotations

import base64
import json
import time

import httpx
import orjson
import pytest
from huggingface_hub import HfApi

from hubserve.tokens.auth import AuthStore
from tests.conftest import auth
from tests.hub_clients import hub_client, uploads_without_xet  # noqa: F401 (fixtures)

VOLATILE = {"date", "x-request-id", "x-compute-time", "content-length"}


@pytest.fixture(scope="module")
def people(server):
    store = AuthStore(server.auth_db)
    return {
        "owner": store.create_token("hsowner", role="write", org="hubsec")[1],
        "other": store.create_token("hsother", role="write")[1],
        "reader": store.create_token("hsreader", role="read")[1],
        "anonymous": None,
    }


def anonymous_info(server, repo: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/models/{repo}", timeout=60)


# -- today's clients ---------------------------------------------------------------------

def test_each_client_and_its_cli_make_private_repos(server, people, hub_client, tmp_path):
    """0.36 sends ``private``, the newest ``visibility``: both make private repos, with the API and
    with ``hf upload --private``, and make them public and private again."""
    client = hub_client.at(server.url, people["owner"], tmp_path / "hf-home")
    newest = hub_client.name == "hf-newest"
    assert (client.version >= (1, 0)) == newest, client.version  # the newest sends `visibility`
    tag = hub_client.name.replace(".", "")
    made, uploaded = f"hubsec/made-private-{tag}", f"hubsec/cli-private-{tag}"
    client.api("create_repo", made, private=True)
    assert anonymous_info(server, made).status_code == 404
    owner = httpx.get(f"{server.url}/api/models/{made}", headers=auth(people["owner"]))
    assert owner.status_code == 200 and owner.json()["private"] is True

    folder = server.store / "tiny" / "bert-sentiment"
    cli = client.cli("upload", "--private", uploaded, str(folder), ".")
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    assert anonymous_info(server, uploaded).status_code == 404
    assert httpx.post(f"{server.url}/models/{uploaded}", json={"inputs": "x"}).status_code == 404
    mine = httpx.post(f"{server.url}/models/{uploaded}", json={"inputs": "x"}, headers=auth(people["owner"]))
    assert mine.status_code == 200, mine.text

    client.api("update_repo_settings", uploaded, private=False)
    public = anonymous_info(server, uploaded)
    assert public.status_code == 200 and public.json()["private"] is False
    client.api("update_repo_settings", uploaded, **({"visibility": "private"} if newest else {"private": True}))
    assert anonymous_info(server, uploaded).status_code == 404


def test_the_pinned_client_still_makes_private_repos(server, people):
    api = HfApi(endpoint=server.url, token=people["owner"])
    api.create_repo("hubsec/pinned-private", private=True)
    assert anonymous_info(server, "hubsec/pinned-private").status_code == 404
    api.update_repo_settings("hubsec/pinned-private", private=False)
    assert anonymous_info(server, "hubsec/pinned-private").status_code == 200


REFUSED_BODIES = [
    ("create", {"name": "r1", "organization": "hubsec", "visibility": "private", "private": False}, "contradicts"),
    ("create", {"name": "r2", "organization": "hubsec", "visibility": "protected"}, "protected"),
    ("create", {"name": "r3", "organization": "hubsec", "visibility": "secret"}, "visibility"),
    ("create", {"name": "r4", "organization": "hubsec", "resourceGroupId": "g1"}, "resourceGroupId"),
    ("create", {"name": "r5", "organization": "hubsec", "sdk": "gradio"}, "sdk"),
    ("create", {"name": "r6", "organization": "hubsec", "isPrivate": True}, "isPrivate"),
    ("create", {"name": "r7", "organization": "hubsec", "region": "eu"}, "region"),
    ("settings", {"visibility": "protected"}, "protected"),
    ("settings", {"private": True, "visibility": "public"}, "contradicts"),
    ("settings", {"gated": "manual"}, "gated"),
    ("settings", {"xetEnabled": True}, "xetEnabled"),
    ("settings", {"discussionsDisabled": True}, "discussionsDisabled"),
    ("settings", {"privat": True}, "privat"),
    ("delete", {"name": "bodies", "organization": "hubsec", "force": True}, "force"),
]


@pytest.mark.parametrize("route,body,named", REFUSED_BODIES, ids=[f"{r}-{n}" for r, _, n in REFUSED_BODIES])
def test_every_repo_field_is_honoured_or_refused_by_name(server, people, route, body, named):
    api = HfApi(endpoint=server.url, token=people["owner"])
    api.create_repo("hubsec/bodies", private=True, exist_ok=True)
    method, url = {"create": ("POST", "/api/repos/create"), "settings": ("PUT", "/api/models/hubsec/bodies/settings"),
                   "delete": ("DELETE", "/api/repos/delete")}[route]
    r = httpx.request(method, f"{server.url}{url}", json=body, headers=auth(people["owner"]), timeout=60)
    assert r.status_code == 400 and named in r.json()["error"], r.text
    assert not (server.store / "hubsec" / body.get("name", "-")).exists() or body.get("name") == "bodies"
    owner = httpx.get(f"{server.url}/api/models/hubsec/bodies", headers=auth(people["owner"]))
    assert owner.status_code == 200 and owner.json()["private"] is True  # nothing changed


def test_the_fields_todays_clients_send_are_honoured(server, people):
    h = auth(people["owner"])
    created = httpx.post(f"{server.url}/api/repos/create", headers=h, json={
        "name": "fields", "organization": "hubsec", "visibility": "private", "type": "model", "sdk": None,
        "resourceGroupId": None})
    assert created.status_code == 200, created.text
    assert anonymous_info(server, "hubsec/fields").status_code == 404
    changed = httpx.put(f"{server.url}/api/models/hubsec/fields/settings", headers=h,
                        json={"visibility": "public", "gated": False, "xetEnabled": False})
    assert changed.status_code == 200 and changed.json() == {"private": False}, changed.text
    assert anonymous_info(server, "hubsec/fields").status_code == 200


def test_the_routes_newer_clients_call_besides_the_model_api_answer_as_the_hub(http, people, empty_secret):
    # huggingface_hub 2.x asks its endpoint for an agent registry (its user agent) in every process
    registry = http.get("/api/agent-harnesses")
    assert registry.status_code == 200 and registry.json() == {"standardEnvVars": [], "harnesses": {}}
    # and for a Xet token before every upload with hf_xet installed: refused, saying how to upload
    token = http.get(f"/api/models/{empty_secret}/xet-write-token/main", headers=auth(people["owner"]))
    assert token.status_code == 400 and "HF_HUB_DISABLE_XET=1" in token.json()["error"], token.text


# -- private repos and their aliases, seen from outside ---------------------------------------

def _commit(c, m, h, lines=()):
    header = orjson.dumps({"key": "header", "value": {"summary": "x"}})
    body = b"\n".join([header, *(orjson.dumps(line) for line in lines)])
    return c.post(f"/api/models/{m}/commit/main", content=body, headers={**h, "content-type": "application/x-ndjson"})


def _repo_body(m):
    org, name = m.split("/")
    return {"name": name, "organization": org}


HUB_ROUTES = {
    "model-info": lambda c, m, h: c.get(f"/api/models/{m}", headers=h),
    "revision": lambda c, m, h: c.get(f"/api/models/{m}/revision/main", headers=h),
    "tree": lambda c, m, h: c.get(f"/api/models/{m}/tree/main", headers=h),
    "resolve": lambda c, m, h: c.get(f"/{m}/resolve/main/config.json", headers=h),
    "resolve-head": lambda c, m, h: c.head(f"/{m}/resolve/main/config.json", headers=h),
    "paths-info": lambda c, m, h: c.post(f"/api/models/{m}/paths-info/main", data={"paths": ["config.json"]},
                                         headers=h),
    "preupload": lambda c, m, h: c.post(f"/api/models/{m}/preupload/main",
                                        json={"files": [{"path": "a.txt", "size": 1, "sample": ""}]}, headers=h),
    "commit": _commit,
    "lfs": lambda c, m, h: c.post(f"/{m}.git/info/lfs/objects/batch", headers=h,
                                  json={"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}),
    "settings": lambda c, m, h: c.put(f"/api/models/{m}/settings", json={"visibility": "public"}, headers=h),
    "xet-write-token": lambda c, m, h: c.get(f"/api/models/{m}/xet-write-token/main", headers=h),
    "xet-read-token": lambda c, m, h: c.get(f"/api/models/{m}/xet-read-token/main", headers=h),
    "delete": lambda c, m, h: c.request("DELETE", "/api/repos/delete", json=_repo_body(m), headers=h),
    "create": lambda c, m, h: c.post("/api/repos/create", json=_repo_body(m), headers=h),
}


def same_answer(secret: httpx.Response, missing: httpx.Response, secret_id: str, missing_id: str) -> None:
    assert secret.status_code == missing.status_code and secret.status_code in (400, 401, 403, 404), secret.text
    assert secret.content.replace(secret_id.encode(), missing_id.encode()) == missing.content
    strip = lambda r: {k: v for k, v in r.headers.items() if k not in VOLATILE}  # noqa: E731
    assert strip(secret) == strip(missing)


@pytest.fixture(scope="module")
def empty_secret(server, people):
    HfApi(endpoint=server.url, token=people["owner"]).create_repo("hubsec/empty-secret", private=True)
    return "hubsec/empty-secret"


@pytest.mark.parametrize("route", sorted(HUB_ROUTES))
@pytest.mark.parametrize("who", ["anonymous", "other", "reader"])
def test_a_private_repo_with_no_files_is_a_missing_one_on_every_route(server, http, people, empty_secret, route,
                                                                      who):
    call = HUB_ROUTES[route]
    secret = call(http, empty_secret, auth(people[who]))
    missing = call(http, "hubsec/never-made", auth(people[who]))
    same_answer(secret, missing, "empty-secret", "never-made")
    listed = http.get("/api/models", params={"author": "hubsec"}, headers=auth(people[who])).json()
    assert empty_secret not in [m["id"] for m in listed]
    assert http.get(f"/api/models/{empty_secret}", headers=auth(people["owner"])).status_code == 200


ALIASES = ["{}%0A", "{}%0a", "{}%20", "{}%00", "{}/", "{}%0A%0A", "{}%09"]
ALIAS_ROUTES = {
    "inference": lambda c, p, h: c.post(f"/models/{p}", json={"inputs": "x"}, headers=h),
    "pipeline": lambda c, p, h: c.post(f"/models/{p}/pipeline/text-classification", json={"inputs": "x"}, headers=h),
    "info": lambda c, p, h: c.get(f"/models/{p}/info", headers=h),
    "status": lambda c, p, h: c.get(f"/status/{p}", headers=h),
    "model-info": lambda c, p, h: c.get(f"/api/models/{p}", headers=h),
    "patch": lambda c, p, h: c.patch(f"/api/models/{p}", json={"private": False}, headers=h),
    "delete": lambda c, p, h: c.delete(f"/api/models/{p}", headers=h),
}


@pytest.fixture(scope="module")
def secret_model(server):
    server.copy_model("tiny/bert-sentiment", "hubsec/secret")
    AuthStore(server.auth_db).set_private("hubsec/secret", True)
    return "hubsec/secret"


@pytest.mark.parametrize("route", sorted(ALIAS_ROUTES))
@pytest.mark.parametrize("alias", ALIASES + ["HUBSEC/secret", "hubsec/SECRET"])
def test_aliases_of_a_private_id_answer_as_a_missing_id(server, people, secret_model, route, alias):
    call = ALIAS_ROUTES[route]
    secret_alias = alias.format(secret_model) if "{}" in alias else alias
    name, other = ("SECRET", "NOSUCH") if "SECRET" in alias else ("secret", "nosuch")
    with httpx.Client(base_url=server.url, timeout=60) as client:  # the raw URL, as an attacker sends it
        for who in ("anonymous", "other"):
            secret = call(client, secret_alias, auth(people[who]))
            missing = call(client, secret_alias.replace(name, other), auth(people[who]))
            same_answer(secret, missing, name, other)


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%00", "%20"])
def test_an_id_with_a_trailing_character_is_not_the_model(http, tiny_models, suffix):
    model = tiny_models["fill-mask"]
    resp = http.post(f"/models/{model}{suffix}", json={"inputs": "Paris is the [MASK] of France."})
    assert resp.status_code == 400, resp.text
    assert http.get(f"/{model}/resolve/main/config.json{suffix}").status_code in (400, 404)
    assert http.post(f"/models/{model}", json={"inputs": "Paris is the [MASK] of France."}).status_code == 200


# -- over-long paths ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def writable(server, people):
    api = HfApi(endpoint=server.url, token=people["owner"])
    api.create_repo("hubsec/paths")
    api.upload_folder(repo_id="hubsec/paths", folder_path=str(server.store / "tiny" / "bert-sentiment"))
    return "hubsec/paths"


LONG = "n" * 256


@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_over_long_names_are_a_400_on_every_route_that_takes_a_path(http, people, writable, who):
    h = auth(people[who])
    answers = {
        "resolve": http.get(f"/{writable}/resolve/main/{LONG}", headers=h),
        "resolve-deep": http.get(f"/{writable}/resolve/main/{'a/' * 600}x", headers=h),
        "tree": http.get(f"/api/models/{writable}/tree/main/{LONG}", headers=h),
        "paths-info": http.post(f"/api/models/{writable}/paths-info/main", data={"paths": [LONG]}, headers=h),
    }
    if who == "owner":
        answers["preupload"] = http.post(f"/api/models/{writable}/preupload/main", headers=h,
                                         json={"files": [{"path": f"d/{LONG}", "size": 1, "sample": ""}]})
        answers["commit"] = _commit(http, writable, h, [{"key": "file", "value": {
            "path": LONG, "encoding": "base64", "content": "eA=="}}])
        answers["commit-delete"] = _commit(http, writable, h, [{"key": "deletedFile", "value": {"path": LONG}}])
    for route, resp in answers.items():
        assert resp.status_code == 400, (route, resp.status_code, resp.text[:300])
        assert "limits.max_path" in resp.json()["error"], (route, resp.text[:300])


def test_a_commit_of_huge_paths_is_refused_at_its_first_line(http, people, writable):
    h = {**auth(people["owner"]), "content-type": "application/x-ndjson"}
    header = orjson.dumps({"key": "header", "value": {"summary": "x"}})
    huge = orjson.dumps({"key": "file", "value": {"path": "p" * 10_000_000, "encoding": "base64", "content": "eA=="}})

    def body():
        yield header + b"\n"
        for _ in range(30):
            yield huge + b"\n"

    started = time.monotonic()
    resp = http.post(f"/api/models/{writable}/commit/main", content=body(), headers=h)
    assert resp.status_code == 400 and "limits.max_path_bytes" in resp.json()["error"], resp.text[:300]
    assert time.monotonic() - started < 60
    assert http.get("/health").status_code == 200


def test_an_archive_with_an_over_long_name_is_a_400(http, people, server):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"{LONG}.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    resp = http.post("/api/models/hubsec/long-archive", content=buf.getvalue(), headers=auth(people["owner"]))
    assert resp.status_code == 400 and "limits.max_path_part_bytes" in resp.json()["error"], resp.text


# -- a commit's staging -------------------------------------------------------------------------

def test_a_commit_that_repeats_a_path_keeps_every_file_its_own_bytes(http, people, writable, server):
    h = auth(people["owner"])

    def inline(path, content):
        return {"key": "file", "value": {"path": path, "encoding": "base64",
                                         "content": base64.b64encode(content).decode()}}

    resp = _commit(http, writable, h, [inline("a.txt", b"a first"), inline("a.txt", b"a second"),
                                       inline("b.txt", b"b's own bytes"), inline("c.txt", b"gone"),
                                       {"key": "deletedFile", "value": {"path": "c.txt"}}])
    assert resp.status_code == 200, resp.text
    assert http.get(f"/{writable}/resolve/main/a.txt", headers=h).content == b"a second"
    assert http.get(f"/{writable}/resolve/main/b.txt", headers=h).content == b"b's own bytes"
    assert http.get(f"/{writable}/resolve/main/c.txt", headers=h).status_code == 404


# -- LFS quotas ---------------------------------------------------------------------------------

def test_lfs_batches_past_a_tokens_quota_are_refused(http, server, people):
    store = AuthStore(server.auth_db)
    token = store.create_token("hslfs", role="write", org="hubsec-lfs")[1]
    HfApi(endpoint=server.url, token=token).create_repo("hubsec-lfs/quota")
    url, h = "/hubsec-lfs/quota.git/info/lfs/objects/batch", auth(token)
    giant = 20 * 1024**3  # limits.max_upload_bytes of the test graph
    flood = [{"oid": f"{i:064x}", "size": giant} for i in range(1000)]
    refused = http.post(url, headers=h, json={"operation": "upload", "objects": flood})
    assert refused.status_code == 413, refused.text[:300]
    assert "limits.max_lfs_bytes_in_flight" in refused.json()["message"]
    one = http.post(url, headers=h, json={"operation": "upload", "objects": flood[:1]})
    assert one.status_code == 200 and one.json()["objects"][0]["actions"]["upload"]["href"]
    again = http.post(url, headers=h, json={"operation": "upload", "objects": flood[1:3]})
    assert again.status_code == 413  # 60 GiB in flight would pass the 40 GiB quota
    other = HfApi(endpoint=server.url, token=people["owner"])
    other.create_repo("hubsec/quota-other", exist_ok=True)
    theirs = http.post("/hubsec/quota-other.git/info/lfs/objects/batch", headers=auth(people["owner"]),
                       json={"operation": "upload", "objects": flood[1:2]})
    assert theirs.status_code == 200, theirs.text[:300]  # another token has its own quota
    assert json.loads(theirs.text)["objects"][0]["actions"]
