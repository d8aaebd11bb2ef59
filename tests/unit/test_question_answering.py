"""question-answering answers as transformers 4.57's pipeline did (transformers 5 removed it).

The model is ``tests/data/tiny-bert-qa``: ``tests.tiny_models.build_bert(folder,
"BertForQuestionAnswering")`` saved once (its weights come out identical under transformers
4.57.6 and 5.23.0, but the tokenizer it trains does not: tokenizers 0.22 and 0.23 train
different vocabularies), with a ``PreTrainedTokenizerFast`` tokenizer config both versions load.

EXPECTED was recorded from transformers 4.57.6's ``pipeline("question-answering")`` (torch
2.13.0, tokenizers 0.22.2) on that folder, scores rounded to 1e-4; LEFT_EXPECTED the same with
``padding_side: left`` in the tokenizer config (the context goes first, nothing but padding is
masked, so spans may start in the question: the pipeline's own quirk, kept).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deployments.tasks._spans import input_names, window_spans
from deployments.tasks.base import Payload
from hubserve.errors import InvalidInput
from tests.replica import load

DATA = Path(__file__).resolve().parents[1] / "data" / "tiny-bert-qa"
LONG = ("My name is Sarah Jessica Parker but you can call me Jessica. I live in Berlin and work in Munich. "
        "Paris is the capital of France. The quick brown fox jumps over the lazy dog. "
        "A man is riding a horse. Hugging Face builds tools for machine learning. ") * 2
SHORT = "My name is Sarah and I live in Berlin."
SPACES = "I  live   in    Berlin  and\twork in\n\nMunich,  naïve café."
UNICODE_Q = "Wo wohne ich, Café à Zürich?"

CASES = {
    "short": ("Where do I live?", SHORT, {}),
    "short_top3": ("Where do I live?", SHORT, {"top_k": 3}),
    "long_windows": ("Where do I live?", LONG, {"max_seq_len": 24, "doc_stride": 8}),
    "long_windows_top3": ("Where do I live?", LONG, {"max_seq_len": 24, "doc_stride": 8, "top_k": 3}),
    "long_default": ("Where do I work?", LONG, {"top_k": 2}),
    "impossible": ("Where do I live?", SHORT, {"handle_impossible_answer": True}),
    "impossible_windows": ("Who is the man?", LONG, {"max_seq_len": 32, "doc_stride": 10,
                                                     "handle_impossible_answer": True, "top_k": 4}),
    "max_answer_len_1": ("Where do I live?", LONG, {"max_answer_len": 1, "top_k": 3}),
    "no_align": ("Where do I live?", "Where do I live? I live in Berlin and work in Munich.",
                 {"align_to_words": False, "top_k": 3}),
    "no_align_windows": ("What is the capital?", LONG, {"align_to_words": False, "max_seq_len": 40, "doc_stride": 16,
                                                        "top_k": 5}),
    "unicode_spaces": (UNICODE_Q, SPACES, {"top_k": 3}),
    "unicode_spaces_windows": (UNICODE_Q, (SPACES + " ") * 3, {"max_seq_len": 30, "doc_stride": 6, "top_k": 2,
                                                               "max_answer_len": 4}),
    "top_k_many": ("Where?", "I live in Berlin", {"top_k": 40}),
    "top_k_many_impossible": ("Where?", "Berlin and Munich", {"top_k": 12, "handle_impossible_answer": True,
                                                              "max_answer_len": 2}),
    "question_stride": ("A man is eating food and a piece of bread?", LONG[:160], {"max_seq_len": 20, "doc_stride": 5,
                                                                                  "top_k": 2}),
    "uppercase_merge": ("Where?", "Berlin BERLIN berlin Berlin.", {"top_k": 5}),
}

# Recorded from transformers 4.57.6's question-answering pipeline on tests/data/tiny-bert-qa.
EXPECTED = json.loads(r"""{
"short": {"score": 0.0106, "start": 31, "end": 38, "answer": "Berlin."},
"short_top3": [{"score": 0.0106, "start": 31, "end": 38, "answer": "Berlin."}, {"score": 0.0096, "start": 0, "end": 7, "answer": "My name"}, {"score": 0.0095, "start": 8, "end": 38, "answer": "is Sarah and I live in Berlin."}],
"long_windows": {"score": 0.0187, "start": 146, "end": 155, "answer": "fox jumps"},
"long_windows_top3": [{"score": 0.0187, "start": 146, "end": 155, "answer": "fox jumps"}, {"score": 0.0133, "start": 134, "end": 155, "answer": "quick brown fox jumps"}, {"score": 0.0131, "start": 44, "end": 67, "answer": "call me Jessica. I live"}],
"long_default": [{"score": 0.0001, "start": 273, "end": 315, "answer": "Parker but you can call me Jessica. I live"}, {"score": 0.0001, "start": 44, "end": 67, "answer": "call me Jessica. I live"}],
"impossible": {"score": 0.0106, "start": 31, "end": 38, "answer": "Berlin."},
"impossible_windows": [{"score": 0.0089, "start": 146, "end": 155, "answer": "fox jumps"}, {"score": 0.0066, "start": 134, "end": 155, "answer": "quick brown fox jumps"}, {"score": 0.0066, "start": 146, "end": 160, "answer": "fox jumps over"}, {"score": 0.0061, "start": 177, "end": 198, "answer": "man is riding a horse"}],
"max_answer_len_1": [{"score": 0.0002, "start": 292, "end": 296, "answer": "call"}, {"score": 0.0002, "start": 280, "end": 283, "answer": "but"}, {"score": 0.0001, "start": 273, "end": 279, "answer": "Parker"}],
"no_align": [{"score": 0.006, "start": 27, "end": 37, "answer": "Berlin and"}, {"score": 0.0056, "start": 9, "end": 16, "answer": "I live?"}, {"score": 0.0056, "start": 9, "end": 37, "answer": "I live? I live in Berlin and"}],
"no_align_windows": [{"score": 0.0051, "start": 146, "end": 155, "answer": "fox jumps"}, {"score": 0.0035, "start": 418, "end": 446, "answer": "dog. A man is riding a horse"}, {"score": 0.0034, "start": 429, "end": 446, "answer": "is riding a horse"}, {"score": 0.0034, "start": 432, "end": 446, "answer": "riding a horse"}, {"score": 0.0033, "start": 439, "end": 446, "answer": "a horse"}],
"unicode_spaces": [{"score": 0.008, "start": 16, "end": 51, "answer": "Berlin  and\twork in\n\nMunich,  naïve"}, {"score": 0.0045, "start": 16, "end": 27, "answer": "Berlin  and"}, {"score": 0.0044, "start": 0, "end": 7, "answer": "I  live"}],
"unicode_spaces_windows": [{"score": 0.1707, "start": 52, "end": 56, "answer": "café"}, {"score": 0.1498, "start": 46, "end": 56, "answer": "naïve café"}],
"top_k_many": [{"score": 0.0425, "start": 0, "end": 1, "answer": "I"}, {"score": 0.0423, "start": 0, "end": 6, "answer": "I live"}, {"score": 0.0403, "start": 2, "end": 6, "answer": "live"}, {"score": 0.0393, "start": 0, "end": 9, "answer": "I live in"}, {"score": 0.039, "start": 7, "end": 9, "answer": "in"}, {"score": 0.0374, "start": 2, "end": 9, "answer": "live in"}, {"score": 0.0367, "start": 10, "end": 16, "answer": "Berlin"}, {"score": 0.0341, "start": 0, "end": 16, "answer": "I live in Berlin"}, {"score": 0.0339, "start": 7, "end": 16, "answer": "in Berlin"}, {"score": 0.0325, "start": 2, "end": 16, "answer": "live in Berlin"}, {"score": 0.0, "start": 0, "end": 0, "answer": ""}],
"top_k_many_impossible": [{"score": 0.0651, "start": 11, "end": 17, "answer": "Munich"}, {"score": 0.0642, "start": 0, "end": 10, "answer": "Berlin and"}, {"score": 0.0632, "start": 7, "end": 17, "answer": "and Munich"}, {"score": 0.0626, "start": 7, "end": 10, "answer": "and"}, {"score": 0.0617, "start": 0, "end": 6, "answer": "Berlin"}, {"score": 0.0604, "start": 0, "end": 0, "answer": ""}, {"score": 0.0, "start": 0, "end": 0, "answer": ""}, {"score": 0.0, "start": 0, "end": 17, "answer": "Berlin and Munich"}],
"question_stride": [{"score": 0.2411, "start": 107, "end": 110, "answer": "the"}, {"score": 0.1726, "start": 17, "end": 24, "answer": "Jessica"}],
"uppercase_merge": [{"score": 0.1116, "start": 14, "end": 20, "answer": "berlin"}, {"score": 0.0836, "start": 7, "end": 20, "answer": "BERLIN berlin"}, {"score": 0.0553, "start": 0, "end": 20, "answer": "Berlin BERLIN berlin"}, {"score": 0.0329, "start": 7, "end": 28, "answer": "BERLIN berlin Berlin."}, {"score": 0.0322, "start": 14, "end": 28, "answer": "berlin Berlin."}]
}""")

# The same pipeline with `padding_side: left` in the tokenizer config.
LEFT_EXPECTED = json.loads(r"""{
"short_top3": [{"score": 0.0265, "start": 31, "end": 0, "answer": ""}, {"score": 0.0039, "start": 8, "end": 22, "answer": "is Sarah and I"}, {"score": 0.0038, "start": 31, "end": 38, "answer": "Berlin."}],
"long_windows_top3": [{"score": 0.0684, "start": 44, "end": 16, "answer": ""}, {"score": 0.0093, "start": 146, "end": 155, "answer": "fox jumps"}, {"score": 0.007, "start": 119, "end": 155, "answer": "of France. The quick brown fox jumps"}],
"impossible_windows": [{"score": 0.0119, "start": 71, "end": 0, "answer": ""}, {"score": 0.0052, "start": 146, "end": 155, "answer": "fox jumps"}, {"score": 0.0043, "start": 177, "end": 198, "answer": "man is riding a horse"}, {"score": 0.0038, "start": 119, "end": 155, "answer": "of France. The quick brown fox jumps"}],
"no_align": [{"score": 0.0027, "start": 9, "end": 15, "answer": "I live"}, {"score": 0.0027, "start": 9, "end": 18, "answer": "I live? I"}, {"score": 0.0027, "start": 9, "end": 16, "answer": "I live?"}]
}""")


def _copy(tmp: Path, padding_side: str | None = None) -> Path:
    folder = tmp / "bert-qa"
    shutil.copytree(DATA, folder)
    if padding_side:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps(dict(config, padding_side=padding_side)))
    return folder


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qa")
    return load(_copy(tmp), "tiny/bert-qa", "question-answering", tmp / "store")


def ask(qa, question, context, limits=None, **parameters):
    task, model = qa
    request = task.parse(Payload(inputs={"question": question, "context": context}, parameters=parameters), limits)
    (out,) = task.run(model, [request])
    if isinstance(out, Exception):
        raise out
    return out


def assert_same(got, expected):
    """Equal answers (text and character offsets), scores within the recording's 1e-4."""
    got_list, expected_list = (got, expected) if isinstance(expected, list) else ([got], [expected])
    assert isinstance(got, list) == isinstance(expected, list)
    assert [{k: a[k] for k in ("start", "end", "answer")} for a in got_list] == \
           [{k: a[k] for k in ("start", "end", "answer")} for a in expected_list]
    assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(got_list, expected_list)), (got, expected)
    assert all(set(a) == {"score", "start", "end", "answer"} for a in got_list)
    assert all(type(a["score"]) is float and type(a["start"]) is int for a in got_list)


