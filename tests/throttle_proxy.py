"""A TCP proxy that slows the answers of one upstream: ``python -m tests.throttle_proxy PORT
UPSTREAM_PORT BYTES_PER_S``. Tests put it between two servers to watch a download in progress,
and kill it (by PID) to cut one mid-way."""

from __future__ import annotations

import asyncio
import sys
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    started, sent = time.monotonic(), 0
    try:
        while chunk := await reader.read(min(16384, max(1024, int(rate / 20))) if rate else 65536):
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(port: int, upstream: int, rate: float) -> None:
    async def serve(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer, 0), pipe(up_reader, client_writer, rate))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
