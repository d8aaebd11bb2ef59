"""Task request bodies in every form the hosted API accepted, and the control options.

Text tasks accept ``{"inputs", "parameters", "options"}``, a bare JSON string or
number, a bare JSON list, or raw UTF-8 text that is not JSON. Tasks with binary
inputs (images, audio) accept the raw bytes under any content type (or none), or
JSON whose ``inputs`` (or legacy field, such as ``image``) is base64 or a base64
``data:`` URL, or an object of such fields and text (``{"image", "question"}``). When a
body has no ``parameters``, URL query parameters stand in for them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import orjson

from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput
from hubserve.inputs import check_inputs, flag, json_value
from hubserve.media import sniff

from .tasks.base import Options, Payload, Task


def task_payload(body: bytes, limits: LimitsConfig, content_type: str, query: Mapping[str, str],
                 task: Task) -> Payload:
    """``task``'s ``Payload`` of a body (``decode_body`` or ``decode_binary_body``), its inputs,
    parameters and other fields checked by ``check_inputs``."""
    if task.input_kind == "binary":
        payload = decode_binary_body(body, content_type, query, task.binary_field, limits)
    else:
        payload = decode_body(body, content_type, query, limits)
    check_inputs(payload.inputs, limits)
    check_inputs(payload.parameters, limits, "parameters")
    check_inputs(payload.extra, limits, "")
    return payload


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


def decode_body(body: bytes, content_type: str = "", query: Optional[Mapping[str, str]] = None,
                limits: LimitsConfig = LimitsConfig()) -> Payload:
    """Turns a body into a ``Payload``.

    Raises:
        InvalidInput: for invalid UTF-8, an empty body, malformed JSON sent as
            ``application/json``, a JSON value that cannot be an input, or more JSON values
            than ``limits`` allow.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(str(exc)) from None
    if not text.strip():
        raise InvalidInput('The request body is empty: send {"inputs": ...} or the text itself')
    try:
        data = json_value(body, limits)
    except orjson.JSONDecodeError as exc:
        if "json" in content_type.lower():
            raise InvalidInput(f"Malformed JSON body: {exc}") from None
        payload = Payload(inputs=text, raw=True)
    else:
        payload = _from_json(data, text)
    return _with_query(payload, query)


def _with_query(payload: Payload, query: Optional[Mapping[str, str]]) -> Payload:
    """URL query parameters stand in for a body's missing ``parameters``."""
    if not payload.parameters and query:
        # NOTE(hubserve): the control options (?wait_for_model=true) are not model parameters.
        for key, value in query.items():
            target = payload.extra if key in Options.model_fields else payload.parameters
            target.setdefault(key, _query_value(value))
    return payload


def decode_binary_body(body: bytes, content_type: str = "", query: Optional[Mapping[str, str]] = None,
                       legacy_field: Optional[str] = None, limits: LimitsConfig = LimitsConfig()) -> Payload:
    """Turns the body of a binary-input task into a ``Payload`` whose ``inputs`` are bytes (or
    an object whose binary fields are bytes). Nothing is decoded here: the task's replica
    decodes images and audio.

    Raises:
        InvalidInput: for an empty body, malformed JSON sent as ``application/json``, bad base64,
            a URL (the server fetches nothing), JSON without an input, or more JSON values than
            ``limits`` allow.
    """
    if not body:
        raise InvalidInput("The request body is empty: send the file's bytes, or {\"inputs\": \"<base64>\"}")
    data = None
    if "json" in content_type.lower() or (sniff(body) is None and body.lstrip()[:1] == b"{"):
        try:
            data = json_value(body, limits)
        except orjson.JSONDecodeError as exc:
            if "json" in content_type.lower():
                raise InvalidInput(f"Malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        if data is not None:
            raise InvalidInput("A JSON body is an object: {\"inputs\": \"<base64>\", \"parameters\": {...}}")
        payload = Payload(inputs=body, raw=True)
    else:
        rest = dict(data)
        parameters = rest.pop("parameters", None) or {}
        if not isinstance(parameters, dict):
            raise InvalidInput("`parameters` must be an object")
        inputs = rest.pop("inputs", None)
        if inputs is None and legacy_field:
            inputs = rest.pop(legacy_field, None)
        if inputs is None:
            raise InvalidInput(f"The JSON body has no `inputs`{f' (or `{legacy_field}`)' if legacy_field else ''}: "
                               "send it as base64, or send the file's bytes as the body")
        payload = Payload(inputs=_binary_inputs(inputs), parameters=parameters, extra=rest)
    return _with_query(payload, query)


#: The fields of an object input that hold files (the others are text, such as ``question``).
BINARY_FIELDS = frozenset({"image", "audio"})
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,", re.ASCII)


def _binary_inputs(value: Any) -> Any:
    if isinstance(value, str):
        return b64_bytes(value, "inputs")
    if isinstance(value, dict):
        return {k: b64_bytes(v, k) if k in BINARY_FIELDS and isinstance(v, str) else v for k, v in value.items()}
    raise InvalidInput("`inputs` must be base64 text (or an object of base64 and text fields)")


def b64_bytes(text: str, name: str) -> bytes:
    """The bytes of a base64 string or base64 ``data:`` URL; a 400 naming ``name`` otherwise."""
    stripped = text.strip()
    if stripped.lower().startswith(("http://", "https://")):
        raise InvalidInput(f"`{name}` is a URL; this server fetches nothing: send the file's bytes or base64")
    match = _DATA_URL.match(stripped)
    if match:
        stripped = stripped[match.end():]
    try:
        decoded = base64.b64decode("".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"`{name}` is not valid base64") from None
    if not decoded:
        raise InvalidInput(f"`{name}` is empty")
    return decoded


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
