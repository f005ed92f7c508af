"""Migration 0020 on a database whose rollup folded conversions whatever their status: the
rejected and reversed ones leave their hour and day rows (under their click's sub-id, '' for a
sale without a click), the counted ones stay, and the clicks that converted are counted in the
click's hour; the downgrade puts the conversions back, marks their hour for the fold job and
drops the count. On SQLite, and on PostgreSQL (a database of its own) when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

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
    " is_unique, flags) VALUES (:id, :at, 1, 1, 1, 1, 'h', 'mobile', 'chrome', '', '', '', :sub1,"
    " '', '', '', '', '', '', '', '', '', false, false, '')"
)
CONVERSION = text(
    "INSERT INTO conversions (event_id, at_ms, merchant_id, order_id, click_id, link_id,"
    " partner_id, campaign_id, amount_minor, commission_minor, currency, status, source,"
    " event_name, flags) VALUES (:event, :at, 1, :event, :click, :link, :partner, :link,"
    " :amount, :commission, 'EUR', :status, 'pixel', 'sale', '')"
)
ROLLUP_ROW = text(
    "INSERT INTO dimension_hourly (hour_ms, span_hours, dimension, value, partner_id, currency,"
    " clicks, unique_clicks, bot_clicks, flagged_clicks, conversions, revenue_minor,"
    " commission_minor) VALUES (:at, :span, 'sub1', :value, :partner, 'EUR', 0, 0, 0, 0,"
    " :conversions, :revenue, :commission)"
)
FOLDED = text(
    "SELECT span_hours, value, conversions, revenue_minor, commission_minor"
    " FROM dimension_hourly ORDER BY span_hours, value"
)
# What the fold of 0019 wrote (every status), by sub-id: (partner, conversions, revenue,
# commission).
BEFORE = {"a": (1, 3, 1_750, 175), "b": (1, 1, 400, 40), "": (0, 1, 300, 30)}
AFTER = {"a": (1, 1, 1_000, 100), "b": (1, 0, 0, 0), "": (0, 1, 300, 30)}


def _rows(figures: dict[str, tuple[int, int, int, int]]) -> list[tuple[int, str, int, int, int]]:
    return [
        (span, value, *figures[value][1:])
        for span in (1, 24)
        for value in sorted(figures)  # '' < 'a' < 'b'
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_0020_takes_the_uncounted_conversions_out_of_the_folded_rows_and_back(
    backend: str, tmp_path: Path
) -> None:
    url = await fresh_url(backend, tmp_path, "m0020")
    database = Database.connect(url)
    await upgrade(database, url, "0019")
    day = now_ms() // DAY_MS * DAY_MS - 2 * DAY_MS
    hour = day + 5 * HOUR_MS
    signer = ClickIdSigner("k" * 40)
    click_a, click_b = signer.issue(1, hour), signer.issue(1, hour + 1)
    async with database.writing() as connection:
        for click_id, sub1 in ((click_a, "a"), (click_b, "b")):
            await connection.execute(CLICK, {"id": click_id, "at": hour, "sub1": sub1})
        sales: tuple[tuple[str, str | None, str, int], ...] = (
            ("e1", click_a, "approved", 1_000),
            ("e2", click_a, "rejected", 500),
            ("e3", click_a, "reversed", 250),
            ("e4", click_b, "rejected", 400),
            ("e5", None, "pending", 300),  # the shop's own sale: no click, no partner
        )
        for event, credited, status, amount in sales:
            attributed = credited is not None
            await connection.execute(
                CONVERSION,
                {
                    "event": event,
                    "at": hour + 60_000,
                    "click": credited,
                    "link": 1 if attributed else None,
                    "partner": 1 if attributed else None,
                    "amount": amount,
                    "commission": amount // 10,
                    "status": status,
                },
            )
        for span, at in ((1, hour), (24, day)):
            for value, (partner, conversions, revenue, commission) in BEFORE.items():
                await connection.execute(
                    ROLLUP_ROW,
                    {
                        "at": at,
                        "span": span,
                        "value": value,
                        "partner": partner,
                        "conversions": conversions,
                        "revenue": revenue,
                        "commission": commission,
                    },
                )
        await connection.execute(
            text("INSERT INTO rollup_watermarks (name, hour_ms) VALUES ('dimension_hourly', :at)"),
            {"at": day + DAY_MS + 3 * HOUR_MS},  # the day folded whole: hour and day rows
        )

    await upgrade(database, url, "0020")
    async with database.writing() as connection:
        folded = [tuple(row) for row in await connection.execute(FOLDED)]
        assert folded == _rows(AFTER)
        # click a converted (its approved sale), b did not (rejected), the shop's sale has none
        converted = await connection.execute(
            text("SELECT hour_ms, link_id, partner_id, converted_clicks FROM stats_hourly")
        )
        assert [tuple(row) for row in converted] == [(hour, 1, 1, 1)]

    await downgrade_to(database, url, "0019")
    async with database.writing() as connection:
        folded = [tuple(row) for row in await connection.execute(FOLDED)]
        assert folded == _rows(BEFORE)
        marked = await connection.execute(text("SELECT hour_ms FROM rollup_repairs"))
        assert [row[0] for row in marked] == [hour]
        columns = await connection.run_sync(
            lambda sync: {column["name"] for column in inspect(sync).get_columns("stats_hourly")}
        )
        assert "converted_clicks" not in columns
    await upgrade(database, url)
    await database.dispose()
