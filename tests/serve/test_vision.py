"""Image tasks over HTTP and through the real InferenceClient: every body form, and each bad
input a 400 that leaves the replica serving."""

import base64

import pytest
from huggingface_hub import InferenceClient

from tests.tiny_models import IMAGE_LABELS, VQA_ANSWERS
from tests.unit.test_media import png, png_header_claiming

MODEL = "tiny/vit"


def labels(out) -> list[str]:
    return [o["label"] for o in out]


def test_image_classification_through_the_client(server):
    client = InferenceClient(model=server.model_url(MODEL), timeout=120)
    out = client.image_classification(png())
    assert sorted(o.label for o in out) == sorted(IMAGE_LABELS)
    assert abs(sum(o.score for o in out) - 1) < 1e-4 and out[0].score >= out[-1].score
    assert len(client.image_classification(png(), top_k=1)) == 1


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
def test_the_raw_image_under_any_content_type(http, content_type):
    headers = {"content-type": content_type} if content_type else {}
    headers["x-use-cache"] = "false"
    r = http.post(f"/models/{MODEL}", content=png(), headers=headers)
    assert r.status_code == 200, r.text
    assert sorted(labels(r.json())) == sorted(IMAGE_LABELS)
    assert r.headers["x-compute-type"] in {"cpu", "cpu+optimized"}


def test_base64_json_the_legacy_image_field_and_parameters(http):
    b64 = base64.b64encode(png()).decode()
    first = http.post(f"/models/{MODEL}", json={"inputs": b64, "parameters": {"top_k": 2}})
    legacy = http.post(f"/models/{MODEL}", json={"image": b64, "parameters": {"top_k": 2}})
    pipeline = http.post(f"/pipeline/image-classification/{MODEL}", content=png(), params={"top_k": 2})
    assert first.status_code == legacy.status_code == pipeline.status_code == 200, (first.text, legacy.text)
    assert first.json() == legacy.json() == pipeline.json() and len(first.json()) == 2


@pytest.mark.parametrize("body, message", [
    (b"this is not an image", "the body is text"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 28, "audio/wav"),
    (png_header_claiming(100_000, 100_000), "40000000 pixels, limits.max_image_pixels"),
    (b"", "body is empty"),
])
def test_bad_images_are_400s_and_the_replica_keeps_serving(http, body, message):
    r = http.post(f"/models/{MODEL}", content=body, headers={"content-type": "image/png"})
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert http.post(f"/models/{MODEL}", content=png()).status_code == 200


def test_unknown_parameters_and_a_text_model_are_refused(http, tiny_models):
    r = http.post(f"/models/{MODEL}", content=png(), params={"custom_generate": "evil/repo"})
    assert r.status_code == 400 and "model_kwargs" in r.json()["error"]
    r = http.post(f"/pipeline/image-classification/{tiny_models['text-classification']}", content=png())
    assert r.status_code == 400 and "cannot run `image-classification`" in r.json()["error"]


def test_every_image_task_through_the_client(server, tiny_models):
    """The real InferenceClient parses each answer (its own types, its own body forms)."""
    def client(task):
        return InferenceClient(model=server.model_url(tiny_models[task]), timeout=120)

    boxes = client("object-detection").object_detection(png(), threshold=0.0)
    assert boxes and all(isinstance(b.box.xmin, int) and b.label in IMAGE_LABELS for b in boxes)
    segments = client("image-segmentation").image_segmentation(png(40, 30))
    assert segments and all(s.mask.size == (40, 30) and s.mask.mode == "L" for s in segments)
    scored = client("zero-shot-image-classification").zero_shot_image_classification(
        png(), candidate_labels=["a cat", "a dog"])
    assert sorted(s.label for s in scored) == ["a cat", "a dog"]
    assert isinstance(client("image-to-text").image_to_text(png()).generated_text, str)
    answers = client("visual-question-answering").visual_question_answering(png(), "what color?", top_k=2)
    assert len(answers) == 2 and all(a.answer in VQA_ANSWERS for a in answers)
    words = [["total", [10, 60, 80, 90]], ["42", [90, 60, 130, 90]]]
    doc = client("document-question-answering").document_question_answering(png(), "total?", word_boxes=words)
    assert doc and doc[0].answer in {"total", "42", "total 42"}
    table = {"Repository": ["Transformers", "Datasets"], "Stars": ["36542", "4512"]}
    cell = client("table-question-answering").table_question_answering(table, "How many stars?")
    assert cell.cells and set(cell.cells) <= {"Transformers", "Datasets", "36542", "4512"}


def test_a_document_model_without_ocr_or_word_boxes_is_a_400(http, tiny_models, monkeypatch):
    body = {"inputs": {"image": base64.b64encode(png()).decode(), "question": "total?"}}
    r = http.post(f"/models/{tiny_models['document-question-answering']}", json=body)
    assert r.status_code == 400 and "no OCR" in r.json()["error"], r.text


def test_text_to_image_through_the_client_and_curl_forms(server, http, tiny_models):
    model = tiny_models["text-to-image"]
    image = InferenceClient(model=server.model_url(model), timeout=120).text_to_image(
        "a red cat", num_inference_steps=2, width=32, height=24)
    assert image.format == "PNG" and image.size == (32, 24)  # the client asks for image/png
    r = http.post(f"/models/{model}", content=b"a red cat", params={"num_inference_steps": 2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.content.startswith(b"\xff\xd8\xff")
    webp = http.post(f"/models/{model}", json={"inputs": "a red cat", "parameters": {"num_inference_steps": 2}},
                     headers={"accept": "image/webp"})
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    bad = http.post(f"/models/{model}", json={"inputs": "a cat", "parameters": {"num_inference_steps": 10**6}})
    assert bad.status_code == 400 and "limits.max_inference_steps" in bad.json()["error"]
