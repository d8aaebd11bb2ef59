"""The image, visual-QA and table tasks through their modules on the PyTorch backend, with tiny
random models: wire shapes, parameters allowlisted and bounded, each bad input a 400 of its own."""

import base64
import io

import pytest
from PIL import Image

from deployments.tasks import get_task
from deployments.tasks.base import Payload
from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput, ServiceUnavailable
from tests.replica import answer, load
from tests.tiny_models import IMAGE_LABELS, TINY_MODELS, VQA_ANSWERS
from tests.unit.test_media import png


@pytest.fixture(scope="module")
def loaded(tiny_store, tmp_path_factory):
    cache = {}

    def get(task_name: str):
        if task_name not in cache:
            model_id = TINY_MODELS[task_name][0]
            cache[task_name] = load(tiny_store / model_id, model_id, task_name,
                                    tmp_path_factory.mktemp(task_name.replace("-", "_")))
        return cache[task_name]
    return get


def refused(task_name: str, inputs, extra=None, limits=None, **parameters) -> str:
    with pytest.raises(InvalidInput) as err:
        get_task(task_name).parse(Payload(inputs=inputs, parameters=parameters, extra=extra or {}), limits)
    return err.value.message


def test_object_detection_boxes_are_integer_corners_inside_the_image(loaded):
    task, model = loaded("object-detection")
    found = answer(task, model, png(40, 30), threshold=0.0).output
    assert found and all(set(d) == {"score", "label", "box"} for d in found)
    for d in found:
        assert d["label"] in IMAGE_LABELS and 0 <= d["score"] <= 1
        box = d["box"]
        assert set(box) == {"xmin", "ymin", "xmax", "ymax"} and all(type(v) is int for v in box.values())
        assert 0 <= box["xmin"] <= box["xmax"] <= 40 and 0 <= box["ymin"] <= box["ymax"] <= 30
    assert answer(task, model, png(40, 30), threshold=1.0).output == []
    assert "less than or equal to 1" in refused("object-detection", png(), threshold=2)


def test_a_bad_image_fails_alone_in_its_batch(loaded):
    task, model = loaded("object-detection")
    good, bad = (task.parse(Payload(inputs=body)) for body in (png(), b"not an image"))
    outs = task.run(model, [good, bad, good])
    assert isinstance(outs[1], InvalidInput) and "Could not decode the input as an image" in outs[1].message
    assert outs[0] == outs[2] and isinstance(outs[0], list)


def test_segmentation_masks_are_single_channel_pngs_of_the_image_size(loaded):
    task, model = loaded("image-segmentation")
    segments = answer(task, model, png(40, 30)).output
    assert segments and {s["label"] for s in segments} <= set(IMAGE_LABELS)
    for s in segments:
        assert s["score"] == 1.0  # a semantic model has no score; the JS client needs a number
        mask = Image.open(io.BytesIO(base64.b64decode(s["mask"])))
        assert mask.format == "PNG" and mask.mode == "L" and mask.size == (40, 30)
        assert set(mask.tobytes()) <= {0, 255}
    with pytest.raises(AssertionError, match="Subtask instance is not supported"):
        answer(task, model, png(), subtask="instance")
    assert "'instance', 'panoptic' or 'semantic'" in refused("image-segmentation", png(), subtask="everything")


def test_zero_shot_image_classification_scores_the_candidate_labels(loaded):
    task, model = loaded("zero-shot-image-classification")
    out = answer(task, model, png(), candidate_labels=["a cat", "a dog", "a car"]).output
    assert sorted(o["label"] for o in out) == ["a car", "a cat", "a dog"]
    assert abs(sum(o["score"] for o in out) - 1) < 1e-4 and out[0]["score"] >= out[-1]["score"]
    legacy = answer(task, model, png(), candidate_labels="a cat, a dog, a car").output
    assert legacy == out
    templated = answer(task, model, png(), candidate_labels=["cat", "dog"], hypothesis_template="a photo of a {}")
    assert len(templated.output) == 2
    assert "must contain {}" in refused("zero-shot-image-classification", png(), candidate_labels=["a"],
                                        hypothesis_template="no slot")
    assert "limits.max_candidate_labels" in refused("zero-shot-image-classification", png(),
                                                    candidate_labels=[str(i) for i in range(65)])
    assert "candidate_labels" in refused("zero-shot-image-classification", png())


