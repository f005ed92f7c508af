"""The management API: bearer keys, field errors, pagination, partner isolation, status rules."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.storage.db.engine import Database
from backend.storage.db.models import StatsHourly
from backend.worker.consumer import StreamConsumer
from tests.support import (
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    create_api_key,
    follow_link,
    post_json,
)


async def test_requests_without_a_valid_key_are_refused(client: AsyncTestClient[Any]) -> None:
    missing = await client.get("/api/v1/merchants")
    wrong = await client.get("/api/v1/merchants", headers={"Authorization": "Bearer ctk_nope"})
    assert (missing.status_code, wrong.status_code) == (401, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Shop", "currency": "XYZ"}, "currency"),
        ({"name": "", "currency": "EUR"}, "name"),
        ({"currency": "EUR"}, "name"),
        ({"name": "Shop", "currency": "EUR", "domains": ["https://shop.example/"]}, "domains"),
        ({"name": "Shop", "currency": "EUR", "colour": "red"}, "colour"),
    ],
)
async def test_invalid_merchant_names_the_field(
    client: AsyncTestClient[Any], database: Database, body: dict[str, Any], field: str
) -> None:
    headers = {"Authorization": f"Bearer {await create_api_key(database)}"}
    response = await client.post("/api/v1/merchants", json=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status_code"] == 400
    assert field in response.text


async def test_campaign_and_link_refer_to_existing_objects(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    campaign = await client.post(
        "/api/v1/campaigns",
        json={"merchant_id": 999, "name": "x", "destination_url": "https://shop.example/"},
        headers=programme.headers,
    )
    assert campaign.status_code == 400
    assert campaign.json()["extra"] == [
        {"key": "merchant_id", "message": "no merchant with id 999"}
    ]
    link = await client.post(
        "/api/v1/links",
        json={
            "partner_id": programme.partner["id"],
            "campaign_id": programme.campaign["id"],
            "destination_url": "https://evil.example/",
        },
        headers=programme.headers,
    )
    assert link.status_code == 400
    assert link.json()["extra"][0]["key"] == "destination_url"
    percent = await client.post(
        "/api/v1/campaigns",
        json={
            "merchant_id": programme.merchant["id"],
            "name": "x",
            "destination_url": "https://shop.example/",
            "commission_percent": "101",
        },
        headers=programme.headers,
    )
    assert percent.status_code == 400


async def test_lists_are_paginated_by_id(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    for number in range(4):
        await post_json(client, "/api/v1/partners", {"name": f"P{number}"}, programme.headers)
    first = (await client.get("/api/v1/partners?limit=2", headers=programme.headers)).json()
    second = (
        await client.get(
            f"/api/v1/partners?limit=2&after={first['next_after']}", headers=programme.headers
        )
    ).json()
    third = (
        await client.get(
            f"/api/v1/partners?limit=2&after={second['next_after']}", headers=programme.headers
        )
    ).json()
    names = [p["name"] for page in (first, second, third) for p in page["items"]]
    assert names == ["Blog", "P0", "P1", "P2", "P3"]
    assert third["next_after"] is None


async def test_edits_apply_and_reach_the_redirect(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    response = await client.patch(
        f"/api/v1/links/{programme.link['id']}",
        json={"destination_url": "https://www.shop.example/sale"},
        headers=programme.headers,
    )
    assert response.status_code == 200
    assert response.json()["destination_url"] == "https://www.shop.example/sale"
    redirect = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    assert redirect.headers["location"].startswith("https://www.shop.example/sale?ct_click=")


async def test_partner_key_sees_only_its_own_data(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    other, other_link = await add_partner_with_link(client, programme, "Other")
    for code in (programme.link["code"], other_link["code"], other_link["code"]):
        click_id = await follow_link(client, code)
        await client.get(
            "/p.gif",
            params={
                "m": programme.merchant["key"],
                "oid": click_id[-8:],
                "amt": "10",
                "clk": click_id,
            },
        )
    await consumer.drain()
    partner = {"Authorization": f"Bearer {await create_api_key(database, programme.partner['id'])}"}

    links = (await client.get("/api/v1/links", headers=partner)).json()["items"]
    assert [link["id"] for link in links] == [programme.link["id"]]
    assert (
        await client.get(f"/api/v1/links/{other_link['id']}", headers=partner)
    ).status_code == 404
    assert (await client.get(f"/api/v1/partners/{other['id']}", headers=partner)).status_code == 404
    for money in ("balance", "statements/2026-12", "statements/2026-12?format=csv"):
        own = await client.get(
            f"/api/v1/partners/{programme.partner['id']}/{money}", headers=partner
        )
        assert own.status_code == 200, (money, own.text)
        theirs = await client.get(f"/api/v1/partners/{other['id']}/{money}", headers=partner)
        assert theirs.status_code == 404, money
    conversions = (await client.get("/api/v1/conversions", headers=partner)).json()["items"]
    assert {c["partner_id"] for c in conversions} == {programme.partner["id"]}
    assert len(conversions) == 1
    stats = (await client.get("/api/v1/stats", headers=partner)).json()["totals"]
    assert (stats["clicks"], stats["conversions"]) == (1, 1)
    admin_stats = (await client.get("/api/v1/stats", headers=programme.headers)).json()["totals"]
    # the second click on the other link came within 10 s of the first: a duplicate
    assert (admin_stats["clicks"], admin_stats["flagged_clicks"]) == (2, 1)
    assert admin_stats["conversions"] == 3
    forbidden = await client.post(
        "/api/v1/merchants", json={"name": "x", "currency": "EUR"}, headers=partner
    )
    assert forbidden.status_code == 403


async def test_partner_keys_get_403_on_every_route_the_schema_says_and_only_there(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    """The admin guard sits on the router, so no route can forget it: a partner's key is
    refused before any input is read, except on the routes open to partners."""
    partner = {"Authorization": f"Bearer {await create_api_key(database, programme.partner['id'])}"}
    schema = (await client.get("/schema/openapi.json")).json()
    operations = [
        (method.upper(), re.sub(r"\{[a-z_]+\}", "1", path), "403" in operation["responses"])
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/") and path != "/api/v1/postback"
        for method, operation in item.items()
    ]
    # 27, coupons' 4, sources' 6, postbacks' and webhooks' 15, payouts' 11, groups' 4; open to
    # partners: 20, and their own webhook endpoints' 8
    assert len(operations) == 67
    assert sum(not admins_only for _, _, admins_only in operations) == 28
    for method, path, admins_only in operations:
        response = await client.request(method, path, headers=partner, json={"name": "Taken"})
        assert (response.status_code == 403) == admins_only, (method, path, response.text)
    merchants = (await client.get("/api/v1/merchants", headers=programme.headers)).json()
    assert [m["postback_secret"] for m in merchants["items"]] == [
        programme.merchant["postback_secret"]
    ]


async def test_stats_group_by_partner_and_day(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer
) -> None:
    await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    await consumer.drain()
    by_partner = (
        await client.get("/api/v1/stats?group_by=partner", headers=programme.headers)
    ).json()
    assert [(row["key"], row["totals"]["clicks"]) for row in by_partner["rows"]] == [
        (programme.partner["id"], 1)
    ]
    by_day = (await client.get("/api/v1/stats?group_by=day", headers=programme.headers)).json()
    assert len(by_day["rows"]) == 1
    assert by_day["rows"][0]["totals"]["clicks"] == 1
    bad = await client.get("/api/v1/stats?from=2026-02-01&to=2026-01-01", headers=programme.headers)
    assert bad.status_code == 400


async def test_conversion_status_transitions_and_the_rollup_follows(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "R1", "amt": "20"})
    await consumer.drain()
    (conversion,) = (await client.get("/api/v1/conversions", headers=programme.headers)).json()[
        "items"
    ]
    url = f"/api/v1/conversions/{conversion['id']}"

    not_allowed = await client.patch(url, json={"status": "reversed"}, headers=programme.headers)
    assert not_allowed.status_code == 409
    approved = await client.patch(url, json={"status": "approved"}, headers=programme.headers)
    assert approved.json()["status"] == "approved"
    reversed_ = await client.patch(url, json={"status": "reversed"}, headers=programme.headers)
    assert reversed_.json()["status"] == "reversed"
    again = await client.patch(url, json={"status": "approved"}, headers=programme.headers)
    assert again.status_code == 409

    async with database.session() as session:
        conversions, revenue = (
            await session.execute(
                select(func.sum(StatsHourly.conversions), func.sum(StatsHourly.revenue_minor))
            )
        ).one()
    assert (conversions, revenue) == (0, 0)


async def test_openapi_schema_is_served(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/merchants" in schema["paths"]
    assert "/api/v1/stats" in schema["paths"]
