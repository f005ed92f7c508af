"""The rollups count a conversion only while its status is counted: a conversion rejected or
reversed after its hour (and day) were folded is taken out of the rows it was folded into in the
same transaction, whichever path changed it (a person or the API through ``change_status``, a
network's postback in the worker through ``change_by_network``); a click counts once as
converted while a counted sale credits it; and the reports read the same figures as independent
SQL over the raw rows."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from backend.core.clock import DAY_MS, HOUR_MS, now_ms
from backend.core.ids import new_event_id
from backend.domain.affiliate.outbox import FIELDS
from backend.domain.affiliate.status import change_by_network, change_status
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, ConversionStatus
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.storage.rollups.hourly import conversion_delta
from backend.tooling.bench.report_data import generate
from backend.worker.batch import Prepared
from backend.worker.steps.write import write_batch
from tests.support import Programme, sign_in
from tests.test_reports import (
    BY_VALUE,
    CLICKS_IN_SPAN,
    csv_rows,
    grouped,
    kpi,
    scalar,
    utc_day_range,
)

# What the rollup holds of conversions under the sub-id, by value, for one span of rows...
FOLDED = (
    "SELECT value, sum(conversions), sum(revenue_minor), sum(commission_minor)"
    " FROM dimension_hourly WHERE dimension = 'sub1' AND span_hours = :span AND currency <> ''"
    " GROUP BY value HAVING sum(conversions) <> 0 OR sum(revenue_minor) <> 0"
    " OR sum(commission_minor) <> 0"
)
# ... and what it should hold: the counted conversions of the hours (days) folded.
COUNTED = (
    "SELECT coalesce(c.sub1, ''), count(*), sum(v.amount_minor), sum(v.commission_minor)"
    " FROM conversions v LEFT JOIN clicks c ON c.click_id = v.click_id"
    " WHERE v.status IN ('pending', 'approved') AND v.at_ms < :until GROUP BY 1"
)
# A conversion of a click with a sub-id, in a whole UTC day already folded.
FOLDED_SALE = (
    "SELECT v.id FROM conversions v JOIN clicks c ON c.click_id = v.click_id"
    " WHERE v.status = :status AND c.sub1 <> '' AND v.at_ms < :until ORDER BY v.id LIMIT 1"
)


async def _rows(database: Database, sql: str, **params: Any) -> dict[str, tuple[int, ...]]:
    async with database.session() as session:
        rows = (await session.execute(text(sql), params)).all()
    return {str(value): tuple(int(figure) for figure in figures) for value, *figures in rows}


async def _assert_folded_as_counted(database: Database) -> None:
    watermark = await scalar(database, "SELECT hour_ms FROM rollup_watermarks")
    assert await _rows(database, FOLDED, span=1) == await _rows(database, COUNTED, until=watermark)
    last_day = watermark // DAY_MS * DAY_MS
    assert await _rows(database, FOLDED, span=24) == await _rows(database, COUNTED, until=last_day)


async def _conversion_id(database: Database, status: str, until: int) -> int:
    conversion_id = await scalar(database, FOLDED_SALE, status=status, until=until)
    assert conversion_id
    return conversion_id


async def test_a_status_change_takes_a_folded_conversion_out_of_the_rollup(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    end = now_ms()
    await generate(database, 3_000, 600, end - 3 * DAY_MS, end, seed=11)
    assert await fold_closed_hours(database) > 0
    await _assert_folded_as_counted(database)  # the fold leaves out rejected and reversed ones
    last_day = end // DAY_MS * DAY_MS - DAY_MS  # a whole day before it: hour and day rows

    pending = await _conversion_id(database, "pending", last_day)
    async with database.session(write=True) as session:
        conversion = await session.get(Conversion, pending)
        assert conversion is not None
        await change_status(session, conversion, ConversionStatus.REJECTED, actor="test")
        await session.commit()
    await _assert_folded_as_counted(database)

    approved = await _conversion_id(database, "approved", last_day)
    async with database.writing() as connection:
        stored = (
            (
                await connection.execute(
                    text(f"SELECT {', '.join(FIELDS)} FROM conversions WHERE id = :id"),  # noqa: S608
                    {"id": approved},
                )
            )
            .mappings()
            .one()
        )
        reversed_ = await connection.run_sync(
            lambda sync: change_by_network(sync, stored, ConversionStatus.REJECTED, source_id=1)
        )
        assert reversed_  # approved, then declined by the network: reversed
    await _assert_folded_as_counted(database)
    await _assert_converted_as_counted(database)

    # The breakdown (the rollup, with the raw tail) reads what the raw rows say.
    await sign_in(client, database)
    response = await client.get("/breakdown/sub1", params={"range": "30d", "format": "csv"})
    rows = {row["sub1"].replace("(none)", ""): row for row in csv_rows(response.text)}
    conversions = await grouped(database, BY_VALUE["sub1"][1])
    assert {
        key: int(row["conversions"]) for key, row in rows.items() if int(row["conversions"])
    } == conversions


async def test_a_status_change_before_the_fold_leaves_the_fold_to_count_it(
    database: Database, programme: Programme
) -> None:
    end = now_ms()
    await generate(database, 400, 80, end - 2 * HOUR_MS, end, seed=5)
    pending = await scalar(
        database, "SELECT id FROM conversions WHERE status = 'pending' ORDER BY id LIMIT 1"
    )
    async with database.session(write=True) as session:
        conversion = await session.get(Conversion, pending)
        assert conversion is not None
        await change_status(session, conversion, ConversionStatus.REJECTED, actor="test")
        await session.commit()
    assert await fold_closed_hours(database, at_ms=end + 2 * HOUR_MS) > 0
    await _assert_folded_as_counted(database)


# Converted clicks by the click's hour, as the overview counted them from the raw rows.
RAW_CONVERTED = (
    "SELECT (c.at_ms / 3600000) * 3600000, count(DISTINCT v.click_id) FROM conversions v"
    " JOIN clicks c ON c.click_id = v.click_id WHERE v.status IN ('pending', 'approved')"
    " AND v.flags NOT LIKE '%bot_click%' AND v.flags NOT LIKE '%flagged_click%' GROUP BY 1"
)
STATS_CONVERTED = (
    "SELECT hour_ms, sum(converted_clicks) FROM stats_hourly GROUP BY hour_ms"
    " HAVING sum(converted_clicks) <> 0"
)
SALE_COLUMNS = (
    "at_ms, merchant_id, click_id, link_id, partner_id, campaign_id, amount_minor,"
    " commission_minor, currency, source, event_name, items_json, flags, verified,"
    " customer_hash, renewal_rule"
)


async def _assert_converted_as_counted(database: Database) -> None:
    assert await grouped(database, STATS_CONVERTED) == await grouped(database, RAW_CONVERTED)


async def _second_sale(database: Database, first: int) -> int:
    """The worker writes an approved sale crediting the click of sale ``first``."""
    async with database.session() as session:
        stored = (
            (
                await session.execute(
                    text(f"SELECT {SALE_COLUMNS} FROM conversions WHERE id = :id"),  # noqa: S608
                    {"id": first},
                )
            )
            .mappings()
            .one()
        )
    row = {
        **stored,
        "event_id": new_event_id(stored["at_ms"] + 1),
        "at_ms": stored["at_ms"] + 1,
        "order_id": "second-sale",
        "status": ConversionStatus.APPROVED.value,
    }
    batch = Prepared(conversions=[row])
    batch.deltas[row["event_id"]] = conversion_delta(row["at_ms"], row["merchant_id"], row)
    await write_batch(database, batch)
    return await scalar(database, "SELECT id FROM conversions WHERE order_id = 'second-sale'")


async def test_a_click_counts_once_as_converted_while_a_counted_sale_credits_it(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    end = now_ms()
    await generate(database, 2_000, 300, end - 2 * DAY_MS, end, seed=3)
    await _assert_converted_as_counted(database)  # by the worker's write

    first = await _conversion_id(database, "pending", end)
    second = await _second_sale(database, first)  # the same click converting twice counts once
    await _assert_converted_as_counted(database)

    async with database.writing() as connection:  # the first sale still holds the click
        stored = (
            (
                await connection.execute(
                    text(f"SELECT {', '.join(FIELDS)} FROM conversions WHERE id = :id"),  # noqa: S608
                    {"id": second},
                )
            )
            .mappings()
            .one()
        )
        await connection.run_sync(
            lambda sync: change_by_network(sync, stored, ConversionStatus.REJECTED, source_id=1)
        )
    await _assert_converted_as_counted(database)

    async with database.session(write=True) as session:  # and then it converted no more
        conversion = await session.get(Conversion, first)
        assert conversion is not None
        await change_status(session, conversion, ConversionStatus.REJECTED, actor="test")
        await session.commit()
    await _assert_converted_as_counted(database)

    # The overview's conversion rate reads the same count as the raw rows over the period.
    await sign_in(client, database)
    page = await client.get("/", params={"range": "7d"})
    start, end_of_range = utc_day_range(7)
    span = {"start": start, "end": end_of_range}
    clicks = await scalar(database, CLICKS_IN_SPAN + " AND flags = ''", **span)
    converted = await scalar(
        database,
        "SELECT count(DISTINCT v.click_id) FROM conversions v JOIN clicks c"
        " ON c.click_id = v.click_id AND c.at_ms >= :start AND c.at_ms < :end AND c.flags = ''"
        " WHERE v.status IN ('pending', 'approved')",
        **span,
    )
    assert kpi(page.text, "conversion-rate") == f"{converted / clicks * 100:.1f}%"