def test_image_to_text_writes_a_caption_within_its_bounds(loaded, monkeypatch):
    task, model = loaded("image-to-text")
    out = answer(task, model, png(), max_new_tokens=4).output
    assert isinstance(out, list) and len(out) == 1 and set(out[0]) == {"generated_text"}
    assert isinstance(out[0]["generated_text"], str)
    calls = []
    generate = model.backend.generate_from_image
    monkeypatch.setattr(model.backend, "generate_from_image",
                        lambda images, params, **kw: calls.append(params) or generate(images, params, **kw))
    forced = answer(task, model, png(), generation_parameters={"min_new_tokens": 3, "max_new_tokens": 3}).output
    assert isinstance(forced[0]["generated_text"], str)
    assert calls == [{"min_new_tokens": 3, "max_new_tokens": 3}]
    # Lengths past the decoder's position table (64) are fitted to it, the pipeline's default too.
    for parameters in ({}, {"generation_parameters": {"max_length": 500}}, {"max_new_tokens": 300}):
        assert isinstance(answer(task, model, png(), **parameters).output[0]["generated_text"], str)
    assert "limits.max_new_tokens" in refused("image-to-text", png(), max_new_tokens=10**6)
    assert "model_kwargs" in refused("image-to-text", png(), generation_parameters={"custom_generate": "evil/repo"})


def test_visual_question_answering_reads_every_body_form(loaded):
    task, model = loaded("visual-question-answering")
    image, question = png(), "what color is it?"
    nested = answer(task, model, {"image": image, "question": question}, top_k=2).output
    client = answer(task, model, image, extra={"question": question}, top_k=2).output
    query = answer(task, model, image, question=question, top_k=2).output
    assert nested == client == query and len(nested) == 2
    assert all(set(a) == {"answer", "score"} and a["answer"] in VQA_ANSWERS for a in nested)
    assert len(answer(task, model, {"image": image, "question": question}).output) == 4  # top 5 of 4 answers
    assert "question" in refused("visual-question-answering", image)
    assert "question" in refused("visual-question-answering", {"image": image, "question": ""})


WORDS = [["Invoice", [10, 10, 120, 40]], ["total", [10, 60, 80, 90]], ["42", [90, 60, 130, 90]]]


def test_document_question_answering_with_word_boxes(loaded):
    task, model = loaded("document-question-answering")
    out = answer(task, model, {"image": png(200, 100), "question": "what is the total?"}, word_boxes=WORDS,
                 top_k=2).output
    assert 1 <= len(out) <= 2 and all(set(a) == {"answer", "score", "start", "end"} for a in out)
    words = {w for w, _ in WORDS}
    assert all(set(a["answer"].split()) <= words and 0 <= a["start"] <= a["end"] < len(WORDS) for a in out)


def test_document_question_answering_without_ocr_is_a_clear_400(loaded, monkeypatch):
    task, model = loaded("document-question-answering")
    monkeypatch.setattr("shutil.which", lambda name: None)
    request = task.parse(Payload(inputs={"image": png(), "question": "total?"}))
    (out,) = task.run(model, [request])
    assert isinstance(out, InvalidInput) and "no OCR" in out.message and "word_boxes" in out.message


@pytest.mark.parametrize("parameters, message", [
    ({"lang": "eng --psm 0 -c tessedit_write_images=1"}, "should match pattern"),
    ({"word_boxes": [["word", [1, 2, 3]]]}, "at least 4 items"),
    ({"word_boxes": [["word", [1, 2, 3, 5000]]]}, "less than or equal to 1000"),
    ({"word_boxes": [["w", [1, 2, 3, 4]]] * 11}, "limits.max_document_words"),
    ({"tesseract_config": "--oem 0"}, "model_kwargs"),
])
def test_document_question_answering_parameters_are_bounded(parameters, message):
    got = refused("document-question-answering", {"image": png(), "question": "q?"},
                  limits=LimitsConfig(max_document_words=10), **parameters)
    assert message in got


TABLE = {"Repository": ["Transformers", "Datasets", "Tokenizers"], "Stars": [36542, 4512, 3934]}


def test_table_question_answering_answers_from_the_cells(loaded):
    task, model = loaded("table-question-answering")
    out = answer(task, model, {"query": "How many stars does Transformers have?", "table": TABLE}).output
    assert set(out) <= {"answer", "coordinates", "cells", "aggregator"} and {"answer", "coordinates", "cells"} <= set(out)
    texts = {str(c) for column in TABLE.values() for c in column}
    assert out["cells"] and set(out["cells"]) <= texts
    assert all(type(r) is int and type(c) is int and 0 <= r < 3 and 0 <= c < 2 for r, c in out["coordinates"])
    legacy = answer(task, model, None, extra={"query": "How many stars does Transformers have?", "table": TABLE})
    assert legacy.output == out


@pytest.mark.parametrize("inputs, message", [
    ({"query": "q", "table": {"a": ["1", "2"], "b": ["1"]}}, "same number of cells"),
    ({"query": "q", "table": {}}, "no columns"),
    ({"query": "q", "table": {"a": [[1]]}}, "table.a.0"),
    ({"query": "q", "table": {"a": list(range(6)), "b": list(range(6))}}, "limits.max_table_cells"),
    ({"query": "", "table": {"a": ["1"]}}, "query"),
])
def test_bad_tables_are_400s(inputs, message):
    assert message in refused("table-question-answering", inputs, limits=LimitsConfig(max_table_cells=10))


