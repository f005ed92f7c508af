"""The merchant's signed postback is the authority on a sale: a pixel anyone can fire (with a
guessed order id, another partner's click, an inflated amount) loses to it, in the request and
in the stream alike, and what it replaced stays visible on the conversion (the click it credited
too: the converted clicks move with it)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, ConversionChange, DimensionHourly, StatsHourly
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.worker.consumer import StreamConsumer
from backend.worker.main import build_consumer
from tests.postback_support import sale, send
from tests.support import BROWSER_HEADERS, Programme, add_partner_with_link, follow_link


async def conversion(database: Database, order_id: str) -> Conversion:
    async with database.session() as session:
        row = await session.scalar(select(Conversion).where(Conversion.order_id == order_id))
    assert row is not None
    return row


async def trail(database: Database, conversion_id: int) -> list[tuple[str, bool, str]]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ConversionChange)
            .where(ConversionChange.conversion_id == conversion_id)
            .order_by(ConversionChange.id)
        )
        return [(row.actor, row.verified, row.reason) for row in rows]


async def converted_clicks(database: Database) -> dict[int, int]:
    """The clicks counted as converted, by partner (the conversion rate's numerator)."""
    async with database.session() as session:
        rows = await session.execute(
            select(StatsHourly.partner_id, func.sum(StatsHourly.converted_clicks))
            .where(StatsHourly.partner_id != 0)
            .group_by(StatsHourly.partner_id)
        )
        return {partner: int(count) for partner, count in rows.all()}


async def by_partner(client: AsyncTestClient[Any], programme: Programme) -> dict[int, Any]:
    response = await client.get("/api/v1/stats?group_by=partner", headers=programme.headers)
    return {
        row["key"]: (row["totals"]["conversions"], row["totals"]["revenue_minor"])
        for row in response.json()["rows"]
    }


async def forged_pixel(
    client: AsyncTestClient[Any], programme: Programme, order_id: str, click_id: str
) -> None:
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": order_id, "amt": "9999.00", "clk": click_id},
    )


async def test_a_forged_pixel_loses_the_sale_to_the_merchants_signed_postback(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    thief, thiefs_link = await add_partner_with_link(client, programme, "Thief")
    buyers_click = await follow_link(client, programme.link["code"])
    thiefs_click = await follow_link(client, thiefs_link["code"])
    await forged_pixel(client, programme, "ORD-7", thiefs_click)
    await consumer.drain()
    assert (await conversion(database, "ORD-7")).partner_id == thief["id"]

    response = await send(client, programme, sale("ORD-7", "49.90", click_id=buyers_click))
    assert response.status_code == 202, response.text
    assert response.json()["replaces"] == ["click_id", "amount_minor"]
    await consumer.drain()

    sold = await conversion(database, "ORD-7")
    assert (sold.partner_id, sold.link_id, sold.click_id) == (
        programme.partner["id"],
        programme.link["id"],
        buyers_click,
    )
    assert (sold.amount_minor, sold.commission_minor, sold.verified) == (4990, 549, True)
    ((actor, verified, reason),) = await trail(database, sold.id)
    assert (actor, verified) == ("postback", True)
    assert reason == (
        "replaced by the merchant's signed postback; it was click "
        f"{thiefs_click} (partner #{thief['id']}, link #{thiefs_link['id']}), 9999.00 EUR, "
        "commission 1000.40"
    )
    assert await by_partner(client, programme) == {
        programme.partner["id"]: (1, 4990),
        thief["id"]: (0, 0),  # its click still counts, the sale no longer
    }
    assert await converted_clicks(database) == {programme.partner["id"]: 1, thief["id"]: 0}
    detail = await client.get(f"/api/v1/conversions/{sold.id}", headers=programme.headers)
    assert "9999.00 EUR" in detail.json()["history"][0]["reason"]

    # Verified now: a later postback that disagrees is told so and changes nothing.
    again = await send(client, programme, sale("ORD-7", "1.00"))
    assert (again.status_code, again.json()["differs"]) == (200, ["amount_minor"])
    await consumer.drain()
    assert (await conversion(database, "ORD-7")).amount_minor == 4990


async def test_a_postback_that_names_no_click_keeps_the_attribution_and_sets_the_amount(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "TAX", "amt": "30", "clk": click_id},
    )
    await consumer.drain()

    response = await send(client, programme, sale("TAX", "31.00"))
    assert (response.status_code, response.json()["replaces"]) == (202, ["amount_minor"])
    await consumer.drain()

    sold = await conversion(database, "TAX")
    assert (sold.click_id, sold.partner_id, sold.amount_minor) == (
        click_id,
        programme.partner["id"],
        3100,
    )
    assert (sold.commission_minor, sold.verified) == (360, True)  # 10 % + 0.50, of 31.00
    assert await by_partner(client, programme) == {programme.partner["id"]: (1, 3100)}


