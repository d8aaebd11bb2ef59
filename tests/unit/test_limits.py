"""Every parameter a request may pass is allowlisted, typed and bounded by ``limits.*``."""

import pytest

from deployments.tasks import get_task, task_names
from deployments.tasks.base import Payload
from hubserve.config.app import AppConfig
from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput
from tests.unit.fakes import FakeBackend, FakeModel

#: Keyword arguments of transformers' generate() that run code, load files or hold a replica.
HOSTILE = {
    "custom_generate": "/tmp/evil", "trust_remote_code": True, "assistant_model": "gpt2",
    "streamer": "x", "logits_processor": [], "stopping_criteria": [], "generation_config": {},
    "penalty_alpha": 0.6, "num_beam_groups": 2, "dola_layers": "low", "tokenizer": "x",
    "prefix_allowed_tokens_fn": "os.system", "use_model_defaults": False,
}
GENERATION_TASKS = ("text-generation", "text2text-generation", "summarization", "translation")


#: A valid ``inputs`` of the tasks whose input is not one text or one file.
INPUTS = {
    "visual-question-answering": {"image": b"image bytes", "question": "what?"},
    "document-question-answering": {"image": b"image bytes", "question": "what?"},
    "table-question-answering": {"query": "how many?", "table": {"a": ["1"]}},
}
#: The parameters a task requires.
REQUIRED = {"zero-shot-image-classification": {"candidate_labels": ["a", "b"]}}


def parse(task, parameters, limits=None, inputs=None):
    if inputs is None:
        inputs = INPUTS.get(task, b"image bytes" if get_task(task).input_kind == "binary" else "hello")
    return get_task(task).parse(Payload(inputs=inputs, parameters={**REQUIRED.get(task, {}), **parameters}), limits)


@pytest.mark.parametrize("task", GENERATION_TASKS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_no_hostile_generate_kwarg_is_accepted(task, name):
    with pytest.raises(InvalidInput, match=rf"The following `model_kwargs` are not used by the model: \['{name}'\]"):
        parse(task, {name: HOSTILE[name]})


@pytest.mark.parametrize("task", GENERATION_TASKS[1:])
def test_generate_parameters_are_an_allowlist_too(task):
    for name in ("custom_generate", "trust_remote_code", "penalty_alpha", "num_beam_groups"):
        with pytest.raises(InvalidInput, match=rf"not used by the model: \['generate_parameters.{name}'\]"):
            parse(task, {"generate_parameters": {name: HOSTILE[name]}})
    ok = parse(task, {"generate_parameters": {"num_beams": 2, "early_stopping": "never", "min_new_tokens": 1}})
    assert ok.parameters.pipeline_kwargs()["early_stopping"] == "never"


@pytest.mark.parametrize("task", sorted(set(task_names()) - {"zero-shot-classification", "sentence-similarity",
                                                             "question-answering"}))
def test_every_task_names_unknown_parameters(task):
    with pytest.raises(InvalidInput, match=r"not used by the model: \['bogus'\]"):
        parse(task, {"bogus": 1})


GENERATION_BOUNDS = [
    ({"max_new_tokens": 51}, "max_new_tokens", "limits.max_new_tokens"),
    ({"max_length": 51}, "max_length", "limits.max_new_tokens"),
    ({"min_length": 51}, "min_length", "limits.max_new_tokens"),
    ({"num_beams": 3}, "num_beams", "limits.max_num_beams"),
    ({"num_return_sequences": 4, "do_sample": True}, "num_return_sequences", "limits.max_return_sequences"),
    ({"top_k": 11}, "top_k", "limits.max_top_k"),
]
SMALL = LimitsConfig(max_new_tokens=50, max_num_beams=2, max_return_sequences=3, max_top_k=10,
                     max_stop_sequences=2, max_stop_chars=5, max_candidate_labels=2,
                     max_question_answering_tokens=100, max_inputs=3)


@pytest.mark.parametrize("task", GENERATION_TASKS)
@pytest.mark.parametrize("params,field,limit", GENERATION_BOUNDS)
def test_generation_bounds_come_from_the_limits(task, params, field, limit):
    with pytest.raises(InvalidInput) as err:
        parse(task, params, SMALL)
    assert f"`{field}`" in err.value.message and limit in err.value.message, err.value.message
    parse(task, params)  # within the defaults


@pytest.mark.parametrize("task", GENERATION_TASKS[1:])
def test_nested_generate_parameters_are_bounded(task):
    for key in ("max_new_tokens", "min_new_tokens", "max_length", "min_length"):
        with pytest.raises(InvalidInput, match=rf"`{key}` is 51.*limits.max_new_tokens"):
            parse(task, {"generate_parameters": {key: 51}}, SMALL)
    with pytest.raises(InvalidInput, match="limits.max_num_beams"):
        parse(task, {"generate_parameters": {"num_beams": 100000}})


def test_stop_sequences_are_bounded_in_count_and_length():
    with pytest.raises(InvalidInput, match=r"`stop` has 3 items.*limits.max_stop_sequences"):
        parse("text-generation", {"stop": ["a", "b", "c"]}, SMALL)
    with pytest.raises(InvalidInput, match=r"6 characters.*limits.max_stop_chars"):
        parse("text-generation", {"stop": "abcdef"}, SMALL)
    assert parse("text-generation", {"stop": ["ab", "cd"]}, SMALL).parameters.generate_kwargs()["stop"] == ["ab", "cd"]


def test_chat_and_completion_bounds():
    task = get_task("text-generation")
    for body, limit in (({"max_tokens": 51}, "max_new_tokens"), ({"max_completion_tokens": 51}, "max_new_tokens"),
                        ({"stop": ["a", "b", "c"]}, "max_stop_sequences"),
                        ({"messages": [{"role": "user", "content": "x"}] * 4}, "max_inputs")):
        full = {"messages": [{"role": "user", "content": "hi"}], **body}
        with pytest.raises(InvalidInput, match=f"limits.{limit}"):
            task.parse_chat(full, SMALL)
    chat = task.parse_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}, SMALL)
    assert chat._generation.max_new_tokens == 50


