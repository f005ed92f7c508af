"""The worker's own ``/metrics`` for Prometheus: this process's batch figures.

A worker serves no HTTP otherwise, and a worker is a scrape target of its own (the figures are
counted per process: ``backend.storage.metrics``), so it answers ``GET /metrics`` on
``WORKER_METRICS_PORT`` when that is set. One request per connection, read with a time limit:
a scraper is the only client, and a slow or broken one cannot hold the worker up.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from backend.storage.metrics import worker_exposition

READ_TIMEOUT_S = 5.0
MAX_HEADER_LINES = 100


async def serve_metrics(redis: Redis, host: str, port: int) -> asyncio.Server:
    """Start answering ``GET /metrics`` on ``host:port``; close the server to stop."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request_line = await reader.readline()
                for _ in range(MAX_HEADER_LINES):  # the headers say nothing we need
                    if (await reader.readline()).strip() == b"":
                        break
            method, path = [*request_line.split(), b"", b""][:2]
            if method == b"GET" and path.split(b"?")[0] == b"/metrics":
                status, body = "200 OK", (await worker_exposition(redis)).encode()
            else:
                status, body = "404 Not Found", b"only GET /metrics here\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass  # the scraper went away or sent nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(answer, host, port)
