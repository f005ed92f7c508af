"""The admin pages for the programme's rules through real HTTP: verified conversions and their
audit trail, auto-approval and secret rotation on merchants, commission overrides, link health."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from backend.core.clock import now_ms
from backend.domain.affiliate.postback import GRACE_MS
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    CommissionOverride,
    Conversion,
    ConversionChange,
    Link,
    Merchant,
)
from backend.worker.consumer import StreamConsumer
from tests.postback_support import sale, send
from tests.support import Programme, add_partner_with_link, post_json, sign_in
from tests.test_admin import (
    ESCAPED,
    HOSTILE,
    convert,
    error_of,
    name_everything_hostile,
    one,
    sign_in_partner,
    submit,
    value_of,
)


async def conversion_ids(database: Database) -> dict[str, int]:
    async with database.session() as session:
        rows = await session.execute(select(Conversion.order_id, Conversion.id))
        return {order: conversion_id for order, conversion_id in rows if order}


async def audit_trail(database: Database, conversion_id: int) -> list[tuple[str, str, bool, str]]:
    async with database.session() as session:
        rows = await session.execute(
            select(
                ConversionChange.from_status,
                ConversionChange.to_status,
                ConversionChange.verified,
                ConversionChange.actor,
            )
            .where(ConversionChange.conversion_id == conversion_id)
            .order_by(ConversionChange.id)
        )
        return [(old, new, verified, actor) for old, new, verified, actor in rows]


def ticked(page: str) -> list[int]:
    """The conversions a page lists (by their checkboxes), newest first."""
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page)]


async def test_conversions_filter_by_verified_and_an_admin_verifies_them(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    for order in ("V1", "V2", "V3"):
        await convert(client, programme, programme.link["code"], order)
    await consumer.drain()
    ids = await conversion_ids(database)
    await sign_in(client, database)
    everything = await client.get("/conversions")
    assert (
        everything.text.count('<td class="text">no</td>') == 3
    )  # the Verified column: pixels are unproven
    approved = await submit(
        client, "/admin/conversions/status", {"ids": [ids["V1"]], "action": "approved"}
    )
    assert approved.status_code == 200
    verified = await submit(
        client,
        "/admin/conversions/status?verified=no",
        {"ids": [ids["V2"], ids["V1"]], "action": "verify", "reason": "seen in the shop"},
    )
    assert verified.status_code == 200
    outcomes = dict(
        re.findall(r'<th scope="row">(\d+)</th><td>[^<]*</td><td>([^<]+)</td>', verified.text)
    )
    assert outcomes == {str(ids["V1"]): "already verified", str(ids["V2"]): "verified"}
    assert ticked(verified.text) == [ids["V3"]]  # the filter (unverified) is kept
    async with database.session() as session:
        rows = await session.execute(
            select(Conversion.order_id, Conversion.status, Conversion.verified)
        )
        found = {order: (status, flag) for order, status, flag in rows}
    assert found == {
        "V1": ("approved", True),
        "V2": ("pending", True),  # verified, still to be decided
        "V3": ("pending", False),
    }
    assert await audit_trail(database, ids["V2"]) == [
        ("pending", "pending", True, "user:admin@example.com")
    ]
    assert len(await audit_trail(database, ids["V1"])) == 1  # verifying again wrote nothing

    yes = await client.get("/conversions", params={"verified": "yes"})
    assert ticked(yes.text) == [ids["V2"], ids["V1"]]
    assert '<option value="yes" selected>' in yes.text
    no = await client.get("/conversions", params={"verified": "no", "status": "pending"})
    assert ticked(no.text) == [ids["V3"]]
    assert 'action="/admin/conversions/status?status=pending&amp;verified=no"' in no.text
    assert (await client.get("/conversions", params={"verified": "maybe"})).status_code == 400


async def test_conversion_page_shows_its_fields_history_and_takes_a_decision(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await convert(client, programme, programme.link["code"], "D1")
    await consumer.drain()
    conversion_id = (await conversion_ids(database))["D1"]
    await sign_in(client, database)
    page = await client.get(f"/conversions/{conversion_id}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "<dt>Order</dt><dd>D1</dd>" in page.text
    assert "<dt>Amount</dt><dd>€10.00</dd>" in page.text
    assert "<dt>Commission</dt><dd>€1.50</dd>" in page.text  # 10 % + 0.50
    assert f"<code>{programme.link['code']}</code>" in page.text
    assert "No change yet" in page.text
    listing = await client.get("/conversions")
    assert f'<a href="/conversions/{conversion_id}">{conversion_id}</a>' in listing.text

    action = f"/admin/conversions/{conversion_id}/status"
    approved = await submit(client, action, {"action": "approved", "reason": HOSTILE})
    assert (approved.status_code, approved.headers["location"]) == (
        303,
        f"/conversions/{conversion_id}",
    )
    reversed_ = await submit(client, action, {"action": "reversed", "reason": "refunded"})
    assert reversed_.status_code == 303
    refused = await submit(client, action, {"action": "approved"})
    assert refused.status_code == 409
    assert "a reversed conversion cannot become approved" in refused.text
    unknown = await submit(client, action, {"action": "deleted"})
    assert unknown.status_code == 400
    assert await audit_trail(database, conversion_id) == [
        ("pending", "approved", True, "user:admin@example.com"),
        ("approved", "reversed", True, "user:admin@example.com"),
    ]
    assert (await one(database, Conversion, id=conversion_id)).status == "reversed"

    page = await client.get(f"/conversions/{conversion_id}")
    rows = re.findall(
        r"<td>([^<]*→[^<]*)</td>\s*<td>(yes|no)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>",
        page.text,
    )
    assert [(html.unescape(change), who, html.unescape(why)) for change, _, who, why in rows] == [
        ("pending → approved", "user:admin@example.com", HOSTILE),
        ("approved → reversed", "user:admin@example.com", "refunded"),
    ]
    assert HOSTILE not in page.text
    assert ESCAPED in page.text
    assert (await client.get("/conversions/999999")).status_code == 404


async def test_partner_users_see_their_own_conversion_pages_with_admin_as_the_actor(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    await convert(client, programme, programme.link["code"], "MINE")
    await convert(client, programme, other_link["code"], "THEIRS")
    await consumer.drain()
    ids = await conversion_ids(database)
    await sign_in(client, database)
    await submit(
        client,
        f"/admin/conversions/{ids['MINE']}/status",
        {"action": "rejected", "reason": "test order"},
    )
    await sign_in_partner(client, database, programme.partner["id"])
    mine = await client.get(f"/conversions/{ids['MINE']}")
    assert mine.status_code == 200
    assert "<td>admin</td>" in mine.text
    assert "admin@example.com" not in mine.text
    assert "test order" in mine.text
    assert "/admin/conversions/" not in mine.text  # no decision form
    assert 'href="/admin/' not in mine.text
    theirs = await client.get(f"/conversions/{ids['THEIRS']}")
    assert theirs.status_code == 404
    assert "THEIRS" not in theirs.text
    decided = await submit(
        client, f"/admin/conversions/{ids['THEIRS']}/status", {"action": "approved"}
    )
    assert decided.status_code == 404
    assert (await one(database, Conversion, id=ids["THEIRS"])).status == "pending"


async def test_merchant_auto_approval_days_and_secret_rotation(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    created = await submit(
        client,
        "/admin/merchants/new",
        {"name": "Shop B", "currency": "EUR", "domains": "", "auto_approve_days": "14"},
    )
    assert created.status_code == 303
    assert (await one(database, Merchant, name="Shop B")).auto_approve_days == 14
    merchant_id = programme.merchant["id"]
    form = {"name": "Shop", "currency": "EUR", "domains": "shop.example"}
    wrong = await submit(
        client, f"/admin/merchants/{merchant_id}", {**form, "auto_approve_days": "-1"}
    )
    assert wrong.status_code == 400
    assert error_of(wrong.text, "auto_approve_days").startswith("Expected a whole number of days")
    assert value_of(wrong.text, "auto_approve_days") == "-1"
    edited = await submit(
        client, f"/admin/merchants/{merchant_id}", {**form, "auto_approve_days": "7"}
    )
    assert edited.status_code == 303
    assert (await one(database, Merchant, id=merchant_id)).auto_approve_days == 7
    page = await client.get(f"/admin/merchants/{merchant_id}")
    assert value_of(page.text, "auto_approve_days") == "7"
    assert "still signs postbacks" not in page.text
    assert "keeps working for 24 hours" in page.text
    listing = await client.get("/admin/merchants")
    assert "<td>7 days</td>" in listing.text
    assert "<td>never</td>" not in listing.text.split("Shop B")[0]

    old = programme.merchant["postback_secret"]
    before = now_ms()
    rotated = await submit(client, f"/admin/merchants/{merchant_id}/rotate-secret", {})
    assert (rotated.status_code, rotated.headers["location"]) == (
        303,
        f"/admin/merchants/{merchant_id}",
    )
    merchant = await one(database, Merchant, id=merchant_id)
    assert merchant.postback_secret != old
    assert merchant.previous_postback_secret == old
    assert before + GRACE_MS <= merchant.previous_secret_until_ms <= now_ms() + GRACE_MS
    page = await client.get(f"/admin/merchants/{merchant_id}")
    until = datetime.fromtimestamp(merchant.previous_secret_until_ms / 1000, UTC)
    assert f"still signs postbacks until {until:%Y-%m-%d %H:%M} UTC" in page.text
    assert merchant.postback_secret in page.text
    # Both secrets sign postbacks now, as the page says.
    assert (await send(client, programme, sale("OLD"), secret=old)).status_code == 202
    assert (await send(client, programme, sale("NEW"), merchant.postback_secret)).status_code == 202
    assert (await send(client, programme, sale("BAD"), secret="x" * 43)).status_code == 401


async def test_commission_overrides_are_created_edited_listed_and_deleted(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await sign_in(client, database)
    partner_id, campaign_id = programme.partner["id"], programme.campaign["id"]
    new_form = await client.get(f"/admin/commission-overrides/new?partner_id={partner_id}")
    assert f'<option value="{partner_id}" selected>' in new_form.text
    form = {
        "partner_id": str(partner_id),
        "campaign_id": str(campaign_id),
        "commission_percent": "twenty",
        "commission_flat_minor": "0",
    }
    wrong = await submit(client, "/admin/commission-overrides/new", form)
    assert wrong.status_code == 400
    assert error_of(wrong.text, "commission_percent").startswith("Expected a percentage")
    assert value_of(wrong.text, "commission_percent") == "twenty"
    created = await submit(
        client, "/admin/commission-overrides/new", {**form, "commission_percent": "20"}
    )
    assert created.status_code == 303
    override = await one(database, CommissionOverride, partner_id=partner_id)
    assert (override.campaign_id, override.commission_bps, override.commission_flat_minor) == (
        campaign_id,
        2000,
        0,
    )
    assert created.headers["location"] == f"/admin/commission-overrides/{override.id}"
    twice = await submit(
        client, "/admin/commission-overrides/new", {**form, "commission_percent": "5"}
    )
    assert twice.status_code == 400
    assert error_of(twice.text, "campaign_id").startswith("this partner already has an override")
    async with database.session() as session:
        assert len((await session.scalars(select(CommissionOverride))).all()) == 1

    # The worker credits the partner's link by the override (20 %, no flat) at once.
    await convert(client, programme, programme.link["code"], "O1")
    await consumer.drain()
    assert (await one(database, Conversion, order_id="O1")).commission_minor == 200

    page = await client.get(f"/admin/commission-overrides/{override.id}")
    assert value_of(page.text, "commission_percent") == "20.00"
    edited = await submit(
        client,
        f"/admin/commission-overrides/{override.id}",
        {"commission_percent": "2.5", "commission_flat_minor": "0.30"},
    )
    assert edited.status_code == 303
    override = await one(database, CommissionOverride, id=override.id)
    assert (override.commission_bps, override.commission_flat_minor) == (250, 30)
    negative = await submit(
        client,
        f"/admin/commission-overrides/{override.id}",
        {"commission_percent": "2.5", "commission_flat_minor": "-0.05"},
    )
    assert negative.status_code == 400
    assert error_of(negative.text, "commission_flat_minor").startswith("Expected an amount")

    partner_page = await client.get(f"/admin/partners/{partner_id}")
    assert (
        f'<a href="/admin/commission-overrides/{override.id}">Winter sale</a>' in partner_page.text
    )
    assert "<td>2.50 %</td>" in partner_page.text
    other, _ = await add_partner_with_link(client, programme, "Other")
    listing = await client.get(f"/admin/commission-overrides?partner_id={partner_id}")
    assert listing.text.count("/admin/commission-overrides/") >= 1
    assert f'href="/admin/commission-overrides/{override.id}"' in listing.text
    nothing = await client.get(f"/admin/commission-overrides?partner_id={other['id']}")
    assert f'href="/admin/commission-overrides/{override.id}"' not in nothing.text
    assert "No overrides match" in nothing.text

    deleted = await submit(client, f"/admin/commission-overrides/{override.id}/delete", {})
    assert (deleted.status_code, deleted.headers["location"]) == (
        303,
        f"/admin/partners/{partner_id}",
    )
    assert await one(database, CommissionOverride, id=override.id) is None
    assert (
        "earns by each campaign's own commission"
        in (await client.get(f"/admin/partners/{partner_id}")).text
    )
    assert (await client.get(f"/admin/commission-overrides/{override.id}")).status_code == 404


async def test_links_show_their_health(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    checked = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    async with database.session(write=True) as session:
        await session.execute(
            update(Link)
            .where(Link.id == programme.link["id"])
            .values(health="broken", health_detail=f"HTTP 404 {HOSTILE}", last_checked_at=checked)
        )
        await session.commit()
    await sign_in(client, database)
    listing = await client.get("/admin/links")
    cells = re.findall(r'<td class="health">(.*?)</td>', listing.text)
    assert cells == [
        f'<span class="status broken">broken</span> HTTP 404 {ESCAPED}'
        "<br><small>2026-03-04 05:06 UTC</small>",
        '<span class="status unchecked">unchecked</span>',
    ]
    page = await client.get(f"/admin/links/{programme.link['id']}")
    assert "<dt>Health</dt><dd>broken</dd>" in page.text
    assert f"<dt>Health detail</dt><dd>HTTP 404 {ESCAPED}</dd>" in page.text
    assert "<dt>Last checked</dt><dd>2026-03-04 05:06 UTC</dd>" in page.text
    assert HOSTILE not in page.text
    unchecked = await client.get(f"/admin/links/{other_link['id']}")
    assert "<dt>Health</dt><dd>unchecked</dd>" in unchecked.text
    assert "<dt>Last checked</dt><dd>never</dd>" in unchecked.text


async def test_hostile_names_are_escaped_on_the_new_pages(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await name_everything_hostile(client, programme, consumer)
    override = await post_json(
        client,
        "/api/v1/commission-overrides",
        {"partner_id": programme.partner["id"], "campaign_id": programme.campaign["id"]},
        programme.headers,
    )
    conversion_id = (await conversion_ids(database))[HOSTILE]
    await sign_in(client, database)
    for path in (
        f"/conversions/{conversion_id}",
        "/admin/commission-overrides",
        f"/admin/commission-overrides/{override['id']}",
        "/admin/commission-overrides/new",
        f"/admin/partners/{programme.partner['id']}",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
        assert ESCAPED in page.text, path
