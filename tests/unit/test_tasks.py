"""Task parsing, validation and output shapes on a fake backend (no Ray, no torch)."""

import pickle

import numpy as np
import pytest

from deployments.tasks import get_task
from deployments.tasks._embedding import Pooling, pool
from deployments.tasks._pipeline import call_pipeline
from deployments.tasks.base import Context, Payload
from hubserve.errors import BackendFailure, InputUnsupported, InvalidInput
from deployments.payloads import decode_body
from tests.unit.fakes import FakeBackend, FakeModel


def parse(task, body: bytes):
    return get_task(task).parse(decode_body(body))


def run(task, backend, body: bytes, state=None):
    t = get_task(task)
    req = t.parse(decode_body(body))
    out = t.run(FakeModel(backend, state), [req])[0]
    if isinstance(out, Exception):
        raise out
    return req, out


def labels(texts, **_):
    return [[{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}] for _ in texts]


def test_text_classification_is_list_of_lists_with_top_k():
    _, out = run("text-classification", FakeBackend(labels), b'"great"')
    assert out == [[{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]]
    _, out = run("text-classification", FakeBackend(labels), b'{"inputs": ["a", "b", "c"], "parameters": {"top_k": 1}}')
    assert out == [[{"label": "POSITIVE", "score": 0.9}]] * 3


def test_text_classification_batches_requests_into_one_forward():
    backend = FakeBackend(labels)
    t = get_task("text-classification")
    reqs = [t.parse(decode_body(b)) for b in (b'"a"', b'["b", "c"]', b'{"inputs": "d", "parameters": {"top_k": 1}}')]
    outs = t.run(FakeModel(backend), reqs)
    assert len(backend.calls) == 1 and backend.calls[0][0][0] == ["a", "b", "c", "d"]
    assert [len(o) for o in outs] == [1, 2, 1] and len(outs[2][0]) == 1


@pytest.mark.parametrize("task,body,fragment", [
    ("text-classification", b'{"inputs": "a", "parameters": {"top_k": 0}}', "received `top_k` in `parameters`"),
    ("text-classification", b'{"inputs": "a", "parameters": {"function_to_apply": "relu"}}', "function_to_apply"),
    ("text-classification", b'{"parameters": {}}', "`inputs`"),
    ("text-classification", b'{"inputs": 5}', "`inputs`"),
    ("token-classification", b'{"inputs": "a", "parameters": {"aggregation_strategy": "bogus"}}', "aggregation_strategy"),
    ("token-classification", b'{"inputs": "a", "parameters": {"aggregation_strategy": "none", "stride": 2}}', "stride"),
    ("question-answering", b'{"inputs": {"question": "q"}}', "context"),
    ("question-answering", b'{"inputs": {"question": "", "context": "c"}}', "question"),
    ("fill-mask", b'{"inputs": "a [MASK]", "parameters": {"top_k": "3"}}', "top_k"),
    ("zero-shot-classification", b'{"inputs": "a"}', "candidate_labels"),
    ("zero-shot-classification", b'{"inputs": "a", "parameters": {"candidate_labels": " , "}}', "candidate label"),
    ("zero-shot-classification", b'{"inputs": "a", "parameters": {"candidate_labels": "x", "hypothesis_template": "t"}}', "{}"),
    ("summarization", b'{"inputs": "a", "parameters": {"min_length": 9, "max_length": 3}}',
     "min_length cannot be larger than max_length"),
    ("summarization", b'{"inputs": "a", "parameters": {"top_p": 1.5}}', "top_p"),
    ("translation", b'{"inputs": "a", "parameters": {"src_lang": "en"}}', "together"),
    ("text-generation", b'{"inputs": "a", "parameters": {"max_new_tokens": -1}}', "max_new_tokens"),
    ("text-generation", b'{"inputs": "a", "parameters": {"num_return_sequences": 2}}', "num_return_sequences"),
    ("feature-extraction", b'{"inputs": []}', "inputs"),
    ("feature-extraction", b'{"inputs": "a", "truncation_direction": "up"}', "truncation_direction"),
    ("sentence-similarity", b'{"inputs": {"source_sentence": "a"}}', "sentences"),
])
def test_bad_requests_name_the_field(task, body, fragment):
    with pytest.raises(InvalidInput) as err:
        parse(task, body)
    assert fragment in err.value.message
    assert err.value.extra["errors"] and all(isinstance(e, str) for e in err.value.extra["errors"])


def test_question_answering_dict_unless_top_k():
    from tests.tiny_models import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer()

    def respond(encode):  # logits rising along each window: the answer is the context's last word
        encoded = encode(tokenizer)
        rising = [np.arange(len(row["input_ids"]), dtype=np.float32) for row in encoded.rows]
        return encoded, [{"start_logits": r, "end_logits": r} for r in rising]

    backend = FakeBackend(respond)
    _, out = run("question-answering", backend, b'{"question": "q?", "context": "I live in Berlin"}')
    assert set(out) == {"score", "start", "end", "answer"} and out["answer"] == "Berlin"
    _, out = run("question-answering", backend, b'{"inputs": {"question": "q?", "context": "c d"}, "parameters": {"top_k": 2}}')
    assert isinstance(out, list) and len(out) == 2


def test_fill_mask_needs_the_mask_token():
    row = {"score": 0.1, "token": 5, "token_str": "x", "sequence": "a x"}
    _, out = run("fill-mask", FakeBackend(lambda *a, **k: [row]), b'"a [MASK]"')
    assert out == [row]
    with pytest.raises(InvalidInput, match=r"No mask_token \(\[MASK\]\) found on the input"):
        run("fill-mask", FakeBackend(lambda *a, **k: [row]), b'"no mask here"')


def test_zero_shot_shape_follows_the_client():
    t = get_task("zero-shot-classification")
    req = t.parse(decode_body(b'{"inputs": "t", "parameters": {"candidate_labels": "a, b"}}'))
    assert req.parameters.candidate_labels == ["a", "b"]
    out = {"sequence": "t", "labels": ["b", "a"], "scores": [0.7, 0.3]}
    old = Context(user_agent="huggingface_hub/0.36.2; python/3.11; hf_hub/0.36.2")
    new = Context(user_agent="huggingface_hub/1.3.0; hf_hub/1.3.0")
    assert t.format(req, out, old) == out
    assert t.format(req, out, new) == [{"label": "b", "score": 0.7}, {"label": "a", "score": 0.3}]
    assert t.format(req, out, Context(user_agent="curl/8")) == t.format(req, out, new)
    assert t.format(req, out, Context(user_agent="curl/8", zero_shot_format="dict")) == out
    camel = t.parse(decode_body(b'{"inputs": {"text": "t"}, "parameters": {"candidateLabels": ["x"]}}'))
    assert camel.inputs == "t" and camel.parameters.candidate_labels == ["x"]


def test_generation_unsupported_tgi_parameters_use_the_client_retry_message():
    with pytest.raises(InvalidInput) as err:
        run("text-generation", FakeBackend(), b'{"inputs": "a", "parameters": {"watermark": true, "best_of": 2}}')
    assert err.value.message == (
        "The following `model_kwargs` are not used by the model: ['best_of', 'watermark'] "
        "(note: typos in the generate arguments will also show up in this list)")
    # the "off" values the client may send are accepted
    run("text-generation", FakeBackend(), b'{"inputs": "a", "parameters": {"watermark": false, "decoder_input_details": false}}')


def test_generation_shapes_details_and_full_text():
    backend = FakeBackend()
    _, out = run("text-generation", backend, b'{"inputs": "hello", "parameters": {"max_new_tokens": 3, "seed": 4}}')
    assert out == [{"generated_text": "hello world"}]
    assert backend.calls[-1][1]["max_new_tokens"] == 3 and backend.calls[-1][1]["seed"] == 4
    _, out = run("text-generation", backend, b'{"inputs": "hello", "parameters": {"details": true, "return_full_text": false}}')
    assert out[0]["generated_text"] == " world"
    assert out[0]["details"]["finish_reason"] == "length" and out[0]["details"]["generated_tokens"] == 1
    req, _ = run("text-generation", backend, b'{"inputs": "hello", "parameters": {"temperature": 0.5}}')
    assert req.parameters.sampling() and not get_task("text-generation").cacheable(req)
    assert backend.calls[-1][1]["do_sample"] is True


def test_seq2seq_tasks_are_lists_and_refuse_unknown_kwargs():
    backend = FakeBackend(lambda texts, **kw: [[f"s{i}"] for i, _ in enumerate(texts)])
    _, out = run("summarization", backend, b'{"inputs": ["a", "b"], "parameters": {"num_beams": 2}}')
    assert out == [{"summary_text": "s0"}, {"summary_text": "s1"}]
    assert backend.calls[-1][1]["num_beams"] == 2
    with pytest.raises(InvalidInput, match=r"not used by the model: \['foo', 'generate_parameters.bar'\]"):
        parse("summarization", b'{"inputs": "a", "parameters": {"foo": 1, "generate_parameters": {"bar": 2}}}')
    backend = FakeBackend(lambda texts, **kw: [["t"] for _ in texts])
    _, out = run("translation", backend, b'{"inputs": "a", "parameters": {"src_lang": "en", "tgt_lang": "fr"}}')
    assert out == [{"translation_text": "t"}]
    assert backend.calls[-1][1]["translation"] == ("en", "fr")


def test_feature_extraction_rank_rules_and_root_options():
    pooled = Pooling(sentence_transformers=True, normalize=True)
    _, one = run("feature-extraction", FakeBackend(), b'{"inputs": "a b", "normalize": false}', pooled)
    assert one.shape == (4,) and np.allclose(one, 3.0)
    _, many = run("feature-extraction", FakeBackend(), b'{"inputs": ["a", "b c"], "parameters": {"dimensions": 2}}', pooled)
    assert many.shape == (2, 2) and np.allclose(np.linalg.norm(many, axis=1), 1)
    _, tokens = run("feature-extraction", FakeBackend(), b'"a b"', Pooling())
    assert len(tokens) == 1 and tokens[0].shape == (4, 4)
    _, tokens = run("feature-extraction", FakeBackend(), b'["a", "b c d"]', Pooling())
    assert [t.shape for t in tokens] == [(3, 4), (5, 4)]
    backend = FakeBackend()
    run("feature-extraction", backend, b'{"inputs": "a", "truncate": false}', pooled)
    assert backend.calls[-1][1]["truncate"] is False


def test_pooling_modes():
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert np.allclose(pool(hidden, mask, ["mean_tokens"]), [[2.0, 3.0]])
    assert np.allclose(pool(hidden, mask, ["cls_token"]), [[1.0, 2.0]])
    assert np.allclose(pool(hidden, mask, ["max_tokens"]), [[3.0, 4.0]])
    assert np.allclose(pool(hidden, mask, ["lasttoken"]), [[3.0, 4.0]])
    assert pool(hidden, mask, ["cls_token", "mean_tokens"]).shape == (1, 4)


def test_sentence_similarity_forms():
    t = get_task("sentence-similarity")
    a = t.parse(decode_body(b'{"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}}'))
    b = t.parse(decode_body(b'{"inputs": null, "source_sentence": "a", "sentences": ["b", "c"]}'))
    assert a.inputs == b.inputs
    out = t.run(FakeModel(FakeBackend(), Pooling()), [a])[0]
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(x, float) for x in out)


