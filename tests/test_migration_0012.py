"""Migration 0012 on a database that already holds conversions and rollups: stored credited
conversions are marked "click", the others "", and ``stats_hourly`` takes a coupon's partner
and campaign on link 0 beside the unattributed row; the downgrade folds them back. On SQLite,
and on PostgreSQL (a database of its own beside the tests' one) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, link_id, partner_id,"
    " campaign_id, amount_minor, commission_minor, currency, status, source, event_name, flags)"
    " VALUES (:event, 0, 1, :event, :link, :link, :link, 100, 10, 'EUR', 'pending', 'pixel',"
    " 'sale', '')"
)
STATS = text(
    "INSERT INTO stats_hourly (hour_ms, merchant_id, link_id, currency, partner_id, campaign_id,"
    " clicks, unique_clicks, bot_clicks, flagged_clicks, impressions, conversions,"
    " revenue_minor, commission_minor) VALUES (0, 1, 0, 'EUR', :partner, :partner, 0, 0, 0, 0,"
    " 0, 1, 100, :commission)"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_attribution_is_marked_and_the_rollup_rekeyed_both_ways(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0012")
    database = Database.connect(url)
    await upgrade(database, url, "0009")
    async with database.writing() as connection:
        await connection.execute(CONVERSION, {"event": "credited", "link": 7})
        await connection.execute(CONVERSION, {"event": "alone", "link": None})
        await connection.execute(STATS, {"partner": 0, "commission": 0})

    await upgrade(database, url, "0012")
    async with database.writing() as connection:
        marked = await connection.execute(
            text("SELECT order_id, attribution, coupon FROM conversions ORDER BY order_id")
        )
        assert [tuple(row) for row in marked] == [("alone", "", None), ("credited", "click", None)]
        # a coupon's conversion of the same hour, merchant and currency: a row of its own
        await connection.execute(STATS, {"partner": 5, "commission": 10})
        rows = await connection.execute(
            text("SELECT partner_id, conversions FROM stats_hourly ORDER BY partner_id")
        )
        assert [tuple(row) for row in rows] == [(0, 1), (5, 1)]

    await downgrade_to(database, url, "0009")
    async with database.writing() as connection:
        folded = await connection.execute(
            text(
                "SELECT partner_id, conversions, revenue_minor, commission_minor FROM stats_hourly"
            )
        )
        assert [tuple(row) for row in folded] == [(0, 2, 200, 10)]
    await upgrade(database, url)
    await database.dispose()
