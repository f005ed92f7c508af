"""Migration 0019 on a database holding clicks and conversions: the index on conversions'
(status, click_id, at_ms, flags) is made, answers the overview's count of converted clicks
from the index alone (on SQLite, whose choice does not hang on statistics), the count is the
same with and without it, and the downgrade takes it away. On SQLite, and on PostgreSQL (a
database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.core.clock import HOUR_MS, now_ms
from backend.core.ids import ClickIdSigner, click_id_floor
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

INDEX = "ix_conversions_status_click_id_at_ms_flags"
CLICK = text(
    "INSERT INTO clicks (click_id, at_ms, link_id, partner_id, campaign_id, merchant_id,"
    " visitor_hash, device_class, browser, referrer_host, referrer_url, landing_url, sub1, sub2,"
    " sub3, sub4, sub5, utm_source, utm_medium, utm_campaign, utm_term, utm_content, is_bot,"
    " is_unique, flags) VALUES (:id, :at, 1, 1, 1, 1, 'h', 'mobile', 'chrome', '', '', '', '',"
    " '', '', '', '', '', '', '', '', '', false, false, '')"
)
CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, click_id, link_id,"
    " partner_id, campaign_id, amount_minor, commission_minor, currency, status, source,"
    " event_name, flags) VALUES (:event, :at, 1, :event, :click, 1, 1, 1, 500, 50, 'EUR',"
    " :status, 'pixel', 'sale', :flags)"
)
CONVERTED = (  # the shape of metrics.converted_clicks
    "SELECT count(DISTINCT click_id) FROM conversions WHERE click_id >= :start"
    " AND click_id < :end AND at_ms >= :since AND status IN ('approved', 'pending')"
    " AND flags NOT LIKE '%bot_click%' AND flags NOT LIKE '%flagged_click%'"
)


async def _indexes(connection: AsyncConnection) -> set[str]:
    names = await connection.run_sync(
        lambda sync: {index["name"] for index in inspect(sync).get_indexes("conversions")}
    )
    return {str(name) for name in names}


async def _converted(connection: AsyncConnection, values: dict[str, object]) -> int:
    return int(await connection.scalar(text(CONVERTED), values) or 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_converted_clicks_index_comes_with_0019_serves_the_count_and_goes_on_downgrade(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0019")
    database = Database.connect(url)
    await upgrade(database, url, "0018")
    at = now_ms() - HOUR_MS
    signer = ClickIdSigner("k" * 40)
    clicks = [signer.issue(1, at + offset) for offset in range(3)]
    async with database.writing() as connection:
        for click_id in clicks:
            await connection.execute(CLICK, {"id": click_id, "at": at})
        for number, (click_id, status, flags) in enumerate(
            (
                (clicks[0], "pending", ""),
                (clicks[0], "approved", ""),  # the same click converting twice counts once
                (clicks[1], "rejected", ""),
                (clicks[2], "approved", "bot_click"),
            )
        ):
            await connection.execute(
                CONVERSION,
                {
                    "event": f"e{number}",
                    "at": at + 60_000,
                    "click": click_id,
                    "status": status,
                    "flags": flags,
                },
            )
    values: dict[str, object] = {
        "start": click_id_floor(at - HOUR_MS),
        "end": click_id_floor(at + HOUR_MS),
        "since": at - HOUR_MS,
    }
    async with database.writing() as connection:
        assert INDEX not in await _indexes(connection)
        assert await _converted(connection, values) == 1

    await upgrade(database, url, "0019")
    async with database.writing() as connection:
        assert INDEX in await _indexes(connection)
        if backend == "sqlite":  # PostgreSQL chooses by statistics, which four rows do not make
            plan = await connection.execute(text(f"EXPLAIN QUERY PLAN {CONVERTED}"), values)
            assert f"COVERING INDEX {INDEX}" in " ".join(str(row[-1]) for row in plan)
        assert await _converted(connection, values) == 1

    await downgrade_to(database, url, "0018")
    async with database.writing() as connection:
        assert INDEX not in await _indexes(connection)
        assert await _converted(connection, values) == 1
    await database.dispose()
