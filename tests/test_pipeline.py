"""The walking skeleton: a click and a conversion travel through HTTP, Redis and the worker into
the database and come out in the stats API and on the overview page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, StatsHourly
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, follow_link


async def test_click_redirects_with_click_id_and_cookie(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    response = await client.get(
        f"/c/{programme.link['code']}?sub1=newsletter&utm_source=mail", headers=BROWSER_HEADERS
    )

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/winter")
    query = parse_qs(location.query)
    assert query["ref"] == ["aff"]
    click_id = query["ct_click"][0]
    assert f"ct_click={click_id}" in response.headers["set-cookie"]
    assert "HttpOnly" in response.headers["set-cookie"]
    assert response.headers["cache-control"] == "no-store"

    assert await consumer.drain() == 1
    async with database.session() as session:
        row = await session.get(Click, click_id)
    assert row is not None
    assert (row.link_id, row.partner_id) == (programme.link["id"], programme.partner["id"])
    assert (row.sub1, row.utm_source) == ("newsletter", "mail")
    assert (row.is_bot, row.is_unique, row.device_class) == (False, True, "desktop")


async def test_conversion_is_attributed_with_commission_and_shows_in_stats(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    pixel = await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": "ORDER-1",
            "amt": "49.90",
            "cur": "EUR",
            "clk": click_id,
        },
    )
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert len(pixel.content) == 43

    assert await consumer.drain() == 2
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion))
    assert conversion is not None
    assert conversion.link_id == programme.link["id"]
    assert conversion.partner_id == programme.partner["id"]
    assert conversion.campaign_id == programme.campaign["id"]
    assert (conversion.amount_minor, conversion.currency) == (4990, "EUR")
    # 10 % of 49.90 = 4.99 (499 cents) plus the flat 0.50
    assert conversion.commission_minor == 549
    # fired milliseconds after its click: too fast for a person, so held for review
    assert (conversion.status, conversion.source) == ("pending", "pixel")
    assert conversion.flags == "too_fast,review"

    stats = await client.get("/api/v1/stats", headers=programme.headers)
    assert stats.status_code == 200
    totals = stats.json()["totals"]
    assert totals["clicks"] == 1
    assert totals["unique_clicks"] == 1
    assert totals["conversions"] == 1
    assert (totals["revenue_minor"], totals["commission_minor"]) == (4990, 549)
    assert totals["currency"] == "EUR"


async def test_second_click_of_same_visitor_is_not_unique(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await follow_link(client, programme.link["code"])
    await follow_link(client, programme.link["code"])
    await consumer.drain()

    async with database.session() as session:
        clicks, unique, flagged = (
            await session.execute(
                select(
                    func.sum(StatsHourly.clicks),
                    func.sum(StatsHourly.unique_clicks),
                    func.sum(StatsHourly.flagged_clicks),
                )
            )
        ).one()
    # the second came within 10 s: a duplicate, shown but not billed
    assert (clicks, unique, flagged) == (1, 1, 1)


async def test_overview_page_shows_the_totals(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    from backend.domain.auth import hash_password
    from backend.storage.db.models import User

    async with database.session(write=True) as session:
        session.add(
            User(email="a@example.com", password_hash=hash_password("pw-123456789"), role="admin")
        )
        await session.commit()
    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "A", "amt": "120.00", "clk": click_id},
    )
    await consumer.drain()

    login_page = await client.get("/login")
    token = client.cookies.get("csrftoken")
    assert token
    response = await client.post(
        "/login",
        data={"email": "a@example.com", "password": "pw-123456789", "_csrf_token": token},
    )
    assert response.status_code in (200, 302), response.text
    page = await client.get("/")
    assert page.status_code == 200
    assert login_page.headers["content-security-policy"].startswith("default-src 'none'")
    assert '<strong id="kpi-clicks">1</strong>' in page.text
    assert '<strong id="kpi-conversions">1</strong>' in page.text
    assert "120.00" in page.text
