"""Every text task through the real ``huggingface_hub.InferenceClient`` (URL mode)."""

import numpy as np
import pytest
from huggingface_hub import InferenceClient


@pytest.fixture(scope="module")
def client_for(server, tiny_models):
    def make(task: str) -> InferenceClient:
        return InferenceClient(model=server.model_url(tiny_models[task]), timeout=120)
    return make


def test_text_classification(client_for):
    out = client_for("text-classification").text_classification("I love this movie")
    assert {o.label for o in out} == {"POSITIVE", "NEGATIVE"}
    assert out[0].score >= out[1].score and abs(sum(o.score for o in out) - 1) < 1e-4
    top = client_for("text-classification").text_classification("I love this movie", top_k=1)
    assert len(top) == 1


def test_token_classification(client_for):
    out = client_for("token-classification").token_classification("My name is Sarah and I live in Paris")
    assert out and all(o.entity_group in {"PER", "LOC"} for o in out)
    assert all(isinstance(o.start, int) and isinstance(o.word, str) for o in out)


def test_question_answering(client_for):
    out = client_for("question-answering").question_answering(question="Where do I live?",
                                                              context="I live in Berlin and work in Munich.")
    assert isinstance(out.answer, str) and 0 <= out.start <= out.end


def test_fill_mask(client_for):
    out = client_for("fill-mask").fill_mask("Paris is the [MASK] of France.")
    assert len(out) == 5 and all(isinstance(o.token, int) and "paris" in o.sequence for o in out)


def test_summarization(client_for):
    out = client_for("summarization").summarization("the cat sat on the mat and looked at the birds")
    assert isinstance(out.summary_text, str)


def test_translation(client_for):
    out = client_for("translation").translation("hello world")
    assert isinstance(out.translation_text, str)


def test_text_generation(client_for):
    client = client_for("text-generation")
    text = client.text_generation("The quick brown", max_new_tokens=4)
    assert isinstance(text, str) and text.startswith("The quick brown")
    detailed = client.text_generation("The quick brown", max_new_tokens=4, details=True, return_full_text=False)
    assert detailed.details.finish_reason in {"length", "eos_token"}
    assert detailed.details.generated_tokens == len(detailed.details.tokens) <= 4
    assert "".join(t.text for t in detailed.details.tokens).strip() == detailed.generated_text.strip()


def test_text_generation_drops_unsupported_tgi_parameters_and_retries(server, tiny_models):
    # NOTE(hubserve): the client remembers dropped parameters per `model` argument of the call
    # (and then refuses to stream from it), so this test names a URL of its own there.
    url = f"{server.url}/pipeline/text-generation/{tiny_models['text-generation']}"
    with pytest.warns(UserWarning, match="watermark"):
        text = InferenceClient(timeout=120).text_generation("The quick brown", model=url, max_new_tokens=3,
                                                            watermark=True)
    assert text.startswith("The quick brown")


def test_text_generation_on_a_text2text_model(client_for):
    assert isinstance(client_for("text2text-generation").text_generation("hello world", max_new_tokens=3), str)


def test_feature_extraction(client_for):
    tokens = client_for("feature-extraction").feature_extraction("hello world")
    assert tokens.ndim == 3 and tokens.shape[0] == 1 and tokens.shape[2] == 32
    pooled = client_for("sentence-similarity").feature_extraction("hello world")
    assert pooled.shape == (32,) and abs(np.linalg.norm(pooled) - 1) < 1e-5


def test_sentence_similarity(client_for):
    out = client_for("sentence-similarity").sentence_similarity(
        "A man is eating food.", ["A man is eating a piece of bread.", "A man is riding a horse."])
    assert len(out) == 2 and all(-1.0001 <= x <= 1.0001 for x in out)


def test_zero_shot_classification(client_for):
    out = client_for("zero-shot-classification").zero_shot_classification(
        "I love this movie", candidate_labels=["positive", "negative", "neutral"])
    assert sorted(o.label for o in out) == ["negative", "neutral", "positive"]
    assert out[0].score >= out[-1].score


def test_text_generation_stream(client_for):
    client = client_for("text-generation")
    whole = client.text_generation("The quick brown", max_new_tokens=5, return_full_text=False)
    pieces = list(client.text_generation("The quick brown", max_new_tokens=5, stream=True))
    assert len(pieces) >= 1 and "".join(pieces).strip() == whole.strip()
    events = list(client.text_generation("The quick brown", max_new_tokens=5, stream=True, details=True))
    assert events[-1].details.finish_reason in {"length", "eos_token"}
    assert events[-1].generated_text.startswith("The quick brown")
    assert all(e.generated_text is None for e in events[:-1])


def test_chat_completion_with_base_url(server, tiny_models):
    client = InferenceClient(base_url=server.model_url(tiny_models["text-generation"]), timeout=120)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    out = client.chat.completions.create(messages=messages, max_tokens=5)
    text = out.choices[0].message.content
    assert isinstance(text, str) and out.choices[0].finish_reason in {"length", "stop"}
    assert out.usage.completion_tokens <= 5 and out.usage.prompt_tokens > 0
    chunks = list(client.chat.completions.create(messages=messages, max_tokens=5, stream=True,
                                                 stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage.completion_tokens == out.usage.completion_tokens
