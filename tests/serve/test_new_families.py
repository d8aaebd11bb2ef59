"""The model families that exist only in transformers 5, served by the session's graph and
called through the real ``huggingface_hub.InferenceClient``: gte, nomic_bert and eurobert
encoders (embeddings, similarity, classification, NER, fill-mask), qwen3_5_text, gemma4_text
and ministral3 decoders (text generation, streams, chat completions on both routes, and
ministral3's question-answering head), and lasr_ctc speech recognition. A folder whose
``model_type`` this transformers does not know is a 400 that names it.

The models are written into the running graph's store at runtime (``tests.new_families``).
``x-compute-type`` is ``cpu`` for a model whose backend resolves to torch (the test graph's
default); where a config entry serves it on ``auto``/``onnx`` it may be ``cpu+optimized``. Each
model's compute type is written to the terminal at the end of the module.
"""

import json

import numpy as np
import pytest
import transformers
from huggingface_hub import InferenceClient

from tests.conftest import server_args
from tests.media import tone
from tests.new_families import (DECODERS, ENCODERS, NER, SAMPLE, SENTIMENT, SPEECH, SPEECH_CHARACTERS, ORG,
                                build_new_families, model_id)

NO_CACHE = {"x-use-cache": "false"}
#: model id -> the x-compute-type it answered with.
SEEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def families(server, request):
    """Every new-family model, written into the graph's store; reports the compute types seen."""
    built = build_new_families(server.store)
    yield built
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and SEEN:
        with capture.global_and_fixture_disabled():
            print("\nx-compute-type of the new families:")
            for mid, kind in sorted(SEEN.items()):
                print(f"  {mid}: {kind} (backend {configured_backend(server, mid.split('#')[0])})")


def client(server, mid: str) -> InferenceClient:
    return InferenceClient(model=server.model_url(mid), timeout=120, headers=NO_CACHE)


def configured_backend(server, mid: str) -> str:
    """The backend the test graph's config gives ``mid`` (its entry, the defaults, else torch)."""
    args = server_args(server.store)
    entry = args.get("models", {}).get(mid) or {}
    return entry.get("backend") or args.get("deployment_defaults", {}).get("backend") or "torch"


def check_compute(server, http, mid: str, body: dict, path: str = "", tag: str = "") -> dict | list:
    """Posts ``body`` to ``mid`` (uncached; to ``path`` if given), checks and records
    ``x-compute-type`` (under ``mid`` + ``tag``); returns the answer."""
    r = http.post(path or f"/models/{mid}", json=body, headers=NO_CACHE)
    assert r.status_code == 200, r.text
    kind = r.headers["x-compute-type"]
    SEEN[mid + tag] = kind
    if configured_backend(server, mid) == "torch":
        assert kind == "cpu", (mid, kind)
    else:
        assert kind in {"cpu", "cpu+optimized"}, (mid, kind)
    return r.json()


@pytest.mark.parametrize("family", ENCODERS)
def test_embeddings_and_similarity(server, http, families, family):
    mid = model_id(family, "sentence")
    c = client(server, mid)
    pooled = c.feature_extraction(SAMPLE)
    assert pooled.shape == (32,) and abs(np.linalg.norm(pooled) - 1) < 1e-4
    np.testing.assert_allclose(c.feature_extraction(SAMPLE), pooled, atol=1e-6)
    scores = c.sentence_similarity("A man is eating food.", ["A man is eating a piece of bread.",
                                                              "A man is riding a horse."])
    assert len(scores) == 2 and all(-1.0001 <= s <= 1.0001 for s in scores)
    same = c.sentence_similarity("A man is eating food.", ["A man is eating food."])
    assert abs(same[0] - 1) < 1e-4
    check_compute(server, http, mid, {"inputs": SAMPLE})


