"""summarization, translation, text2text, image-to-text and VQA answer as transformers 4.57's pipelines
did (transformers 5 has none of them): task prefixes and generation defaults, src/tgt_lang, the merge
of the pipelines' defaults with the model's, clean-up of tokenization spaces, the length warnings,
ViLT's top_k and BLIP's generated answers. Tiny random models, built as tests/tiny_models does."""

import json
import logging

import pytest

from deployments.tasks.base import Payload
from hubserve.errors import InvalidInput
from tests.replica import answer, load
from tests.tiny_models import build_bart, build_vilt, wordpiece_tokenizer
from tests.unit.test_media import png

TEXT = "the cat sat on the mat and looked at the birds outside"
TASK_PARAMS = {
    "summarization": {"num_beams": 2, "min_length": 3, "max_length": 12, "prefix": "summarize: "},
    "translation_en_to_fr": {"max_length": 15, "num_beams": 3, "prefix": "translate English to French: "},
    "translation_en_to_de": {"max_length": 25, "prefix": "translate English to German: "},
}


def edit_json(path, **values):
    data = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**data, **values}))


@pytest.fixture(scope="module")
def t5_style(tmp_path_factory):
    """A tiny BART laid out as T5 checkpoints are: task_specific_params with prefixes, and generation
    defaults of its own (num_beams 3, max_length 30)."""
    folder = tmp_path_factory.mktemp("t5_style")
    build_bart(folder)
    edit_json(folder / "config.json", task_specific_params=TASK_PARAMS)
    edit_json(folder / "generation_config.json", max_length=30, num_beams=3, no_repeat_ngram_size=3)
    return folder


def spy(monkeypatch, backend) -> list[dict]:
    """Records each ``model.generate`` call: the prompt it got and its generation settings."""
    calls, generate = [], backend.model.generate

    def recording(**kwargs):
        config = kwargs["generation_config"]
        calls.append({"prompt": backend.tokenizer.decode(kwargs["input_ids"][0], skip_special_tokens=True),
                      "config": config.to_diff_dict(), "kwargs": {k: v for k, v in kwargs.items()
                                                                  if k not in ("input_ids", "attention_mask",
                                                                               "generation_config")}})
        return generate(**kwargs)
    monkeypatch.setattr(backend.model, "generate", recording)
    return calls


@pytest.mark.parametrize("task_name, prefix, settings", [
    ("summarization", "summarize: ", {"num_beams": 2, "min_length": 3, "max_length": 12}),
    # the first translation_XX_to_YY entry, as the pipeline picked for task "translation"
    ("translation", "translate English to French: ", {"num_beams": 3, "max_length": 15}),
    # no entry: the pipeline's num_beams=4 wins over the model's 3, its 256 new tokens yield to max_length=30
    ("text2text-generation", "", {"num_beams": 4, "max_length": 30, "no_repeat_ngram_size": 3}),
])
def test_task_specific_params_give_the_prefix_and_the_defaults(t5_style, tmp_path, monkeypatch, task_name, prefix,
                                                                settings):
    task, model = load(t5_style, "t/t5", task_name, tmp_path)
    calls = spy(monkeypatch, model.backend)
    out = answer(task, model, TEXT, max_new_tokens=4).output
    assert len(out) == 1 and set(out[0]) == {task.output_key}
    (call,) = calls
    assert call["prompt"] == prefix + TEXT
    assert settings.items() <= call["config"].items() and call["config"].get("max_new_tokens") is None
    assert call["kwargs"]["max_new_tokens"] == 4