def test_characters_count_every_string():
    assert parse("sentence-similarity", b'{"inputs": {"source_sentence": "ab", "sentences": ["c", "de"]}}').characters() == 5
    assert parse("text-classification", b'"hello"').characters() == 5


def test_similarity_models_embed_strings_on_their_own_route():
    t = get_task("sentence-similarity")
    assert t.redirect(decode_body(b'"hello"')) == "feature-extraction"
    assert t.redirect(decode_body(b'{"inputs": ["a", "b"]}')) == "feature-extraction"
    assert t.redirect(decode_body(b'{"inputs": {"source_sentence": "a", "sentences": ["b"]}}')) is None
    assert t.redirect(decode_body(b'{"source_sentence": "a", "sentences": ["b"]}')) is None


def test_text_generation_stream_events():
    t = get_task("text-generation")
    req = t.parse(decode_body(b'{"inputs": "hello", "parameters": {"seed": 3}, "stream": true}'))
    assert req.stream is True
    events = list(t.stream(FakeModel(FakeBackend()), req))
    assert [e["token"]["text"] for e in events] == [" wor", "ld"]
    assert [e["index"] for e in events] == [0, 1]
    assert events[0]["generated_text"] is None and events[0]["details"] is None
    assert events[-1]["generated_text"] == "hello world"
    assert events[-1]["details"] == {"finish_reason": "length", "generated_tokens": 2, "seed": 3}
    with pytest.raises(InvalidInput, match="one prompt"):
        list(t.stream(FakeModel(FakeBackend()), t.parse(decode_body(b'{"inputs": ["a", "b"], "stream": true}'))))


