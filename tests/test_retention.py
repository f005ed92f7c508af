"""Retention deletes exactly the raw events that are due and keeps the rollups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from backend.db.engine import Database
from backend.db.models import Click, Impression, RejectedEventRow, StatsHourly
from backend.events import ClickEvent, ImpressionEvent, RejectedEvent, RejectReason, Source, Visitor
from backend.ids import ClickIdSigner, new_event_id
from backend.settings import Settings
from backend.worker.consumer import StreamConsumer
from backend.worker.retention import purge_expired
from backend.worker.store import write_batch
from tests.support import Programme

DAY_MS = 86_400_000
NOW_MS = 1_790_000_000_000
VISITOR = Visitor("198.51.100.0/24", "h" * 32, "Mozilla/5.0 (X11; Linux) Chrome/120", True)


async def count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_purge_deletes_what_is_older_than_the_retention_and_keeps_rollups(
    programme: Programme, consumer: StreamConsumer, database: Database, settings: Settings
) -> None:
    signer = ClickIdSigner(settings.secret_key)
    link = programme.link["id"]
    ages_days = [91, 90.01, 89.99, 1]
    events: list[Any] = []
    for age in ages_days:
        at_ms = NOW_MS - int(age * DAY_MS)
        events += [
            ClickEvent(
                signer.issue(link, at_ms), at_ms, link, VISITOR, "", "", ("",) * 5, ("",) * 5
            ),
            ImpressionEvent(new_event_id(at_ms), at_ms, link, VISITOR, ""),
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