def test_other_task_bounds():
    with pytest.raises(InvalidInput, match="limits.max_top_k"):
        parse("fill-mask", {"top_k": 100000000}, inputs="a [MASK]")
    with pytest.raises(InvalidInput, match="limits.max_top_k"):
        parse("text-classification", {"top_k": 11}, SMALL)
    with pytest.raises(InvalidInput, match="limits.max_candidate_labels"):
        parse("zero-shot-classification", {"candidate_labels": "a, b, c"}, SMALL)
    with pytest.raises(InvalidInput, match="limits.max_candidate_labels"):
        parse("fill-mask", {"targets": ["a", "b", "c"]}, SMALL, inputs="a [MASK]")
    for key in ("doc_stride", "max_answer_len", "max_seq_len", "max_question_len"):
        with pytest.raises(InvalidInput, match=f"`{key}` is 101.*limits.max_question_answering_tokens"):
            get_task("question-answering").parse(
                Payload(inputs={"question": "q", "context": "c"}, parameters={key: 101}), SMALL)
    with pytest.raises(InvalidInput, match="limits.max_inputs"):
        get_task("sentence-similarity").parse(
            Payload(inputs={"source_sentence": "a", "sentences": ["b"] * 4}), SMALL)


def test_the_config_is_where_limits_are_set():
    config = AppConfig.from_args({"limits": {"max_num_beams": 1}}, env={})
    with pytest.raises(InvalidInput, match=r"\(1, limits.max_num_beams\)"):
        parse("text-generation", {"num_beams": 2}, config.limits)
    assert LimitsConfig().max_num_beams == 8


def test_fill_mask_top_k_is_clamped_to_the_vocabulary():
    task = get_task("fill-mask")
    backend = FakeBackend(lambda text, **kw: [{"score": 1.0, "token": 1, "token_str": "x", "sequence": "a x"}])
    task.run(FakeModel(backend), [task.parse(Payload(inputs="a [MASK]", parameters={"top_k": 900}))])
    assert backend.calls[-1][1]["top_k"] == backend.vocab_size


def test_one_failing_request_fails_alone():
    task = get_task("fill-mask")

    def respond(text, **kw):
        if "boom" in text:
            raise RuntimeError("selected index k out of range")
        return [{"score": 1.0, "token": 1, "token_str": "x", "sequence": "a x"}]

    requests = [task.parse(Payload(inputs=t)) for t in ("a [MASK]", "boom [MASK]", "b [MASK]")]
    out = task.run(FakeModel(FakeBackend(respond)), requests)
    assert isinstance(out[0], list) and isinstance(out[2], list)
    assert out[1].status_code == 500 and out[1].message == "unknown error"


def test_generation_carries_the_request_deadline():
    task = get_task("text-generation")
    backend = FakeBackend()
    request = parse("text-generation", {"max_new_tokens": 2})
    request.set_deadline(1234.5)
    task.run(FakeModel(backend), [request])
    assert backend.calls[-1][1]["deadline"] == 1234.5
    assert "deadline" not in request.model_dump()


def test_completion_sizes_are_bounded_when_the_task_parses_them():
    from deployments.tasks._openai import completion_payload

    task = get_task("text-generation")
    payload, _ = completion_payload(task, Payload(extra={"prompt": "x", "n": 4, "max_tokens": 51}))
    with pytest.raises(InvalidInput, match="limits.max_"):
        task.parse(payload, SMALL)
    payload, _ = completion_payload(task, Payload(extra={"prompt": "x", "n": 3, "max_tokens": 50}))
    assert task.parse(payload, SMALL).parameters.num_return_sequences == 3
