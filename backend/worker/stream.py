"""The consumer group's mechanics, with no business rules: read entries in batches, take over
those other consumers left, acknowledge, dead-letter what was delivered too often, and keep
this consumer's heartbeat.

A stream entry holds the events of one group commit (``backend.storage.streams.entries``); a
batch is whole entries holding up to ``batch_size`` events (entries read beyond that start the
next batch). Entries left pending by a consumer that died are taken over with XCLAIM once idle
(never those this consumer still works on, however long its write takes), and dead consumers
holding nothing leave the group. A consumer is dead when its process is, not when it is idle:
each live one keeps a key of its own alive in Redis (``liveness.heartbeat_key``, refreshed by a
task of its own a few times per expiry), which the others look for before dropping it; on several
machines as on one. The stream's delivery counter catches an entry that kills the process every
time: past ``MAX_DELIVERIES`` it is handed to ``dead_letter`` and acknowledged unread.
Acknowledged entries are deleted, so the stream's length is the backlog (in entries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from backend.storage.streams.entries import entry_size
from backend.storage.streams.liveness import heartbeat_key

log = logging.getLogger(__name__)

MAX_DELIVERIES = 5
CLAIM_IDLE_MS = 15_000
CLAIM_EVERY_S = 5.0
CLAIM_EVERY_MIN_S = 0.5
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


DeadLetter = Callable[[Entry, str], Awaitable[None]]  # keeps an entry's events, with why


class ConsumerGroup:
    """One consumer's side of the group: what it reads, holds and acknowledges."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        name: str,
        batch_size: int,
        batch_max_wait_ms: int,
        claim_idle_ms: int,
        dead_letter: DeadLetter,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self.name = name
        self._batch_size = batch_size
        self._max_wait_s = batch_max_wait_ms / 1000
        self._claim_idle_ms = claim_idle_ms
        self._dead_letter = dead_letter
        # Look for abandoned entries about as often as they become claimable (but not on
        # every read: each look costs three round trips to Redis).
        self._claim_every_s = max(min(CLAIM_EVERY_S, claim_idle_ms / 1000), CLAIM_EVERY_MIN_S)
        self._events_per_entry = 1  # learnt from each read
        self._surplus: list[Entry] = []  # read beyond the last batch, first in the next
        self._in_hand: set[str] = set()  # ids read or claimed and not yet acknowledged
        self._forget_consumer = redis.register_script(FORGET_DEAD_CONSUMER)
        # Twice the claim idle time: a consumer is forgotten about that long after its death.
        self._heartbeat_ms = 2 * claim_idle_ms
        self._next_claim = 0.0

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def close(self) -> None:
        await self._redis.aclose()

    async def beat_forever(self) -> None:
        """Keep this consumer's heartbeat key alive (and the consumer listed in the group,
        where Redis 6 lists it only once it has been handed an entry) while the process runs,
        whatever its batches are doing."""
        key = heartbeat_key(self._stream, self._group, self.name)
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.set(key, b"1", px=self._heartbeat_ms)
                    pipe.xgroup_createconsumer(self._stream, self._group, self.name)
                    await pipe.execute()
            except (RedisError, OSError) as error:  # the run loop says what is wrong
                log.debug("heartbeat missed: %s", error)
            await asyncio.sleep(self._heartbeat_ms / 1000 / BEATS_PER_LIFE)

    def reclaim_next(self) -> None:
        """Look for abandoned entries on the next ``next_entries``, whenever the last look."""
        self._next_claim = 0.0

    def drop_in_hand(self) -> None:
        """Forget the entries read and not acknowledged (a failed batch's, reclaimable once
        idle), but those read beyond the last batch."""
        self._in_hand = {entry.entry_id for entry in self._surplus}

    async def next_entries(self, block_ms: int) -> list[Entry]:
        """Abandoned entries when a reclaim is due and finds some, else new ones."""
        if not self._surplus and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._claim_every_s
            if reclaimed := await self._reclaim():
                return self._cut(reclaimed)
        return self._cut(await self.read(block_ms))

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

    async def read(self, block_ms: int) -> list[Entry]:
        """New entries (and those read beyond the last batch) holding about a batch's events,
        waiting up to ``batch_max_wait_ms`` for more once some are in."""
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
        a consumer that died, or dropped by a failed batch), dead-lettering those delivered
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
                await self._dead_letter(entry, "delivered too often without success")
                await self.ack([entry])
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

    async def ack(self, entries: list[Entry]) -> None:
        """Acknowledge and delete the entries (their batch is committed)."""
        if not entries:
            return
        ids = [entry.entry_id for entry in entries]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, self._group, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()
        self._in_hand.difference_update(ids)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(raw_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    payload = fields.get(b"e", b"")
    return Entry(entry_id=_text(raw_id), payload=payload, size=entry_size(payload))
