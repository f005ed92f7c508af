"""The dimensions people ask for: country from the address at the edge (offline, the address
dropped), browser and operating system by ua-parser, and every UTM field, each a breakdown,
a filter and a CSV column; and clicks queued by the release before still land."""

from __future__ import annotations

import csv
import io
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.domain.events import ClickEvent, ClickEventC3, decode_event, encode_event
from backend.storage.db.engine import Database
from backend.storage.db.models import Click
from backend.storage.streams.entries import encode_entry
from tests.support import BROWSER_HEADERS, Programme, click_at, follow_link, sign_in

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.3.1 Mobile/15E148 Safari/604.1"
)


async def test_a_click_carries_country_system_and_campaign_and_they_break_down(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    code = programme.link["code"]
    british_phone = {**BROWSER_HEADERS, "User-Agent": IPHONE, "X-Forwarded-For": "81.2.69.160"}
    await client.get(f"/c/{code}", params={"utm_campaign": "spring"}, headers=british_phone)
    german = {**BROWSER_HEADERS, "X-Forwarded-For": "2a00:1450:4001:80b::200e"}
    await follow_link(client, code, german)
    await consumer.drain()

    async with database.session() as session:
        rows = (
            await session.execute(
                select(Click.country, Click.os, Click.browser, Click.utm_campaign).order_by(
                    Click.click_id
                )
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("GB", "iOS", "Mobile Safari", "spring"),
        ("DE", "Linux", "Chrome", ""),
    ]

    await sign_in(client, database)
    by_country = await client.get("/breakdown/country", params={"range": "today", "format": "csv"})
    counted = {
        row["country"]: row["clicks"] for row in csv.DictReader(io.StringIO(by_country.text))
    }
    assert counted == {"GB": "1", "DE": "1"}
    by_campaign = await client.get(
        "/breakdown/utm_campaign", params={"range": "today", "format": "csv"}
    )
    campaigns = {
        row["utm_campaign"]: row["clicks"] for row in csv.DictReader(io.StringIO(by_campaign.text))
    }
    assert campaigns == {"spring": "1", "(none)": "1"}
    page = await client.get("/", params={"range": "today", "os": "iOS"})
    assert page.status_code == 200
    assert "Operating system: <strong>iOS</strong>" in page.text
    assert '<strong id="kpi-clicks">1</strong>' in page.text


async def test_a_click_queued_by_the_release_before_still_lands(
    settings: Settings, redis: Redis, database: Database, programme: Programme, consumer: Any
) -> None:
    click = click_at(programme, now_ms())
    fields = msgspec.structs.asdict(click)
    del fields["os"], fields["country"]
    legacy = ClickEventC3(**fields)
    decoded = decode_event(encode_event(legacy))
    assert isinstance(decoded, ClickEventC3)
    assert decoded.upgraded() == msgspec.structs.replace(click, os="", country="")
    assert isinstance(decoded.upgraded(), ClickEvent)

    await redis.xadd(settings.stream, {"e": encode_entry([encode_event(legacy)])})
    await consumer.drain()
    async with database.session() as session:
        stored = (await session.execute(select(Click.click_id, Click.os, Click.country))).all()
    assert [tuple(row) for row in stored] == [(click.click_id, "", "")]
