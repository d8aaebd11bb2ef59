"""A small closed-loop HTTP/1.1 load generator for loopback benchmarks.

Each of ``concurrency`` workers keeps one keep-alive connection and sends the next
request when the previous answer is read, until ``requests`` answers in total or
``duration_s`` seconds have passed (whichever is given). Raw asyncio streams keep
its own CPU cost to a few tens of microseconds per request, so it does not steal
much of the machine from the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit


@dataclass
class Result:
    """Latencies (seconds) of the successful requests, and the failures."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    reconnects: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return status, body


async def _worker(url: str, body: bytes, headers: dict, result: Result, budget: list, deadline: Optional[float]):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    headers = {"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}}
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    ).encode() + body
    reader = writer = None
    try:
        while (budget[0] is None or budget[0] > 0) and (deadline is None or time.perf_counter() < deadline):
            if budget[0] is not None:
                budget[0] -= 1
            start = time.perf_counter()
            for attempt in (0, 1):
                fresh = writer is None
                if fresh:
                    reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(request)
                    status, payload = await _read_response(reader)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    # NOTE(hubserve): a server may close an idle keep-alive connection (e.g. on a
                    # proxy reload); like HTTP clients do, retry once on a new connection.
                    writer.close()
                    writer = None
                    if fresh or attempt:
                        raise
                    result.reconnects += 1
            if status == 200:
                result.latencies.append(time.perf_counter() - start)
            else:
                result.failures.append(f"{status}: {payload[:200]!r}")
    finally:
        if writer is not None:
            writer.close()


async def _run(url, body, concurrency, requests, duration_s, headers) -> Result:
    result = Result()
    deadline = time.perf_counter() + duration_s if duration_s else None
    start = time.perf_counter()
    budget = [requests]  # shared by the workers: the total number of requests left
    await asyncio.gather(*(_worker(url, body, headers, result, budget, deadline) for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    return result


def run(url: str, body: bytes, concurrency: int = 1, requests: Optional[int] = None,
        duration_s: Optional[float] = None, headers: Optional[dict] = None) -> Result:
    """Drives ``url`` with POSTs of ``body``; bounded by ``requests`` and/or ``duration_s``."""
    if requests is None and duration_s is None:
        raise ValueError("give requests or duration_s: the load must stop by itself")
    return asyncio.run(_run(url, body, concurrency, requests, duration_s, dict(headers or {})))
