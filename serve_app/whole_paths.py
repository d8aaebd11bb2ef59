"""URL paths are routed whole: a path holding a control character is a 400 before any route.

Starlette's route patterns end in ``$``, which also matches just before a final newline, so
``/models/org/name%0A`` would otherwise be served as ``/models/org/name`` (and a private id's
alias would reach its model). No model id, revision or file name holds a control character.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hubserve.errors import InvalidInput

from .responses import error_response, request_id_of

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class WholePaths:
    """ASGI middleware refusing a request whose path holds a control character (400)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL.search(scope.get("path", "")):
            error = InvalidInput("The URL path holds a control character: ids and file names never do")
            await error_response(error, request_id_of(Request(scope)))(scope, receive, send)
            return
        await self.app(scope, receive, send)
