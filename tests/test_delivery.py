"""At-least-once delivery with idempotent writes: nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import fcntl
import os
from base64 import b64decode
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backend.core.settings import Settings
from backend.domain.events import (
    ConversionEvent,
    QueuedEvent,
    Visitor,
    decode_entry,
    decode_event,
    encode_event,
)
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, RejectedEventRow, StatsHourly
from backend.storage.streams.entries import encode_entry, split_entry
from backend.storage.streams.liveness import heartbeat_key
from backend.worker.consumer import StreamConsumer
from backend.worker.main import build_consumer
from backend.worker.steps.write import write_batch
from tests.faults.storage import writes_blocked
from tests.support import (
    BROWSER,
    BROWSER_HEADERS,
    POISON_MINOR,
    Programme,
    click_at,
    follow_link,
    queued_conversion,
)

CURL_FLAGS = "bot:not_browser,bot:no_accept_language"
LOCK_S = 1.5  # a write held up this long outlasts the claim idle time many times over


async def counts(database: Database) -> dict[str, Any]:
    async with database.session() as session:
        stats = (
            await session.execute(
                select(
                    func.coalesce(func.sum(StatsHourly.clicks), 0),
                    func.coalesce(func.sum(StatsHourly.conversions), 0),
                    func.coalesce(func.sum(StatsHourly.revenue_minor), 0),
                    func.coalesce(func.sum(StatsHourly.commission_minor), 0),
                )
            )
        ).one()
        return {
            "clicks": await session.scalar(select(func.count()).select_from(Click)),
            "conversions": await session.scalar(select(func.count()).select_from(Conversion)),
            "rejected": await session.scalar(select(func.count()).select_from(RejectedEventRow)),
            "rollup": tuple(int(value) for value in stats),
        }


def second_consumer(settings: Settings, database: Database) -> StreamConsumer:
    """Another worker that takes over entries as soon as they are pending at all."""
    eager = settings.with_overrides(batch_max_wait_ms=0, claim_idle_ms=0)
    return build_consumer(eager, database, settings.redis_url, name="rescuer")


async def send_click_and_conversion(client: AsyncTestClient[Any], programme: Programme) -> None:
    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "O-1", "amt": "10.00", "clk": click_id},
    )


async def test_batch_delivered_again_after_crash_between_commit_and_ack_changes_nothing(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
) -> None:
    await send_click_and_conversion(client, programme)
    # The first worker reads and commits the batch, then dies before XACK.
    entries = await consumer.group.read(block_ms=0)
    assert len(entries) == 2
    prepared = await consumer.pipeline.prepare([decode_entry(e.payload)[0] for e in entries])
    await write_batch(database, prepared)
    before = await counts(database)
    assert before["clicks"] == 1
    assert before["conversions"] == 1
    assert before["rollup"] == (1, 1, 1000, 150)
    pending = await redis.xpending(settings.stream, settings.consumer_group)
    assert pending["pending"] == 2

    # Another worker reclaims the same entries and writes them again.
    rescuer = second_consumer(settings, database)
    assert await rescuer.drain() == 2

    assert await counts(database) == before
    assert (await redis.xpending(settings.stream, settings.consumer_group))["pending"] == 0
    assert await redis.xlen(settings.stream) == 0


def clicks_on(
    programme: Programme, count: int, first_ms: int = 1_790_000_000_000
) -> list[QueuedEvent]:
    """``count`` clicks a millisecond apart, each by another visitor from another network."""
    return [
        click_at(
            programme,
            first_ms + number,
            Visitor(f"10.{number // 256}.{number % 256}.0/24", f"{number:032x}", BROWSER, True),
        )
        for number in range(count)
    ]


@pytest.mark.parametrize("size", [1, 99, 100, 101, 250])
async def test_batch_of_any_size_is_written_whole_and_again_changes_nothing(
    programme: Programme, consumer: StreamConsumer, database: Database, size: int
) -> None:
    """SQLite takes a batch's rows a hundred to a statement, and one by one for the rest."""
    prepared = await consumer.pipeline.prepare(clicks_on(programme, size))
    assert (await write_batch(database, prepared)).clicks == size
    again = await write_batch(database, prepared)
    assert again.clicks == 0
    assert (await counts(database))["clicks"] == size
    assert (await counts(database))["rollup"][0] == size


