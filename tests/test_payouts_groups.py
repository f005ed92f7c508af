"""Partner groups (tiers): a group's rate for a campaign replaces the campaign's rule for the
group's partners, a partner's own override still wins over it, and every conversion says which
rule set its commission (also when a reviewer sets it), through the real pipeline."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from backend.storage.db.engine import Database
from backend.storage.db.models import Partner, PartnerGroup
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, add_partner_with_link, click_id_in, sign_in
from tests.test_admin import one, submit


async def buy(
    client: AsyncTestClient[Any], programme: Programme, link: dict[str, Any], order: str
) -> None:
    response = await client.get(f"/c/{link['code']}", headers=BROWSER_HEADERS)
    click = click_id_in(response.headers["location"])
    params = {"m": programme.merchant["key"], "oid": order, "amt": "100.00", "clk": click}
    assert (await client.get("/p.gif", params=params)).status_code == 200


async def test_group_rates_sit_between_the_campaign_and_the_partner(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    admin = programme.headers
    gold = await client.post("/api/v1/partner-groups", json={"name": "Gold"}, headers=admin)
    assert gold.status_code == 201, gold.text
    group_id = gold.json()["id"]
    taken = await client.post("/api/v1/partner-groups", json={"name": "Gold"}, headers=admin)
    assert taken.status_code == 400
    rate = await client.post(
        f"/api/v1/partner-groups/{group_id}/rates",
        json={"campaign_id": programme.campaign["id"], "commission_percent": "20"},
        headers=admin,
    )
    assert rate.status_code == 200, rate.text
    nowhere = await client.post(
        f"/api/v1/partner-groups/{group_id}/rates", json={"campaign_id": 999}, headers=admin
    )
    assert nowhere.status_code == 400
    plain, plain_link = await add_partner_with_link(client, programme, "Plain blog")
    own, own_link = await add_partner_with_link(client, programme, "Own deal")
    for partner_id in (programme.partner["id"], own["id"]):
        joined = await client.patch(
            f"/api/v1/partners/{partner_id}", json={"group_id": group_id}, headers=admin
        )
        assert joined.json()["group_id"] == group_id
    no_group = await client.patch(
        f"/api/v1/partners/{plain['id']}", json={"group_id": 999}, headers=admin
    )
    assert no_group.status_code == 400
    override = await client.post(
        "/api/v1/commission-overrides",
        json={
            "partner_id": own["id"],
            "campaign_id": programme.campaign["id"],
            "commission_percent": "5",
        },
        headers=admin,
    )
    assert override.status_code == 201
    group = (await client.get(f"/api/v1/partner-groups/{group_id}", headers=admin)).json()
    assert group["partner_ids"] == [programme.partner["id"], own["id"]]
    assert group["rates"] == [
        {
            "campaign_id": programme.campaign["id"],
            "commission_percent": "20.00",
            "commission_flat_minor": 0,
        }
    ]

    await buy(client, programme, programme.link, "G-1")
    await buy(client, programme, plain_link, "G-2")
    await buy(client, programme, own_link, "G-3")
    await consumer.drain()
    listed = (await client.get("/api/v1/conversions", headers=admin)).json()["items"]
    rules = {c["order_id"]: (c["commission_minor"], c["commission_rule"]) for c in listed}
    assert rules == {
        "G-1": (2000, "group"),  # 20 % of 100.00, the group's rate without a flat fee
        "G-2": (1050, "campaign"),  # 10 % and 0.50
        "G-3": (500, "partner"),  # the partner's own 5 % wins over the group's
    }
    g2 = next(c for c in listed if c["order_id"] == "G-2")
    decided = await client.patch(
        f"/api/v1/conversions/{g2['id']}",
        json={"status": "approved", "commission_minor": 1200},
        headers=admin,
    )
    assert decided.json()["commission_rule"] == "reviewer"


async def test_groups_from_the_admin_pages(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    await sign_in(client, database)
    assert (await submit(client, "/admin/groups", {"name": "Silver"})).status_code == 303
    group = await one(database, PartnerGroup, name="Silver")
    bad = await submit(
        client,
        "/admin/groups/rates",
        {
            "group_id": str(group.id),
            "campaign_id": str(programme.campaign["id"]),
            "commission_percent": "101",
        },
    )
    assert bad.status_code == 400
    rate = await submit(
        client,
        "/admin/groups/rates",
        {
            "group_id": str(group.id),
            "campaign_id": str(programme.campaign["id"]),
            "commission_percent": "12.5",
            "commission_flat_minor": "",
        },
    )
    assert rate.status_code == 303, rate.text
    moved = await submit(
        client,
        "/admin/groups/members",
        {"partner_id": str(programme.partner["id"]), "group_id": str(group.id)},
    )
    assert moved.status_code == 303, moved.text
    assert (await one(database, Partner, id=programme.partner["id"])).group_id == group.id
    page = await client.get("/admin/groups")
    assert "Silver" in page.text
    assert "12.50 %" in page.text
    left = await submit(
        client,
        "/admin/groups/members",
        {"partner_id": str(programme.partner["id"]), "group_id": ""},
    )
    assert left.status_code == 303
    assert (await one(database, Partner, id=programme.partner["id"])).group_id is None
