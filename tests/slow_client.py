"""Slow clients: one that sends a request's headers a line at a time (a slowloris attack), one
that keeps a connection open and idle."""

from __future__ import annotations

import http.client
import select
import socket
import time
from typing import Optional


def headers_cut_off_after(port: int, every_s: float, give_up_s: float) -> Optional[float]:
    """Starts a request, then sends one more header line every ``every_s``; the seconds until
    the server answered (a 408) or closed the connection, None if neither within ``give_up_s``."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=give_up_s) as conn:
        try:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            line = 0
            while time.monotonic() - start < give_up_s:
                readable, _, _ = select.select([conn], [], [], every_s)
                if readable:
                    conn.recv(65536)
                    return time.monotonic() - start
                conn.sendall(f"X-Slow-{line}: {line}\r\n".encode())
                line += 1
        except OSError:
            return time.monotonic() - start
    return None


def idle_cut_off_after(port: int, give_up_s: float) -> Optional[float]:
    """Sends one request on a keep-alive connection, reads the answer, then stays idle; the
    seconds until the server closed the connection, None if it did not within ``give_up_s``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=give_up_s)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        start = time.monotonic()
        readable, _, _ = select.select([conn.sock], [], [], give_up_s)
        if readable and conn.sock.recv(1) == b"":
            return time.monotonic() - start
        return None
    finally:
        conn.close()


def body_cut_off_after(port: int, give_up_s: float) -> Optional[float]:
    """Sends a request's headers and the first byte of its 10-byte body, then nothing; the
    seconds until the server answered or closed the connection, None if neither within ``give_up_s``."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=give_up_s) as conn:
        try:
            conn.sendall(b"POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{")
            readable, _, _ = select.select([conn], [], [], give_up_s)
            if readable:
                conn.recv(65536)
                return time.monotonic() - start
        except OSError:
            return time.monotonic() - start
    return None
