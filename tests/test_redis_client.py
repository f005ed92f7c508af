"""The Redis client on a real server: a restart costs no failed command."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis


async def test_a_command_on_a_connection_a_restarted_redis_closed_is_sent_again(
    tmp_path: Path,
) -> None:
    """The pool hands out connections unchecked (they leave at once): the one the old server
    closed fails its command, which goes again on a new connection."""
    server = EmbeddedRedis(tmp_path).start()
    client = connect(server.url)
    try:
        await client.xadd("s", {"e": "1"})  # the connection now waits in the pool
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)

        await client.xadd("s", {"e": "2"})

        assert [fields for _, fields in await client.xrange("s")] == [{b"e": b"1"}, {b"e": b"2"}]
    finally:
        await client.aclose()
        server.stop()