def test_translation_hands_src_and_tgt_lang_to_a_multilingual_tokenizer(t5_style, tmp_path, monkeypatch):
    task, model = load(t5_style, "t/t5", "translation", tmp_path)
    tokenizer, seen = model.backend.tokenizer, []

    def build(text, return_tensors, src_lang, tgt_lang, **kwargs):
        seen.append((text, src_lang, tgt_lang, kwargs))
        if src_lang is None or tgt_lang is None:
            raise ValueError("Translation requires a `src_lang` and a `tgt_lang` for this model")
        inputs = tokenizer(text, return_tensors=return_tensors, **kwargs)
        inputs.pop("token_type_ids", None)
        inputs["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids("<mask>")
        return inputs
    monkeypatch.setattr(tokenizer, "_build_translation_inputs", build, raising=False)
    calls = spy(monkeypatch, model.backend)
    answer(task, model, [TEXT, "hello"], src_lang="fra_Latn", tgt_lang="deu_Latn", max_new_tokens=3)
    assert [s[:3] for s in seen] == [(TEXT, "fra_Latn", "deu_Latn"), ("hello", "fra_Latn", "deu_Latn")]
    assert seen[0][3] == {"truncation": "do_not_truncate"}  # the prefix is the tokenizer's business here
    assert [c["prompt"] for c in calls] == [TEXT, "hello"]
    assert all(c["kwargs"]["forced_bos_token_id"] == tokenizer.convert_tokens_to_ids("<mask>") for c in calls)
    # without languages, those of the task_specific_params key the pipeline picked (translation_en_to_fr)
    answer(task, model, TEXT, max_new_tokens=3)
    assert seen[-1][1:3] == ("en", "fr")


def test_a_multilingual_model_without_languages_is_a_400(tmp_path, monkeypatch):
    build_bart(tmp_path / "m")
    task, model = load(tmp_path / "m", "t/m", "translation", tmp_path)

    def build(text, return_tensors, src_lang, tgt_lang, **kwargs):
        raise ValueError("Translation requires a `src_lang` and a `tgt_lang` for this model")
    monkeypatch.setattr(model.backend.tokenizer, "_build_translation_inputs", build, raising=False)
    (out,) = task.run(model, [task.parse(Payload(inputs=TEXT))])
    assert isinstance(out, InvalidInput) and out.message == (
        "Translation requires a `src_lang` and a `tgt_lang` for this model")


def test_clean_up_tokenization_spaces_applies_to_bpe_tokenizers_too(t5_style, tmp_path):
    _, model = load(t5_style, "t/t5", "summarization", tmp_path)
    backend = model.backend
    ids = backend.tokenizer("hello world , it ' s me .", add_special_tokens=False)["input_ids"]
    assert backend._decode_text(ids, False) == "hello world , it ' s me ."
    assert backend._decode_text(ids, True) == "hello world, it's me."


def test_seeded_samples_repeat_and_lists_answer_per_input(t5_style, tmp_path):
    task, model = load(t5_style, "t/t5", "text2text-generation", tmp_path)
    sampled = [answer(task, model, TEXT, do_sample=True, seed=7, max_new_tokens=6).output for _ in range(2)]
    assert sampled[0] == sampled[1]
    beams = answer(task, model, [TEXT, "hello"], num_beams=3, num_return_sequences=2, max_new_tokens=4).output
    assert len(beams) == 4 and all(set(b) == {"generated_text"} for b in beams)


def test_length_warnings_are_logged_not_raised(t5_style, tmp_path, caplog):
    task, model = load(t5_style, "t/t5", "summarization", tmp_path)
    with caplog.at_level(logging.WARNING, logger="deployments.tasks.summarization"):
        answer(task, model, "hello", max_length=20)
    assert "Your max_length is set to 20, but your input_length is only" in caplog.text
    task, model = load(t5_style, "t/t5", "translation", tmp_path)
    with caplog.at_level(logging.WARNING, logger="deployments.tasks.translation"):
        answer(task, model, TEXT, max_length=5)
    assert "is bigger than 0.9 * max_length: 5" in caplog.text


def test_vilt_answers_are_its_top_k_sigmoid_scores(tmp_path):
    import torch

    build_vilt(tmp_path / "vilt")
    task, model = load(tmp_path / "vilt", "t/vilt", "visual-question-answering", tmp_path)
    backend = model.backend
    scores = backend.score_image_text(task.image(task.parse(Payload(inputs={"image": png(), "question": "q?"}))), "q?")
    labels = backend.model.config.id2label
    assert [label for label, _ in scores] == [labels[i] for i in range(len(labels))]
    assert all(0 < s < 1 for _, s in scores)
    torch.manual_seed(0)
    top = answer(task, model, {"image": png(), "question": "what color is it?"}, top_k=3).output
    torch.manual_seed(0)
    everything = answer(task, model, {"image": png(), "question": "what color is it?"}, top_k=10).output
    assert [a["score"] for a in everything] == sorted((a["score"] for a in everything), reverse=True)
    assert len(everything) == len(labels) and top == everything[:3]


def _tiny_blip(folder, cls_name: str) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer(max_length=40)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    config = transformers.BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                         eos_token_id=tokenizer.sep_token_id),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                           image_size=32, patch_size=8), projection_dim=16, image_text_hidden_size=16)
    getattr(transformers, cls_name)(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def test_blip_captions_and_answers_by_generating(tmp_path):
    _tiny_blip(tmp_path / "caption", "BlipForConditionalGeneration")
    task, model = load(tmp_path / "caption", "t/blip", "image-to-text", tmp_path)
    assert type(model.backend.model).__name__ == "BlipForConditionalGeneration"  # AutoModelForImageTextToText
    out = answer(task, model, png(), max_new_tokens=5).output
    assert len(out) == 1 and isinstance(out[0]["generated_text"], str)
    _tiny_blip(tmp_path / "vqa", "BlipForQuestionAnswering")
    task, model = load(tmp_path / "vqa", "t/blip-vqa", "visual-question-answering", tmp_path)
    (reply,) = answer(task, model, {"image": png(), "question": "what color is it?"}).output
    assert set(reply) == {"answer"} and reply["answer"] == reply["answer"].strip()
