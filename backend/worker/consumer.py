"""The stream consumer: read a batch through the consumer group, write it, then XACK.

At-least-once: nothing is acknowledged before its transaction commits, and entries left pending
by a consumer that died are taken over with XAUTOCLAIM once idle. Failures split two ways:
- transient (database locked, down or full; Redis unreachable): the same batch is retried with
  backoff, for as long as it takes;
- anything else: the batch is split in halves until the failing entry is alone; an entry that
  fails ``MAX_DELIVERIES`` times (counted here and by the stream's own delivery counter, so a
  poison entry that kills the process is caught too) is moved to ``rejected_events``.
Acknowledged entries are deleted, so the stream's length is the backlog.

Batches are pipelined: the next batch is read and enriched while the previous one is being
written (SQLite and asyncpg work off the event loop), yet writes stay one at a time and in
order, and each batch is acknowledged only after its own commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from backend.db.engine import Database
from backend.events import QueuedEvent, decode_event
from backend.metrics import record_batch
from backend.worker.enrich import Enricher, Prepared
from backend.worker.store import Written, write_batch, write_poison

log = logging.getLogger(__name__)

MAX_DELIVERIES = 5
CLAIM_IDLE_MS = 15_000
CLAIM_EVERY_S = 5.0
CLAIM_EVERY_MIN_S = 0.5
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch decoded and enriched, waiting for its turn to be written."""

    entries: list[Entry]
    prepared: Prepared | None


T = TypeVar("T")
R = TypeVar("R")


