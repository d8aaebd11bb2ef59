"""Raw HTTP: every request form, shape rule and error of the wire contract."""

import json
import shutil
import threading

import numpy as np
import pytest

JSON_CT = "application/json"


def post(http, path, body=None, *, raw=None, headers=None, params=None):
    if raw is not None:
        return http.post(path, content=raw, headers=headers or {}, params=params)
    return http.post(path, json=body, headers=headers or {}, params=params)


def ok(resp):
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(JSON_CT)
    return resp.json()


def fail(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(JSON_CT)
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


@pytest.fixture(scope="module")
def url(tiny_models):
    return lambda task: f"/models/{tiny_models[task]}"


# -- checklist 3: the same answer for every text form -------------------------------

def test_text_forms_give_the_same_answer(http, url):
    path = url("text-classification")
    answers = [
        ok(post(http, path, raw=b"I love you", headers={"content-type": "text/plain"})),
        ok(post(http, path, raw=b"I love you")),
        ok(post(http, path, "I love you")),
        ok(post(http, path, {"inputs": "I love you"})),
        ok(post(http, path, {"inputs": "I love you", "parameters": {}})),
    ]
    assert all(a == answers[0] for a in answers)


# -- checklist 4 ------------------------------------------------------------------

def test_text_classification_shapes(http, url):
    path = url("text-classification")
    one = ok(post(http, path, {"inputs": "great"}))
    assert len(one) == 1 and {r["label"] for r in one[0]} == {"POSITIVE", "NEGATIVE"}
    assert one[0][0]["score"] >= one[0][1]["score"]
    many = ok(post(http, path, {"inputs": ["a", "b", "c"]}))
    assert len(many) == 3 and all(len(row) == 2 for row in many)
    top = ok(post(http, path, {"inputs": "great", "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}}))
    assert len(top[0]) == 1 and top[0][0]["score"] != one[0][0]["score"]
    pair = ok(post(http, path, {"inputs": {"text": "a question", "text_pair": "an answer"}}))
    assert len(pair[0]) == 2


# -- checklist 5 ------------------------------------------------------------------

def test_token_classification_defaults_to_simple(http, url):
    out = ok(post(http, url("token-classification"), {"inputs": "My name is Sarah and I live in Paris"}))
    assert out and all(set(e) == {"entity_group", "score", "word", "start", "end"} for e in out)
    none = ok(post(http, url("token-classification"),
                   {"inputs": "My name is Sarah", "parameters": {"aggregation_strategy": "none"}}))
    assert all("entity" in e and "index" in e for e in none)


# -- checklist 6 ------------------------------------------------------------------

def test_zero_shot_shapes_and_errors(http, url):
    path = url("zero-shot-classification")
    body = {"inputs": "I love it", "parameters": {"candidate_labels": "positive, negative"}}
    legacy = ok(post(http, path, body, headers={"user-agent": "huggingface_hub/0.36.2; hf_hub/0.36.2; python/3.11"}))
    assert set(legacy) == {"sequence", "labels", "scores"} and sorted(legacy["labels"]) == ["negative", "positive"]
    current = ok(post(http, path, body, headers={"user-agent": "huggingface_hub/1.3.0; hf_hub/1.3.0"}))
    assert [set(r) for r in current] == [{"label", "score"}] * 2
    assert [r["label"] for r in current] == legacy["labels"]
    err = fail(post(http, path, {"inputs": "I love it"}), 400)
    assert "candidate_labels" in err["error"] and err["errors"]


# -- checklist 7 ------------------------------------------------------------------

def test_question_answering_forms(http, url):
    path = url("question-answering")
    one = ok(post(http, path, {"inputs": {"question": "Where?", "context": "I live in Berlin"}}))
    assert set(one) == {"score", "start", "end", "answer"}
    top_level = ok(post(http, path, {"question": "Where?", "context": "I live in Berlin"}))
    assert top_level == one
    many = ok(post(http, path, {"inputs": {"question": "Where?", "context": "I live in Berlin"},
                                "parameters": {"top_k": 2}}))
    assert isinstance(many, list) and len(many) == 2
    fail(post(http, path, {"inputs": {"question": "Where?"}}), 400)


# -- checklist 8 ------------------------------------------------------------------

@pytest.mark.parametrize("task,key", [("summarization", "summary_text"), ("translation", "translation_text"),
                                      ("text2text-generation", "generated_text"),
                                      ("text-generation", "generated_text")])
def test_generation_tasks_answer_lists(http, url, task, key):
    out = ok(post(http, url(task), {"inputs": "hello world", "parameters": {"max_new_tokens": 3}}))
    assert isinstance(out, list) and len(out) == 1 and set(out[0]) == {key}
    two = ok(post(http, url(task), {"inputs": ["hello", "world"], "parameters": {"max_new_tokens": 2}}))
    assert len(two) == 2


def test_fill_mask_shape_and_missing_mask(http, url):
    out = ok(post(http, url("fill-mask"), {"inputs": "Paris is the [MASK] of France.", "parameters": {"top_k": 3}}))
    assert len(out) == 3 and all(set(r) == {"score", "token", "token_str", "sequence"} for r in out)
    err = fail(post(http, url("fill-mask"), {"inputs": "no mask"}), 400)
    assert "mask_token" in err["error"]


# -- checklist 9 ------------------------------------------------------------------

def test_feature_extraction_rank_rules(http, url, tiny_models):
    st = url("sentence-similarity")
    one = ok(post(http, st, {"inputs": "hello world"}))
    assert len(one) == 32 and isinstance(one[0], float)
    many = ok(post(http, f"/pipeline/feature-extraction/{tiny_models['sentence-similarity']}", {"inputs": ["a", "b"]}))
    assert len(many) == 2 and len(many[0]) == 32
    raw = ok(post(http, st + "/pipeline/feature-extraction", {"inputs": "hello world", "normalize": False}))
    assert abs(sum(x * x for x in raw) - 1) > 1e-3 and abs(sum(x * x for x in one) - 1) < 1e-4
    via_params = ok(post(http, st, {"inputs": "hello world", "parameters": {"normalize": False}}))
    assert via_params == pytest.approx(raw, abs=1e-6)
    cut = ok(post(http, st, {"inputs": "hello world", "dimensions": 8}))
    assert len(cut) == 8
    long_text = " ".join(["word"] * 300)
    assert len(ok(post(http, st, {"inputs": long_text}))) == 32
    err = fail(post(http, st, {"inputs": long_text, "truncate": False}), 400)
    assert "truncate" in err["error"]
    tokens = ok(post(http, url("feature-extraction"), {"inputs": "hello world"}))
    assert len(tokens) == 1 and len(tokens[0]) >= 3 and len(tokens[0][0]) == 32


def test_sentence_similarity_forms(http, url, tiny_models):
    body = {"source_sentence": "a man eats", "sentences": ["a man eats food", "a horse"]}
    nested = ok(post(http, url("sentence-similarity"), {"inputs": body}))
    top = ok(post(http, f"/models/{tiny_models['sentence-similarity']}/pipeline/sentence-similarity",
                  {"inputs": None, **body}))
    assert nested == pytest.approx(top) and len(nested) == 2


# -- checklist 11: headers on every answer ---------------------------------------------

def test_compute_headers(http, url):
    resp = post(http, url("text-classification"), {"inputs": "headers"}, headers={"x-request-id": "my-id-1",
                                                                              "x-use-cache": "false"})
    ok(resp)
    assert resp.headers["x-compute-type"] == "cpu"
    assert float(resp.headers["x-compute-time"]) > 0
    assert resp.headers["x-compute-characters"] == "7"
    assert len(resp.headers["x-sha"]) == 40
    assert resp.headers["x-request-id"] == "my-id-1"
    assert "x-compute-type" in resp.headers["access-control-expose-headers"]
    assert post(http, url("fill-mask"), raw=b"a [MASK]").headers["x-request-id"]


def test_cors_preflight(http, url):
    resp = http.options(url("text-classification"), headers={
        "origin": "http://example.test", "access-control-request-method": "POST"})
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] in ("*", "http://example.test")


# -- checklist 14 -----------------------------------------------------------------

def test_unknown_generate_kwarg_gives_the_client_message(http, url):
    err = fail(post(http, url("text-generation"), {"inputs": "hi", "parameters": {"foo": 1}}), 400)
    assert err["error"] == ("The following `model_kwargs` are not used by the model: ['foo'] "
                            "(note: typos in the generate arguments will also show up in this list)")
    fail(post(http, url("summarization"), {"inputs": "hi", "parameters": {"bogus_arg": 1}}), 400)


# -- checklist 15 and section 6: errors -----------------------------------------------

def test_validation_errors_are_one_string_plus_a_list(http, url):
    err = fail(post(http, url("text-classification"), {"inputs": "a", "parameters": {"top_k": 0, "function_to_apply": 2}}), 400)
    assert "top_k" in err["error"] and "function_to_apply" in err["error"] and len(err["errors"]) == 2


def test_bad_bodies(http, url):
    path = url("text-classification")
    err = fail(post(http, path, raw=b"\xc3\x28"), 400)
    assert err["error"].startswith("'utf-8' codec can't decode byte 0xc3 in position 0")
    fail(post(http, path, raw=b""), 400)
    fail(post(http, path, raw=b'{"inputs": ', headers={"content-type": "application/json"}), 400)
    fail(post(http, path, raw=b"null"), 400)


def test_unknown_models_routes_and_ids(http):
    assert fail(post(http, "/models/nobody/nothing", "hi"), 404)["error"] == "Model nobody/nothing does not exist"
    fail(post(http, "/pipeline/no-such-task/tiny/bert-mlm", "hi"), 404)
    fail(http.get("/no/such/route"), 404)
    fail(post(http, "/models/..%2F..%2Fetc%2Fpasswd", "hi"), 400)
    fail(post(http, "/models/a%5Cb", "hi"), 400)
    fail(post(http, "/models/a/b/c", "hi"), 400)


def test_task_override_needs_matching_weights(http, tiny_models):
    err = fail(post(http, f"/pipeline/text-classification/{tiny_models['fill-mask']}", "hi"), 400)
    assert "Task not found for this model" in err["error"]


def test_body_too_large(http, url):
    fail(post(http, url("text-classification"), raw=b"x" * 2_000_001), 413)


# -- routes --------------------------------------------------------------------------

def test_health_models_docs_info(http, tiny_models):
    assert ok(http.get("/health")) == {"status": "ok"}
    listed = {m["model_id"]: m["task"] for m in ok(http.get("/models"))}
    assert all(listed[model_id] == task for task, model_id in tiny_models.items())
    assert listed["sentence-transformers/all-MiniLM-L6-v2"] == "sentence-similarity"
    assert http.get("/docs").status_code == 200
    assert "/models/{model_id}" in http.get("/openapi.json").json()["paths"]
    info = ok(http.get(f"/models/{tiny_models['fill-mask']}/info"))
    assert info["model_id"] == tiny_models["fill-mask"] and len(info["model_sha"]) == 40


def test_completions_route(http, tiny_models):
    for task in ("text-generation", "text2text-generation"):
        body = {"model": "http://any/url", "prompt": "hello", "max_tokens": 3}
        out = ok(post(http, f"/models/{tiny_models[task]}/v1/completions", body))
        assert out["object"] == "text_completion" and isinstance(out["choices"][0]["text"], str)
        assert out["model"] == "http://any/url"
    err = fail(post(http, f"/models/{tiny_models['fill-mask']}/v1/completions", {"prompt": "x"}), 400)
    assert "text-generation" in err["error"]
    fail(post(http, f"/models/{tiny_models['text-generation']}/v1/completions", {"max_tokens": 3}), 400)


# -- serverless store ------------------------------------------------------------------

def test_model_copied_in_after_start_is_served(http, server, tiny_models):
    source = server.store / tiny_models["text-classification"]
    target = server.store / "late" / "arrival"
    assert post(http, "/models/late/arrival", "hi").status_code == 404
    shutil.copytree(source, target)
    out = ok(post(http, "/models/late/arrival", "hi"))
    assert {r["label"] for r in out[0]} == {"POSITIVE", "NEGATIVE"}


def test_concurrent_requests_of_two_models_of_one_task(server, tiny_models):
    import httpx

    results = {}

    def call(i, model_id):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            results[i] = (model_id, c.post(f"/pipeline/feature-extraction/{model_id}", json={"inputs": f"text {i}"}))

    ids = [tiny_models["feature-extraction"], tiny_models["sentence-similarity"]]
    threads = [threading.Thread(target=call, args=(i, ids[i % 2])) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for model_id, resp in results.values():
        body = ok(resp)
        depth = 3 if model_id == ids[0] else 1
        node = body
        for _ in range(depth - 1):
            node = node[0]
        assert isinstance(node[0], float), (model_id, json.dumps(body)[:80])


def test_stream_is_server_sent_events(http, url):
    with http.stream("POST", url("text-generation"), json={"inputs": "hi", "parameters": {"max_new_tokens": 3},
                                                              "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-compute-type"] == "cpu"
        lines = [line for line in resp.iter_lines() if line]
    events = [json.loads(line[len("data:"):]) for line in lines]
    assert all(line.startswith("data:") for line in lines)
    assert events[-1]["details"]["generated_tokens"] == len(events)
    err = fail(post(http, url("text-generation"), {"inputs": ["a", "b"], "stream": True}), 400)
    assert "one prompt" in err["error"]


def test_chat_routes_and_errors(http, server, tiny_models):
    messages = [{"role": "user", "content": "hello"}]
    out = ok(post(http, "/v1/chat/completions", {"model": tiny_models["text-generation"], "messages": messages,
                                                "max_tokens": 3}))
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["role"] == "assistant"
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    err = fail(post(http, f"/models/{tiny_models['fill-mask']}/v1/chat/completions", {"messages": messages}), 400)
    assert "text-generation" in err["error"]
    plain = server.store / "tiny" / "gpt2-no-template"
    if not plain.exists():
        shutil.copytree(server.store / tiny_models["text-generation"], plain)
        for f in plain.glob("chat_template*"):
            f.unlink()
        config = json.loads((plain / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (plain / "tokenizer_config.json").write_text(json.dumps(config))
    err = fail(post(http, "/models/tiny/gpt2-no-template/v1/chat/completions", {"messages": messages}), 400)
    assert "chat template" in err["error"]
    fail(post(http, "/v1/chat/completions", {"messages": messages}), 400)
    with http.stream("POST", f"/models/{tiny_models['text-generation']}/v1/chat/completions",
                     json={"messages": messages, "max_tokens": 3, "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][len("data: "):])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_single_segment_legacy_ids(http, server, tiny_models):
    target = server.store / "legacy-classifier"
    if not target.exists():
        shutil.copytree(server.store / tiny_models["text-classification"], target)
    assert len(ok(post(http, "/models/legacy-classifier", "hello"))[0]) == 2
    assert len(ok(post(http, "/pipeline/text-classification/legacy-classifier", "hello"))[0]) == 2


def test_optimized_backends_answer_like_torch(http, tiny_models):
    body = {"inputs": "I love this", "options": {"use_cache": False}}
    torch_out = ok(post(http, url_of(tiny_models["text-classification"]), body))
    resp = post(http, "/models/optimized/sentiment", body)
    assert ok(resp)[0][0]["label"] == torch_out[0][0]["label"]
    assert abs(ok(resp)[0][0]["score"] - torch_out[0][0]["score"]) < 1e-4
    assert resp.headers["x-compute-type"] == "cpu+optimized"
    sim = post(http, "/models/optimized/sentence-int8", {"inputs": {"source_sentence": "a", "sentences": ["a", "b"]}})
    assert sim.headers["x-compute-type"] == "cpu+optimized" and ok(sim)[0] > 0.99
    gen = post(http, "/models/optimized/gpt2-auto", {"inputs": "hello", "parameters": {"max_new_tokens": 3}})
    assert gen.headers["x-compute-type"] == "cpu+optimized"
    assert ok(gen) == ok(post(http, url_of(tiny_models["text-generation"]),
                              {"inputs": "hello", "parameters": {"max_new_tokens": 3}}))


def url_of(model_id: str) -> str:
    return f"/models/{model_id}"


def test_read_routes_answer_404_for_unknown_models(http):
    for path in ("/status/nobody/nothing", "/models/nobody/nothing/info"):
        assert fail(http.get(path), 404)["error"] == "Model nobody/nothing does not exist"
    fail(http.get("/status/a%5Cb"), 400)


# -- feature-extraction runs inline in the ingress (one hop) ---------------------------

def held_by_the_task_deployment(task: str, revision_id: str) -> bool:
    from ray import serve

    handle = serve.get_deployment_handle(task, app_name="hubserve").options(multiplexed_model_id=revision_id)
    return handle.model_status.remote(revision_id).result(timeout_s=60)["loaded"]


def test_an_onnx_embedding_model_runs_in_the_ingress(http):
    model_id = "optimized/sentence-int8"
    body = {"inputs": ["a first sentence", "another one"], "options": {"use_cache": False}}
    answers = [post(http, path, body) for path in (f"/pipeline/feature-extraction/{model_id}",
                                                   f"/models/{model_id}/pipeline/feature-extraction")]
    pairs = list(zip(*[ok(a) for a in answers], strict=True))
    assert len(pairs) == 2 and all(np.allclose(a, b, atol=1e-6) for a, b in pairs)
    for resp in answers:
        assert resp.headers["x-compute-type"] == "cpu+optimized"
        assert len(resp.headers["x-sha"]) == 40 and resp.headers["x-compute-characters"] == "27"
    sha = answers[0].headers["x-sha"]
    assert not held_by_the_task_deployment("feature-extraction", f"{model_id}@{sha}")
    status = http.get(f"/status/{model_id}").json()
    assert status["loaded"] is True and status["state"] == "Loaded"


def test_an_inline_task_sends_a_model_that_needs_torch_to_its_deployment(http, tiny_models):
    model_id = tiny_models["feature-extraction"]  # the test graph's default backend is torch
    body = {"inputs": ["a first sentence", "another one"], "options": {"use_cache": False}}
    direct = post(http, f"/pipeline/feature-extraction/{model_id}", body)
    via_model = post(http, f"/models/{model_id}/pipeline/feature-extraction", body)
    pairs = list(zip(ok(direct), ok(via_model), strict=True))
    assert len(pairs) == 2 and all(np.allclose(a, b, atol=1e-6) for a, b in pairs)
    assert direct.headers["x-compute-type"] == via_model.headers["x-compute-type"] == "cpu"
    assert held_by_the_task_deployment("feature-extraction", f"{model_id}@{direct.headers['x-sha']}")
    status = http.get(f"/status/{model_id}").json()
    assert status["loaded"] is True and status["state"] == "Loaded"


def test_the_pipeline_route_maps_errors_and_cors(http, tiny_models):
    model_id = tiny_models["sentence-similarity"]
    missing = fail(post(http, "/pipeline/feature-extraction/nobody/nothing", {"inputs": "x"}), 404)
    assert missing == fail(post(http, "/models/nobody/nothing/pipeline/feature-extraction", {"inputs": "x"}), 404)
    assert "nobody/nothing" in missing["error"]
    assert "empty" in fail(post(http, "/pipeline/feature-extraction/", {"inputs": "x"}), 400)["error"]
    fail(http.get(f"/pipeline/feature-extraction/{model_id}"), 405)
    fail(post(http, f"/pipeline/feature-extraction/{model_id}", raw=b'{"inputs": ', headers={"content-type": JSON_CT}), 400)
    fail(post(http, f"/pipeline/feature-extraction/{model_id}", {"input": "x"}), 400)
    fail(post(http, f"/pipeline/feature-extraction/{model_id}", raw=b"x" * 2_100_000), 413)
    preflight = http.options(f"/pipeline/feature-extraction/{model_id}",
                             headers={"origin": "http://app.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
    answer = post(http, f"/pipeline/feature-extraction/{model_id}", {"inputs": "x"},
                  headers={"origin": "http://app.example"})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "x-compute-type" in answer.headers["access-control-expose-headers"]


def test_feature_extraction_of_an_encoder_decoder_model(http, tiny_models):
    # its tokenizer adds token_type_ids, which BART's forward does not take
    tokens = ok(post(http, f"/models/{tiny_models['text2text-generation']}/pipeline/feature-extraction",
                     {"inputs": "hello world"}))
    assert len(tokens) == 1 and len(tokens[0][0]) == 32
