"""Request bodies in every form the hosted API accepted, and the control options.

Text tasks accept ``{"inputs", "parameters", "options"}``, a bare JSON string or
number, a bare JSON list, or raw UTF-8 text that is not JSON. When a body has no
``parameters``, URL query parameters stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import orjson
from starlette.requests import Request

from deployments.tasks.base import Options, Payload
from hubserve.errors import InvalidInput, PayloadTooLarge

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _query_value(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def decode_body(body: bytes, content_type: str = "", query: Optional[Mapping[str, str]] = None) -> Payload:
    """Turns a body into a ``Payload``.

    Raises:
        InvalidInput: for invalid UTF-8, an empty body, malformed JSON sent as
            ``application/json``, or a JSON value that cannot be an input.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(str(exc)) from None
    if not text.strip():
        raise InvalidInput('The request body is empty: send {"inputs": ...} or the text itself')
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "json" in content_type.lower():
            raise InvalidInput(f"Malformed JSON body: {exc}") from None
        payload = Payload(inputs=text, raw=True)
    else:
        payload = _from_json(data, text)
    if not payload.parameters and query:
        # NOTE(hubserve): the control options (?wait_for_model=true) are not model parameters.
        for key, value in query.items():
            target = payload.extra if key in Options.model_fields else payload.parameters
            target.setdefault(key, _query_value(value))
    return payload


def _from_json(data: Any, text: str) -> Payload:
    if isinstance(data, dict):
        rest = dict(data)
        parameters = rest.pop("parameters", None)
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise InvalidInput("`parameters` must be an object")
        return Payload(inputs=rest.pop("inputs", None), parameters=parameters, extra=rest)
    if isinstance(data, str) or isinstance(data, list):
        return Payload(inputs=data)
    if data is None:
        raise InvalidInput("The request body is `null`: send {\"inputs\": ...}")
    # NOTE(hubserve): a bare number or boolean is text, as the hosted API read it.
    return Payload(inputs=text.strip(), raw=True)


@dataclass(frozen=True)
class Control:
    """The caller's wishes about caching and cold models.

    ``None`` means "not said"; the ingress applies its defaults.
    """

    use_cache: Optional[bool] = None
    wait_for_model: Optional[bool] = None
    load_model: Optional[bool] = None


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


def control_from(payload: Payload, headers: Mapping[str, str]) -> Control:
    """Merges ``options``, top-level flags and ``x-*`` headers (headers win)."""
    raw_options = payload.extra.pop("options", None)
    if raw_options is not None and not isinstance(raw_options, dict):
        raise InvalidInput("`options` must be an object")
    try:
        options = Options.model_validate(raw_options or {})
    except Exception as exc:  # pydantic's ValidationError
        raise InvalidInput(f"invalid `options`: {exc}") from None
    use_cache = options.use_cache
    wait = options.wait_for_model
    for key in ("wait_for_model", "use_cache"):
        if key in payload.extra:
            value = flag(payload.extra.pop(key), key)
            if key == "wait_for_model":
                wait = value
            else:
                use_cache = value
    if headers.get("x-use-cache") is not None:
        use_cache = flag(headers["x-use-cache"], "x-use-cache")
    if headers.get("x-wait-for-model") is not None:
        wait = flag(headers["x-wait-for-model"], "x-wait-for-model")
    load = None
    if headers.get("x-load-model") is not None:
        load = flag(headers["x-load-model"], "x-load-model")
    if options.dont_load_model:
        load = False
    return Control(use_cache=use_cache, wait_for_model=wait, load_model=load)
