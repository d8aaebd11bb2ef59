"""Request bodies read from the wire, bounded as they arrive."""

from __future__ import annotations

from starlette.requests import Request

from hubserve.errors import PayloadTooLarge


async def read_body(request: Request, limit: int, what: str = "Request body") -> bytes:
    """The whole body, refusing more than ``limit`` bytes without reading it all (a 413 naming
    ``what`` the body is)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
