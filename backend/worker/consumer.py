"""The stream consumer: read a batch through the consumer group, write it, then XACK.

A stream entry holds the events of one group commit (``backend.domain.events``); a batch is whole
entries holding up to ``batch_size`` events (entries read beyond that start the next batch).
At-least-once: nothing is acknowledged before its transaction commits, and entries left pending
by a consumer that died are taken over with XCLAIM once idle (never those this consumer still
works on, however long its write takes), and dead consumers holding nothing leave the group.
A consumer is dead when its process is, not when it is idle: each live one keeps a key of its
own alive in Redis (``heartbeat_key``, refreshed by a task of its own a few times per expiry),
which the others look for before dropping it; on several machines as on one.
Failures split two ways:
- transient (database locked, down or full; Redis unreachable): the same batch is retried with
  backoff, for as long as it takes;
- anything else: the batch's events are split in halves until the failing event is alone; an
  event that fails ``MAX_DELIVERIES`` times is moved to ``rejected_events`` and the rest of
  its batch commits. An error of the data itself (a value the database cannot hold, a broken
  constraint) fails the same way every time, so such an event is moved there at once. The
  stream's own delivery counter catches an entry that kills the process every time: past
  ``MAX_DELIVERIES`` its events are moved to ``rejected_events`` unwritten.
Acknowledged entries are deleted, so the stream's length is the backlog (in entries).

Batches are pipelined in four steps, each working on its own batch at once: ask (read,
decode, resolve and send the questions to Redis), finish (build the rows from the answers),
write (in a thread on SQLite, over the network on PostgreSQL) and acknowledge. So Redis
answers batch N+1 while the rows of batch N are built and batch N-1 is written, and the
acknowledgement of batch N-1, which Redis takes after those answers, is awaited only once batch
N is written. Writes and acknowledgements stay one at a time and in order, and each batch is
acknowledged only after its own commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from backend.domain.events import (
    QueuedEvent,
    decode_entry,
    decode_event,
    encode_event,
    storable,
)
from backend.storage.db.engine import Database
from backend.storage.metrics import record_batch
from backend.storage.streams.entries import entry_size, split_entry
from backend.worker.enrich import Enricher, Inquiry, Prepared, Row
from backend.worker.store import Written, poison_row, write_batch, write_poison

log = logging.getLogger(__name__)

MAX_DELIVERIES = 5
CLAIM_IDLE_MS = 15_000
CLAIM_EVERY_S = 5.0
CLAIM_EVERY_MIN_S = 0.5
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
MAX_READ_ENTRIES = 100  # per read: bounds the entries read beyond a batch, pending meanwhile
BEATS_PER_LIFE = 6  # heartbeats per heartbeat expiry: a few late ones do not kill a consumer
# Drops a consumer from the group only if its heartbeat has expired and it holds no entry,
# checked in the same atomic step (a consumer that beat or read meanwhile stays).
FORGET_DEAD_CONSUMER = """
if redis.call('EXISTS', KEYS[2]) == 0
    and #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    payload: bytes
    size: int  # events in it


Place = tuple[str, int]  # an event's entry id and index in the entry: names a poison event


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


T = TypeVar("T")
R = TypeVar("R")


# PostgreSQL error classes of the environment: connection (08), transaction rollback (40),
# insufficient resources such as a full disk (53), operator intervention such as a restart
# (57), system errors (58). asyncpg's errors reach SQLAlchemy as plain DBAPIError.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def jittered(delay_s: float) -> float:
    """Half of ``delay_s`` plus a random part of the other half: workers that failed together
    (a Redis or database outage) do not all come back at the same instant."""
    return delay_s / 2 + random.uniform(0, delay_s / 2)


def heartbeat_key(stream: str, group: str, consumer: str) -> str:
    """The key that says consumer ``consumer`` of ``group`` on ``stream`` is alive."""
    return f"{stream}:{group}:alive:{consumer}"


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


# PostgreSQL error classes of the data: data exceptions such as a value out of range (22) and
# integrity constraint violations (23).
_DETERMINISTIC_SQLSTATE_CLASSES = ("22", "23")