@pytest.mark.parametrize("batch_size", [2000, 1])
async def test_pixel_and_postback_queued_together_end_with_the_postbacks_figures(
    client: AsyncTestClient[Any],
    programme: Programme,
    database: Database,
    redis: Redis,
    settings: Settings,
    batch_size: int,
) -> None:
    """Both queued before either is written (the request could not compare them): the worker
    settles it, the same way, in one batch or each in its own (the postback's asked about
    while the pixel's is still being written)."""
    consumer = build_consumer(
        settings.with_overrides(batch_size=batch_size), database, settings.redis_url
    )
    await consumer.ensure_group()
    thief, thiefs_link = await add_partner_with_link(client, programme, "Thief")
    buyers_click = await follow_link(client, programme.link["code"])
    thiefs_click = await follow_link(client, thiefs_link["code"])
    await forged_pixel(client, programme, "RACE-1", thiefs_click)
    assert (
        await send(client, programme, sale("RACE-1", "49.90", click_id=buyers_click))
    ).status_code == 202
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "RACE-2", "amt": "30", "clk": buyers_click},
    )
    assert (await send(client, programme, sale("RACE-2", "31.00"))).status_code == 202
    await consumer.drain()
    await consumer.close()

    first, second = await conversion(database, "RACE-1"), await conversion(database, "RACE-2")
    assert (first.partner_id, first.amount_minor, first.verified) == (
        programme.partner["id"],
        4990,
        True,
    )
    assert (second.click_id, second.amount_minor, second.commission_minor) == (
        buyers_click,
        3100,
        360,
    )
    assert await by_partner(client, programme) == {
        programme.partner["id"]: (2, 8090),
        thief["id"]: (0, 0),
    }


async def test_a_replaced_sale_is_folded_again_into_the_breakdowns(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    thief, thiefs_link = await add_partner_with_link(client, programme, "Thief")
    buyers_click = await follow_link(
        client, programme.link["code"], {**BROWSER_HEADERS, "referer": "https://buyer.example/"}
    )
    thiefs_click = await follow_link(
        client, thiefs_link["code"], {**BROWSER_HEADERS, "referer": "https://thief.example/"}
    )
    await forged_pixel(client, programme, "FOLDED", thiefs_click)
    await consumer.drain()
    later = now_ms() + 2 * 3_600_000
    await fold_closed_hours(database, at_ms=later)  # the sale's hour is folded

    await send(client, programme, sale("FOLDED", "49.90", click_id=buyers_click))
    await consumer.drain()
    await fold_closed_hours(database, at_ms=later)

    async with database.session() as session:
        money = (
            await session.execute(
                select(
                    DimensionHourly.span_hours,
                    DimensionHourly.value,
                    DimensionHourly.partner_id,
                    func.sum(DimensionHourly.revenue_minor),
                )
                .where(DimensionHourly.dimension == "referrer", DimensionHourly.currency == "EUR")
                .group_by(
                    DimensionHourly.span_hours, DimensionHourly.value, DimensionHourly.partner_id
                )
            )
        ).all()
    # The hour's row, and the day's as well when two hours later is already the next UTC day.
    assert {span for span, *_ in money} in ({1}, {1, 24})
    assert {(value, partner, int(revenue)) for _, value, partner, revenue in money} == {
        ("buyer.example", programme.partner["id"], 4990)
    }
    assert thief["id"] != programme.partner["id"]
