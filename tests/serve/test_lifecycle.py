"""Cold start, wait_for_model, the response cache, status, memory-bounded multiplexing."""

import base64
import os
import threading
import time

import httpx
import pytest

from tests.media import tone
from tests.unit.test_media import png


@pytest.fixture(scope="module")
def legacy(server):
    with httpx.Client(base_url=server.legacy_url, timeout=120) as client:
        yield client


def cold_copy(server, tiny_models, task: str, name: str) -> str:
    """A new id holding a copy of the task's tiny model: nothing has loaded it yet."""
    model_id = f"cold/{name}"
    server.copy_model(tiny_models[task], model_id)
    return model_id


def wait_loaded(client, model_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/status/{model_id}").json()
        if status.get("loaded"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{model_id} did not load")


# -- cold start -----------------------------------------------------------------------

def test_default_waits_for_a_cold_model(http, server, tiny_models):
    model_id = cold_copy(server, tiny_models, "text-classification", "default-wait")
    assert http.get(f"/status/{model_id}").json()["state"] == "Loadable"
    resp = http.post(f"/models/{model_id}", json={"inputs": "hello"})
    assert resp.status_code == 200 and resp.headers["x-compute-type"] == "cpu"
    assert http.get(f"/status/{model_id}").json() == {
        "loaded": True, "state": "Loaded", "compute_type": "cpu", "framework": "transformers"}


NO_WAIT = [
    ("options-false", {"options": {"wait_for_model": False}}, {}),
    ("top-level-false", {"wait_for_model": False}, {}),
    ("header-false", {}, {"x-wait-for-model": "false"}),
    ("header-zero", {}, {"X-Wait-For-Model": "0"}),
    ("header-upper", {}, {"x-wait-for-model": "FALSE"}),
]


@pytest.mark.parametrize("name,extra,headers", NO_WAIT)
def test_each_no_wait_spelling_answers_503_with_an_estimate(http, server, tiny_models, name, extra, headers):
    model_id = cold_copy(server, tiny_models, "text-classification", f"nowait-{name}")
    resp = http.post(f"/models/{model_id}", json={"inputs": "hello", **extra}, headers=headers)
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["error"] == f"Model {model_id} is currently loading"
    assert isinstance(body["estimated_time"], float) and body["estimated_time"] > 0
    assert int(resp.headers["retry-after"]) >= 1
    wait_loaded(http, model_id)  # the 503 started the load
    assert http.post(f"/models/{model_id}", json={"inputs": "hello", **extra}, headers=headers).status_code == 200


def test_legacy_default_is_503_and_x_load_model_0_does_not_load(legacy, server, tiny_models):
    model_id = cold_copy(server, tiny_models, "text-classification", "legacy-default")
    resp = legacy.post(f"/models/{model_id}", json={"inputs": "hello"}, headers={"X-Load-Model": "0"})
    assert resp.status_code == 503
    time.sleep(1.0)
    assert legacy.get(f"/status/{model_id}").json()["loaded"] is False
    assert legacy.post(f"/models/{model_id}", json={"inputs": "hello"}).status_code == 503
    wait_loaded(legacy, model_id)
    assert legacy.post(f"/models/{model_id}", json={"inputs": "hello"}).status_code == 200


WAIT = [
    ("options-true", {"options": {"wait_for_model": True}}, {}),
    ("top-level-true", {"wait_for_model": True}, {}),
    ("header-true", {}, {"x-wait-for-model": "true"}),
    ("header-one", {}, {"X-wait-for-model": "1"}),
]


@pytest.mark.parametrize("name,extra,headers", WAIT)
def test_each_wait_spelling_blocks_and_answers(legacy, server, tiny_models, name, extra, headers):
    model_id = cold_copy(server, tiny_models, "text-classification", f"wait-{name}")
    resp = legacy.post(f"/models/{model_id}", json={"inputs": "hello", **extra}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()[0]) == 2


def test_twenty_concurrent_cold_requests_trigger_one_load(http, server, tiny_models):
    model_id = cold_copy(server, tiny_models, "text-classification", "stampede")
    results = []

    def call(i):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            results.append(c.post(f"/models/{model_id}", json={"inputs": f"text {i}"}).status_code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 20
    sha = http.post(f"/models/{model_id}", json={"inputs": "x"}).headers["x-sha"]
    assert server.replica_status("text-classification", f"{model_id}@{sha}")["loads"] == 1


def test_estimate_comes_from_the_measured_load_time(legacy, server, tiny_models):
    first = cold_copy(server, tiny_models, "fill-mask", "estimate-a")
    assert legacy.post(f"/models/{first}", json={"inputs": "a [MASK]", "wait_for_model": True}).status_code == 200
    second = cold_copy(server, tiny_models, "fill-mask", "estimate-b")
    estimate = legacy.post(f"/models/{second}", json={"inputs": "a [MASK]"}).json()["estimated_time"]
    # a tiny model loads in well under a second; the size-based prior before any load says ~1s
    assert 0 < estimate < 5


# -- the response cache -----------------------------------------------------------------

def test_identical_requests_are_served_from_the_cache(http, tiny_models):
    path = f"/models/{tiny_models['fill-mask']}"
    body = {"inputs": "The cache is the [MASK] of speed.", "parameters": {"top_k": 2}}
    first = http.post(path, json=body)
    second = http.post(path, json=body)
    assert second.headers["x-compute-type"] == "cache" and second.json() == first.json()
    assert second.headers["x-sha"] == first.headers["x-sha"]
    for bypass in ({"headers": {"x-use-cache": "false"}}, {"headers": {"X-Use-Cache": "false"}},
                   {"json": dict(body, options={"use_cache": False})}):
        resp = http.post(path, **({"json": body} | bypass))
        assert resp.headers["x-compute-type"] == "cpu" and resp.json() == first.json()
    other = http.post(path, json={"inputs": "The cache is the [MASK] of speed.", "parameters": {"top_k": 3}})
    assert other.headers["x-compute-type"] == "cpu"


def test_sampling_generation_is_never_cached(http, tiny_models):
    path = f"/models/{tiny_models['text-generation']}"
    sampled = {"inputs": "hello", "parameters": {"do_sample": True, "max_new_tokens": 3}}
    assert [http.post(path, json=sampled).headers["x-compute-type"] for _ in range(2)] == ["cpu", "cpu"]
    seeded = {"inputs": "hello", "parameters": {"do_sample": True, "seed": 1, "max_new_tokens": 3}}
    assert [http.post(path, json=seeded).headers["x-compute-type"] for _ in range(2)] == ["cpu", "cache"]


def test_a_changed_model_is_reloaded_and_not_served_from_cache(http, server, tiny_models):
    model_id = cold_copy(server, tiny_models, "text-classification", "changing")
    first = http.post(f"/models/{model_id}", json={"inputs": "same text"})
    weights = server.store / model_id / "model.safetensors"
    later = time.time() + 10
    os.utime(weights, (later, later))
    time.sleep(1.1)  # the store re-checks a model's files after its one-second cache
    second = http.post(f"/models/{model_id}", json={"inputs": "same text"})
    assert second.status_code == 200 and second.headers["x-compute-type"] == "cpu"
    assert second.headers["x-sha"] != first.headers["x-sha"]


# -- memory-bounded multiplexing ---------------------------------------------------------

def test_eviction_under_a_small_budget_and_reload(legacy, server, tiny_models):
    ids = [cold_copy(server, tiny_models, "fill-mask", f"evict-{i}") for i in range(3)]
    shas = []
    for model_id in ids:
        resp = legacy.post(f"/models/{model_id}", json={"inputs": "a [MASK]"},
                           headers={"x-wait-for-model": "1", "x-use-cache": "0"})
        assert resp.status_code == 200
        shas.append(resp.headers["x-sha"])
    revs = [f"{m}@{s}" for m, s in zip(ids, shas)]
    status = server.replica_status("fill-mask", revs[2], app="legacy")
    assert revs[0] not in status["models"] and revs[1] in status["models"] and revs[2] in status["models"]
    assert status["resident_bytes"] <= int((server.store / ids[0] / "model.safetensors").stat().st_size * 2.5)
    # the ingress loaded it once, but the replicas' view decides: evicted, so a no-wait call is a 503
    time.sleep(1.0)  # the replica reports its models every 0.1 s; Serve relays them to each ingress
    cold = legacy.post(f"/models/{ids[0]}", json={"inputs": "a [MASK]"},
                       headers={"x-wait-for-model": "0", "x-use-cache": "0"})
    assert cold.status_code == 503 and cold.json()["estimated_time"] > 0, cold.text
    again = legacy.post(f"/models/{ids[0]}", json={"inputs": "a [MASK]"},
                        headers={"x-wait-for-model": "1", "x-use-cache": "0"})
    assert again.status_code == 200
    assert server.replica_status("fill-mask", revs[0], app="legacy")["loads"] == 2


def test_a_model_over_the_budget_is_too_big(legacy, server):
    from transformers import BertConfig, BertForMaskedLM

    from tests.tiny_models import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer()
    folder = server.store / "big" / "mlm"
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    resp = legacy.post("/models/big/mlm", json={"inputs": "a [MASK]", "wait_for_model": True})
    assert resp.status_code == 403
    assert resp.json()["error"].startswith("The model big/mlm is too large to be loaded automatically (")
    assert legacy.get("/status/big/mlm").json()["state"] == "TooBig"


def test_a_failed_load_is_not_retried_during_its_back_off(legacy, server, tiny_models):
    model_id = cold_copy(server, tiny_models, "fill-mask", "corrupt")
    (server.store / model_id / "model.safetensors").write_bytes(b"garbage")
    for _ in range(3):
        resp = legacy.post(f"/models/{model_id}", json={"inputs": "a [MASK]", "wait_for_model": True})
        assert resp.status_code == 400 and "cannot be loaded by transformers" in resp.json()["error"]
    assert legacy.get(f"/status/{model_id}").json()["state"] == "Error"
    sha = legacy.get(f"/models/{model_id}/info").json()["model_sha"]
    assert server.replica_status("fill-mask", f"{model_id}@{sha}", app="legacy")["loads"] == 1
    ok = legacy.post(f"/models/{tiny_models['fill-mask']}", json={"inputs": "b [MASK]", "wait_for_model": True})
    assert ok.status_code == 200


# -- headers on every task -----------------------------------------------------------------

_TONE = base64.b64encode(tone(0.5)).decode()
BODIES = {
    "automatic-speech-recognition": {"inputs": _TONE},
    "audio-classification": {"inputs": _TONE},
    "question-answering": {"inputs": {"question": "Where?", "context": "I live in Berlin"}},
    "sentence-similarity": {"inputs": {"source_sentence": "a", "sentences": ["b"]}},
    "zero-shot-classification": {"inputs": "a", "parameters": {"candidate_labels": "x,y"}},
    "fill-mask": {"inputs": "a [MASK] b"},
    "image-classification": {"inputs": base64.b64encode(png()).decode()},
    "object-detection": {"inputs": base64.b64encode(png()).decode()},
    "image-segmentation": {"inputs": base64.b64encode(png()).decode()},
    "image-to-text": {"inputs": base64.b64encode(png()).decode()},
    "zero-shot-image-classification": {"inputs": base64.b64encode(png()).decode(),
                                       "parameters": {"candidate_labels": ["a", "b"]}},
    "visual-question-answering": {"inputs": {"image": base64.b64encode(png()).decode(), "question": "what?"}},
    "document-question-answering": {"inputs": {"image": base64.b64encode(png()).decode(), "question": "what?"},
                                    "parameters": {"word_boxes": [["total", [1, 2, 3, 4]]]}},
    "table-question-answering": {"inputs": {"query": "how many?", "table": {"a": ["1", "2"]}}},
    "text-to-image": {"inputs": "a cat", "parameters": {"num_inference_steps": 1}},
}


def test_compute_headers_on_every_task(http, tiny_models):
    for task, model_id in tiny_models.items():
        resp = http.post(f"/models/{model_id}", json=BODIES.get(task, {"inputs": "hello world"}))
        assert resp.status_code == 200, (task, resp.text)
        for header in ("x-compute-type", "x-compute-time", "x-compute-characters", "x-sha", "x-request-id",
                       "access-control-expose-headers"):
            assert resp.headers.get(header), (task, header)
        assert resp.headers["x-compute-type"] in ("cpu", "cpu+optimized", "cache")


def test_two_ingress_replicas_share_the_redis_cache(legacy, tiny_models):
    path = f"/models/{tiny_models['text-classification']}"
    body = {"inputs": "shared between ingress replicas", "wait_for_model": True}
    first = legacy.post(path, json=body)
    assert first.status_code == 200 and first.headers["x-compute-type"] == "cpu"
    # NOTE(hubserve): separate connections spread over both ingress replicas; all hit Redis.
    types = []
    for _ in range(8):
        with httpx.Client(base_url=legacy.base_url, timeout=60) as c:
            types.append(c.post(path, json=body).headers["x-compute-type"])
    assert types == ["cache"] * 8
