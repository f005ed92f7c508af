"""The stream consumer: batches from the consumer group (``backend.worker.stream``) through the
pipeline (``backend.worker.pipeline``), each acknowledged once its transaction commits.

At-least-once: nothing is acknowledged before its transaction commits. Failures split two ways:
- transient (database locked, down or full; Redis unreachable): the same batch is retried with
  backoff, for as long as it takes (``backend.worker.retry``);
- anything else: the batch's events are split in halves until the failing event is alone; an
  event that fails ``MAX_DELIVERIES`` times is moved to ``rejected_events`` and the rest of
  its batch commits. An error of the data itself (a value the database cannot hold, a broken
  constraint) fails the same way every time, so such an event is moved there at once.

Batches are pipelined in four steps, each working on its own batch at once: ask (read,
decode, validate, attribute and send the questions to Redis), finish (build the rows from the
answers), write (in a thread on SQLite, over the network on PostgreSQL) and acknowledge. So
Redis answers batch N+1 while the rows of batch N are built and batch N-1 is written, and the
acknowledgement of batch N-1, which Redis takes after those answers, is awaited only once batch
N is written. Writes and acknowledgements stay one at a time and in order, and each batch is
acknowledged only after its own commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.domain.events import QueuedEvent
from backend.storage.db.engine import Database
from backend.storage.metrics import record_batch
from backend.worker.batch import Prepared
from backend.worker.dead_letter import Place, entry_poisons, event_poison, place_name, write_poison
from backend.worker.pipeline import Inquiry, Pipeline
from backend.worker.retry import (
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    is_deterministic,
    is_transient,
    jittered,
    retrying,
)
from backend.worker.steps.write import Written
from backend.worker.stream import CLAIM_IDLE_MS, MAX_DELIVERIES, ConsumerGroup, Entry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Asked:
    """A batch decoded, its questions to Redis and the database on their way."""

    entries: list[Entry]
    events: list[QueuedEvent]
    places: list[Place]
    inquiry: Inquiry | None


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch decoded and enriched, waiting for its turn to be written."""

    entries: list[Entry]
    events: list[QueuedEvent]
    places: list[Place]
    prepared: Prepared | None


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        database: Database,
        pipeline: Pipeline,
        stream: str,
        group: str,
        batch_size: int,
        batch_max_wait_ms: int,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        name: str | None = None,
    ) -> None:
        self._redis = redis
        self._db = database
        self.pipeline = pipeline
        self.group = ConsumerGroup(
            redis,
            stream,
            group,
            name or f"{socket.gethostname()}-{os.getpid()}",
            batch_size,
            batch_max_wait_ms,
            claim_idle_ms,
            self._dead_letter_entry,
        )
        self.name = self.group.name
        self._failures: dict[Place, int] = {}
        self._unwritten: deque[Prepared] = deque(maxlen=2)  # the last batches finished
        self._acknowledging: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.written = Written(0, 0, 0, 0)

    async def ensure_group(self) -> None:
        await self.group.ensure_group()

    async def close(self) -> None:
        """Release the consumer's Redis connection (the worker owns nothing else)."""
        await self.group.close()

    def stop(self) -> None:
        """Finish the batches in hand (asked and being written), then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; the batches in hand when it is called still commit. Redis
        or the database may be away for any length of time meanwhile: the consumer waits for
        them (backing off up to ``BACKOFF_MAX_S``) and goes on where it was."""
        heartbeat = asyncio.create_task(self.group.beat_forever(), name="consumer-heartbeat")
        backoff = BACKOFF_START_S
        try:
            while not self._stopping.is_set():
                try:
                    await self.ensure_group()  # again after a failure: Redis may have lost it
                    await self._batches(block_ms=500, until_empty=False)
                except Exception as error:
                    if not is_transient(error) and "NOGROUP" not in str(error):
                        raise
                    pause = jittered(backoff)
                    log.warning("worker waiting %.1fs after: %s", pause, error)
                    # The batch asked when it failed was dropped: reclaimable once idle.
                    self.group.drop_in_hand()
                    await asyncio.sleep(pause)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def drain(self) -> int:
        """Process until the stream has nothing new for this group (tests, benchmarks); return
        how many events were read."""
        self.group.reclaim_next()
        return await self._batches(block_ms=0, until_empty=True)

    async def _batches(self, block_ms: int, until_empty: bool) -> int:
        total = 0
        asked: Asked | None = None
        writing: asyncio.Task[None] | None = None
        try:
            while asked is not None or not self._stopping.is_set():
                entries: list[Entry] = []
                if not self._stopping.is_set():
                    entries = await self.group.next_entries(0 if asked else block_ms)
                following = await retrying(self._ask, entries) if entries else None
                total += sum(entry.size for entry in entries)
                if asked is not None:
                    staged = await self._finish(asked)
                    if writing is not None:
                        await writing  # one write at a time, in order
                    writing = asyncio.create_task(retrying(self._commit, staged))
                asked = following
                if asked is None:
                    if writing is not None:
                        await writing  # settle the last batch while the stream is quiet
                        writing = None
                    if until_empty:
                        break
        finally:
            if asked is not None and asked.inquiry is not None:
                asked.inquiry.cancel()  # failed: its entries stay pending
            if writing is not None:
                await writing
            await self._acknowledged()
        return total

    async def _ask(self, entries: list[Entry]) -> Asked:
        """Decode (dead-lettering what cannot be), then send the batch's questions."""
        decoded = self.pipeline.decode(entries)
        await write_poison(self._db, decoded.poisons)
        events = decoded.events
        inquiry = await self.pipeline.ask(events) if events else None
        return Asked(entries, events, decoded.places, inquiry)

    async def _finish(self, asked: Asked) -> Staged:
        """Build the batch's rows from the answers; while Redis or the database fail, ask
        again until they answer."""
        prepared: Prepared | None = None
        if asked.inquiry is not None:
            try:
                prepared = await self.pipeline.finish(asked.inquiry, tuple(self._unwritten))
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("batch asked again after: %s", error)
                prepared = await retrying(self._prepare, asked.events)
            self._unwritten.append(prepared)
        return Staged(asked.entries, asked.events, asked.places, prepared)

    async def _prepare(self, events: list[QueuedEvent]) -> Prepared:
        return await self.pipeline.prepare(events, tuple(self._unwritten))

    async def _commit(self, staged: Staged) -> None:
        """Write one staged batch (isolating a poison event if it fails), then have it
        acknowledged once the batch before is."""
        started = time.perf_counter()
        try:
            if staged.prepared is not None:
                self.written += await self.pipeline.write(staged.prepared)
        except Exception as error:
            if is_transient(error):
                raise
            await self._isolate(list(zip(staged.places, staged.events, strict=True)), error)
        await self._acknowledged()
        self._acknowledging = asyncio.create_task(
            self._acknowledge(staged, time.perf_counter() - started)
        )

    async def _acknowledge(self, staged: Staged, seconds: float) -> None:
        await retrying(self.group.ack, staged.entries)
        await record_batch(self._redis, len(staged.events), seconds)

    async def _acknowledged(self) -> None:
        """Wait for the acknowledgement in flight, if any (raising what it failed with)."""
        acknowledging, self._acknowledging = self._acknowledging, None
        if acknowledging is not None:
            await acknowledging

    async def _write_events(self, items: list[tuple[Place, QueuedEvent]]) -> None:
        """Enrich and write part of a failed batch on its own (acknowledged with the batch)."""
        try:
            prepared = await self._prepare([event for _, event in items])
            self.written += await self.pipeline.write(prepared)
        except Exception as error:
            if is_transient(error):
                raise
            await self._isolate(items, error)

    async def _isolate(self, items: list[tuple[Place, QueuedEvent]], error: Exception) -> None:
        """Split failing events until the culprit is alone; count and dead-letter it."""
        if len(items) > 1:
            middle = len(items) // 2
            await self._write_events(items[:middle])
            await self._write_events(items[middle:])
            return
        ((place, event),) = items
        failures = self._failures.get(place, 0) + 1
        log.error(
            "event %s failed (%d/%d): %r", place_name(*place), failures, MAX_DELIVERIES, error
        )
        if failures >= MAX_DELIVERIES or is_deterministic(error):
            self._failures.pop(place, None)
            detail = (
                f"the database refuses it (every time): {error!r}"
                if is_deterministic(error)
                else f"failed {failures} times: {error!r}"
            )
            await write_poison(self._db, [event_poison(place, event, detail)])
        else:
            self._failures[place] = failures
            await asyncio.sleep(BACKOFF_START_S * failures)
            await self._write_events(items)

    async def _dead_letter_entry(self, entry: Entry, detail: str) -> None:
        """Move every event of ``entry`` to ``rejected_events`` unwritten."""
        await write_poison(self._db, entry_poisons(entry, detail))