@pytest.fixture(scope="module")
def painter(tiny_store, tmp_path_factory):
    model_id = TINY_MODELS["text-to-image"][0]
    return load(tiny_store / model_id, model_id, "text-to-image", tmp_path_factory.mktemp("t2i"))


def draw(task, model, prompt="a red cat", media_type=None, limits=None, **parameters) -> bytes:
    request = task.parse(Payload(inputs=prompt, parameters=parameters), limits)
    request.media_type = media_type
    (out,) = task.run(model, [request])
    if isinstance(out, BaseException):
        raise out
    return out


def test_text_to_image_draws_in_every_offered_format(painter):
    task, model = painter
    assert task.media_types == ("image/jpeg", "image/png", "image/webp")
    for media_type, fmt in (("image/jpeg", "JPEG"), ("image/png", "PNG"), ("image/webp", "WEBP"), (None, "JPEG")):
        image = Image.open(io.BytesIO(draw(task, model, media_type=media_type, num_inference_steps=2)))
        assert image.format == fmt and image.size == (16, 16)  # the UNet's 8 latents x the VAE's scale of 2
    sized = Image.open(io.BytesIO(draw(task, model, num_inference_steps=2, width=48, height=32, media_type="image/png")))
    assert sized.size == (48, 32)
    resized = draw(task, model, num_inference_steps=2, target_size={"width": 20, "height": 10}, media_type="image/png")
    assert Image.open(io.BytesIO(resized)).size == (20, 10)


def test_a_seed_makes_a_drawing_repeatable(painter):
    task, model = painter
    first = draw(task, model, num_inference_steps=2, media_type="image/png")
    assert draw(task, model, num_inference_steps=2, media_type="image/png") == first
    assert draw(task, model, num_inference_steps=2, media_type="image/png", seed=3) != first
    assert draw(task, model, num_inference_steps=2, media_type="image/png", negative_prompt="dog") != first


@pytest.mark.parametrize("parameters, message", [
    ({"num_inference_steps": 101}, "limits.max_inference_steps"),
    ({"width": 2048, "height": 2048}, "limits.max_output_pixels"),
    ({"width": 30}, "multiple of 8"),
    ({"guidance_scale": 500}, "less than or equal to 50"),
    ({"scheduler": "os.system"}, "model_kwargs"),
    ({"callback_on_step_end": "x"}, "model_kwargs"),
])
def test_text_to_image_parameters_are_bounded(parameters, message):
    assert message in refused("text-to-image", "a cat", **parameters)


def test_a_timed_out_drawing_stops(painter):
    task, model = painter
    request = task.parse(Payload(inputs="a cat", parameters={"num_inference_steps": 50}))
    request.set_deadline(0.0)
    (out,) = task.run(model, [request])
    assert isinstance(out, ServiceUnavailable) and "timed out" in out.message


@pytest.mark.parametrize("task_name, parameters", [
    ("image-segmentation", {}),
    ("zero-shot-image-classification", {"candidate_labels": ["a cat", "a dog", "a car"]}),
])
def test_onnx_runtime_answers_as_torch_does(tiny_store, tmp_path, task_name, parameters):
    """The image tasks `backend: auto` puts on ONNX Runtime give torch's answers."""
    model_id = TINY_MODELS[task_name][0]
    image = png(40, 30, (30, 160, 90))
    answers = {}
    for backend in ("torch", "onnx"):
        task, model = load(tiny_store / model_id, model_id, task_name, tmp_path, backend)
        result = answer(task, model, image, **parameters)
        answers[backend] = (result.output, model.compute_type)
    (torch_out, torch_type), (onnx_out, onnx_type) = answers["torch"], answers["onnx"]
    assert (torch_type, onnx_type) == ("cpu", "cpu+optimized")
    if task_name == "zero-shot-image-classification":
        assert [o["label"] for o in onnx_out] == [o["label"] for o in torch_out]
        assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(onnx_out, torch_out))
    else:
        assert onnx_out == torch_out  # identical masks


def test_image_captioning_runs_on_onnx_runtime_with_torch_s_captions(tiny_store, tmp_path):
    """A ViT + GPT-2 captioner (vision2seq) exports, passes the gate and writes torch's captions."""
    model_id = TINY_MODELS["image-to-text"][0]
    captions = {}
    for backend in ("torch", "onnx"):
        task, model = load(tiny_store / model_id, model_id, "image-to-text", tmp_path, backend)
        captions[backend] = ([answer(task, model, png(40, 30, color), max_new_tokens=12).output
                              for color in ((30, 160, 90), (200, 20, 20))], model.compute_type)
    assert captions["torch"][1] == "cpu" and captions["onnx"][1] == "cpu+optimized"
    assert captions["onnx"][0] == captions["torch"][0] and captions["torch"][0][0][0]["generated_text"]
