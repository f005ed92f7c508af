"""The first-party cookie: a conversion without a click id reaches the click whose ``ct_click``
cookie the browser sends to the tracker (the tracker served under the shop's own domain)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, follow_link


async def conversions(database: Database) -> list[tuple[str, str | None, int | None]]:
    async with database.session() as session:
        rows = await session.execute(
            select(Conversion.order_id, Conversion.click_id, Conversion.partner_id).order_by(
                Conversion.order_id
            )
        )
    return [(order or "", click, partner) for order, click, partner in rows.all()]


async def test_a_pixel_and_a_snippet_conversion_without_a_click_id_use_the_cookie(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    assert client.cookies.get("ct_click") == click_id  # the browser keeps what the redirect set
    merchant = programme.merchant["key"]
    await client.get("/p.gif", params={"m": merchant, "oid": "PIXEL", "amt": "10.00"})
    beacon = await client.post(
        "/e", json={"m": merchant, "events": [{"t": "conversion", "oid": "SNIPPET", "amt": "5"}]}
    )
    assert beacon.status_code == 202, beacon.text
    await consumer.drain()
    partner = programme.partner["id"]
    assert await conversions(database) == [
        ("PIXEL", click_id, partner),
        ("SNIPPET", click_id, partner),
    ]


async def test_a_click_id_in_the_request_wins_over_the_cookie_and_a_bad_cookie_is_ignored(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    first = await follow_link(client, programme.link["code"])
    client.cookies.clear()
    second = await follow_link(client, programme.link["code"])
    merchant = programme.merchant["key"]
    await client.get("/p.gif", params={"m": merchant, "oid": "NAMED", "amt": "1", "clk": first})
    client.cookies.clear()
    client.cookies.set("ct_click", "bad\\value;<>")
    await client.get("/p.gif", params={"m": merchant, "oid": "BAD-COOKIE", "amt": "1"})
    await consumer.drain()
    assert second != first
    assert await conversions(database) == [
        ("BAD-COOKIE", None, None),
        ("NAMED", first, programme.partner["id"]),
    ]


async def test_without_the_cookie_nothing_is_attributed(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await client.get("/c/" + programme.link["code"], headers=BROWSER_HEADERS)
    client.cookies.clear()  # a browser that blocks the tracker's cookie
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "X", "amt": "1"})
    await consumer.drain()
    assert await conversions(database) == [("X", None, None)]
