"""Group commit of events to the Redis stream.

A Redis round trip per request halves throughput (BASELINES.md), so concurrent requests share
one write: each request appends its event and waits until the batch holding it is in Redis (or,
when Redis fails, fsynced to the spool), and only then answers. There is no timer: while one
batch is in flight the next one gathers, so batches grow with load and a lone request waits for
a single round trip. A batch is one stream entry (``encode_entry``): one XADD, and for the
worker one entry to read and acknowledge however many events it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.events import MAX_ENTRY_EVENTS, encode_entry
from backend.ingest.spool import Spool, read_records

log = logging.getLogger(__name__)

MAX_BATCH = MAX_ENTRY_EVENTS
REPLAY_INTERVAL_S = 1.0


class StreamUnavailable(Exception):
    """Raised to callers that must not spool (postbacks answer 503 so the sender retries)."""


class StreamWriter:
    def __init__(self, redis: Redis, stream: str, spool: Spool) -> None:
        self._redis = redis
        self._stream = stream
        self._spool = spool
        self._payloads: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.spooled = 0
        self.batches = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_forever(), name="stream-writer"),
            asyncio.create_task(self._replay_forever(), name="spool-replay"),
        ]

    async def close(self) -> None:
        """Write what is buffered, then stop."""
        await self._flush_buffered()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def put(self, *payloads: bytes) -> None:
        """Return once the events are in Redis or, if Redis is down, in the spool file."""
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in payloads]
        self._payloads.extend(payloads)
        self._waiters.extend(waiters)
        self._wake.set()
        for waiter in waiters:  # no gather: awaiting a finished future costs next to nothing
            await waiter

    async def put_or_fail(self, payload: bytes) -> None:
        """Write straight to Redis; raise ``StreamUnavailable`` instead of spooling."""
        try:
            await self._add_entry([payload])
        except (RedisError, OSError) as error:
            raise StreamUnavailable(str(error)) from error

    async def _add_entry(self, payloads: list[bytes]) -> None:
        await self._redis.xadd(self._stream, {"e": encode_entry(payloads)})

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_buffered()

    async def _flush_buffered(self) -> None:
        while self._payloads:
            payloads, waiters = self._payloads[:MAX_BATCH], self._waiters[:MAX_BATCH]
            del self._payloads[:MAX_BATCH], self._waiters[:MAX_BATCH]
            self.batches += 1
            try:
                await self._write(payloads)
            except BaseException as error:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                raise
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _write(self, payloads: list[bytes]) -> None:
        try:
            await self._add_entry(payloads)
        except (RedisError, OSError) as error:
            log.warning("redis write failed (%s); spooling %d events", error, len(payloads))
            await asyncio.to_thread(self._spool.append, payloads)
            self.spooled += len(payloads)

    async def _replay_forever(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_INTERVAL_S)
            try:
                await self.replay_spool()
            except (RedisError, OSError) as error:
                log.info("spool replay postponed: %s", error)

    async def replay_spool(self) -> int:
        """Move spooled events to the stream, ``MAX_BATCH`` to an entry; a file is deleted only
        after all of it is sent."""
        if self._spool.size_bytes() == 0:
            return 0
        await self._redis.ping()
        replayed = 0
        for path in await asyncio.to_thread(self._spool.claim):
            records = list(read_records(path))
            for start in range(0, len(records), MAX_BATCH):
                await self._add_entry(records[start : start + MAX_BATCH])
            path.unlink()
            replayed += len(records)
        if replayed:
            log.info("replayed %d spooled events", replayed)
        return replayed