# PostgreSQL error classes of the environment: connection (08), transaction rollback (40),
# insufficient resources such as a full disk (53), operator intervention such as a restart
# (57), system errors (58). asyncpg's errors reach SQLAlchemy as plain DBAPIError.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def is_transient(error: BaseException) -> bool:
    """Errors of the environment, not of the data: retrying the same batch can succeed."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES):
        return True
    return isinstance(
        error, OperationalError | InterfaceError | RedisError | OSError | TimeoutError
    )


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        database: Database,
        enricher: Enricher,
        stream: str,
        group: str,
        batch_size: int,
        batch_max_wait_ms: int,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        name: str | None = None,
    ) -> None:
        self._redis = redis
        self._db = database
        self._enricher = enricher
        self._stream = stream
        self._group = group
        self._batch_size = batch_size
        self._max_wait_s = batch_max_wait_ms / 1000
        self._claim_idle_ms = claim_idle_ms
        # Look for abandoned entries about as often as they become claimable (but not on
        # every read: the batch being written is pending too, and would be taken back).
        self._claim_every_s = max(min(CLAIM_EVERY_S, claim_idle_ms / 1000), CLAIM_EVERY_MIN_S)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._failures: dict[str, int] = {}
        self._next_claim = 0.0
        self._stopping = asyncio.Event()
        self.written = Written(0, 0, 0, 0)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def close(self) -> None:
        """Release the consumer's Redis connection (the worker owns nothing else)."""
        await self._redis.aclose()

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; the batch being written when it is called still commits."""
        await self.ensure_group()
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            try:
                await self._pipeline(block_ms=500, until_empty=False)
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("worker waiting %.1fs after: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def drain(self) -> int:
        """Process until the stream has nothing new for this group (tests, benchmarks)."""
        self._next_claim = 0.0
        return await self._pipeline(block_ms=0, until_empty=True)

    async def _pipeline(self, block_ms: int, until_empty: bool) -> int:
        total = 0
        writing: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                entries = await self._next_entries(block_ms)
                if not entries:
                    if writing is not None:
                        await writing  # settle the last batch while the stream is quiet
                        writing = None
                    if until_empty:
                        break
                    continue
                staged = await self._retrying(self._stage, entries)
                if writing is not None:
                    await writing  # one write at a time, in order
                writing = asyncio.create_task(self._retrying(self._commit, staged))
                total += len(entries)
        finally:
            if writing is not None:
                await writing
        return total

    async def _next_entries(self, block_ms: int) -> list[Entry]:
        """Abandoned entries when a reclaim is due and finds some, else new ones."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_every_s
            if reclaimed := await self._reclaim():
                return reclaimed
        return await self._read(block_ms)

    async def _read(self, block_ms: int) -> list[Entry]:
        entries = await self._xread(self._batch_size, block_ms)
        if entries and len(entries) < self._batch_size and self._max_wait_s > 0:
            deadline = time.monotonic() + self._max_wait_s
            while len(entries) < self._batch_size and time.monotonic() < deadline:
                more = await self._xread(self._batch_size - len(entries), 0)
                if not more:
                    await asyncio.sleep(min(0.002, max(deadline - time.monotonic(), 0)))
                entries += more
        return entries

    async def _xread(self, count: int, block_ms: int) -> list[Entry]:
        response = await self._redis.xreadgroup(
            self._group,
            self.name,
            {self._stream: ">"},
            count=count,
            block=block_ms or None,
        )
        return [_entry(raw_id, fields) for _, messages in response for raw_id, fields in messages]

    async def _reclaim(self) -> list[Entry]:
        _, messages, *_ = await self._redis.xautoclaim(
            self._stream, self._group, self.name, self._claim_idle_ms, "0-0", count=self._batch_size
        )
        entries = [_entry(raw_id, fields) for raw_id, fields in messages if fields]
        if not entries:
            return []
        pending = await self._redis.xpending_range(
            self._stream,
            self._group,
            min=entries[0].entry_id,
            max=entries[-1].entry_id,
            count=len(entries),
            consumername=self.name,
        )
        deliveries = {_text(item["message_id"]): int(item["times_delivered"]) for item in pending}
        log.info("reclaimed %d entries left by other consumers", len(entries))
        keep: list[Entry] = []
        for entry in entries:
            if deliveries.get(entry.entry_id, 0) > MAX_DELIVERIES:
                await self._dead_letter(entry, "delivered too often without success")
            else:
                keep.append(entry)
        return keep

    async def _retrying(self, work: Callable[[T], Awaitable[R]], batch: T) -> R:
        """``work(batch)``, repeated with backoff for as long as the failure is transient."""
        backoff = BACKOFF_START_S
        while True:
            try:
                return await work(batch)
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("batch waiting %.1fs after: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _stage(self, entries: list[Entry]) -> Staged:
        """Decode (dead-lettering what cannot be) and enrich; nothing is written yet."""
        events: list[QueuedEvent] = []
        decodable: list[Entry] = []
        for entry in entries:
            try:
                events.append(decode_event(entry.payload))
                decodable.append(entry)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                await self._dead_letter(entry, f"undecodable entry: {error}")
        prepared = await self._enricher.prepare(events) if events else None
        return Staged(decodable, prepared)

    async def _commit(self, staged: Staged) -> None:
        """Write one staged batch, then acknowledge it; isolate a poison entry if it fails."""
        started = time.perf_counter()
        try:
            if staged.prepared is not None:
                self._add(await write_batch(self._db, staged.prepared))
        except Exception as error:
            if is_transient(error):
                raise
            await self._isolate(staged.entries, error)
            return
        await self._ack(staged.entries)
        await record_batch(self._redis, len(staged.entries), time.perf_counter() - started)

    async def _handle(self, entries: list[Entry]) -> None:
        await self._commit(await self._stage(entries))

    async def _isolate(self, entries: list[Entry], error: Exception) -> None:
        """Split a failing batch until the culprit is alone; count and dead-letter it."""
        if len(entries) > 1:
            middle = len(entries) // 2
            await self._handle(entries[:middle])
            await self._handle(entries[middle:])
            return
        (entry,) = entries
        failures = self._failures.get(entry.entry_id, 0) + 1
        log.error("entry %s failed (%d/%d): %r", entry.entry_id, failures, MAX_DELIVERIES, error)
        if failures >= MAX_DELIVERIES:
            self._failures.pop(entry.entry_id, None)
            await self._dead_letter(entry, f"failed {failures} times: {error!r}")
        else:
            self._failures[entry.entry_id] = failures
            await asyncio.sleep(BACKOFF_START_S * failures)
            await self._handle(entries)

    async def _dead_letter(self, entry: Entry, detail: str) -> None:
        await write_poison(self._db, entry.entry_id, entry.payload, detail)
        await self._ack([entry])

    async def _ack(self, entries: list[Entry]) -> None:
        if not entries:
            return
        ids = [entry.entry_id for entry in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, self._group, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()

    def _add(self, written: Written) -> None:
        self.written = Written(
            self.written.clicks + written.clicks,
            self.written.impressions + written.impressions,
            self.written.conversions + written.conversions,
            self.written.rejected + written.rejected,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(raw_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    return Entry(entry_id=_text(raw_id), payload=fields.get(b"e", b""))
