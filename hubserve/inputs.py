"""Request values, bounded before they reach any model: JSON bodies counted before they are
parsed, inputs measured before they are walked, and boolean flags spelled as text.

``check_json_size`` refuses a body of more than ``limits.max_json_values`` values from its bytes
alone, so what orjson builds is bounded too; ``check_inputs`` bounds what a parsed body holds.
The ingress and the task side both use them.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import orjson

from .config.limits import LimitsConfig
from .errors import InvalidInput

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

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


def check_inputs(value: Any, limits: LimitsConfig, where: str = "inputs") -> None:
    """Refuses too many inputs, more than ``limits.max_json_values`` values, or a string anywhere
    in ``value`` that is too long (400). The work is bounded by the limits, not by ``value``: a
    container is measured before its items are visited, and a path is spelled out only for the
    item that is refused.

    Args:
        value: the ``inputs`` (or ``parameters``, or a whole body) of a request.
        where: its name in the error messages ("": a body's top-level fields by their own names).
    """
    if isinstance(value, list) and len(value) > limits.max_inputs:
        raise InvalidInput(f"Too many inputs: {len(value)} in one request, the limit is {limits.max_inputs} "
                           "(limits.max_inputs)")
    budget = limits.max_json_values - 1
    todo: list[tuple[Any, tuple]] = [(value, (where,))]
    while todo:
        item, path = todo.pop()
        if isinstance(item, str):
            if len(item) > limits.max_input_chars:
                raise InvalidInput(f"`{_spelled(path)}` has {len(item)} characters, more than this server allows "
                                   f"({limits.max_input_chars}, limits.max_input_chars)")
        elif isinstance(item, (list, dict)):
            budget -= len(item)
            if budget < 0:
                raise InvalidInput(f"`{_spelled(path) or 'the body'}` holds more values than this server allows "
                                   f"({limits.max_json_values}, limits.max_json_values)")
            pairs = enumerate(item) if isinstance(item, list) else item.items()
            todo.extend((child, (path, key)) for key, child in pairs)


def _spelled(path: tuple) -> str:
    """``inputs.a[0]`` from the nested ``(((("inputs",), "a"), 0)``."""
    keys = []
    while len(path) == 2:
        path, key = path
        keys.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return (path[0] + "".join(reversed(keys))).lstrip(".")


def flag(value: Any, name: str) -> Optional[bool]:
    """A boolean option sent as a bool or as text (``1``/``true``/``yes``/``on`` or the opposite)."""
    if value is None or isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidInput(f"`{name}` must be true or false, got {value!r}")
