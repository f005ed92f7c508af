"""Bad input gets a clear answer and is kept in ``rejected_events`` with its reason; the pixel
and the redirect always still answer the browser."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, Impression, RejectedEventRow
from backend.web.ingest.routes import GIF, MAX_BODY
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, follow_link


async def rejected_reasons(consumer: StreamConsumer, database: Database) -> list[str]:
    await consumer.drain()
    async with database.session() as session:
        rows = (await session.scalars(select(RejectedEventRow).order_by(RejectedEventRow.id))).all()
    return [row.reason for row in rows]


async def conversion_count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Conversion)) or 0)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"oid": "1", "amt": "5"}, "missing_field"),
        ({"m": "mk_nobody", "oid": "1", "amt": "5"}, "unknown_merchant"),
        ({"oid": "1", "amt": "abc"}, "invalid_amount"),
        ({"oid": "1", "amt": "12,50"}, "invalid_amount"),
        ({"oid": "1", "amt": "10.505", "cur": "EUR"}, "invalid_amount"),
        ({"oid": "1", "amt": "10.5", "cur": "JPY"}, "invalid_amount"),
        ({"oid": "1", "amt": "-5"}, "negative_amount"),
        ({"oid": "1", "amt": "5", "cur": "XXX"}, "unknown_currency"),
        ({"oid": "1", "amt": "5", "cur": "EURO"}, "field_too_long"),
        ({"oid": "x" * 129, "amt": "5"}, "field_too_long"),
        ({"oid": "1", "amt": "5", "clk": "c" * 65}, "field_too_long"),
        ({"oid": "1", "amt": "1" * 40}, "field_too_long"),
        ({"oid": "1\x002", "amt": "5"}, "invalid_event"),
        ({"oid": "1", "amt": "5", "t": "click"}, "invalid_event"),
    ],
)
async def test_bad_pixel_still_gets_the_gif_and_is_kept_with_its_reason(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    params: dict[str, str],
    reason: str,
) -> None:
    query = {"m": programme.merchant["key"], **params} if "m" not in params else params
    if reason == "missing_field":
        query = params
    response = await client.get("/p.gif", params=query)

    assert response.status_code == 200
    assert response.content == GIF
    assert len(GIF) == 43
    assert response.headers["cache-control"].startswith("no-store")
    assert await rejected_reasons(consumer, database) == [reason]
    assert await conversion_count(database) == 0


async def test_amount_in_currency_without_minor_units(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": "J",
            "amt": "1500",
            "cur": "jpy",
            "clk": click_id,
        },
    )
    await consumer.drain()
    async with database.session() as session:
        conversion = await session.scalar(select(Conversion))
    assert conversion is not None
    assert (conversion.amount_minor, conversion.currency) == (1500, "JPY")
    # the flat fee is in the campaign's currency (EUR) and is not added to a JPY sale
    assert conversion.commission_minor == 150
    assert conversion.flags == (
        "flat_commission_currency_mismatch,foreign_currency,too_fast,review"
    )


async def test_unknown_link_code_answers_a_404_page_and_is_kept(
    client: AsyncTestClient[Any], consumer: StreamConsumer, database: Database
) -> None:
    for path in ("/c/doesnotexist", "/c/bad%20code!", "/c/"):
        response = await client.get(path, headers=BROWSER_HEADERS)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "This link does not exist" in response.text
        assert "set-cookie" not in response.headers
    assert await rejected_reasons(consumer, database) == ["unknown_link"] * 3


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "https://shop.example.evil.example/",
        "https://user@evil.example/",
        "https://shop.example@evil.example/",
        "https:\\\\evil.example",
        "javascript:alert(1)",
        "https://shop.example/\r\nLocation: https://evil.example",
        "https://shop.example:8443/",
    ],
)
async def test_deep_link_to_a_foreign_host_falls_back_to_the_link_destination(
    client: AsyncTestClient[Any], programme: Programme, target: str
) -> None:
    response = await client.get(
        f"/c/{programme.link['code']}", params={"to": target}, headers=BROWSER_HEADERS
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://shop.example/winter?ref=aff&ct_click=")


async def test_deep_link_to_an_allowed_domain_is_followed(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    response = await client.get(
        f"/c/{programme.link['code']}",
        params={"to": "https://www.shop.example/boots?size=42#top"},
        headers=BROWSER_HEADERS,
    )
    location = response.headers["location"]
    assert location.startswith("https://www.shop.example/boots?size=42&ct_click=")
    assert location.endswith("#top")


async def test_beacon_answers_field_errors_and_keeps_the_bad_events(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    key = programme.merchant["key"]
    not_json = await client.post("/e", content=b"{not json", headers={"content-type": "text/plain"})
    assert not_json.status_code == 400
    assert not_json.json()["errors"][0]["field"] == "body"

    unknown = await client.post("/e", json={"m": "mk_x", "events": [{"t": "conversion"}]})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0] == {
        "field": "m",
        "reason": "unknown_merchant",
        "detail": "no merchant has this key",
    }

    too_big = await client.post("/e", content=b"x" * (MAX_BODY + 1))
    assert too_big.status_code == 413

    mixed = await client.post(
        "/e",
        content=(
            b'{"m": "' + key.encode() + b'", "events": ['
            b'{"t": "conversion", "oid": "ok", "amt": "1.50", "cur": "EUR"},'
            b'{"t": "conversion", "oid": "bad", "amt": "-1"}, "junk"]}'
        ),
        headers={"content-type": "text/plain"},
    )
    assert mixed.status_code == 202
    body = mixed.json()
    assert body["accepted"] == 1
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [
        (1, "negative_amount"),
        (2, "invalid_event"),
    ]

    reasons = await rejected_reasons(consumer, database)
    assert sorted(reasons) == sorted(
        ["invalid_event", "unknown_merchant", "field_too_long", "negative_amount", "invalid_event"]
    )
    assert await conversion_count(database) == 1


async def test_impressions_only_for_the_partners_own_links(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    response = await client.post(
        "/e",
        json={
            "p": programme.partner["key"],
            "events": [{"t": "impression", "l": programme.link["code"]}, {"l": "someoneelse"}],
        },
        headers={**BROWSER_HEADERS, "referer": "https://blog.example/post"},
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert await rejected_reasons(consumer, database) == ["unknown_link"]
    async with database.session() as session:
        impression = await session.scalar(select(Impression))
    assert impression is not None
    assert (impression.link_id, impression.page_url) == (
        programme.link["id"],
        "https://blog.example/post",
    )


async def test_cors_is_granted_only_to_the_merchants_domains(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    key = programme.merchant["key"]
    body = {"m": key, "events": [{"t": "conversion", "oid": "c1"}]}
    allowed = await client.post("/e", json=body, headers={"origin": "https://shop.example"})
    foreign = await client.post("/e", json=body, headers={"origin": "https://evil.example"})
    preflight = await client.options(f"/e?m={key}", headers={"origin": "https://shop.example"})

    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in foreign.headers
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"


async def click_count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Click)) or 0)


async def test_redirect_and_pixel_with_many_parameters_still_work_and_are_recorded(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    """Ad platforms append dozens of parameters: whatever their number, the visitor reaches
    the shop, the sale is kept, and the fields that count are read wherever they stand."""
    noise = "&".join(f"gad_{i}=x{i}" for i in range(300))
    click = await client.get(
        f"/c/{programme.link['code']}?{noise}&sub1=late%20sub&utm_source=ads",
        headers=BROWSER_HEADERS,
    )
    assert click.status_code == 302
    assert click.headers["location"].startswith("https://shop.example/winter?ref=aff&ct_click=")

    key = programme.merchant["key"]
    pixel = await client.get(f"/p.gif?{noise}&m={key}&oid=MANY&amt=12.50&cur=EUR")
    assert pixel.status_code == 200
    assert pixel.content == GIF

    assert await rejected_reasons(consumer, database) == []
    async with database.session() as session:
        stored = await session.scalar(select(Click))
        sale = await session.scalar(select(Conversion))
    assert stored is not None
    assert (stored.sub1, stored.utm_source) == ("late sub", "ads")
    assert sale is not None
    assert (sale.order_id, sale.amount_minor) == ("MANY", 1250)


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "OPTIONS"])
async def test_only_a_get_on_a_link_is_a_click(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    method: str,
) -> None:
    """Link unfurlers and prefetchers send HEAD: redirected to the shop, never counted."""
    response = await client.request(method, f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    unknown = await client.request(method, "/c/doesnotexist", headers=BROWSER_HEADERS)

    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.example/winter?ref=aff"
    assert "set-cookie" not in response.headers
    assert unknown.status_code == 404
    assert await rejected_reasons(consumer, database) == []
    assert await click_count(database) == 0


async def test_a_beacon_of_many_bad_events_stores_one_small_row_per_reason(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    padding = "p" * 120
    events: list[dict[str, Any]] = [
        {"t": "conversion", "oid": f"{i:03d}{padding}", "amt": "-1", "ev": "x" * 60}
        for i in range(99)
    ]
    events.append({"t": "conversion", "oid": "ok", "amt": "1.00"})
    response = await client.post("/e", json={"m": programme.merchant["key"], "events": events})

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert len(response.json()["errors"]) == 99  # the sender is told about every one
    await consumer.drain()
    async with database.session() as session:
        (row,) = (await session.scalars(select(RejectedEventRow))).all()
    assert row.reason == "negative_amount"
    assert row.detail.startswith("events[0].amt: ")
    assert row.detail.endswith("(and 98 more events of this request)")
    assert len(row.payload) <= 1024
    assert await conversion_count(database) == 1


DEEP = b"[" * 5000 + b"]" * 5000


async def test_json_nested_too_deeply_is_a_clear_400_everywhere(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    key = programme.merchant["key"].encode()
    beacon = await client.post("/e", content=b'{"m": "' + key + b'", "events": ' + DEEP + b"}")
    nested_items = await client.post(
        "/e",
        json={"m": key.decode(), "events": [{"oid": "I", "amt": "1", "items": [{"a": [[1]]}]}]},
    )
    postback = await client.post(
        "/api/v1/postback", content=b'{"merchant": "' + key + b'", "x": ' + DEEP + b"}"
    )
    api = await client.post(
        "/api/v1/partners",
        content=b'{"name": "P", "x": ' + DEEP + b"}",
        headers={**programme.headers, "content-type": "application/json"},
    )

    assert beacon.status_code == 400
    assert beacon.json()["errors"][0]["detail"] == "JSON nested too deeply"
    assert nested_items.status_code == 202
    assert nested_items.json()["errors"][0]["field"] == "items"
    assert postback.status_code == 400
    assert api.status_code == 400
    assert "nested too deeply" in api.json()["detail"]
    assert sorted(await rejected_reasons(consumer, database)) == ["invalid_event"] * 3


@pytest.mark.parametrize(
    "destination",
    [
        "https://shop.example/a\r\nSet-Cookie: x=1",
        "https://shop.example/a b",
        "https://shop.example\\evil.example/",
        "https://user@shop.example/",
        "https://shop.example:99999/",
        "https:///no-host",
    ],
)
async def test_a_destination_that_would_break_the_redirect_is_refused_when_saved(
    client: AsyncTestClient[Any], programme: Programme, destination: str
) -> None:
    campaign = await client.patch(
        f"/api/v1/campaigns/{programme.campaign['id']}",
        json={"destination_url": destination},
        headers=programme.headers,
    )
    link = await client.patch(
        f"/api/v1/links/{programme.link['id']}",
        json={"destination_url": destination},
        headers=programme.headers,
    )
    assert (campaign.status_code, link.status_code) == (400, 400)
    response = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    assert response.headers["location"].startswith("https://shop.example/winter?ref=aff&ct_click=")
