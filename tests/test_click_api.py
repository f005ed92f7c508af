"""``POST /api/v1/clicks``: a server's or an app's click, through the redirect's checks."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.storage.db.engine import Database
from backend.storage.db.models import Click, RejectedEventRow
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER, Programme, add_partner_with_link, create_api_key

VISITOR = {"user_agent": BROWSER, "ip": "203.0.113.9", "accept_language": "en-GB"}


async def rejected(database: Database) -> list[tuple[str, str, str]]:
    async with database.session() as session:
        rows = await session.execute(
            select(RejectedEventRow.source, RejectedEventRow.reason, RejectedEventRow.payload)
        )
    return [(source, reason, payload) for source, reason, payload in rows.all()]


async def test_a_server_click_is_stored_like_a_redirects_and_answers_where_to_go(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    response = await client.post(
        "/api/v1/clicks",
        json={"link": programme.link["code"], "sub1": "app-home", **VISITOR},
        headers=programme.headers,
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["url"] == f"https://shop.example/winter?ref=aff&ct_click={answer['click_id']}"
    await consumer.drain()
    async with database.session() as session:
        click = await session.scalar(select(Click).where(Click.click_id == answer["click_id"]))
    assert click is not None
    assert (click.link_id, click.sub1, click.is_bot) == (programme.link["id"], "app-home", False)
    assert click.browser != ""  # the user agent the caller saw was classified


async def test_a_server_reporting_a_crawler_gets_a_click_the_worker_marks_as_a_bot(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    body = {"link": programme.link["code"], "user_agent": "Googlebot/2.1", "ip": "66.249.66.1"}
    response = await client.post("/api/v1/clicks", json=body, headers=programme.headers)
    await consumer.drain()
    async with database.session() as session:
        click = await session.scalar(select(Click))
    assert click is not None
    assert (click.click_id, click.is_bot) == (response.json()["click_id"], True)


async def test_refusals_are_answered_and_kept_without_the_visitors_address(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    bad_ip = await client.post(
        "/api/v1/clicks",
        json={"link": programme.link["code"], "ip": "203.0.113.999"},
        headers=programme.headers,
    )
    unknown = await client.post(
        "/api/v1/clicks", json={"link": "nosuch", **VISITOR}, headers=programme.headers
    )
    extra = await client.post(
        "/api/v1/clicks",
        json={"link": programme.link["code"], "colour": "red"},
        headers=programme.headers,
    )
    assert (bad_ip.status_code, unknown.status_code, extra.status_code) == (400, 404, 400)
    assert bad_ip.json()["extra"] == [{"key": "ip", "message": "not an IPv4 or IPv6 address"}]
    assert "colour" in extra.text
    await consumer.drain()
    kept = await rejected(database)
    assert sorted((source, reason) for source, reason, _ in kept) == [
        ("api", "invalid_event"),
        ("api", "invalid_event"),
        ("api", "unknown_link"),
    ]
    assert not any("203.0.113" in payload for _, _, payload in kept)


async def test_a_partners_key_clicks_its_own_links_only(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    headers = {"Authorization": f"Bearer {await create_api_key(database, programme.partner['id'])}"}
    own = await client.post(
        "/api/v1/clicks", json={"link": programme.link["code"], **VISITOR}, headers=headers
    )
    others = await client.post(
        "/api/v1/clicks", json={"link": other_link["code"], **VISITOR}, headers=headers
    )
    nobody = await client.post("/api/v1/clicks", json={"link": programme.link["code"]})
    assert (own.status_code, others.status_code, nobody.status_code) == (201, 404, 401)


async def test_the_schema_describes_the_body(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/v1/clicks"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False
    assert body["required"] == ["link"]
    assert body["properties"]["link"]["maxLength"] == 32
    assert {"201", "400", "401", "404"} <= operation["responses"].keys()
