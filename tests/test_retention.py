"""Retention deletes exactly the raw events that are due and keeps the rollups."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.cli import main
from backend.db.engine import Database
from backend.db.models import Click, Conversion, Impression, RejectedEventRow, StatsHourly
from backend.events import RejectedEvent, RejectReason, Source, Visitor
from backend.ids import new_event_id
from backend.settings import Settings
from backend.worker.consumer import StreamConsumer
from backend.worker.retention import purge, purge_expired
from backend.worker.store import write_batch
from tests.support import Programme, add_partner_with_link, click_at, follow_link, impression_at

DAY_MS = 86_400_000
NOW_MS = 1_790_000_000_000
VISITOR = Visitor("198.51.100.0/24", "h" * 32, "Mozilla/5.0 (X11; Linux) Chrome/120", True)


async def count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_purge_deletes_what_is_older_than_the_retention_and_keeps_rollups(
    programme: Programme, consumer: StreamConsumer, database: Database
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
    await write_batch(database, await consumer._enricher.prepare(events))
    async with database.session() as session:
        rollup_before = await session.scalar(select(func.sum(StatsHourly.clicks)))

    deleted = await purge_expired(database, retention_days=90, now_ms=NOW_MS)

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

    deleted = await purge(database, partner_id=programme.partner["id"])

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
    monkeypatch.setenv("CLICKTRAIL_SECRET_KEY", settings.secret_key)
    main(["purge", "--before", "2020-01-01"])
    assert capsys.readouterr().out.splitlines() == [
        "deleted 0 clicks",
        "deleted 0 impressions",
        "deleted 0 rejected_events",
        "hourly totals and conversions are kept",
    ]
    with pytest.raises(SystemExit, match="name --partner"):
        main(["purge"])
