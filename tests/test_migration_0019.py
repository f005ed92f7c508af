"""Migration 0019 on a database holding clicks and conversions: the index on clicks' (sub1,
click_id) is made (on PostgreSQL on the partitioned table, so every monthly partition has
one) and a count filtered by a sub-id and another text reads the sub-id's clicks through it;
the index on conversions' (status, click_id, at_ms, flags) answers the overview's count of
converted clicks (on SQLite, whose choice does not hang on statistics); the counts are the
same with and without them, and the downgrade takes both away. On SQLite, and on PostgreSQL
(a database of its own) when it is configured."""

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

CLICKS_INDEX = "ix_clicks_sub1_click_id"
CONVERSIONS_INDEX = "ix_conversions_status_click_id_at_ms_flags"
CLICK = text(
    "INSERT INTO clicks (click_id, at_ms, link_id, partner_id, campaign_id, merchant_id,"
    " visitor_hash, device_class, browser, referrer_host, referrer_url, landing_url, sub1, sub2,"
    " sub3, sub4, sub5, utm_source, utm_medium, utm_campaign, utm_term, utm_content, is_bot,"
    " is_unique, flags) VALUES (:id, :at, 1, 1, 1, 1, 'h', :device, 'chrome', '', '', '', :sub1,"
    " '', '', '', '', '', '', '', '', '', false, false, '')"
)
CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, click_id, link_id,"
    " partner_id, campaign_id, amount_minor, commission_minor, currency, status, source,"
    " event_name, flags) VALUES (:event, :at, 1, :event, :click, 1, 1, 1, 500, 50, 'EUR',"
    " :status, 'pixel', 'sale', :flags)"
)
FILTERED = (
    "SELECT count(*) FROM clicks WHERE click_id >= :start AND click_id < :end"
    " AND sub1 = 'post-1' AND device_class = 'mobile'"
)
CONVERTED = (  # the shape of metrics.converted_clicks
    "SELECT count(DISTINCT click_id) FROM conversions WHERE click_id >= :start"
    " AND click_id < :end AND at_ms >= :since AND status IN ('approved', 'pending')"
    " AND flags NOT LIKE '%bot_click%' AND flags NOT LIKE '%flagged_click%'"
)


async def _indexes(connection: AsyncConnection, table: str) -> set[str]:
    names = await connection.run_sync(
        lambda sync: {index["name"] for index in inspect(sync).get_indexes(table)}
    )
    return {str(name) for name in names}


async def _plan(
    connection: AsyncConnection, backend: str, query: str, values: dict[str, object]
) -> str:
    """The plan of ``query``, as text (on PostgreSQL with sequential scans off: a handful of
    rows would otherwise be read in one go whatever the indexes)."""
    if backend == "sqlite":
        rows = await connection.execute(text(f"EXPLAIN QUERY PLAN {query}"), values)
        return " ".join(str(row[-1]) for row in rows)
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    rows = await connection.execute(text(f"EXPLAIN {query}"), values)
    return " ".join(str(row[0]) for row in rows)


async def _counts(connection: AsyncConnection, values: dict[str, object]) -> tuple[int, int]:
    filtered = await connection.scalar(text(FILTERED), values)
    converted = await connection.scalar(text(CONVERTED), values)
    return int(filtered or 0), int(converted or 0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_report_indexes_come_with_0019_serve_their_queries_and_go_on_downgrade(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0019")
    database = Database.connect(url)
    await upgrade(database, url, "0018")
    at = now_ms() - HOUR_MS
    signer = ClickIdSigner("k" * 40)
    clicks = [signer.issue(1, at + offset) for offset in range(3)]
    async with database.writing() as connection:
        for click_id, (sub1, device) in zip(
            clicks, (("post-1", "mobile"), ("post-1", "desktop"), ("post-2", "mobile")), strict=True
        ):
            await connection.execute(
                CLICK, {"id": click_id, "at": at, "sub1": sub1, "device": device}
            )
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
        assert CLICKS_INDEX not in await _indexes(connection, "clicks")
        assert await _counts(connection, values) == (1, 1)

    await upgrade(database, url, "0019")
    async with database.writing() as connection:
        assert CLICKS_INDEX in await _indexes(connection, "clicks")
        assert CONVERSIONS_INDEX in await _indexes(connection, "conversions")
        # on PostgreSQL, each partition's own index (named after the partition) is the one used
        assert "sub1_click_id" in await _plan(connection, backend, FILTERED, values)
        if backend == "sqlite":  # PostgreSQL chooses by statistics, which four rows do not make
            assert CONVERSIONS_INDEX in await _plan(connection, backend, CONVERTED, values)
    async with database.writing() as connection:
        assert await _counts(connection, values) == (1, 1)

    await downgrade_to(database, url, "0018")
    async with database.writing() as connection:
        assert CLICKS_INDEX not in await _indexes(connection, "clicks")
        assert CONVERSIONS_INDEX not in await _indexes(connection, "conversions")
        assert await _counts(connection, values) == (1, 1)
    await database.dispose()
