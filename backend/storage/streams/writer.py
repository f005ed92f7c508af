"""Group commit of events to the Redis stream.

A Redis round trip per request halves throughput, so concurrent requests share
one write: each request appends its event and waits until the batch holding it is in Redis (or,
when Redis fails, fsynced to the spool), and only then answers. There is no timer: while one
batch is in flight the next one gathers, so batches grow with load and a lone request waits for
a single round trip. A batch is one stream entry (``encode_entry``): one XADD, and for the
worker one entry to read and acknowledge however many events it holds.

A write waits at most ``REQUEST_TIMEOUT_S`` for Redis. One that Redis did not answer in time
(stopped, hung, cut off, with its connections still open) marks Redis stalled: until a ping
answers in time again (``replay_spool``, every second) batches go straight to the spool and
postbacks are told to retry, so no request waits on a Redis that does not answer. A write that
timed out may still reach Redis when it wakes: its events are then queued twice, which the
worker's idempotent inserts absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.storage.redis_client import REQUEST_TIMEOUT_S
from backend.storage.streams.entries import MAX_ENTRY_EVENTS, encode_entry
from backend.storage.streams.spool import Spool, read_records

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
        self.stalled_since: float | None = None  # monotonic time of the write that timed out
        self._refused = False  # the last write failed: said once, not for every batch

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
        self.raise_if_stalled()
        try:
            await self._add_entry([payload])
        except (RedisError, OSError) as error:
            raise StreamUnavailable(str(error) or type(error).__name__) from error

    def raise_if_stalled(self) -> None:
        """``StreamUnavailable`` at once while Redis is known not to answer in time."""
        if self.stalled_since is not None:
            stalled_s = time.monotonic() - self.stalled_since
            raise StreamUnavailable(f"redis has not answered in time for {stalled_s:.0f}s")

    async def _add_entry(self, payloads: list[bytes]) -> None:
        """XADD within ``REQUEST_TIMEOUT_S``; a Redis that lets it time out is stalled."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self._redis.xadd(self._stream, {"e": encode_entry(payloads)})
        except TimeoutError:
            if self.stalled_since is None:
                self.stalled_since = time.monotonic()
                log.warning(
                    "redis did not answer within %.1fs; spooling events until it does",
                    REQUEST_TIMEOUT_S,
                )
            raise

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
        if self.stalled_since is None:
            try:
                await self._add_entry(payloads)
            except (RedisError, OSError) as error:
                if not self._refused and not isinstance(error, TimeoutError):  # a stall: above
                    log.warning("redis write failed (%s); spooling events until it works", error)
                    self._refused = True
            else:
                if self._refused:
                    log.info("redis takes writes again")
                self._refused = False
                return
        await asyncio.to_thread(self._spool.append, payloads)
        self.spooled += len(payloads)

    async def _replay_forever(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_INTERVAL_S)
            try:
                await self.replay_spool()
            except (RedisError, OSError) as error:
                log.info("spool replay postponed: %s", str(error) or type(error).__name__)

    async def replay_spool(self) -> int:
        """Once Redis answers a ping in time (ending a stall), move spooled events to the
        stream, ``MAX_BATCH`` to an entry; a file is deleted only after all of it is sent."""
        if self._spool.size_bytes() == 0 and self.stalled_since is None:
            return 0
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self._redis.ping()
        if self.stalled_since is not None:
            log.info("redis answers again after %.0fs", time.monotonic() - self.stalled_since)
            self.stalled_since = None
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
