"""Retention deletes exactly the raw events that are due and keeps the rollups."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from backend.cli import main
from backend.core.clock import DAY_MS
from backend.core.ids import new_event_id
from backend.core.settings import Settings
from backend.domain.events import RejectedEvent, RejectReason, Source, Visitor
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, Impression, RejectedEventRow, StatsHourly
from backend.storage.redis_server import EmbeddedRedis
from backend.worker.consumer import StreamConsumer
from backend.worker.retention import purge, purge_expired
from backend.worker.steps.write import write_batch
from tests.support import (
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    click_at,
    follow_link,
    impression_at,
)

NOW_MS = 1_790_000_000_000
VISITOR = Visitor("198.51.100.0/24", "h" * 32, "Mozilla/5.0 (X11; Linux) Chrome/120", True)


async def count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_purge_deletes_what_is_older_than_the_retention_and_keeps_rollups(
    programme: Programme, consumer: StreamConsumer, database: Database, redis: Redis
) -> None:
    ages_days = [91, 90.01, 89.99, 1]
    events: list[Any] = []
    for age in ages_days:
        at_ms = NOW_MS - int(age * DAY_MS)
        events += [
            click_at(programme, at_ms),
            impression_at(programme, at_ms),
            RejectedEvent(
                new_event_id(at_ms), at_ms, Source.PIXEL, RejectReason.INVALID_AMOUNT, "", ""
            ),
        ]
    await write_batch(database, await consumer.pipeline.prepare(events))
    async with database.session() as session:
        rollup_before = await session.scalar(select(func.sum(StatsHourly.clicks)))

    deleted = await purge_expired(database, redis, retention_days=90, now_ms=NOW_MS)

    assert deleted == 6
    for model in (Click, Impression, RejectedEventRow):
        assert await count(database, model) == 2
    async with database.session() as session:
        assert await session.scalar(select(func.sum(StatsHourly.clicks))) == rollup_before == 4
        oldest = await session.scalar(select(func.min(Click.at_ms)))
    assert oldest == NOW_MS - int(89.99 * DAY_MS)


async def test_erasure_by_partner_deletes_only_that_partners_raw_events(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    redis: Redis,
) -> None:
    other, other_link = await add_partner_with_link(client, programme, "Other")
    for code in (programme.link["code"], programme.link["code"], other_link["code"]):
        click_id = await follow_link(client, code)
        await client.get(
            "/p.gif", params={"m": programme.merchant["key"], "oid": click_id[-6:], "clk": click_id}
        )
    await client.post(
        "/e", json={"p": programme.partner["key"], "events": [{"l": programme.link["code"]}]}
    )
    await consumer.drain()

    deleted = await purge(database, redis, partner_id=programme.partner["id"])

    assert deleted == {"clicks": 2, "impressions": 1}
    async with database.session() as session:
        partners_left = (await session.scalars(select(Click.partner_id))).all()
        conversions = await session.scalar(select(func.count()).select_from(Conversion))
        rollup = await session.scalar(
            select(func.sum(StatsHourly.clicks + StatsHourly.flagged_clicks))
        )
    assert partners_left == [other["id"]]
    assert conversions == 3
    assert rollup == 3


def test_purge_command_reports_what_it_deleted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLICKTRAIL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CLICKTRAIL_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("CLICKTRAIL_SECRET_KEY", settings.secret_key)
    main(["purge", "--before", "2020-01-01"])
    assert capsys.readouterr().out.splitlines() == [
        "deleted 0 clicks",
        "deleted 0 impressions",
        "deleted 0 rejected_events",
        "deleted 0 delivery_attempts",
        "deleted 0 outbox",
        "deleted 0 mail_outbox",
        "deleted 0 account_tokens",
        "hourly totals and conversions are kept",
    ]
    with pytest.raises(SystemExit, match="name --partner"):
        main(["purge"])


async def test_purged_rows_are_nowhere_on_disk(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    settings: Settings,
    redis: Redis,
    redis_server: EmbeddedRedis,
) -> None:
    """Deleted rows stayed in SQLite's write-ahead log and their stream entries in Redis's
    append-only file: after a purge, neither the database's files nor Redis's hold them."""
    purged, kept = f"purged-{secrets.token_hex(6)}", f"kept-{secrets.token_hex(6)}"
    _, other_link = await add_partner_with_link(client, programme, "Other")
    for code, sub1 in [(programme.link["code"], purged)] * 20 + [(other_link["code"], kept)]:
        await client.get(f"/c/{code}", params={"sub1": sub1}, headers=BROWSER_HEADERS)
    assert await consumer.drain() == 21
    database_files = sqlite_files(settings.database_url)
    assert purged.encode() in files_of(database_files) + files_of(redis_files(redis_server))

    await purge(database, redis, partner_id=programme.partner["id"])

    await database.dispose()
    assert purged.encode() not in files_of(redis_files(redis_server))
    if database_files:  # SQLite: the file, its write-ahead log and the log's index
        on_disk = files_of(database_files)
        assert purged.encode() not in on_disk
        assert kept.encode() in on_disk


def sqlite_files(database_url: str) -> list[Path]:
    if not database_url.startswith("sqlite"):
        return []
    path = Path(database_url.split("///", 1)[1])
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def redis_files(server: EmbeddedRedis) -> list[Path]:
    return [path for path in server.directory.rglob("*") if path.is_file()]


def files_of(paths: list[Path]) -> bytes:
    return b"".join(path.read_bytes() for path in paths if path.exists())
