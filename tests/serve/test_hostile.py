"""The requests an attacker would send, against the real graph: code execution through
generate(), replica exhaustion, hostile model files, and private models seen from outside."""

import io
import json
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hubserve.tokens.auth import AuthStore
from tests.conftest import auth

VOLATILE = {"date", "x-request-id", "x-compute-time"}


def strip(resp):
    return resp.status_code, resp.content, {k: v for k, v in resp.headers.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def people(server):
    store = AuthStore(server.auth_db)
    server.copy_model("tiny/bert-sentiment", "hostile/secret")
    store.set_private("hostile/secret", True)
    return {
        "owner": store.create_token("henry", role="write", org="hostile")[1],
        "other": store.create_token("ivan", role="write")[1],
        "reader": store.create_token("judy", role="read")[1],
        "anonymous": None,
    }


@pytest.fixture(scope="module")
def evil_folder(tmp_path_factory):
    """A folder whose custom_generate/generate.py writes a marker file when imported."""
    root = tmp_path_factory.mktemp("evil")
    marker = root / "PWNED"
    code = root / "custom_generate"
    code.mkdir()
    (code / "generate.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "def generate(model, *args, **kwargs):\n    return model.generate(*args, **kwargs)\n")
    return root, marker


@pytest.mark.parametrize("task", ["text-generation", "text2text-generation", "summarization"])
def test_custom_generate_never_runs(http, tiny_models, evil_folder, task):
    folder, marker = evil_folder
    url = f"/models/{tiny_models[task]}"
    attacks = [
        {"custom_generate": str(folder), "trust_remote_code": True},
        {"custom_generate": str(folder)},
        {"penalty_alpha": 0.6, "top_k": 4, "trust_remote_code": True},
        {"generate_parameters": {"custom_generate": str(folder), "trust_remote_code": True}},
        {"generate_parameters": {"num_beam_groups": 2, "num_beams": 2}},
    ]
    for params in attacks:
        resp = http.post(url, json={"inputs": "x", "parameters": params})
        assert resp.status_code == 400, (params, resp.text)
        assert "The following `model_kwargs` are not used by the model" in resp.json()["error"]
    chat = http.post(f"/models/{tiny_models['text-generation']}/v1/chat/completions",
                     json={"messages": [{"role": "user", "content": "x"}], "custom_generate": str(folder),
                           "trust_remote_code": True, "max_tokens": 2})
    assert chat.status_code in (200, 400)  # OpenAI extras are ignored, never forwarded
    assert not marker.exists()


BOUNDS = [
    ("text-generation", {"inputs": "x", "parameters": {"num_beams": 100000}}, "num_beams"),
    ("text-generation", {"inputs": "x", "parameters": {"max_length": 10**9}}, "max_length"),
    ("text-generation", {"inputs": "x", "parameters": {"min_length": 10**6}}, "min_length"),
    ("text-generation", {"inputs": "x", "parameters": {"max_new_tokens": 5000}}, "max_new_tokens"),
    ("text-generation", {"inputs": "x", "parameters": {"stop": ["ab" * 100000]}}, "stop"),
    ("text-generation", {"inputs": "x", "parameters": {"stop": [str(i) for i in range(100)]}}, "stop"),
    ("text-generation", {"inputs": "x", "parameters": {"num_return_sequences": 1000, "do_sample": True}},
     "num_return_sequences"),
    ("text2text-generation", {"inputs": "x", "parameters": {"generate_parameters": {"max_length": 10**7}}},
     "max_length"),
    ("text2text-generation", {"inputs": "x", "parameters": {"generate_parameters": {"num_beams": 5000}}},
     "num_beams"),
    ("fill-mask", {"inputs": "a [MASK]", "parameters": {"top_k": 100000000}}, "top_k"),
    ("text-classification", {"inputs": "a", "parameters": {"top_k": 10**9}}, "top_k"),
    ("question-answering", {"inputs": {"question": "q", "context": "c"}, "parameters": {"doc_stride": 10**6}},
     "doc_stride"),
    ("question-answering", {"inputs": {"question": "q", "context": "c"}, "parameters": {"max_answer_len": 10**6}},
     "max_answer_len"),
    ("zero-shot-classification", {"inputs": "a", "parameters": {"candidate_labels": [str(i) for i in range(500)]}},
     "candidate_labels"),
]


@pytest.mark.parametrize("task,body,field", BOUNDS, ids=[f"{t}-{f}" for t, _, f in BOUNDS])
def test_each_bound_is_a_fast_400_and_the_next_request_works(http, tiny_models, task, body, field):
    start = time.perf_counter()
    resp = http.post(f"/models/{tiny_models[task]}", json=body)
    took = time.perf_counter() - start
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["error"] and "limits." in resp.json()["error"], resp.text
    assert took < 5, took
    good = {"fill-mask": {"inputs": "a [MASK]"},
            "question-answering": {"inputs": {"question": "q", "context": "c d"}},
            "zero-shot-classification": {"inputs": "a", "parameters": {"candidate_labels": ["x", "y"]}},
            }.get(task, {"inputs": "hello", "parameters": {"max_new_tokens": 2} if "generation" in task else {}})
    assert http.post(f"/models/{tiny_models[task]}", json=good).status_code == 200


def test_one_bad_request_never_fails_its_batch(server, tiny_models):
    url = f"{server.url}/models/{tiny_models['fill-mask']}"
    good = {"inputs": "Paris is the [MASK] of France.", "options": {"use_cache": False}}
    bad = {"inputs": "Paris is the [MASK] of France.", "parameters": {"top_k": 100000000}}
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(11) as pool:
        futures = [pool.submit(client.post, url, json=good) for _ in range(5)]
        futures.append(pool.submit(client.post, url, json=bad))
        futures += [pool.submit(client.post, url, json=good) for _ in range(5)]
        codes = [f.result().status_code for f in futures]
    assert codes.count(200) == 10 and codes[5] == 400, codes


# -- model files --------------------------------------------------------------------

def tar_with(folder, extra):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name not in extra:
                tar.add(path, arcname=path.relative_to(folder).as_posix())
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def forbidden_files(folder):
    config = json.loads((folder / "config.json").read_text())
    return {
        "python": {"modeling_x.py": b"import os"},
        "custom-generate": {"custom_generate/generate.py": b"def generate(): ..."},
        "auto-map": {"config.json": json.dumps(dict(config, auto_map={"AutoModel": "x.M"})).encode()},
        "tokenizer-auto-map": {"tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["t.T", None]}}).encode()},
        "escaping-index": {"model.safetensors.index.json": json.dumps({"weight_map": {"w": "../../x"}}).encode()},
        "tokenizer-path": {"tokenizer_config.json": json.dumps({"vocab_file": "/etc/passwd"}).encode()},
        "modules-path": {"modules.json": json.dumps([{"idx": 0, "path": "/etc", "type": "x.Pooling"}]).encode()},
        "pickle": {"pytorch_model.bin": b"\x80\x04"},
    }


@pytest.mark.parametrize("kind", ["python", "custom-generate", "auto-map", "tokenizer-auto-map", "escaping-index",
                                  "tokenizer-path", "modules-path", "pickle"])
def test_uploads_with_forbidden_files_are_refused(http, people, server, kind):
    folder = server.store / "tiny" / "bert-sentiment"
    resp = http.post(f"/api/models/hostile/up-{kind}", content=tar_with(folder, forbidden_files(folder)[kind]),
                     headers=auth(people["owner"]))
    assert resp.status_code == 400 and "refused" in resp.json()["error"], resp.text
    assert not (server.store / "hostile" / f"up-{kind}").exists()


@pytest.mark.parametrize("kind", ["python", "auto-map", "tokenizer-path"])
def test_store_folders_with_forbidden_files_fail_to_load(http, server, kind):
    model_id = f"hostile/copied-{kind}"
    target = server.copy_model("tiny/bert-sentiment", model_id)
    for name, data in forbidden_files(target)[kind].items():
        (target / name).write_bytes(data)
    resp = http.post(f"/models/{model_id}", json={"inputs": "x"})
    assert resp.status_code == 403 and resp.json()["error_type"] == "load", resp.text
    assert "refused" in resp.json()["error"]
    assert http.get(f"/status/{model_id}").json()["state"] == "Error"


def test_a_folder_with_pickles_beside_safetensors_loads_only_the_safetensors(http, server):
    target = server.copy_model("tiny/bert-sentiment", "hostile/with-pickle")
    (target / "pytorch_model.bin").write_bytes(b"\x80\x04 not even a valid pickle")
    resp = http.post("/models/hostile/with-pickle", json={"inputs": "x"})
    assert resp.status_code == 200, resp.text


# -- private models -------------------------------------------------------------------

ROUTES = {
    "inference": lambda c, m, h: c.post(f"/models/{m}", json={"inputs": "x"}, headers=h),
    "pipeline": lambda c, m, h: c.post(f"/models/{m}/pipeline/text-classification", json={"inputs": "x"}, headers=h),
    "chat": lambda c, m, h: c.post("/v1/chat/completions", json={"model": m, "messages": []}, headers=h),
    "status": lambda c, m, h: c.get(f"/status/{m}", headers=h),
    "info": lambda c, m, h: c.get(f"/models/{m}/info", headers=h),
    "api-get": lambda c, m, h: c.get(f"/api/models/{m}", headers=h),
    "api-patch": lambda c, m, h: c.patch(f"/api/models/{m}", json={"private": False}, headers=h),
    "api-delete": lambda c, m, h: c.delete(f"/api/models/{m}", headers=h),
    "api-upload": lambda c, m, h: c.post(f"/api/models/{m}", content=b"x", headers=h),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("who", ["anonymous", "other", "reader"])
def test_a_private_model_is_a_missing_one_on_every_route(http, people, route, who):
    call = ROUTES[route]
    secret = call(http, "hostile/secret", auth(people[who]))
    missing = call(http, "hostile/nosuch", auth(people[who]))
    assert secret.status_code == missing.status_code and secret.status_code in (401, 403, 404), secret.text
    assert secret.content.replace(b"secret", b"nosuch") == missing.content
    assert strip(secret)[2] == strip(missing)[2]
    if not route.startswith("api-") or route == "api-get":
        assert call(http, "hostile/secret", auth(people["owner"])).status_code != 404


@pytest.mark.parametrize("alias", ["hostile--secret", "hostile/secret%0A", "HOSTILE/secret", "hostile/Secret",
                                   "hostile/secret/", "./hostile/secret"])
def test_aliases_of_a_private_id_are_not_the_model(http, people, alias):
    resp = http.post(f"/models/{alias}", json={"inputs": "x"})
    assert resp.status_code in (400, 404), resp.text
    assert "label" not in resp.text


def test_a_private_upload_is_never_visible_while_it_runs(server, people):
    folder = server.store / "tiny" / "bert-sentiment"
    data = tar_with(folder, {"README.md": b"padding " * 200_000})
    seen: list[int] = []
    done = threading.Event()

    def poll():
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not done.is_set():
                seen.append(client.post("/models/hostile/fresh", json={"inputs": "x"}).status_code)
                seen.append(client.get("/status/hostile/fresh").status_code)
                seen.append(client.get("/models/hostile/fresh/info").status_code)

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    [t.start() for t in pollers]
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for _ in range(2):  # a new model, then a replacement
                created = client.post("/api/models/hostile/fresh", content=data, params={"private": "true"},
                                      headers=auth(people["owner"]))
                assert created.status_code == 201, created.text
        time.sleep(0.5)
    finally:
        done.set()
        [t.join() for t in pollers]
    assert seen and 200 not in seen, sorted(set(seen))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/models/hostile/fresh", json={"inputs": "x"}, headers=auth(people["owner"])).status_code == 200

