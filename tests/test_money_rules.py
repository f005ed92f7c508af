"""Who decides the money, through real HTTP, Redis and the worker: a person approving a held
conversion (by the rule, or an amount they set, with the rollups corrected), auto-approval of
what cannot be forged (and, opted in, of pixels up to an amount), sales in another currency,
and paused links and campaigns, banned partners."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.core.clock import DAY_MS, now_ms
from backend.domain.affiliate.auto_approval import approve_due
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Click,
    Conversion,
    ConversionChange,
    DimensionHourly,
    RejectedEventRow,
    StatsHourly,
)
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.worker.consumer import StreamConsumer
from tests.postback_support import sale, send
from tests.support import Programme, add_partner_with_link, follow_link, post_json, sign_in
from tests.test_admin import error_of, submit

GOOGLEBOT = {
    "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
}


async def pixel(
    client: AsyncTestClient[Any],
    programme: Programme,
    order_id: str,
    amount: str,
    click_id: str = "",
    currency: str = "EUR",
) -> None:
    params = {
        "m": programme.merchant["key"],
        "oid": order_id,
        "amt": amount,
        "cur": currency,
        "clk": click_id,
    }
    assert (await client.get("/p.gif", params=params)).status_code == 200


async def stored(database: Database) -> dict[str, Conversion]:
    async with database.session() as session:
        return {c.order_id or "": c for c in await session.scalars(select(Conversion))}


async def held_on_a_bot_click(
    client: AsyncTestClient[Any], programme: Programme, order_id: str, amount: str = "100.00"
) -> None:
    """A sale crediting a crawler's click: stored with commission 0, held for review."""
    await pixel(
        client,
        programme,
        order_id,
        amount,
        await follow_link(client, programme.link["code"], GOOGLEBOT),
    )


async def rollup_commission(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.sum(StatsHourly.commission_minor))) or 0)


async def folded_commission(database: Database) -> set[tuple[str, int, int]]:
    """(dimension, span, commission) of the dimension rollup."""
    table = DimensionHourly
    async with database.session() as session:
        rows = await session.execute(
            select(table.dimension, table.span_hours, func.sum(table.commission_minor)).group_by(
                table.dimension, table.span_hours
            )
        )
    return {(dimension, span, int(total)) for dimension, span, total in rows}