@pytest.mark.parametrize("name", sorted(CASES))
def test_answers_as_the_transformers_4_pipeline(qa, name):
    question, context, parameters = CASES[name]
    assert_same(ask(qa, question, context, **parameters), EXPECTED[name])


@pytest.fixture(scope="module")
def left(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("left")
    return load(_copy(tmp, "left"), "tiny/bert-qa", "question-answering", tmp / "store")


@pytest.mark.parametrize("name", sorted(LEFT_EXPECTED))
def test_a_left_padding_tokenizer_puts_the_context_first(left, name):
    question, context, parameters = CASES[name]
    assert_same(ask(left, question, context, **parameters), LEFT_EXPECTED[name])


def test_a_list_of_inputs_answers_each(qa):
    task, model = qa
    body = {"inputs": [{"question": "Where do I live?", "context": SHORT},
                       {"question": "Where?", "context": "I live in Berlin"}], "parameters": {"top_k": 2}}
    (out,) = task.run(model, [task.parse(Payload(inputs=body["inputs"], parameters=body["parameters"]))])
    assert_same(out[0], EXPECTED["short_top3"][:2])
    assert_same(out[1], EXPECTED["top_k_many"][:2])


@pytest.mark.parametrize("parameters, message", [
    ({"max_seq_len": 16, "doc_stride": 4}, "leaves no room for the context in `max_seq_len` (16)"),
    ({"max_seq_len": 24, "doc_stride": 12}, "`doc_stride` (12) must be less than the room a window of `max_seq_len` "
                                            "(24) leaves for the context beside this question (2 tokens)"),
    ({"max_seq_len": 20, "doc_stride": 30}, "doc_stride (30) is larger than max_seq_len (20)"),
    ({"max_seq_len": 20, "doc_stride": 11}, "`doc_stride` (11) must be at most half of max_seq_len (20)"),
    ({"max_seq_len": 200}, "`max_seq_len` (200) is larger than the model's input limit (128 tokens)"),
    ({"top_k": 0}, "top_k"),
    ({"max_answer_len": 0}, "max_answer_len"),
])
def test_bad_windows_are_400s(qa, parameters, message):
    question = "A man is eating food and a piece of bread while riding a horse to Paris?"
    with pytest.raises(InvalidInput) as err:
        ask(qa, question, LONG, **parameters)
    assert message in err.value.message


def test_a_question_that_fits_one_window_needs_no_room_for_a_stride(qa):
    out = ask(qa, "A man is eating food and a piece of bread?", "Berlin", max_seq_len=20, doc_stride=10)
    assert out["answer"] == "Berlin"


def test_the_inputs_transformers_4_fed_the_model(qa):
    _, model = qa
    tokenizer = model.backend.tokenizer
    assert input_names(tokenizer) == ["input_ids", "token_type_ids", "attention_mask"]  # the v4 default, put back
    from transformers import BertTokenizer, RobertaTokenizer

    assert "token_type_ids" in BertTokenizer.model_input_names
    assert "token_type_ids" not in input_names(RobertaTokenizer(vocab={"a": 0, "<unk>": 1}, merges=[]))


def test_backend_logits_runs_each_row_and_drops_what_the_model_does_not_take(qa):
    _, model = qa

    class Encoded:
        rows = [{"input_ids": [2, 40, 3], "pixel_values": [1]}, {"input_ids": [2, 40, 41, 3]}]

    encoded, outputs = model.backend.logits(lambda tokenizer: Encoded())
    assert isinstance(encoded, Encoded)
    assert [o["start_logits"].shape for o in outputs] == [(3,), (4,)]
    assert all(isinstance(o["end_logits"], np.ndarray) for o in outputs)


def test_window_spans_mask_the_question_and_bound_the_length():
    logits = np.array([[9.0, 8.0, 1.0, 2.0, 3.0, 0.5]], dtype=np.float32)
    p_mask = np.array([[0, 1, 0, 0, 0, 1]])  # CLS allowed, one question token and a SEP not
    starts, ends, scores, null = window_spans(logits, logits, p_mask, None, top_k=3, max_answer_len=2,
                                              null_score=1e6, impossible=True)
    assert list(zip(starts.tolist(), ends.tolist())) == [(4, 4), (3, 4), (3, 3)]
    assert scores[0] == pytest.approx(float(np.exp(3 - 9)) ** 2 / float(sum(np.exp([0, -8, -7, -6]))) ** 2, rel=1e-5)
    assert null == pytest.approx(1 / float(sum(np.exp([0, -8, -7, -6]))) ** 2, rel=1e-5)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    tmp = tmp_path_factory.mktemp("onnx")
    task, model = load(_copy(tmp), "tiny/bert-qa", "question-answering", tmp / "store", backend="onnx")
    assert model.compute_type == "cpu+optimized"
    return task, model


@pytest.mark.parametrize("name", ["short_top3", "long_windows_top3", "unicode_spaces"])
def test_onnx_runtime_gives_the_same_answers(onnx, name):
    question, context, parameters = CASES[name]
    assert_same(ask(onnx, question, context, **parameters), EXPECTED[name])
