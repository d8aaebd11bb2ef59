"""JSON request bodies, bounded before they are parsed (``hubserve.inputs``) and parsed off the
event loop: ``off_loop`` parses and checks a body larger than
``limits.inline_parse_bytes`` in a worker thread, so that no request waits on another's body.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, TypeVar

import orjson

from hubserve.config.limits import LimitsConfig
from hubserve.errors import ApiError, InvalidInput
from hubserve.inputs import check_inputs, json_value

T = TypeVar("T")


async def off_loop(work: Callable[..., T], body: bytes, limits: LimitsConfig, *args: Any) -> T:
    """``work(body, limits, *args)``: here for a body of at most ``limits.inline_parse_bytes``,
    else in a worker thread, so that the event loop (``/health`` and every other request) never
    waits for a large body's parsing; what ``work`` built from a body it refused is freed there."""
    if len(body) <= limits.inline_parse_bytes:
        return work(body, limits, *args)
    return await asyncio.to_thread(_freeing, work, body, limits, *args)


def _freeing(work: Callable[..., T], *args: Any) -> T:
    try:
        return work(*args)
    except ApiError as exc:
        # NOTE(hubserve): the traceback's frames hold what work built; dropped in this thread.
        raise exc.with_traceback(None) from None


def checked_json(body: bytes, limits: LimitsConfig, where: str) -> Any:
    """The JSON value of a body, checked by ``check_inputs`` as ``where``."""
    value = json_value(body, limits)
    check_inputs(value, limits, where)
    return value


async def json_object(body: bytes, limits: LimitsConfig) -> dict:
    """The JSON object of a Hub API body (an empty body is ``{}``).

    Raises:
        InvalidInput: not a JSON object, or too many values.
    """
    try:
        value = await off_loop(json_value, body or b"{}", limits)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("The body is a JSON object")
    return value


def wait_option(body: bytes, limits: LimitsConfig) -> Optional[bool]:
    """``options.wait_for_model`` (or a top-level ``wait_for_model``) of a JSON body, if a bool."""
    try:
        value = json_value(body or b"{}", limits)
    except (orjson.JSONDecodeError, InvalidInput):
        return None
    if not isinstance(value, dict):
        return None
    options = value.get("options") if isinstance(value.get("options"), dict) else {}
    wait = options.get("wait_for_model", value.get("wait_for_model"))
    return wait if isinstance(wait, bool) else None
