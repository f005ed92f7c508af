"""A Redis that stops answering without closing its connections (SIGSTOP: a hung host, a
partition): each call on the request path gives up after ``REQUEST_TIMEOUT_S``, events go to
the spool and land once Redis runs again, the visitor salt and the postback replay guard
neither hold up a request nor leave a claim behind that refuses the sender's retry."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from backend.core.clock import now_ms
from backend.domain.affiliate.postback import CLAIM_HOLD_S, ReplayGuard
from backend.domain.visitor import DailySalt
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.streams.entries import split_entry
from backend.storage.streams.spool import Spool
from backend.storage.streams.writer import StreamUnavailable, StreamWriter

HANGING_S = 10.0  # far past REQUEST_TIMEOUT_S: a call still waiting then waits on Redis


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of the test's own, to stop."""
    own = EmbeddedRedis(tmp_path / "redis").start()
    yield own
    own.stop()


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[Redis]:
    redis = connect(server.url)
    await redis.ping()  # a connection open before the stall, as in a running process
    yield redis
    await redis.aclose()


@contextmanager
def stalled(server: EmbeddedRedis) -> Iterator[None]:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def test_events_are_spooled_at_once_while_redis_is_stalled_and_land_after(
    client: Redis, server: EmbeddedRedis, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    writer = StreamWriter(client, "s", spool)
    writer.start()
    try:
        with stalled(server):
            puts = (writer.put(msgspec.msgpack.encode(number)) for number in range(20))
            await asyncio.wait_for(asyncio.gather(*puts), HANGING_S)
            assert writer.stalled_since is not None
            with pytest.raises(StreamUnavailable):
                await asyncio.wait_for(writer.put_or_fail(msgspec.msgpack.encode(-1)), HANGING_S)
            last = msgspec.msgpack.encode(20)
            await asyncio.wait_for(writer.put(last), HANGING_S)  # straight to the spool
            assert writer.spooled == 21
        deadline = time.monotonic() + 30
        while spool.size_bytes() or writer.stalled_since is not None:
            assert time.monotonic() < deadline, "the spool was not replayed"
            await asyncio.sleep(0.1)
    finally:
        await writer.close()
    written = [part for _, fields in await client.xrange("s") for part in split_entry(fields[b"e"])]
    # A write that timed out may have reached Redis when it woke: sent again, stored once.
    assert set(written) == {msgspec.msgpack.encode(number) for number in range(21)}


async def test_the_visitor_salt_does_not_wait_for_a_stalled_redis_and_is_shared_after(
    client: Redis, server: EmbeddedRedis
) -> None:
    salt = DailySalt(client, retry_s=0.0)
    with stalled(server):
        local = await asyncio.wait_for(salt.current(), HANGING_S)
    shared = await salt.current()
    (key,) = await client.keys("ct:salt:*")
    assert shared == await client.get(key)
    assert shared != local


async def test_a_postback_claim_redis_carried_out_late_does_not_refuse_the_retry(
    client: Redis, server: EmbeddedRedis
) -> None:
    """The claim times out; a stalled Redis carries it out when it wakes, with no request left
    to act on it. It lapses by the hold after the request, so the sender's retry is taken."""
    guard = ReplayGuard(client)
    made_at_ms = now_ms() - (CLAIM_HOLD_S - 6) * 1000  # the claim holds 6 s more
    with stalled(server), pytest.raises(TimeoutError):
        await asyncio.wait_for(guard.claim(7, "f" * 64, made_at_ms), HANGING_S)
    assert await client.exists("ct:postback:7:" + "f" * 64), "carried out when Redis woke"
    deadline = time.monotonic() + 30
    while not await guard.claim(7, "f" * 64, now_ms()):  # the sender's retry
        assert time.monotonic() < deadline, "the lost claim still refuses the retry"
        await asyncio.sleep(0.2)
