"""JSON and server-sent-event answers, and the mapping of every failure to one."""

import logging
import uuid
from typing import Any, Optional

import orjson
from fastapi import Request
from fastapi.responses import Response
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from hubserve.errors import ApiError, ServiceUnavailable

logger = logging.getLogger(__name__)

JSON = "application/json"


def dumps(value: Any) -> bytes:
    """JSON bytes (numpy arrays included) with orjson."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(body: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    """A JSON answer carrying ``Content-Type: application/json``."""
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers)


def sse(event: Any) -> bytes:
    """One server-sent event, ``data:<json>`` as TGI writes it."""
    return b"data:" + dumps(event) + b"\n\n"


def request_id_of(request: Request) -> str:
    """The request id: the caller's ``x-request-id``, else the one Serve's proxy made.

    The proxy also echoes it as the ``x-request-id`` answer header.
    """
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def unwrap(exc: BaseException) -> BaseException:
    """The original error behind a Ray task error."""
    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        if isinstance(exc, ApiError):
            return exc
        exc = exc.cause
    return exc


def error_response(exc: BaseException, request_id: str) -> Response:
    """The JSON answer of any failure; unexpected ones are logged once as 500s."""
    exc = unwrap(exc)
    if isinstance(exc, (BackPressureError, DeploymentUnavailableError)):
        exc = ServiceUnavailable(f"The server is busy, retry shortly ({type(exc).__name__})",
                                 headers={"Retry-After": "1"})
    elif isinstance(exc, (RayActorError, ActorUnavailableError)):
        # NOTE(hubserve): the replica running the request died (or is restarting); Ray starts
        # another, and the router sends the retry to a live one.
        exc = ServiceUnavailable("The replica serving this request stopped; retry shortly",
                                 headers={"Retry-After": "1"})
    if not isinstance(exc, ApiError):
        logger.error("request %s failed", request_id, exc_info=exc)
        exc = ApiError("unknown error")
    return json_response(exc.body(), exc.status_code, exc.headers)