@pytest.mark.parametrize("body,fragment", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_chat_requests_are_validated(body, fragment):
    with pytest.raises(InvalidInput) as err:
        get_task("text-generation").parse_chat(body)
    assert fragment in err.value.message


def test_chat_request_parameters():
    t = get_task("text-generation")
    greedy = t.parse_chat({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                           "max_tokens": 7, "tool_choice": "auto"})
    assert greedy.parameters() == {"max_new_tokens": 7, "do_sample": False, "return_full_text": False}
    assert greedy.template_messages() == [{"role": "user", "content": "hi"}] and t.cacheable(greedy)
    sampled = t.parse_chat({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7})
    assert sampled.parameters()["do_sample"] is True and not t.cacheable(sampled)


def _raise(exc):
    def respond(*_, **__):
        raise exc
    return respond


def test_a_pipeline_refusal_is_a_400_in_the_pipelines_own_words():
    with pytest.raises(InputUnsupported, match="^Subtask instance is not supported") as info:
        call_pipeline(_raise(ValueError("Subtask instance is not supported for model X")), [1], subtask="instance")
    assert isinstance(info.value, InvalidInput) and info.value.status_code == 400
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is InputUnsupported and copy.message == info.value.message
    assert call_pipeline(lambda *a, **k: (a, k), 1, x=2) == ((1,), {"x": 2})


def test_only_a_pipelines_value_error_is_the_callers_fault():
    t = get_task("table-question-answering")
    req = t.parse(Payload(inputs={"query": "how many?", "table": {"a": ["1"]}}))
    (refused,) = t.run(FakeModel(FakeBackend(_raise(ValueError("Too many columns")))), [req])
    assert isinstance(refused, InputUnsupported) and refused.message == "Too many columns"
    (failed,) = t.run(FakeModel(FakeBackend(_raise(RuntimeError("out of memory")))), [req])
    assert isinstance(failed, BackendFailure) and failed.status_code == 500