async def test_batch_partly_written_before_adds_only_its_new_rows(
    programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    events = clicks_on(programme, 150)
    await write_batch(database, await consumer.pipeline.prepare(events[40:90]))
    written = await write_batch(database, await consumer.pipeline.prepare(events))
    assert written.clicks == 100
    assert (await counts(database))["clicks"] == 150
    assert (await counts(database))["rollup"][0] == 150


async def test_batch_failing_after_its_clicks_went_in_leaves_none_of_them(
    programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """The clicks (COPYed on PostgreSQL, past SQLAlchemy to the driver) are in the batch's
    transaction: a conversion the database refuses afterwards takes them back out."""
    events = [*clicks_on(programme, 50), queued_conversion(programme.merchant["id"], "O-1", 1000)]
    prepared = await consumer.pipeline.prepare(events)
    prepared.conversions[0]["currency"] = None  # NOT NULL: refused after the clicks' insert

    with pytest.raises(IntegrityError):
        await write_batch(database, prepared)

    assert (await counts(database))["clicks"] == 0
    prepared.conversions[0]["currency"] = "EUR"
    assert (await write_batch(database, prepared)).clicks == 50
    assert (await counts(database))["clicks"] == 50


async def test_write_waiting_for_another_writer_leaves_the_event_loop_free(
    programme: Programme, consumer: StreamConsumer, database: Database, settings: Settings
) -> None:
    """On SQLite a bulk write runs in a thread, waiting there for the lock like any writer."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL's driver is asynchronous; the thread is SQLite's")
    prepared = await consumer.pipeline.prepare(clicks_on(programme, 10))
    ticks = 0
    async with writes_blocked(database, settings.database_url, LOCK_S):
        writing = asyncio.create_task(write_batch(database, prepared))
        while not writing.done() and ticks < 50:
            await asyncio.sleep(LOCK_S / 100)
            ticks += 1
    assert (await asyncio.wait_for(writing, timeout=30)).clicks == 10
    assert ticks == 50, "the event loop stood still while the write waited for the lock"


async def test_workers_bulk_writes_wait_their_turn_on_the_lock_beside_the_file(
    programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """Another worker holding the turn (its own open file, as another process has) keeps this
    one's write from starting; released, the write commits at once."""
    if database.writer_lock is None:
        pytest.skip("PostgreSQL has no single writer: its workers write side by side")
    other = os.open(database.writer_lock.path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        writing = asyncio.create_task(
            write_batch(database, await consumer.pipeline.prepare(clicks_on(programme, 10)))
        )
        await asyncio.sleep(0.5)
        assert not writing.done()
        assert (await counts(database))["clicks"] == 0
        fcntl.flock(other, fcntl.LOCK_UN)
        assert (await asyncio.wait_for(writing, timeout=5)).clicks == 10
    finally:
        os.close(other)
    assert (await counts(database))["clicks"] == 10


def script_calls(redis_url: str) -> int:
    """The quality script's calls Redis has run, asked on a connection of its own."""
    with SyncRedis.from_url(redis_url) as watcher:
        stats: dict[str, dict[str, int]] = watcher.info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_a_batchs_questions_are_in_redis_when_asking_returns(
    programme: Programme, consumer: StreamConsumer, settings: Settings
) -> None:
    """The worker builds the rows of the batch before while Redis answers this one's questions:
    they must have left, not wait for the event loop to come round after those rows."""
    enricher = consumer.pipeline
    await enricher.prepare(clicks_on(programme, 1))  # Redis has the script from now on
    before = script_calls(settings.redis_url)

    inquiry = await enricher.ask(clicks_on(programme, 3, first_ms=1_790_000_100_000))
    asked = script_calls(settings.redis_url)  # blocking: the event loop stands still

    assert asked == before + 1
    assert len((await enricher.finish(inquiry)).clicks) == 3


async def test_event_twice_in_one_batch_is_stored_and_counted_once(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
) -> None:
    """A spool replay cut short sends events again, maybe into the batch holding the first."""
    await follow_link(client, programme.link["code"])
    ((entry_id, fields),) = await redis.xrange(settings.stream)
    await redis.xdel(settings.stream, entry_id)
    (click,) = split_entry(fields[b"e"])
    await redis.xadd(settings.stream, {"e": encode_entry([click, click])})
    await redis.xadd(settings.stream, {"e": encode_entry([click])})

    assert await consumer.drain() == 3

    result = await counts(database)
    assert (result["clicks"], result["rollup"][0]) == (1, 1)


async def test_duplicate_order_id_is_stored_once_and_the_repeat_is_kept_as_rejected(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    for amount in ("10.00", "99.00"):
        await client.get(
            "/p.gif", params={"m": programme.merchant["key"], "oid": "SAME", "amt": amount}
        )
    await consumer.drain()

    async with database.session() as session:
        conversions = (await session.scalars(select(Conversion))).all()
        rejected = (await session.scalars(select(RejectedEventRow))).all()
    assert [c.amount_minor for c in conversions] == [1000]
    assert [r.reason for r in rejected] == ["duplicate_order"]
    assert (await counts(database))["rollup"][1:3] == (1, 1000)


async def test_same_order_in_one_batch_is_stored_once(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    for _ in range(3):
        await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "X"})
    assert await consumer.drain() == 3
    result = await counts(database)
    assert (result["conversions"], result["rejected"], result["rollup"][1]) == (1, 2, 1)


def conversion(programme: Programme, order_id: str, amount_minor: int) -> ConversionEvent:
    return queued_conversion(programme.merchant["id"], order_id, amount_minor)


async def rejected_rows(database: Database) -> list[RejectedEventRow]:
    async with database.session() as session:
        return list((await session.scalars(select(RejectedEventRow))).all())


async def test_poison_event_is_dead_lettered_and_the_rest_of_its_entry_and_batch_commits(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
) -> None:
    await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    # An amount no database integer can hold fails on every attempt; beside it in one entry a
    # good conversion and a part that is no event at all.
    entry = encode_entry(
        [
            encode_event(conversion(programme, "INSIDE", 700)),
            encode_event(conversion(programme, "POISON", POISON_MINOR)),
            msgspec.msgpack.encode("not an event"),
        ]
    )
    poison_entry_id = (await redis.xadd(settings.stream, {"e": entry})).decode()
    await redis.xadd(settings.stream, {"e": b"\xc1 not msgpack"})
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "GOOD", "amt": "5"})

    assert await consumer.drain() == 6

    result = await counts(database)
    assert (result["clicks"], result["conversions"]) == (1, 2)
    assert result["rollup"][1:3] == (2, 1200)
    rejected = {row.event_id: row for row in await rejected_rows(database)}
    assert {row.reason for row in rejected.values()} == {"poison"}
    assert "the database refuses it" in rejected[f"stream:{poison_entry_id}/1"].detail
    assert "undecodable event" in rejected[f"stream:{poison_entry_id}/2"].detail
    assert sum("undecodable entry" in row.detail for row in rejected.values()) == 1
    assert len(rejected) == 3
    assert await redis.xlen(settings.stream) == 0
    assert (await redis.xpending(settings.stream, settings.consumer_group))["pending"] == 0


async def test_entry_delivered_too_often_has_its_events_dead_lettered_one_by_one(
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
) -> None:
    """An entry whose handling kills the worker each time is caught by the stream's counter."""
    events = [conversion(programme, f"O-{n}", 100) for n in range(2)]
    entry_id = await redis.xadd(settings.stream, {"e": encode_entry(map(encode_event, events))})
    await redis.xreadgroup(settings.consumer_group, "crashing", {settings.stream: ">"})
    for _ in range(5):  # five more deliveries, each to a worker that died with it
        await redis.xclaim(settings.stream, settings.consumer_group, "crashing", 0, [entry_id])

    assert await second_consumer(settings, database).drain() == 0

    rejected = await rejected_rows(database)
    assert sorted(row.event_id for row in rejected) == [
        f"stream:{entry_id.decode()}/{index}" for index in range(2)
    ]
    assert all("delivered too often" in row.detail for row in rejected)
    assert [decode_event(b64decode(row.payload.removeprefix("base64:"))) for row in rejected] == (
        events
    )
    assert (await counts(database))["conversions"] == 0
    assert await redis.xlen(settings.stream) == 0


async def test_batch_is_retried_while_the_database_fails_and_acknowledged_only_after_commit(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("a missing table is a programming error on PostgreSQL, not an outage")
    await send_click_and_conversion(client, programme)
    # An operational failure every attempt: the rollup table is missing for a while.
    async with database.writing() as connection:
        await connection.exec_driver_sql("ALTER TABLE stats_hourly RENAME TO stats_away")

    worker = asyncio.create_task(consumer.drain())
    await asyncio.sleep(1.0)
    assert not worker.done()
    assert (await counts_without_rollup(database)) == (0, 0)
    assert (await redis.xpending(settings.stream, settings.consumer_group))["pending"] == 2

    async with database.writing() as connection:
        await connection.exec_driver_sql("ALTER TABLE stats_away RENAME TO stats_hourly")
    assert await asyncio.wait_for(worker, timeout=10) == 2

    result = await counts(database)
    assert (result["clicks"], result["conversions"], result["rollup"][:2]) == (1, 1, (1, 1))
    assert (await redis.xpending(settings.stream, settings.consumer_group))["pending"] == 0


async def counts_without_rollup(database: Database) -> tuple[int, int]:
    async with database.session() as session:
        clicks = await session.scalar(select(func.count()).select_from(Click))
        conversions = await session.scalar(select(func.count()).select_from(Conversion))
    return int(clicks or 0), int(conversions or 0)


async def test_write_outlasting_the_claim_idle_time_is_not_taken_back(
    programme: Programme, database: Database, settings: Settings, redis: Redis
) -> None:
    """Batches in hand while the database is locked stay this consumer's: none is claimed
    again (each claim counts a delivery, and five dead-letter a good event)."""
    quick = settings.with_overrides(claim_idle_ms=100, batch_size=10)  # LOCK_S is 15 times it
    for number in range(30):
        event = encode_event(conversion(programme, f"L-{number}", 100))
        await redis.xadd(settings.stream, {"e": encode_entry([event])})
    worker = build_consumer(quick, database, settings.redis_url)
    await worker.ensure_group()
    try:
        async with writes_blocked(database, settings.database_url, LOCK_S):
            draining = asyncio.create_task(worker.drain())
            await asyncio.sleep(LOCK_S)
        read = await asyncio.wait_for(draining, timeout=30)
    finally:
        await worker.close()

    assert read == 30, "entries in hand were claimed again"
    assert await rejected_rows(database) == []
    assert (await counts(database))["conversions"] == 30
    assert (await redis.xpending(settings.stream, settings.consumer_group))["pending"] == 0


async def test_dead_consumers_holding_nothing_leave_the_group(
    programme: Programme, database: Database, settings: Settings, redis: Redis
) -> None:
    """A worker killed with SIGKILL leaves its consumer behind: once idle and empty-handed
    (its entries taken over) it is dropped; a consumer that has just read is kept."""
    quick = settings.with_overrides(claim_idle_ms=100)
    group, stream = settings.consumer_group, settings.stream
    worker = build_consumer(quick, database, settings.redis_url)
    await worker.ensure_group()
    for number in range(3):
        event = encode_event(conversion(programme, f"K-{number}", 100))
        await redis.xadd(stream, {"e": encode_entry([event])})
    ((_, [(acknowledged, _)]),) = await redis.xreadgroup(group, "killed-empty", {stream: ">"}, 1)
    await redis.xack(stream, group, acknowledged)
    await redis.xreadgroup(group, "killed-holding", {stream: ">"}, 1)
    await asyncio.sleep(0.2)  # both idle past the claim idle time
    ((_, [(held, _)]),) = await redis.xreadgroup(group, "live", {stream: ">"}, 1)
    try:
        assert await worker.drain() == 1  # the entry "killed-holding" held
    finally:
        await worker.close()

    consumers = await redis.xinfo_consumers(stream, group)
    assert {consumer["name"].decode(): consumer["pending"] for consumer in consumers} == {
        worker.name: 0,
        "live": 1,
    }
    pending = await redis.xpending_range(stream, group, "-", "+", 10)
    assert [(item["message_id"], item["consumer"]) for item in pending] == [(held, b"live")]
    assert (await counts(database))["conversions"] == 1


async def test_an_idle_consumer_whose_process_lives_stays_in_the_group(
    database: Database, settings: Settings, redis: Redis
) -> None:
    """Idle past the claim idle time and holding nothing, a consumer whose heartbeat key lives
    (its process runs) is kept; one whose heartbeat is gone is dropped."""
    quick = settings.with_overrides(claim_idle_ms=100)
    group, stream = settings.consumer_group, settings.stream
    worker = build_consumer(quick, database, settings.redis_url)
    await worker.ensure_group()
    for name in ("idle-alive", "idle-dead"):
        await redis.xgroup_createconsumer(stream, group, name)
    await redis.set(heartbeat_key(stream, group, "idle-alive"), b"1", px=60_000)
    await asyncio.sleep(0.2)  # both idle past the claim idle time
    try:
        await worker.drain()
    finally:
        await worker.close()

    names = {consumer["name"].decode() for consumer in await redis.xinfo_consumers(stream, group)}
    assert "idle-alive" in names
    assert "idle-dead" not in names
