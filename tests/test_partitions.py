"""PostgreSQL's monthly partitions of clicks and impressions, on a real server.

Run only with ``CLICKTRAIL_TEST_POSTGRES_URL`` (SQLite has no partitions), but for the check
of the worker's cron table. The migrated test
database has this month's partitions and the next two; the tests add past months as the
migration does for old rows, and look at ``tableoid`` to see where each row landed.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from backend.core.clock import DAY_MS, now_ms
from backend.core.settings import Settings
from backend.domain.events import Visitor
from backend.storage.db.engine import Database
from backend.storage.db.partitions import (
    MONTHS_AHEAD,
    PARTITIONED,
    create_ahead,
    ensure_partitions,
    month_of,
    month_start_ms,
    monthly_partitions,
    next_month,
)
from backend.worker.consumer import StreamConsumer
from backend.worker.main import partition_job, worker_options
from backend.worker.retention import purge_expired
from backend.worker.steps.write import write_batch
from tests.support import Programme, click_at, impression_at

VISITOR = Visitor("198.51.100.0/24", "h" * 32, "Mozilla/5.0 (X11; Linux) Chrome/120", True)
CLICKS, IMPRESSIONS = PARTITIONED
FAR_FUTURE_DAYS = 1500  # beyond the year ahead that the cron test makes


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.dialect != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    return database


def events_at(programme: Programme, *times_ms: int) -> list[Any]:
    """A click and an impression at each time."""
    events: list[Any] = []
    for at_ms in times_ms:
        events.append(click_at(programme, at_ms))
        events.append(impression_at(programme, at_ms))
    return events


async def placement(database: Database, table: str, key: str) -> dict[str, str]:
    """Each row's partition, by key."""
    async with database.writing() as connection:
        rows = await connection.execute(
            text(f"SELECT {key}, tableoid::regclass::text FROM {table}")  # noqa: S608
        )
        return dict(rows.all())


async def add_months_since(database: Database, since_ms: int) -> list[str]:
    async with database.writing() as connection:
        return await connection.run_sync(ensure_partitions, now_ms(), since_ms)


async def test_migration_made_this_month_and_the_next_two_and_the_cron_job_keeps_it(
    postgres: Database,
) -> None:
    month = month_of(now_ms())
    expected = [month]
    for _ in range(MONTHS_AHEAD):
        expected.append(next_month(expected[-1]))
    async with postgres.writing() as connection:
        for table in PARTITIONED:
            found = await connection.run_sync(monthly_partitions, table)
            assert set(expected) <= set(found), (table.name, found)
    # A year on, the daily job makes the three months of then (and nothing twice).
    later = now_ms() + 365 * DAY_MS
    created = await create_ahead(postgres, later)
    assert CLICKS.partition(month_of(later)) in created
    assert await create_ahead(postgres, later) == []


def test_the_worker_makes_partitions_daily_once_across_workers(settings: Settings) -> None:
    jobs = {job.name: job for job in worker_options(settings, settings.redis_url)["cron_jobs"]}
    job = jobs["cron:partition_job"]
    assert job.coroutine is partition_job
    assert job.unique
    assert (job.hour, job.minute) == ({2}, {41})


async def test_rows_land_in_their_months_partition_and_the_rest_in_default(
    postgres: Database, programme: Programme, consumer: StreamConsumer
) -> None:
    now = now_ms()
    later = next_month(month_of(now))
    far_future = now + FAR_FUTURE_DAYS * DAY_MS  # past any partition made ahead
    long_ago = now - 400 * DAY_MS  # before any partition
    next_month_ms = month_start_ms(later) + 3_600_000
    events = events_at(programme, now, next_month_ms, far_future, long_ago)

    written = await write_batch(postgres, await consumer.pipeline.prepare(events))

    assert (written.clicks, written.impressions) == (4, 4)
    for table in (CLICKS, IMPRESSIONS):
        rows = await placement(postgres, table.name, table.key)
        keys = sorted(rows)  # time-ordered ids: oldest first
        assert [rows[key] for key in keys] == [
            table.default,
            table.partition(month_of(now)),
            table.partition(later),
            table.default,
        ]


async def test_a_new_partition_takes_its_rows_from_default(
    postgres: Database, programme: Programme, consumer: StreamConsumer
) -> None:
    old = now_ms() - 200 * DAY_MS
    events = events_at(programme, old)
    await write_batch(postgres, await consumer.pipeline.prepare(events))
    assert set((await placement(postgres, "clicks", "click_id")).values()) == {CLICKS.default}

    created = await add_months_since(postgres, old)

    assert CLICKS.partition(month_of(old)) in created
    assert set((await placement(postgres, "clicks", "click_id")).values()) == {
        CLICKS.partition(month_of(old))
    }
    assert set((await placement(postgres, "impressions", "event_id")).values()) == {
        IMPRESSIONS.partition(month_of(old))
    }


async def test_a_redelivered_batch_across_partitions_inserts_nothing_twice(
    postgres: Database, programme: Programme, consumer: StreamConsumer
) -> None:
    now = now_ms()
    await add_months_since(postgres, now - 70 * DAY_MS)
    times = [now - 70 * DAY_MS, now - 35 * DAY_MS, now, now + FAR_FUTURE_DAYS * DAY_MS]
    prepared = await consumer.pipeline.prepare(events_at(programme, *times))

    first = await write_batch(postgres, prepared)
    again = await write_batch(postgres, prepared)

    assert (first.clicks, first.impressions) == (4, 4)
    assert (again.clicks, again.impressions) == (0, 0)
    rows = await placement(postgres, "clicks", "click_id")
    assert len(rows) == 4
    assert len(set(rows.values())) == 4  # three months and DEFAULT
    async with postgres.session() as session:
        rollup = await session.scalar(text("SELECT sum(clicks + flagged_clicks) FROM stats_hourly"))
    assert rollup == 4


async def test_retention_drops_whole_old_partitions_and_deletes_rows_of_the_boundary_month(
    postgres: Database, programme: Programme, consumer: StreamConsumer, redis: Redis
) -> None:
    now = now_ms()
    retention_days = 60
    cutoff = now - retention_days * DAY_MS
    await add_months_since(postgres, now - 130 * DAY_MS)
    times = [now - 130 * DAY_MS, now - 100 * DAY_MS, cutoff - DAY_MS // 2, cutoff + DAY_MS, now]
    await write_batch(postgres, await consumer.pipeline.prepare(events_at(programme, *times)))
    old_months = {month_of(now - 130 * DAY_MS), month_of(now - 100 * DAY_MS)}

    deleted = await purge_expired(postgres, redis, retention_days, now_ms=now)

    assert deleted == 3 * 2  # three clicks and three impressions older than the cutoff
    async with postgres.writing() as connection:
        for table in PARTITIONED:
            left = await connection.run_sync(monthly_partitions, table)
            assert not old_months & set(left), table.name
            assert month_of(cutoff) in left  # the boundary month stays, with its newer rows
    clicks = await placement(postgres, "clicks", "click_id")
    assert len(clicks) == 2
    assert set(clicks.values()) <= {
        CLICKS.partition(month_of(cutoff + DAY_MS)),
        CLICKS.partition(month_of(now)),
    }