@pytest.mark.parametrize("family", ENCODERS)
def test_token_embeddings_of_a_plain_checkpoint(server, http, families, family):
    """feature-extraction of a checkpoint that is no sentence-transformers model: one vector per token."""
    mid = model_id(family, "mlm")
    url = f"{server.url}/pipeline/feature-extraction/{mid}"
    tokens = InferenceClient(model=url, timeout=120, headers=NO_CACHE).feature_extraction("hello world")
    assert tokens.ndim == 3 and tokens.shape[0] == 1 and tokens.shape[1] >= 3 and tokens.shape[2] == 32
    out = check_compute(server, http, mid, {"inputs": "hello world"}, f"/pipeline/feature-extraction/{mid}", "#fe")
    np.testing.assert_allclose(np.asarray(out), tokens, atol=1e-5)


@pytest.mark.parametrize("family", ENCODERS)
def test_text_classification(server, http, families, family):
    mid = model_id(family, "sentiment")
    c = client(server, mid)
    out = c.text_classification("I love this movie")
    assert sorted(o.label for o in out) == sorted(SENTIMENT)
    assert out[0].score >= out[1].score and abs(sum(o.score for o in out) - 1) < 1e-4
    assert len(c.text_classification("I love this movie", top_k=1)) == 1
    assert c.text_classification("I love this movie") == out
    check_compute(server, http, mid, {"inputs": "I love this movie"})


@pytest.mark.parametrize("family", ENCODERS)
def test_token_classification(server, http, families, family):
    mid = model_id(family, "ner")
    text = "My name is Sarah and I live in Paris"
    c = client(server, mid)
    out = c.token_classification(text)
    groups = {label.split("-", 1)[1] for label in NER if "-" in label}
    for o in out:
        assert o.entity_group in groups and isinstance(o.word, str) and 0 <= o.start < o.end <= len(text)
        assert o.word.replace(" ", "") in text.lower().replace(" ", "")
    assert c.token_classification(text) == out
    raw = check_compute(server, http, mid, {"inputs": text, "parameters": {"aggregation_strategy": "none"}})
    assert raw and all(o["entity"] in NER[1:] for o in raw)


@pytest.mark.parametrize("family", ENCODERS)
def test_fill_mask(server, http, families, family):
    mid = model_id(family, "mlm")
    c = client(server, mid)
    out = c.fill_mask("Paris is the [MASK] of France.")
    assert len(out) == 5 and all(isinstance(o.token, int) and "paris" in o.sequence for o in out)
    assert [o.score for o in out] == sorted((o.score for o in out), reverse=True)
    assert c.fill_mask("Paris is the [MASK] of France.") == out
    check_compute(server, http, mid, {"inputs": "Paris is the [MASK] of France."})


def test_question_answering_on_a_decoder_family_head(server, http, families):
    mid = model_id("ministral3", "qa")
    context = "I live in Berlin and work in Munich."
    c = client(server, mid)
    out = c.question_answering(question="Where do I live?", context=context)
    assert isinstance(out.answer, str) and 0 <= out.start <= out.end <= len(context)
    assert context[out.start:out.end] == out.answer and 0 <= out.score <= 1
    assert c.question_answering(question="Where do I live?", context=context) == out
    check_compute(server, http, mid, {"inputs": {"question": "Where do I live?", "context": context}})


@pytest.mark.parametrize("family", DECODERS)
def test_text_generation_and_its_stream(server, http, families, family):
    mid = model_id(family, "lm")
    c = client(server, mid)
    prompt = "The quick brown"
    text = c.text_generation(prompt, max_new_tokens=4)
    assert isinstance(text, str) and text.startswith(prompt)
    detailed = c.text_generation(prompt, max_new_tokens=4, details=True, return_full_text=False)
    assert detailed.details.finish_reason in {"length", "eos_token"}
    assert 1 <= detailed.details.generated_tokens == len(detailed.details.tokens) <= 4
    assert prompt + detailed.generated_text == text  # greedy: the same answer on repeat
    pieces = list(c.text_generation(prompt, max_new_tokens=4, stream=True))
    assert 1 <= len(pieces) <= 4 and "".join(pieces) == detailed.generated_text
    events = list(c.text_generation(prompt, max_new_tokens=4, stream=True, details=True))
    assert events[-1].details.finish_reason in {"length", "eos_token"}
    assert events[-1].generated_text == text and all(e.generated_text is None for e in events[:-1])
    out = check_compute(server, http, mid, {"inputs": prompt, "parameters": {"max_new_tokens": 4}})
    assert out == [{"generated_text": text}]


