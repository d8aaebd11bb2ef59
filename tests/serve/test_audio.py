"""Audio tasks over HTTP and through the real InferenceClient: raw audio in any container and
under any content type, base64 JSON and the legacy ``audio`` field, the compute headers, and
each bad input a 400 that leaves the replica serving."""

import base64

import pytest
from huggingface_hub import InferenceClient

from tests.media import FORMATS, tone
from tests.tiny_models import AUDIO_LABELS, CTC_VOCAB

ASR = "tiny/wav2vec2-ctc"
CLASSIFIER = "tiny/wav2vec2-audio"
LETTERS = set("".join(CTC_VOCAB[4:])) | {" "}
#: The CTC tokenizer's special tokens besides padding: a CTC transcript keeps them, as transformers'
#: pipeline does (a random tiny model may emit them; a trained one does not).
SPECIAL = CTC_VOCAB[1:4]


def letters_of(text: str) -> set:
    for token in SPECIAL:
        text = text.replace(token, "")
    return set(text)


def test_speech_recognition_through_the_client(server):
    client = InferenceClient(model=server.model_url(ASR), timeout=120)
    out = client.automatic_speech_recognition(tone(1.0, "flac"))
    assert isinstance(out.text, str) and letters_of(out.text) <= LETTERS


def test_audio_classification_through_the_client(server):
    client = InferenceClient(model=server.model_url(CLASSIFIER), timeout=120)
    out = client.audio_classification(tone(1.0, "wav"))
    assert sorted(o.label for o in out) == sorted(AUDIO_LABELS)
    assert abs(sum(o.score for o in out) - 1) < 1e-4 and out[0].score >= out[-1].score
    assert len(client.audio_classification(tone(1.0, "wav"), top_k=1)) == 1


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_under_any_content_type_with_the_compute_headers(http, fmt):
    for content_type in (f"audio/{fmt}", "application/octet-stream"):
        r = http.post(f"/models/{ASR}", content=tone(2.0, fmt), headers={"content-type": content_type,
                                                                          "x-use-cache": "false"})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"text"}
        assert r.headers["x-compute-characters"] == "-1"
        assert abs(float(r.headers["x-compute-audio-length"]) - 2.0) < 0.2
        assert "x-compute-audio-length" in r.headers["access-control-expose-headers"]


def test_base64_json_the_legacy_field_timestamps_and_the_cache(http):
    b64 = base64.b64encode(tone(1.0)).decode()
    first = http.post(f"/models/{CLASSIFIER}", json={"inputs": b64, "parameters": {"top_k": 2}})
    legacy = http.post(f"/models/{CLASSIFIER}", json={"audio": b64, "parameters": {"top_k": 2}})
    pipeline = http.post(f"/pipeline/audio-classification/{CLASSIFIER}", content=tone(1.0), params={"top_k": 2})
    assert first.status_code == legacy.status_code == pipeline.status_code == 200, (first.text, legacy.text)
    assert first.json() == legacy.json() == pipeline.json() and len(first.json()) == 2
    timed = http.post(f"/models/{ASR}", json={"inputs": b64, "parameters": {"return_timestamps": True}})
    assert timed.status_code == 200, timed.text
    for chunk in timed.json()["chunks"]:
        start, end = chunk["timestamps"]
        assert 0 <= start <= end <= 1.1 and isinstance(chunk["text"], str)
    again = http.post(f"/models/{ASR}", json={"inputs": b64, "parameters": {"return_timestamps": True}})
    assert again.headers["x-compute-type"] == "cache" and again.json() == timed.json()
    assert again.headers["x-compute-audio-length"] == timed.headers["x-compute-audio-length"]


@pytest.mark.parametrize("body, message", [
    (b"this is not audio", "the body is text"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 28, "Could not decode the input as audio"),
    (b"", "body is empty"),
])
def test_bad_audio_is_a_400_and_the_replica_keeps_serving(http, body, message):
    r = http.post(f"/models/{ASR}", content=body, headers={"content-type": "audio/wav"})
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert http.post(f"/models/{ASR}", content=tone(0.5)).status_code == 200


def test_parameters_that_a_ctc_model_cannot_take_are_refused(http):
    r = http.post(f"/models/{ASR}", json={"inputs": base64.b64encode(tone(0.5)).decode(),
                                          "parameters": {"generation_parameters": {"num_beams": 2}}})
    assert r.status_code == 400 and "CTC model" in r.json()["error"], r.text
    r = http.post(f"/models/{ASR}", content=tone(0.5), params={"custom_generate": "evil/repo"})
    assert r.status_code == 400 and "model_kwargs" in r.json()["error"], r.text


def test_text_to_speech_answers_audio_as_accept_asks(server, http, tiny_models):
    model = tiny_models["text-to-speech"]
    audio = InferenceClient(model=server.model_url(model), timeout=120).text_to_speech("hello world")
    assert isinstance(audio, bytes) and audio.startswith(b"fLaC")
    r = http.post(f"/models/{model}", json={"inputs": "hello world"}, headers={"accept": "audio/wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content.startswith(b"RIFF")
    assert r.headers["x-compute-type"] in {"cpu", "cache"} and r.headers["x-sha"]
    again = http.post(f"/models/{model}", json={"inputs": "hello world"}, headers={"accept": "audio/wav"})
    assert again.headers["x-compute-type"] == "cache" and again.content == r.content
    assert again.headers["content-type"] == "audio/wav"
    mp3 = http.post(f"/models/{model}", content=b"hello world", headers={"accept": "audio/mpeg, */*;q=0.1"})
    assert mp3.headers["content-type"] == "audio/mpeg" and mp3.content != r.content
    bad = http.post(f"/models/{model}", json={"inputs": "hello", "parameters": {"temperature": 0.5}})
    assert bad.status_code == 400 and "speaks in one pass" in bad.json()["error"]
