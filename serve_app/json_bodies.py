"""JSON request bodies, bounded before they are parsed and parsed off the event loop.

``check_json_size`` refuses a body of more than ``limits.max_json_values`` values from its bytes
alone, so what orjson builds is bounded too; ``off_loop`` parses and checks a body larger than
``limits.inline_parse_bytes`` in a worker thread, so that no request waits on another's body.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable, Optional, TypeVar

import orjson

from hubserve.config.limits import LimitsConfig
from hubserve.errors import ApiError, InvalidInput

from .security import check_inputs

T = TypeVar("T")

#: A JSON string literal, its escapes included.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: A body whose JSON value is an array or an object.
_CONTAINER = re.compile(rb"\s*[\[{]")


def _separators(body: bytes, start: int, end: int) -> int:
    return body.count(b",", start, end) + body.count(b"[", start, end) + body.count(b"{", start, end)


def check_json_size(body: bytes, limits: LimitsConfig) -> None:
    """Refuses a JSON body of more than ``limits.max_json_values`` values before it is parsed (400).

    Every value but the first follows a comma or opens its array or object, so one more than the
    commas and brackets outside string literals bounds them. They are counted at C speed over the
    whole body first; only a body past the bound then has its strings skipped, and that count
    stops at the first string past the bound.
    """
    bound = limits.max_json_values
    if not _CONTAINER.match(body) or 1 + _separators(body, 0, len(body)) <= bound:
        return
    count, start = 1, 0
    for match in _STRING.finditer(body):
        count += _separators(body, start, match.start())
        if count > bound:
            break
        start = match.end()
    else:
        count += _separators(body, start, len(body))
    if count > bound:
        raise InvalidInput(f"The JSON body holds more values than this server allows ({bound}, "
                           "limits.max_json_values)")


def json_value(body: bytes, limits: LimitsConfig) -> Any:
    """The JSON value of ``body``, once ``check_json_size`` admits it.

    Raises:
        InvalidInput: too many values.
        orjson.JSONDecodeError: not JSON.
    """
    check_json_size(body, limits)
    return orjson.loads(body)


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
