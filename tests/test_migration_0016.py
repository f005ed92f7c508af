"""Migration 0016 on a database whose rollup has folded hours already: the new dimensions
(operating system, country, the three UTM fields) get hour and day rows for those hours from
the raw rows, equal to what the fold writes; the downgrade takes them and the columns away.
On SQLite, and on PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from backend.core.clock import DAY_MS, HOUR_MS, now_ms
from backend.core.ids import ClickIdSigner
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from tests.conftest import BACKENDS
from tests.migration_support import downgrade_to, fresh_url

CLICK = text(
    "INSERT INTO clicks (click_id, at_ms, link_id, partner_id, campaign_id, merchant_id,"
    " visitor_hash, device_class, browser, referrer_host, referrer_url, landing_url, sub1, sub2,"
    " sub3, sub4, sub5, utm_source, utm_medium, utm_campaign, utm_term, utm_content, is_bot,"
    " is_unique, flags) VALUES (:id, :at, 1, 1, 1, 1, 'h', 'desktop', 'chrome', '', '', '', '',"
    " '', '', '', '', '', '', :campaign, '', '', :bot, false, :flags)"
)
CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, click_id, link_id,"
    " partner_id, campaign_id, amount_minor, commission_minor, currency, status, source,"
    " event_name, flags) VALUES ('e1', :at, 1, 'o1', :click, 1, 1, 1, 500, 50, 'EUR',"
    " 'pending', 'pixel', 'sale', '')"
)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_folded_hours_get_the_new_dimensions_and_lose_them_on_downgrade(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0016")
    database = Database.connect(url)
    await upgrade(database, url, "0012")
    today = now_ms() // DAY_MS * DAY_MS
    yesterday_noon = today - DAY_MS + 12 * HOUR_MS
    signer = ClickIdSigner("k" * 40)
    first = signer.issue(1, yesterday_noon)
    async with database.writing() as connection:
        for click_id, campaign, bot, flags in (
            (first, "spring", False, ""),
            (signer.issue(1, yesterday_noon + 1), "spring", False, "duplicate"),
            (signer.issue(1, yesterday_noon + 2), "", True, "bot:crawler"),
        ):
            await connection.execute(
                CLICK,
                {
                    "id": click_id,
                    "at": yesterday_noon,
                    "campaign": campaign,
                    "bot": bot,
                    "flags": flags,
                },
            )
        await connection.execute(CONVERSION, {"at": yesterday_noon + 60_000, "click": first})
        await connection.execute(
            text("INSERT INTO rollup_watermarks (name, hour_ms) VALUES ('dimension_hourly', :at)"),
            {"at": today + HOUR_MS},
        )

    await upgrade(database, url, "0016")
    async with database.writing() as connection:
        rows = await connection.execute(
            text(
                "SELECT span_hours, value, currency, clicks, bot_clicks, flagged_clicks,"
                " conversions, revenue_minor FROM dimension_hourly"
                " WHERE dimension = 'utm_campaign' ORDER BY span_hours, value, currency"
            )
        )
        hour_rows = [(1, "", "", 0, 1, 0, 0, 0), (1, "spring", "", 1, 0, 1, 0, 0)]
        hour_rows.append((1, "spring", "EUR", 0, 0, 0, 1, 500))
        day_rows = [(24, *row[1:]) for row in hour_rows]
        assert [tuple(row) for row in rows] == hour_rows + day_rows
        countries = await connection.execute(
            text(
                "SELECT value, sum(clicks + bot_clicks + flagged_clicks) FROM dimension_hourly"
                " WHERE dimension = 'country' AND span_hours = 1 GROUP BY value"
            )
        )
        assert [tuple(row) for row in countries] == [("", 3)]  # stored before: no country
        stored = await connection.execute(text("SELECT DISTINCT os, country FROM clicks"))
        assert [tuple(row) for row in stored] == [("", "")]

    await downgrade_to(database, url, "0012")
    async with database.writing() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM dimension_hourly WHERE dimension IN ('os', 'utm_term')")
        )
        assert left == 0
    await upgrade(database, url)
    await database.dispose()