@pytest.mark.parametrize("family", DECODERS)
def test_chat_completion_on_both_routes(server, http, families, family):
    mid = model_id(family, "lm")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    per_model = InferenceClient(base_url=server.model_url(mid), timeout=120, headers=NO_CACHE)
    out = per_model.chat.completions.create(messages=messages, max_tokens=5)
    text = out.choices[0].message.content
    assert isinstance(text, str) and out.choices[0].finish_reason in {"length", "stop"}
    assert 1 <= out.usage.completion_tokens <= 5 and out.usage.prompt_tokens > 5
    chunks = list(per_model.chat.completions.create(messages=messages, max_tokens=5, stream=True,
                                                    stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
    assert chunks[-1].usage.completion_tokens == out.usage.completion_tokens
    openai = InferenceClient(base_url=server.url, timeout=120, headers=NO_CACHE)
    routed = openai.chat_completion(messages, model=mid, max_tokens=5)
    assert routed.choices[0].message.content == text and routed.model == mid
    r = http.post("/v1/chat/completions", json={"model": mid, "messages": messages, "max_tokens": 5},
                  headers=NO_CACHE)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == text, r.text
    SEEN[f"{mid}#chat"] = r.headers.get("x-compute-type", "(none)")


def test_speech_recognition(server, http, families):
    mid = model_id(SPEECH, "asr")
    c = client(server, mid)
    out = c.automatic_speech_recognition(tone(1.0, "flac"))
    assert isinstance(out.text, str) and set(out.text) <= set(SPEECH_CHARACTERS) | {" "}
    assert c.automatic_speech_recognition(tone(1.0, "flac")).text == out.text
    r = http.post(f"/models/{mid}", content=tone(1.0, "wav"), headers={"content-type": "audio/wav", **NO_CACHE})
    assert r.status_code == 200 and set(r.json()) == {"text"}, r.text
    assert abs(float(r.headers["x-compute-audio-length"]) - 1.0) < 0.2
    SEEN[mid] = r.headers["x-compute-type"]
    assert r.headers["x-compute-type"] == ("cpu" if configured_backend(server, mid) == "torch"
                                           else r.headers["x-compute-type"])


def test_an_unknown_model_type_is_a_400_naming_it_and_the_transformers_version(server, http, families):
    from safetensors.numpy import save_file

    from tests.new_families import chat_tokenizer

    folder = server.store / ORG / "qwen9"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen9_text", "architectures": ["Qwen9ForCausalLM"],
                                                    "hidden_size": 32, "vocab_size": 400}))
    save_file({"model.embed_tokens.weight": np.zeros((400, 32), dtype=np.float32)}, str(folder / "model.safetensors"))
    chat_tokenizer().save_pretrained(folder)
    for path in (f"/models/{ORG}/qwen9", f"/models/{ORG}/qwen9/v1/chat/completions"):
        body = {"inputs": "hello"} if path.endswith("qwen9") else {"messages": [{"role": "user", "content": "hi"}]}
        r = http.post(path, json=body, headers=NO_CACHE)
        assert r.status_code == 400, (path, r.status_code, r.text)
        error = r.json()["error"]
        assert "qwen9_text" in error and f"transformers {transformers.__version__}" in error, error
    good = model_id("ministral3", "lm")
    r = http.post(f"/models/{good}", json={"inputs": "hello", "parameters": {"max_new_tokens": 2}})
    assert r.status_code == 200, r.text
