"""Bodies counted before they are parsed, checks bounded by the limits, parsing off the event
loop, and the bounds on upstream pulls (no Ray)."""

import asyncio
import threading

import orjson
import pytest

from deployments.payloads import decode_binary_body, decode_body
from hubserve import inputs
from hubserve.tokens.principal import ANONYMOUS, Principal
from hubserve.config.sections import HubConfig
from hubserve.config.limits import LimitsConfig, RateLimit
from hubserve.errors import InvalidInput, ModelNotFound, RateLimited
from hubserve.inputs import check_inputs, check_json_size
from serve_app.json_bodies import json_object, off_loop, wait_option
from serve_app.pull_limits import PullGate, PullSlots
from serve_app.security import MemoryWindows

SMALL = LimitsConfig(max_json_values=10, max_input_chars=5, inline_parse_bytes=0)


@pytest.mark.parametrize("body", [b'[1,2,3,4,5,6,7,8,9]', b'{"inputs": "a,b,c,d,e,f,g,h,i,j,k,l"}',
                                  b'["a\\",\\",\\",\\",\\",\\",\\",\\",\\",\\","]', b'"[,,,,,,,,,,,,,,,,]"',
                                  b'  {"a": {"b": [1, 2]}, "c": [[], {}]}', b"not json, at all, , , , , , , , ,"])
def test_bodies_within_the_bound_pass(body):
    check_json_size(body, SMALL)


@pytest.mark.parametrize("body", [b'[1,2,3,4,5,6,7,8,9,10]', b'{"x": [' + b",".join([b"0"] * 10_000) + b"]}",
                                  b'[' + b",".join([b'""'] * 10_000) + b"]",
                                  b'{"a": "' + b"," * 1000 + b'", "b": [[[[[[[[[[]]]]]]]]]]}'])
def test_bodies_past_the_bound_are_refused_before_parsing(body):
    with pytest.raises(InvalidInput, match="limits.max_json_values"):
        check_json_size(body, SMALL)


def test_the_count_stops_at_the_first_string_past_the_bound(monkeypatch):
    counted = []
    real = inputs._separators
    monkeypatch.setattr(inputs, "_separators", lambda *a: (counted.append(1), real(*a))[1])
    with pytest.raises(InvalidInput):
        check_json_size(b"[" + b",".join([b'"x"'] * 1_000_000) + b"]", SMALL)
    assert len(counted) <= SMALL.max_json_values + 2


class Untouchable(list):
    def __iter__(self):
        raise AssertionError("a list past the bound was walked")


def test_checks_measure_a_container_before_walking_it():
    with pytest.raises(InvalidInput, match="`parameters.x` holds more values.*limits.max_json_values"):
        check_inputs({"x": Untouchable([0] * 50)}, SMALL, "parameters")
    with pytest.raises(InvalidInput, match=r"`parameters.x\[1\].y` has 6 characters"):
        check_inputs({"x": [1, {"y": "a" * 6}]}, SMALL, "parameters")
    with pytest.raises(InvalidInput, match="`context` has 6 characters"):
        check_inputs({"question": "q", "context": "c" * 6}, SMALL, "")


def test_every_parser_of_a_body_counts_it_first():
    wide = orjson.dumps({"inputs": "hi", "parameters": {"x": [0] * 100}})
    with pytest.raises(InvalidInput, match="limits.max_json_values"):
        decode_body(wide, "application/json", limits=SMALL)
    with pytest.raises(InvalidInput, match="limits.max_json_values"):
        decode_binary_body(wide, "application/json", limits=SMALL)
    with pytest.raises(InvalidInput, match="limits.max_json_values"):
        asyncio.run(json_object(wide, SMALL))
    assert wait_option(wide, SMALL) is None
    assert wait_option(b'{"options": {"wait_for_model": false}}', SMALL) is False


def test_large_bodies_are_worked_on_off_the_event_loop():
    def where(body, limits):
        return threading.current_thread() is threading.main_thread()

    limits = LimitsConfig(inline_parse_bytes=100)
    assert asyncio.run(off_loop(where, b"x" * 100, limits)) is True
    assert asyncio.run(off_loop(where, b"x" * 101, limits)) is False


def test_pull_slots_are_held_until_given_back(tmp_path):
    slots = PullSlots(tmp_path / "locks", 2)
    first, second = slots.take(), slots.take()
    assert first is not None and second is not None and slots.take() is None
    slots.give(first)
    assert (third := slots.take()) is not None
    for handle in (second, third):
        slots.give(handle)


def test_pulls_per_caller_and_the_token_rule():
    admin = Principal(user="admin", role="admin")
    gate = PullGate(HubConfig(pull_rate=RateLimit(requests=2, window_s=60)), MemoryWindows())
    closed = PullGate(HubConfig(pull_requires_token=True), MemoryWindows())

    async def run():
        for _ in range(2):
            await gate.count(ANONYMOUS, "ip:10.0.0.1")
        with pytest.raises(RateLimited) as refused:
            await gate.count(ANONYMOUS, "ip:10.0.0.1")
        assert refused.value.status_code == 429 and int(refused.value.headers["Retry-After"]) >= 1
        await gate.count(ANONYMOUS, "ip:10.0.0.2")  # another caller
        for _ in range(5):
            await gate.count(admin, "admin")

    asyncio.run(run())
    with pytest.raises(ModelNotFound) as anonymous:
        closed.may_pull("org/model", ANONYMOUS)
    assert anonymous.value.message == ModelNotFound.for_id("org/model").message
    closed.may_pull("org/model", admin)
