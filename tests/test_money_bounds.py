"""Amounts that cannot be stored are refused where they arrive, a merchant may set a lower
maximum, and no sum of stored money overflows: not in a report, not in the hourly rollup."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text

from backend.core.clock import HOUR_MS, now_ms
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, RejectedEventRow, StatsHourly
from backend.worker.consumer import StreamConsumer
from tests.postback_support import sale, send
from tests.support import Programme, sign_in


async def rejected(database: Database) -> list[tuple[str, str]]:
    async with database.session() as session:
        rows = (await session.scalars(select(RejectedEventRow).order_by(RejectedEventRow.id))).all()
    return [(row.reason, row.detail) for row in rows]


async def conversions(database: Database) -> list[tuple[str | None, int, str]]:
    async with database.session() as session:
        rows = (await session.scalars(select(Conversion).order_by(Conversion.id))).all()
    return [(row.order_id, row.amount_minor, row.currency) for row in rows]


async def test_an_amount_over_the_bound_is_refused_at_once_with_its_reason(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """15 digits in a four-decimal currency overflow 64 bits: refused at the edge (it used to
    be retried five times by the worker, then lost to a 'poison' row)."""
    key = programme.merchant["key"]
    await client.get("/p.gif", params={"m": key, "oid": "BIG", "amt": "9" * 15, "cur": "CLF"})
    signed = await send(client, programme, sale("SIGNED-BIG", "9" * 15, currency="CLF"))
    in_minor = await send(
        client, programme, {"type": "conversion", "order_id": "M", "amount_minor": 10**12 + 1}
    )
    largest = await send(client, programme, sale("LARGEST", "10000000000.00"))

    assert signed.status_code == 400
    assert "over the maximum" in signed.json()["detail"]
    assert in_minor.status_code == 400
    assert largest.status_code == 202
    await consumer.drain()
    reasons = [reason for reason, _ in await rejected(database)]
    assert reasons == ["amount_too_large", "amount_too_large", "invalid_event"]
    assert await conversions(database) == [("LARGEST", 10**12, "EUR")]


async def test_api_amounts_are_bounded_by_the_same_figure(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    too_much = await client.patch(
        f"/api/v1/campaigns/{programme.campaign['id']}",
        json={"commission_flat_minor": 10**12 + 1},
        headers=programme.headers,
    )
    assert too_much.status_code == 400
    at_most = await client.patch(
        f"/api/v1/campaigns/{programme.campaign['id']}",
        json={"commission_flat_minor": 10**12},
        headers=programme.headers,
    )
    assert at_most.status_code == 200


async def test_a_merchants_maximum_order_value_refuses_larger_sales_in_its_currency(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    merchant = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"max_order_minor": 50_000},
        headers=programme.headers,
    )
    assert merchant.status_code == 200
    assert merchant.json()["max_order_minor"] == 50_000
    key = programme.merchant["key"]
    for order, amount, currency in [
        ("AT-MAX", "500.00", "EUR"),
        ("OVER", "500.01", "EUR"),
        ("OTHER-CURRENCY", "900.00", "USD"),  # no rate to compare it with: the bound only
    ]:
        await client.get("/p.gif", params={"m": key, "oid": order, "amt": amount, "cur": currency})
    beacon = await client.post(
        "/e", json={"m": key, "events": [{"oid": "BEACON", "amt": "600", "cur": "EUR"}]}
    )
    signed = await send(client, programme, sale("SIGNED", "700.00"))

    assert beacon.json()["errors"][0]["reason"] == "amount_too_large"
    assert signed.status_code == 400
    await consumer.drain()
    assert await conversions(database) == [
        ("AT-MAX", 50_000, "EUR"),
        ("OTHER-CURRENCY", 90_000, "USD"),
    ]
    details = [
        detail for reason, detail in await rejected(database) if reason == "amount_too_large"
    ]
    assert details == [
        "amt: 500.01 EUR is over the maximum of 500.00",
        "events[0].amt: 600.00 EUR is over the maximum of 500.00",
        "amt: 700.00 EUR is over the maximum of 500.00",
    ]


async def add_stats(database: Database, hour_ms: int, link_id: int, revenue: int) -> None:
    async with database.session(write=True) as session:
        session.add(
            StatsHourly(
                hour_ms=hour_ms,
                merchant_id=1,
                link_id=link_id,
                currency="EUR",
                partner_id=0,
                campaign_id=0,
                clicks=0,
                unique_clicks=0,
                bot_clicks=0,
                flagged_clicks=0,
                impressions=0,
                conversions=1,
                revenue_minor=revenue,
                commission_minor=revenue // 2,
            )
        )
        await session.commit()


async def test_report_sums_past_64_bits_are_exact(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    """Hourly rows whose sum no 64-bit integer holds: the stats and the pages still answer,
    with the exact figure."""
    hour = now_ms() // HOUR_MS * HOUR_MS - HOUR_MS
    for link_id in (101, 102, 103):
        await add_stats(database, hour, link_id, 2**62)

    stats = await client.get("/api/v1/stats", headers=programme.headers)
    assert stats.status_code == 200, stats.text
    assert stats.json()["totals"]["revenue_minor"] == 3 * 2**62
    assert stats.json()["totals"]["commission_minor"] == 3 * 2**61
    await sign_in(client, database)
    overview = await client.get("/", params={"range": "7d"})
    assert overview.status_code == 200
    assert "€138,350,580,552,821,637.12" in overview.text  # 3 * 2**62 minor units


async def test_a_sale_that_would_overflow_its_hourly_row_is_dead_lettered_at_once(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """SQLite would turn the sum into a float and PostgreSQL refuses it: either way the sale
    that would overflow is kept in rejected_events, without retries, and the row stays whole."""
    hour = now_ms() // HOUR_MS * HOUR_MS
    merchant_id = programme.merchant["id"]
    await add_stats(database, hour, 0, 2**63 - 100)
    async with database.session(write=True) as session:
        await session.execute(text("UPDATE stats_hourly SET merchant_id = :m"), {"m": merchant_id})
        await session.commit()

    key = programme.merchant["key"]
    await client.get("/p.gif", params={"m": key, "oid": "OVERFLOW", "amt": "5.00"})
    await consumer.drain()

    ((reason, detail),) = await rejected(database)
    assert (reason, detail.startswith("the database refuses it")) == ("poison", True)
    async with database.session() as session:
        revenue = await session.scalar(select(StatsHourly.revenue_minor))
        stored = await session.scalar(select(func.count()).select_from(Conversion))
    assert (revenue, type(revenue), stored) == (2**63 - 100, int, 0)