def is_deterministic(error: BaseException) -> bool:
    """Errors of the data: the same event fails the same way however often it is written."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_DETERMINISTIC_SQLSTATE_CLASSES):
        return True
    return isinstance(error, DataError | IntegrityError | OverflowError)


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
        # every read: each look costs three round trips to Redis).
        self._claim_every_s = max(min(CLAIM_EVERY_S, claim_idle_ms / 1000), CLAIM_EVERY_MIN_S)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._failures: dict[Place, int] = {}
        self._events_per_entry = 1  # learnt from each read
        self._surplus: list[Entry] = []  # read beyond the last batch, first in the next
        self._in_hand: set[str] = set()  # ids read or claimed and not yet acknowledged
        self._forget_consumer = redis.register_script(FORGET_DEAD_CONSUMER)
        # Twice the claim idle time: a consumer is forgotten about that long after its death.
        self._heartbeat_ms = 2 * claim_idle_ms
        self._unwritten: deque[Prepared] = deque(maxlen=2)  # the last batches finished
        self._acknowledging: asyncio.Task[None] | None = None
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
        """Finish the batches in hand (asked and being written), then return from ``run``."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; the batches in hand when it is called still commit. Redis
        or the database may be away for any length of time meanwhile: the consumer waits for
        them (backing off up to ``BACKOFF_MAX_S``) and goes on where it was."""
        heartbeat = asyncio.create_task(self._beat_forever(), name="consumer-heartbeat")
        backoff = BACKOFF_START_S
        try:
            while not self._stopping.is_set():
                try:
                    await self.ensure_group()  # again after a failure: Redis may have lost it
                    await self._pipeline(block_ms=500, until_empty=False)
                except Exception as error:
                    if not is_transient(error) and "NOGROUP" not in str(error):
                        raise
                    pause = jittered(backoff)
                    log.warning("worker waiting %.1fs after: %s", pause, error)
                    # The batch asked when it failed was dropped: reclaimable once idle.
                    self._in_hand = {entry.entry_id for entry in self._surplus}
                    await asyncio.sleep(pause)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _beat_forever(self) -> None:
        """Keep this consumer's heartbeat key alive (and the consumer listed in the group,
        where Redis 6 lists it only once it has been handed an entry) while the process runs,
        whatever its pipeline is doing."""
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.set(self.heartbeat_key, b"1", px=self._heartbeat_ms)
                    pipe.xgroup_createconsumer(self._stream, self._group, self.name)
                    await pipe.execute()
            except (RedisError, OSError) as error:  # the run loop says what is wrong
                log.debug("heartbeat missed: %s", error)
            await asyncio.sleep(self._heartbeat_ms / 1000 / BEATS_PER_LIFE)

    @property
    def heartbeat_key(self) -> str:
        return heartbeat_key(self._stream, self._group, self.name)

    async def drain(self) -> int:
        """Process until the stream has nothing new for this group (tests, benchmarks); return
        how many events were read."""
        self._next_claim = 0.0
        return await self._pipeline(block_ms=0, until_empty=True)

    async def _pipeline(self, block_ms: int, until_empty: bool) -> int:
        total = 0
        asked: Asked | None = None
        writing: asyncio.Task[None] | None = None
        try:
            while asked is not None or not self._stopping.is_set():
                entries: list[Entry] = []
                if not self._stopping.is_set():
                    entries = await self._next_entries(0 if asked else block_ms)
                following = await self._retrying(self._ask, entries) if entries else None
                total += sum(entry.size for entry in entries)
                if asked is not None:
                    staged = await self._finish(asked)
                    if writing is not None:
                        await writing  # one write at a time, in order
                    writing = asyncio.create_task(self._retrying(self._commit, staged))
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

    async def _next_entries(self, block_ms: int) -> list[Entry]:
        """Abandoned entries when a reclaim is due and finds some, else new ones."""
        if not self._surplus and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_every_s
            if reclaimed := await self._reclaim():
                return self._cut(reclaimed)
        return self._cut(await self._read(block_ms))

    def _cut(self, entries: list[Entry]) -> list[Entry]:
        """The first entries holding at most ``batch_size`` events (at least one entry); the
        rest wait for the next batch."""
        events = 0
        for taken, entry in enumerate(entries):
            events += entry.size
            if events > self._batch_size and taken > 0:
                self._surplus = entries[taken:] + self._surplus
                return entries[:taken]
        return entries

    async def _read(self, block_ms: int) -> list[Entry]:
        entries, self._surplus = self._surplus, []
        wanted = self._batch_size - sum(entry.size for entry in entries)
        if wanted > 0:
            # This batch's events and the next one's: the next then starts at once, not after
            # a read waiting its turn behind the quality script Redis runs for this one.
            entries += await self._xread(wanted + self._batch_size, 0 if entries else block_ms)
            wanted = self._batch_size - sum(entry.size for entry in entries)
        if entries and wanted > 0 and self._max_wait_s > 0:
            deadline = time.monotonic() + self._max_wait_s
            while wanted > 0 and time.monotonic() < deadline:
                more = await self._xread(wanted, 0)
                if not more:
                    await asyncio.sleep(min(0.002, max(deadline - time.monotonic(), 0)))
                entries += more
                wanted -= sum(entry.size for entry in more)
        return entries

    def _entries_for(self, events: int) -> int:
        """Entries enough for ``events``, rounded up: a second read to make up the rest waits
        its turn behind the quality script Redis is running for the batch before."""
        return max(1, min(-(-events // self._events_per_entry), MAX_READ_ENTRIES))

    def _learn_sizes(self, entries: list[Entry]) -> None:
        if entries:
            self._events_per_entry = max(1, sum(entry.size for entry in entries) // len(entries))

    async def _xread(self, events: int, block_ms: int) -> list[Entry]:
        """New entries holding about ``events`` events (as far as recent sizes tell)."""
        response = await self._redis.xreadgroup(
            self._group,
            self.name,
            {self._stream: ">"},
            count=self._entries_for(events),
            block=block_ms or None,
        )
        entries = [_entry(raw_id, fields) for _, found in response for raw_id, fields in found]
        self._learn_sizes(entries)
        self._in_hand.update(entry.entry_id for entry in entries)
        return entries

    async def _reclaim(self) -> list[Entry]:
        """Entries idle past ``claim_idle_ms`` that this consumer is not working on (left by
        a consumer that died, or dropped by a failed pipeline), dead-lettering those delivered
        too often; then the dead consumers that hold nothing leave the group.

        A batch still in hand stays untouched however long its write takes (a held database
        lock): claiming it back would count a delivery and could dead-letter a good event.
        """
        idle = await self._redis.xpending_range(
            self._stream,
            self._group,
            min="-",
            max="+",
            count=self._entries_for(self._batch_size) + len(self._in_hand),
            idle=self._claim_idle_ms,
        )
        deliveries = {  # as they will be once claimed: XCLAIM counts one more
            entry_id: int(item["times_delivered"]) + 1
            for item in idle
            if (entry_id := _text(item["message_id"])) not in self._in_hand
        }
        entries: list[Entry] = []
        if deliveries:
            claimed = await self._redis.xclaim(
                self._stream, self._group, self.name, self._claim_idle_ms, list(deliveries)
            )
            entries = [_entry(raw_id, fields) for raw_id, fields in claimed if fields]
            self._in_hand.update(entry.entry_id for entry in entries)
        await self._forget_dead_consumers()
        if not entries:
            return []
        log.info("reclaimed %d entries left by other consumers", len(entries))
        keep: list[Entry] = []
        for entry in entries:
            if deliveries[entry.entry_id] > MAX_DELIVERIES:
                await self._dead_letter_entry(entry, "delivered too often without success")
            else:
                keep.append(entry)
        return keep

    async def _forget_dead_consumers(self) -> None:
        """Drop the consumers whose heartbeat has expired and that hold no entry: a worker
        killed with SIGKILL stays in the group otherwise, for good. Only those that have not
        read for ``claim_idle_ms`` are looked at."""
        consumers = await self._redis.xinfo_consumers(self._stream, self._group)
        idle = [
            name
            for consumer in consumers
            if (name := _text(consumer["name"])) != self.name
            and int(consumer["pending"]) == 0
            and int(consumer["idle"]) >= self._claim_idle_ms
        ]
        for name in idle:
            keys = [self._stream, heartbeat_key(self._stream, self._group, name)]
            if await self._forget_consumer(keys=keys, args=[self._group, name]):
                log.info("consumer %s left the group (its process is gone)", name)

    async def _retrying(self, work: Callable[[T], Awaitable[R]], batch: T) -> R:
        """``work(batch)``, repeated with backoff for as long as the failure is transient."""
        backoff = BACKOFF_START_S
        while True:
            try:
                return await work(batch)
            except Exception as error:
                if not is_transient(error):
                    raise
                pause = jittered(backoff)
                log.warning("batch waiting %.1fs after: %s", pause, error)
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _ask(self, entries: list[Entry]) -> Asked:
        """Decode (dead-lettering what cannot be), resolve and send the batch's questions."""
        events: list[QueuedEvent] = []
        places: list[Place] = []
        for entry in entries:
            try:
                decoded = decode_entry(entry.payload)
                places += [(entry.entry_id, index) for index in range(len(decoded))]
            except (msgspec.DecodeError, msgspec.ValidationError):
                decoded = await self._decode_apart(entry, places)
            events += decoded
        inquiry = await self._enricher.ask(events) if events else None
        return Asked(entries, events, places, inquiry)

    async def _finish(self, asked: Asked) -> Staged:
        """Build the batch's rows from the answers; while Redis or the database fail, ask
        again until they answer."""
        prepared: Prepared | None = None
        if asked.inquiry is not None:
            try:
                prepared = await self._enricher.finish(asked.inquiry, tuple(self._unwritten))
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("batch asked again after: %s", error)
                prepared = await self._retrying(self._prepare, asked.events)
            self._unwritten.append(prepared)
        return Staged(asked.entries, asked.events, asked.places, prepared)

    async def _prepare(self, events: list[QueuedEvent]) -> Prepared:
        return await self._enricher.prepare(events, tuple(self._unwritten))

    async def _decode_apart(self, entry: Entry, places: list[Place]) -> list[QueuedEvent]:
        """The events of an entry that does not decode as a whole, one by one; the parts that
        are not events are dead-lettered."""
        try:
            parts = split_entry(entry.payload)
        except msgspec.DecodeError as error:
            await write_poison(self._db, [_entry_poison(entry, f"undecodable entry: {error}")])
            return []
        events: list[QueuedEvent] = []
        poisons: list[Row] = []
        for index, part in enumerate(parts):
            try:
                events.append(decode_event(part))
                places.append((entry.entry_id, index))
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                detail = f"undecodable event: {error}"
                poisons.append(poison_row(_place_name(entry.entry_id, index), part, detail))
        if poisons:
            await write_poison(self._db, poisons)
        return events

    async def _commit(self, staged: Staged) -> None:
        """Write one staged batch (isolating a poison event if it fails), then have it
        acknowledged once the batch before is."""
        started = time.perf_counter()
        try:
            if staged.prepared is not None:
                self._add(await write_batch(self._db, staged.prepared))
        except Exception as error:
            if is_transient(error):
                raise
            await self._isolate(list(zip(staged.places, staged.events, strict=True)), error)
        await self._acknowledged()
        self._acknowledging = asyncio.create_task(
            self._acknowledge(staged, time.perf_counter() - started)
        )

    async def _acknowledge(self, staged: Staged, seconds: float) -> None:
        await self._retrying(self._ack, staged.entries)
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
            self._add(await write_batch(self._db, prepared))
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
        name = _place_name(*place)
        log.error("event %s failed (%d/%d): %r", name, failures, MAX_DELIVERIES, error)
        if failures >= MAX_DELIVERIES or is_deterministic(error):
            self._failures.pop(place, None)
            detail = (
                f"the database refuses it (every time): {error!r}"
                if is_deterministic(error)
                else f"failed {failures} times: {error!r}"
            )
            stored = storable(encode_event(event))
            await write_poison(self._db, [poison_row(name, stored, detail)])
        else:
            self._failures[place] = failures
            await asyncio.sleep(BACKOFF_START_S * failures)
            await self._write_events(items)

    async def _dead_letter_entry(self, entry: Entry, detail: str) -> None:
        """Move every event of ``entry`` to ``rejected_events`` unwritten, then acknowledge it."""
        try:
            parts = split_entry(entry.payload)
        except msgspec.DecodeError:
            poisons = [_entry_poison(entry, detail)]
        else:
            poisons = [
                poison_row(_place_name(entry.entry_id, index), storable(part), detail)
                for index, part in enumerate(parts)
            ]
        await write_poison(self._db, poisons)
        await self._ack([entry])

    async def _ack(self, entries: list[Entry]) -> None:
        if not entries:
            return
        ids = [entry.entry_id for entry in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, self._group, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()
        self._in_hand.difference_update(ids)

    def _add(self, written: Written) -> None:
        self.written += written


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(raw_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    payload = fields.get(b"e", b"")
    return Entry(entry_id=_text(raw_id), payload=payload, size=entry_size(payload))


def _place_name(entry_id: str, index: int) -> str:
    return f"{entry_id}/{index}"


def _entry_poison(entry: Entry, detail: str) -> Row:
    """A whole entry as one rejected row, when it cannot be taken apart into events."""
    return poison_row(entry.entry_id, entry.payload, detail)