async def test_approving_a_held_conversion_pays_by_the_rule_or_as_the_reviewer_says(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    for order_id in ("RULE", "SET", "BULK", "REJECT"):
        await held_on_a_bot_click(client, programme, order_id)
    await consumer.drain()
    before = await stored(database)
    assert {order: c.commission_minor for order, c in before.items()} == dict.fromkeys(before, 0)
    assert all("review" in c.flags.split(",") for c in before.values())
    ids = {order: c.id for order, c in before.items()}
    await fold_closed_hours(database, now_ms() + 2 * DAY_MS)  # the hour and the day are folded
    headers = programme.headers

    async def patch(order_id: str, body: dict[str, Any]) -> Any:
        url = f"/api/v1/conversions/{ids[order_id]}"
        return await client.patch(url, json=body, headers=headers)

    by_rule = await patch("RULE", {"status": "approved", "reason": "a real customer"})
    assert by_rule.status_code == 200, by_rule.text
    assert by_rule.json()["commission_minor"] == 1050  # the campaign's 10 % + 0.50
    over = await patch("SET", {"status": "approved", "commission_minor": 10_001})
    assert over.status_code == 400
    assert "at most 100.00 EUR" in over.json()["detail"]
    not_approving = await patch("REJECT", {"status": "rejected", "commission_minor": 5})
    assert not_approving.status_code == 400
    assert "only when approving" in not_approving.json()["detail"]
    explicit = await patch("SET", {"status": "approved", "commission_minor": 500, "reason": "half"})
    assert explicit.json()["commission_minor"] == 500
    bulk = await client.post(
        "/api/v1/conversions/status",
        json={"ids": [ids["BULK"]], "status": "approved", "commission_minor": 700},
        headers=headers,
    )
    assert bulk.json()["results"] == [
        {"id": ids["BULK"], "outcome": "changed", "status": "approved"}
    ]

    after = await stored(database)
    assert {order: (c.status, c.commission_minor) for order, c in after.items()} == {
        "RULE": ("approved", 1050),
        "SET": ("approved", 500),
        "BULK": ("approved", 700),
        "REJECT": ("pending", 0),
    }
    detail = (await client.get(f"/api/v1/conversions/{ids['RULE']}", headers=headers)).json()
    (change,) = detail["history"]
    assert (change["commission_from_minor"], change["commission_to_minor"]) == (0, 1050)
    assert change["reason"] == "a real customer"
    async with database.session() as session:
        trail = await session.execute(
            select(
                ConversionChange.conversion_id,
                ConversionChange.commission_from_minor,
                ConversionChange.commission_to_minor,
                ConversionChange.reason,
            )
        )
        by_id = {row[0]: row[1:] for row in trail}
    assert by_id[ids["SET"]] == (0, 500, "half")
    assert by_id[ids["BULK"]] == (0, 700, "commission set by the reviewer")
    # The rollups add up to the rows: the hourly stats and the folded breakdowns alike.
    assert await rollup_commission(database) == 2250
    totals = (await client.get("/api/v1/stats", headers=headers)).json()["totals"]
    assert totals["commission_minor"] == 2250
    folded = await folded_commission(database)
    assert folded
    assert {total for _, _, total in folded} == {2250}
    assert {span for _, span, _ in folded} == {1, 24}


async def test_a_reviewer_sets_the_commission_on_the_conversion_page_as_people_write_it(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    for order_id in ("PAGE", "DEFAULT", "TABLE"):
        await held_on_a_bot_click(client, programme, order_id)
    await consumer.drain()
    ids = {order: c.id for order, c in (await stored(database)).items()}
    await sign_in(client, database)
    action = f"/admin/conversions/{ids['PAGE']}/status"
    page = await client.get(f"/conversions/{ids['PAGE']}")
    assert 'name="commission"' in page.text

    wrong = await submit(client, action, {"action": "approved", "commission": "3.505"})
    assert wrong.status_code == 400
    assert "EUR has 2 minor digits" in error_of(wrong.text, "commission")
    assert (await stored(database))["PAGE"].status == "pending"
    done = await submit(
        client, action, {"action": "approved", "commission": " 3.50 ", "reason": "agreed"}
    )
    assert done.status_code == 303
    default = await submit(
        client, f"/admin/conversions/{ids['DEFAULT']}/status", {"action": "approved"}
    )
    assert default.status_code == 303
    table = await submit(
        client, "/admin/conversions/status", {"ids": [ids["TABLE"]], "action": "approved"}
    )
    assert "pending → approved, commission 0.00 → 10.50 EUR" in table.text
    after = await stored(database)
    assert (after["PAGE"].status, after["PAGE"].commission_minor) == ("approved", 350)
    assert after["DEFAULT"].commission_minor == 1050
    assert after["TABLE"].commission_minor == 1050
    shown = await client.get(f"/conversions/{ids['PAGE']}")
    assert "<dt>Commission</dt><dd>€3.50</dd>" in shown.text
    assert "commission €0.00 → €3.50" in shown.text
    assert await rollup_commission(database) == 2450


async def test_auto_approval_approves_only_what_cannot_be_forged_unless_the_merchant_opts_in(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    merchant_url = f"/api/v1/merchants/{programme.merchant['id']}"
    response = await client.patch(
        merchant_url, json={"auto_approve_days": 3}, headers=programme.headers
    )
    assert response.json()["auto_approve_unverified_max_minor"] is None
    assert "Unverified pixel and snippet conversions are never" in response.json()["auto_approval"]
    await pixel(client, programme, "SMALL", "100.00")
    await pixel(client, programme, "BIG", "100.01")
    await pixel(client, programme, "DOLLARS", "10.00", currency="USD")
    assert (await send(client, programme, sale("SIGNED", "300.00"))).status_code == 202
    await consumer.drain()
    later = now_ms() + 4 * DAY_MS

    assert await approve_due(database, now_ms=later) == 1
    statuses = {order: c.status for order, c in (await stored(database)).items()}
    assert statuses == {
        "SMALL": "pending",
        "BIG": "pending",
        "DOLLARS": "pending",
        "SIGNED": "approved",
    }

    opted_in = await client.patch(
        merchant_url, json={"auto_approve_unverified_max_minor": 10_000}, headers=programme.headers
    )
    assert opted_in.json()["auto_approve_unverified_max_minor"] == 10_000
    assert "up to 100.00 EUR" in opted_in.json()["auto_approval"]
    assert "anyone" in opted_in.json()["auto_approval"]
    assert await approve_due(database, now_ms=later) == 1
    after = await stored(database)
    assert {order: c.status for order, c in after.items()} == statuses | {"SMALL": "approved"}
    assert {"foreign_currency", "review"} <= set(after["DOLLARS"].flags.split(","))
    refused = await client.patch(
        merchant_url, json={"auto_approve_unverified_max_minor": -1}, headers=programme.headers
    )
    assert refused.status_code == 400


async def test_merchant_page_says_what_auto_approving_pixels_puts_at_risk(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    await sign_in(client, database)
    merchant_id = programme.merchant["id"]
    form = {"name": "Shop", "currency": "EUR", "domains": "shop.example", "auto_approve_days": "14"}
    safe = await client.get(f"/admin/merchants/{merchant_id}")
    assert "never approved automatically" in safe.text
    edited = await submit(
        client,
        f"/admin/merchants/{merchant_id}",
        {**form, "auto_approve_unverified_max_minor": "200.00"},
    )
    assert edited.status_code == 303
    page = (await client.get(f"/admin/merchants/{merchant_id}")).text
    assert "up to 200.00 EUR" in page
    # The campaign pays 10 % + 0.50: a forged sale of 200.00 EUR earns a partner 20.50.
    assert "<strong>€20.50</strong>" in re.sub(r"\s+", " ", page)
    listing = await client.get("/admin/merchants")
    assert "<td>14 days, unverified up to €200.00</td>" in listing.text


async def test_paused_link_or_campaign_redirects_but_its_conversions_wait_for_a_person(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    headers = programme.headers
    campaign = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": programme.merchant["id"],
            "name": "Spring",
            "destination_url": "https://shop.example/spring",
            "commission_percent": "5",
        },
        headers,
    )
    assert campaign["status"] == "active"
    spring = await post_json(
        client,
        "/api/v1/links",
        {"partner_id": programme.partner["id"], "campaign_id": campaign["id"]},
        headers,
    )
    paused = await client.patch(
        f"/api/v1/links/{programme.link['id']}", json={"status": "paused"}, headers=headers
    )
    assert paused.json()["status"] == "paused"
    paused = await client.patch(
        f"/api/v1/campaigns/{campaign['id']}", json={"status": "paused"}, headers=headers
    )
    assert paused.json()["status"] == "paused"
    link_click = await follow_link(client, programme.link["code"])  # still a 302 with a click id
    campaign_click = await follow_link(client, spring["code"])
    await pixel(client, programme, "LINK", "100.00", link_click)
    await pixel(client, programme, "CAMPAIGN", "100.00", campaign_click)
    await consumer.drain()

    after = await stored(database)
    assert after["LINK"].commission_minor == 1050  # computed, held for a person to decide
    assert {"link_paused", "review"} <= set(after["LINK"].flags.split(","))
    assert after["CAMPAIGN"].commission_minor == 500
    assert {"campaign_paused", "review"} <= set(after["CAMPAIGN"].flags.split(","))
    assert "link_paused" not in after["CAMPAIGN"].flags
    async with database.session() as session:
        assert await session.get(Click, link_click) is not None
        assert await session.get(Click, campaign_click) is not None
    assert await approve_due(database, now_ms=now_ms() + 400 * DAY_MS) == 0


async def test_campaign_status_is_set_on_its_admin_page(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    await sign_in(client, database)
    campaign_id = programme.campaign["id"]
    form = {
        "name": "Winter sale",
        "destination_url": "https://shop.example/winter",
        "commission_percent": "10",
        "commission_flat_minor": "0.50",
        "status": "paused",
    }
    assert (await submit(client, f"/admin/campaigns/{campaign_id}", form)).status_code == 303
    read = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=programme.headers)
    assert read.json()["status"] == "paused"
    page = await client.get(f"/admin/campaigns/{campaign_id}")
    assert '<option value="paused" selected>' in page.text
    wrong = await submit(client, f"/admin/campaigns/{campaign_id}", {**form, "status": "gone"})
    assert wrong.status_code == 400


async def test_banned_partners_links_go_to_the_campaign_without_a_click_id(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    _, own_page = await add_partner_with_link(client, programme, "Other")
    earlier_click = await follow_link(client, programme.link["code"])  # before the ban
    await client.patch(
        f"/api/v1/links/{programme.link['id']}",
        json={"destination_url": "https://shop.example/blog-offer"},
        headers=programme.headers,
    )
    banned = await client.patch(
        f"/api/v1/partners/{programme.partner['id']}",
        json={"status": "banned"},
        headers=programme.headers,
    )
    assert banned.json()["status"] == "banned"
    response = await client.get(
        f"/c/{programme.link['code']}", params={"to": "https://shop.example/deal"}
    )
    assert response.status_code == 302
    assert response.headers["location"] == programme.campaign["destination_url"]
    assert "set-cookie" not in response.headers
    await follow_link(client, own_page["code"])  # another partner's link is untouched
    await pixel(client, programme, "EARLIER", "100.00", earlier_click)
    await consumer.drain()

    async with database.session() as session:
        clicks = (await session.scalars(select(Click.link_id))).all()
        rejected = (await session.scalars(select(RejectedEventRow))).all()
    assert sorted(clicks) == sorted([programme.link["id"], own_page["id"]])
    assert [(r.source, r.reason) for r in rejected] == [("redirect", "partner_banned")]
    earlier = (await stored(database))["EARLIER"]
    assert earlier.commission_minor == 0
    assert "partner_banned" in earlier.flags.split(",")
