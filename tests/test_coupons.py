"""Coupon codes: a partner's code credits the partner with a sale that carries it and names
no click (pixel, snippet, signed postback); when a click names another partner, the merchant's
setting decides (the click wins by default); the reason is stored and shown; codes are matched
regardless of case; a partner's key sees its own coupons only; an unknown code is a note."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.domain.events import ConversionEvent, Source
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, Coupon, RejectedEventRow, StatsHourly
from backend.worker.consumer import StreamConsumer
from backend.worker.steps.attribute import ConversionFacts
from backend.worker.steps.price import hold_for_review
from tests.postback_support import sale, send
from tests.support import (
    Programme,
    add_partner_with_link,
    create_api_key,
    follow_link,
    post_json,
    sign_in,
)
from tests.test_admin import error_of, one, sign_in_partner, submit
from tests.test_affiliate_rules import LINK

Row = tuple[str | None, int | None, int | None, int, str | None, str, int | None, str]


async def stored(database: Database) -> dict[str, Row]:
    """Per order: link, partner, campaign, commission, coupon, attribution, verified, flags."""
    async with database.session() as session:
        rows = await session.execute(
            select(
                Conversion.order_id,
                Conversion.click_id,
                Conversion.link_id,
                Conversion.partner_id,
                Conversion.commission_minor,
                Conversion.coupon,
                Conversion.attribution,
                Conversion.campaign_id,
                Conversion.flags,
            )
        )
    return {
        order or "": (click, link, partner, commission, coupon, attribution, campaign, flags)
        for order, click, link, partner, commission, coupon, attribution, campaign, flags in rows
    }


async def coupon(
    client: AsyncTestClient[Any], programme: Programme, partner_id: int, code: str
) -> dict[str, Any]:
    body = {"merchant_id": programme.merchant["id"], "partner_id": partner_id, "code": code}
    return await post_json(client, "/api/v1/coupons", body, programme.headers)


async def test_a_coupon_alone_credits_its_partner_from_pixel_snippet_and_postback(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    partner, campaign = programme.partner["id"], programme.campaign["id"]
    made = await coupon(client, programme, partner, "Summer10")
    assert (made["code"], made["campaign_id"]) == ("Summer10", campaign)  # the merchant's campaign
    merchant = programme.merchant["key"]
    pixel = {"m": merchant, "oid": "PIXEL", "amt": "49.90", "coupon": "summer10"}
    await client.get("/p.gif", params=pixel)
    event = {"t": "conversion", "oid": "SNIPPET", "amt": "10", "coupon": " SUMMER10 "}
    beacon = await client.post("/e", json={"m": merchant, "events": [event]})
    assert beacon.status_code == 202, beacon.text
    answer = await send(client, programme, sale("SERVER", "20.00", coupon="sUmMeR10"))
    assert answer.status_code == 202, answer.text
    await consumer.drain()

    # 10 % and 0.50 flat by the campaign's rule
    assert await stored(database) == {
        "PIXEL": (None, None, partner, 549, "SUMMER10", "coupon", campaign, ""),
        "SNIPPET": (None, None, partner, 150, "SUMMER10", "coupon", campaign, ""),
        "SERVER": (None, None, partner, 250, "SUMMER10", "coupon", campaign, ""),
    }
    async with database.session() as session:
        rollup = (
            await session.execute(
                select(StatsHourly.link_id, StatsHourly.partner_id, StatsHourly.conversions)
            )
        ).all()
    assert [tuple(row) for row in rollup] == [(0, partner, 3)]
    partner_key = {"Authorization": f"Bearer {await create_api_key(database, partner)}"}
    totals = (await client.get("/api/v1/stats", headers=partner_key)).json()["totals"]
    assert (totals["conversions"], totals["commission_minor"]) == (3, 949)
    shown = (await client.get("/api/v1/conversions", headers=partner_key)).json()["items"]
    assert {(c["attribution"], c["coupon"]) for c in shown} == {("coupon", "SUMMER10")}


async def test_the_click_wins_over_another_partners_coupon_by_default(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    other, _ = await add_partner_with_link(client, programme, "Coupon site")
    await coupon(client, programme, other["id"], "OTHER5")
    click_id = await follow_link(client, programme.link["code"])
    merchant = programme.merchant["key"]
    named = {"m": merchant, "oid": "NAMED", "amt": "10", "clk": click_id, "coupon": "other5"}
    await client.get("/p.gif", params=named)
    await client.get("/p.gif", params={"m": merchant, "oid": "COOKIE", "amt": "10"})
    await consumer.drain()
    rows = await stored(database)
    link, partner = programme.link["id"], programme.partner["id"]
    assert rows["NAMED"][:6] == (click_id, link, partner, 150, "OTHER5", "click")
    assert rows["COOKIE"][:6] == (click_id, link, partner, 150, None, "cookie")


async def test_the_merchant_can_let_another_partners_coupon_win_over_the_click(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    merchant_path = f"/api/v1/merchants/{programme.merchant['id']}"
    changed = await client.patch(
        merchant_path, json={"coupon_over_click": True}, headers=programme.headers
    )
    assert changed.json()["coupon_over_click"] is True, changed.text
    other, _ = await add_partner_with_link(client, programme, "Coupon site")
    await coupon(client, programme, other["id"], "OTHER5")
    await coupon(client, programme, programme.partner["id"], "MINE")
    click_id = await follow_link(client, programme.link["code"])
    merchant = programme.merchant["key"]
    for order, code in (("THEIRS", "Other5"), ("OWN", "mine")):
        params = {"m": merchant, "oid": order, "amt": "10", "clk": click_id, "coupon": code}
        await client.get("/p.gif", params=params)
    await consumer.drain()
    rows = await stored(database)
    # the other partner's coupon wins; the click id stays on the row as evidence
    assert rows["THEIRS"][:6] == (click_id, None, other["id"], 150, "OTHER5", "coupon")
    # the click's own partner's coupon: the click stands
    link, partner = programme.link["id"], programme.partner["id"]
    assert rows["OWN"][:6] == (click_id, link, partner, 150, "MINE", "click")


async def test_codes_are_unique_per_merchant_regardless_of_case(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    await coupon(client, programme, programme.partner["id"], "Winter")
    body = {
        "merchant_id": programme.merchant["id"],
        "partner_id": programme.partner["id"],
        "code": "WINTER",
    }
    again = await client.post("/api/v1/coupons", json=body, headers=programme.headers)
    assert again.status_code == 400, again.text
    assert "already" in again.text
    for bad in ({**body, "code": "with space"}, {**body, "code": ""}, {**body, "code": "x" * 65}):
        refused = await client.post("/api/v1/coupons", json=bad, headers=programme.headers)
        assert refused.status_code == 400, refused.text
    other_merchant = await post_json(
        client, "/api/v1/merchants", {"name": "Other", "currency": "EUR"}, programme.headers
    )
    no_campaign = {**body, "merchant_id": other_merchant["id"]}
    refused = await client.post("/api/v1/coupons", json=no_campaign, headers=programme.headers)
    assert refused.status_code == 400, refused.text
    assert "campaign" in refused.text
    foreign = {**no_campaign, "campaign_id": programme.campaign["id"]}
    refused = await client.post("/api/v1/coupons", json=foreign, headers=programme.headers)
    assert refused.status_code == 400, refused.text
    assert "another merchant" in refused.text


async def test_a_partner_sees_only_its_own_coupons(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    other, _ = await add_partner_with_link(client, programme, "Other")
    mine = await coupon(client, programme, programme.partner["id"], "MINE")
    theirs = await coupon(client, programme, other["id"], "THEIRS")
    key = await create_api_key(database, programme.partner["id"])
    partner = {"Authorization": f"Bearer {key}"}
    listed = (await client.get("/api/v1/coupons", headers=partner)).json()["items"]
    assert [c["code"] for c in listed] == ["MINE"]
    assert (await client.get(f"/api/v1/coupons/{mine['id']}", headers=partner)).status_code == 200
    hidden = await client.get(f"/api/v1/coupons/{theirs['id']}", headers=partner)
    assert hidden.status_code == 404
    assert (
        await client.delete(f"/api/v1/coupons/{mine['id']}", headers=partner)
    ).status_code == 403
    body = {"merchant_id": programme.merchant["id"], "partner_id": programme.partner["id"]}
    created = await client.post("/api/v1/coupons", json={**body, "code": "X"}, headers=partner)
    assert created.status_code == 403
    admin = programme.headers
    everything = (await client.get("/api/v1/coupons", headers=admin)).json()["items"]
    assert [c["code"] for c in everything] == ["MINE", "THEIRS"]
    gone = await client.delete(f"/api/v1/coupons/{theirs['id']}", headers=admin)
    assert gone.status_code == 204
    assert (await client.get(f"/api/v1/coupons/{theirs['id']}", headers=admin)).status_code == 404


async def test_an_unknown_coupon_is_noted_and_changes_nothing_else(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    click_id = await follow_link(client, programme.link["code"])
    client.cookies.clear()
    merchant = programme.merchant["key"]
    await client.get("/p.gif", params={"m": merchant, "oid": "ALONE", "amt": "5", "coupon": "NOPE"})
    with_click = {"m": merchant, "oid": "CLICKED", "amt": "5", "clk": click_id, "coupon": "NOPE"}
    await client.get("/p.gif", params=with_click)
    await client.get("/p.gif", params={"m": merchant, "oid": "LONG", "coupon": "C" * 65})
    await client.get("/p.gif", params={"m": merchant, "oid": "CTRL", "coupon": "A\x01B"})
    await consumer.drain()
    rows = await stored(database)
    assert rows["ALONE"] == (None, None, None, 0, "NOPE", "", None, "unknown_coupon")
    # a shop's own promotion code does not hold a click's sale for review
    link, partner = programme.link["id"], programme.partner["id"]
    assert rows["CLICKED"][:6] == (click_id, link, partner, 100, "NOPE", "click")
    assert rows["CLICKED"][7] == "unknown_coupon,too_fast,review"  # too fast, not the code
    assert rows.keys() == {"ALONE", "CLICKED"}
    async with database.session() as session:
        refused = (
            await session.execute(select(RejectedEventRow.reason, RejectedEventRow.detail))
        ).all()
    assert sorted((reason, detail.split(":")[0]) for reason, detail in refused) == [
        ("field_too_long", "coupon"),
        ("invalid_event", "coupon"),
    ]


def test_an_unknown_coupon_alone_holds_no_attributed_sale_for_review() -> None:
    event = ConversionEvent("e", 0, 1, "o", 100, "EUR", None, Source.PIXEL, "sale", None, "")
    link = LINK  # the rules' test link: its partner and campaign are all this needs
    row: dict[str, Any] = {"flags": "unknown_coupon"}
    hold_for_review(row, ConversionFacts(event, link, 0, ""))
    assert row["flags"] == "unknown_coupon"
    row = {"flags": "unknown_coupon,too_fast"}
    hold_for_review(row, ConversionFacts(event, link, 0, ""))
    assert row["flags"] == "unknown_coupon,too_fast,review"


async def test_admin_pages_create_list_and_delete_coupons_and_show_the_attribution(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    await sign_in(client, database)
    merchant_page = await client.get(f"/admin/merchants/{programme.merchant['id']}")
    assert '<option value="false" selected>' in merchant_page.text
    new_form = await client.get("/admin/coupons/new")
    assert new_form.status_code == 200
    form = {
        "merchant_id": str(programme.merchant["id"]),
        "partner_id": str(programme.partner["id"]),
        "code": "Autumn-5",
        "campaign_id": "",
    }
    created = await submit(client, "/admin/coupons/new", form)
    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"/admin/coupons?merchant_id={programme.merchant['id']}"
    made = await one(database, Coupon, code="Autumn-5")
    assert (made.code_key, made.campaign_id) == ("AUTUMN-5", programme.campaign["id"])
    twice = await submit(client, "/admin/coupons/new", {**form, "code": "autumn-5"})
    assert twice.status_code == 400
    assert error_of(twice.text, "code").startswith("the merchant has the coupon")
    bad = await submit(client, "/admin/coupons/new", {**form, "code": "<b>"})
    assert bad.status_code == 400
    assert error_of(bad.text, "code").startswith("Expected 1 to 64 letters")
    listed = await client.get("/admin/coupons")
    assert "<code>Autumn-5</code>" in listed.text
    assert "&lt;b&gt;" not in listed.text

    # a sale with the code, shown with what credited it, on the list and on its page
    params = {"m": programme.merchant["key"], "oid": "A1", "amt": "10", "coupon": "AUTUMN-5"}
    await client.get("/p.gif", params=params)
    await consumer.drain()
    conversion = await one(database, Conversion, order_id="A1")
    table = await client.get("/conversions")
    assert "coupon <code>AUTUMN-5</code>" in table.text
    page = await client.get(f"/conversions/{conversion.id}")
    assert "the partner&#39;s coupon code" in page.text
    export = await client.get("/conversions?format=csv")
    assert export.text.splitlines()[1].endswith(",coupon,AUTUMN-5")

    deleted = await submit(client, f"/admin/coupons/{made.id}/delete", {})
    assert deleted.status_code == 303
    assert await one(database, Coupon, id=made.id) is None
    no_token = await client.post(f"/admin/coupons/{made.id}/delete")
    assert no_token.status_code == 403


async def test_partner_users_see_their_own_coupons_and_no_coupon_admin_page(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    other, _ = await add_partner_with_link(client, programme, "Other")
    await coupon(client, programme, programme.partner["id"], "MINE")
    theirs = await coupon(client, programme, other["id"], "THEIRS")
    await sign_in_partner(client, database, programme.partner["id"])
    install = await client.get("/install")
    assert "<code>MINE</code> at Shop" in install.text
    assert "THEIRS" not in install.text
    for path in ("/admin/coupons", "/admin/coupons/new"):
        assert (await client.get(path)).status_code == 404
    refused = await submit(client, f"/admin/coupons/{theirs['id']}/delete", {})
    assert refused.status_code == 404
    assert await one(database, Coupon, id=theirs["id"]) is not None


async def test_a_signed_postback_with_another_partners_coupon_replaces_the_pixels_credit(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Database
) -> None:
    merchant_path = f"/api/v1/merchants/{programme.merchant['id']}"
    body = {"coupon_over_click": True}
    assert (await client.patch(merchant_path, json=body, headers=programme.headers)).is_success
    other, _ = await add_partner_with_link(client, programme, "Voucher site")
    await coupon(client, programme, other["id"], "VOUCHER")
    click_id = await follow_link(client, programme.link["code"])
    pixel = {"m": programme.merchant["key"], "oid": "O1", "amt": "10", "clk": click_id}
    await client.get("/p.gif", params=pixel)
    await consumer.drain()
    assert (await stored(database))["O1"][2] == programme.partner["id"]

    answer = await send(client, programme, sale("O1", "10.00", coupon="voucher"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["replaces"] == ["coupon"]
    await consumer.drain()
    assert (await stored(database))["O1"][:6] == (
        click_id,
        None,
        other["id"],
        150,
        "VOUCHER",
        "coupon",
    )
    async with database.session() as session:
        rollup = (
            await session.execute(
                select(StatsHourly.partner_id, StatsHourly.conversions).where(
                    StatsHourly.conversions != 0
                )
            )
        ).all()
    assert [tuple(row) for row in rollup] == [(other["id"], 1)]
