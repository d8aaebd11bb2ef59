"""Request bodies and control options (no Ray)."""

import pytest

from deployments.payloads import control_from, decode_body
from hubserve.errors import InvalidInput


@pytest.mark.parametrize("body", [b"I love you", b'"I love you"', b'{"inputs": "I love you"}',
                                  b'{"inputs": "I love you", "parameters": {}}'])
def test_text_forms_give_the_same_inputs(body):
    payload = decode_body(body)
    assert payload.inputs == "I love you" and payload.parameters == {}


def test_numbers_are_text_and_lists_are_batches():
    assert decode_body(b"42").inputs == "42"
    assert decode_body(b'["a", "b"]').inputs == ["a", "b"]


def test_invalid_utf8_message_is_the_codec_error():
    with pytest.raises(InvalidInput, match="'utf-8' codec can't decode byte 0xc3 in position 0"):
        decode_body(b"\xc3\x28")


def test_empty_null_and_bad_json():
    with pytest.raises(InvalidInput, match="empty"):
        decode_body(b"  ")
    with pytest.raises(InvalidInput, match="null"):
        decode_body(b"null")
    with pytest.raises(InvalidInput, match="Malformed JSON"):
        decode_body(b'{"inputs": ', "application/json")
    assert decode_body(b'{"inputs": ', "text/plain").inputs == '{"inputs": '
    with pytest.raises(InvalidInput, match="parameters"):
        decode_body(b'{"inputs": "x", "parameters": [1]}')


def test_query_parameters_stand_in_for_missing_parameters():
    payload = decode_body(b"hello", query={"top_k": "2", "normalize": "true", "x": "1.5", "s": "abc"})
    assert payload.parameters == {"top_k": 2, "normalize": True, "x": 1.5, "s": "abc"}
    assert decode_body(b'{"inputs": "a", "parameters": {"top_k": 1}}', query={"top_k": "2"}).parameters == {"top_k": 1}
    waiting = decode_body(b"hello", query={"wait_for_model": "true", "top_k": "1"})
    assert waiting.parameters == {"top_k": 1} and control_from(waiting, {}).wait_for_model is True


def test_top_level_fields_are_kept_as_extra():
    payload = decode_body(b'{"inputs": null, "source_sentence": "a", "sentences": ["b"]}')
    assert payload.extra == {"source_sentence": "a", "sentences": ["b"]}


@pytest.mark.parametrize("body,headers,expected", [
    (b'{"inputs": "x", "options": {"wait_for_model": false}}', {}, False),
    (b'{"inputs": "x", "wait_for_model": true}', {}, True),
    (b'{"inputs": "x"}', {"x-wait-for-model": "1"}, True),
    (b'{"inputs": "x"}', {"x-wait-for-model": "FALSE"}, False),
    (b'{"inputs": "x"}', {}, None),
])
def test_wait_for_model_spellings(body, headers, expected):
    payload = decode_body(body)
    assert control_from(payload, headers).wait_for_model is expected
    assert "wait_for_model" not in payload.extra and "options" not in payload.extra


def test_cache_and_load_flags():
    control = control_from(decode_body(b'{"inputs": "x", "options": {"use_cache": false}}'), {"x-load-model": "0"})
    assert (control.use_cache, control.load_model) == (False, False)
    assert control_from(decode_body(b"x"), {"x-use-cache": "false"}).use_cache is False
    with pytest.raises(InvalidInput, match="x-use-cache"):
        control_from(decode_body(b"x"), {"x-use-cache": "maybe"})
