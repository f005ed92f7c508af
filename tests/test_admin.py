"""The admin pages through real HTTP: forms write rows, errors come back by field, CSRF and
admin-only access hold, hostile names stay escaped, and conversion decisions go one by one."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import httpx
import pytest
import segno
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.settings import Settings
from backend.domain.accounts import create_user
from backend.domain.auth import verify_password
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    ApiKey,
    Campaign,
    Conversion,
    Link,
    Merchant,
    Partner,
    Role,
    User,
)
from backend.web.admin import conversions
from backend.web.site import web_router
from backend.worker.consumer import StreamConsumer
from tests.support import (
    PASSWORD,
    Programme,
    add_partner_with_link,
    add_user,
    click_id_in,
    follow_link,
    post_json,
    sign_in,
)

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


async def submit(client: AsyncTestClient[Any], path: str, data: dict[str, Any]) -> httpx.Response:
    """Post a form as the browser does: with the CSRF token of the session's cookie."""
    return await client.post(path, data={**data, "_csrf_token": client.cookies.get("csrftoken")})


async def one(database: Database, model: type[Any], **where: Any) -> Any:
    async with database.session() as session:
        return await session.scalar(select(model).filter_by(**where))


async def sign_in_partner(
    client: AsyncTestClient[Any], database: Database, partner_id: int
) -> None:
    await add_user(database, "partner@example.com", Role.PARTNER, partner_id)
    await sign_in(client, database, "partner@example.com")


def error_of(page: str, field: str) -> str:
    match = re.search(rf'<p class="error" id="error-{field}" role="alert">([^<]*)</p>', page)
    assert match is not None, f"no error shown for {field}"
    return html.unescape(match.group(1))


def value_of(page: str, field: str) -> str:
    match = re.search(
        rf'<input id="field-{field}" type="[a-z]+" name="{field}" value="([^"]*)"', page
    )
    assert match is not None, f"no input {field}"
    return html.unescape(match.group(1))


async def test_merchant_is_created_and_edited_through_the_forms(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    created = await submit(
        client,
        "/admin/merchants/new",
        {
            "name": "Shop",
            "currency": "eur",
            "domains": "www.shop.example\nshop.example",
            "attribution_window_days": "",
        },
    )
    assert created.status_code == 303
    merchant = await one(database, Merchant, name="Shop")
    assert (merchant.currency, merchant.domains) == ("EUR", ["shop.example", "www.shop.example"])
    assert merchant.attribution_window_days is None
    assert created.headers["location"] == f"/admin/merchants/{merchant.id}"

    page = await client.get(created.headers["location"])
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert f"data-merchant=&#34;{merchant.key}&#34;" in page.text  # the install tag to copy
    assert f"p.gif?m={merchant.key}" in page.text
    masked, revealed = page.text.split("<details>")
    assert merchant.postback_secret not in masked
    assert f"••••••••••••{merchant.postback_secret[-4:]}" in masked
    assert merchant.postback_secret in revealed

    edited = await submit(
        client,
        f"/admin/merchants/{merchant.id}",
        {
            "name": "Shop II",
            "currency": "JPY",
            "domains": "",
            "attribution_window_days": "14",
            "coupon_over_click": "true",
        },
    )
    assert edited.status_code == 303
    merchant = await one(database, Merchant, id=merchant.id)
    assert (merchant.name, merchant.currency, merchant.domains) == ("Shop II", "JPY", [])
    assert merchant.attribution_window_days == 14
    assert merchant.coupon_over_click


async def test_errors_are_shown_by_field_with_what_was_typed(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    wrong_types = await submit(
        client,
        "/admin/merchants/new",
        {"name": "", "currency": "EUR", "domains": "", "attribution_window_days": "abc"},
    )
    assert wrong_types.status_code == 400
    assert error_of(wrong_types.text, "name").startswith("Expected a name")
    assert error_of(wrong_types.text, "attribution_window_days").startswith("Expected a whole")
    assert value_of(wrong_types.text, "attribution_window_days") == "abc"
    assert 'id="error-currency"' not in wrong_types.text

    wrong_rules = await submit(
        client,
        "/admin/merchants/new",
        {
            "name": "Shop",
            "currency": "EUX",
            "domains": "shop.example",
            "attribution_window_days": "",
        },
    )
    assert wrong_rules.status_code == 400
    assert "is not an ISO 4217 currency code" in error_of(wrong_rules.text, "currency")
    assert value_of(wrong_rules.text, "currency") == "EUX"
    assert value_of(wrong_rules.text, "name") == "Shop"
    assert ">shop.example</textarea>" in wrong_rules.text
    assert await one(database, Merchant, name="Shop") is None


async def test_partner_and_campaign_forms_write_rows(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    created = await submit(
        client, "/admin/partners/new", {"name": "Cooking blog", "contact_email": ""}
    )
    assert created.status_code == 303
    partner = await one(database, Partner, name="Cooking blog")
    assert (partner.status, partner.contact_email) == ("active", None)
    banned = await submit(
        client,
        f"/admin/partners/{partner.id}",
        {"name": "Cooking blog", "contact_email": "ed@blog.example", "status": "banned"},
    )
    assert banned.status_code == 303
    partner = await one(database, Partner, id=partner.id)
    assert (partner.status, partner.contact_email) == ("banned", "ed@blog.example")
    bad_status = await submit(
        client,
        f"/admin/partners/{partner.id}",
        {"name": "Cooking blog", "contact_email": "", "status": "deleted"},
    )
    assert bad_status.status_code == 400
    assert error_of(bad_status.text, "status").startswith("Expected active, paused or banned")

    campaign_form = {
        "merchant_id": str(programme.merchant["id"]),
        "name": "Spring",
        "destination_url": "https://shop.example/spring",
        "commission_percent": "7.5",
        "commission_flat_minor": "0.25",  # as people write it
        "cookie_window_days": "",
        "status": "active",
    }
    created = await submit(client, "/admin/campaigns/new", campaign_form)
    assert created.status_code == 303
    campaign = await one(database, Campaign, name="Spring")
    assert (campaign.commission_bps, campaign.commission_flat_minor) == (750, 25)
    edit = {k: v for k, v in campaign_form.items() if k != "merchant_id"}
    wrong = await submit(
        client, f"/admin/campaigns/{campaign.id}", {**edit, "commission_percent": "ten"}
    )
    assert wrong.status_code == 400
    assert error_of(wrong.text, "commission_percent").startswith("Expected a percentage")
    assert value_of(wrong.text, "commission_percent") == "ten"
    edited = await submit(
        client, f"/admin/campaigns/{campaign.id}", {**edit, "commission_percent": "12"}
    )
    assert edited.status_code == 303
    assert (await one(database, Campaign, id=campaign.id)).commission_bps == 1200
    no_merchant = await submit(
        client, "/admin/campaigns/new", {**campaign_form, "merchant_id": "999"}
    )
    assert no_merchant.status_code == 400
    assert error_of(no_merchant.text, "merchant_id") == "no merchant with id 999"


async def test_link_form_qr_code_and_the_redirect_follows_an_edit_at_once(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    created = await submit(
        client,
        "/admin/links/new",
        {
            "partner_id": str(programme.partner["id"]),
            "campaign_id": str(programme.campaign["id"]),
            "destination_url": "",
        },
    )
    assert created.status_code == 303
    async with database.session() as session:
        link = (await session.scalars(select(Link).order_by(Link.id.desc()))).first()
    assert link is not None
    assert link.id != programme.link["id"]
    tracking_url = f"http://testserver.local/c/{link.code}"
    page = await client.get(f"/admin/links/{link.id}")
    assert f'value="{tracking_url}"' in page.text
    assert f'src="/admin/links/{link.id}/qr.svg"' in page.text

    qr = await client.get(f"/admin/links/{link.id}/qr.svg")
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert f"<title>{tracking_url}</title>" in qr.text
    side = segno.make(tracking_url, error="m").symbol_size()[0] * 4
    assert f'width="{side}" height="{side}"' in qr.text  # the symbol of this URL, 4 px a module

    landing = click_id_in((await client.get(f"/c/{link.code}")).headers["location"])
    assert landing  # the campaign's destination is now cached in this process
    off_domain = await submit(
        client,
        f"/admin/links/{link.id}",
        {"destination_url": "https://elsewhere.example/x", "status": "active"},
    )
    assert off_domain.status_code == 400
    assert error_of(off_domain.text, "destination_url") == (
        "'elsewhere.example' is not a domain of the merchant"
    )
    assert value_of(off_domain.text, "destination_url") == "https://elsewhere.example/x"
    edited = await submit(
        client,
        f"/admin/links/{link.id}",
        {"destination_url": "https://shop.example/deal", "status": "active"},
    )
    assert edited.status_code == 303
    redirect = await client.get(f"/c/{link.code}")
    assert redirect.headers["location"].startswith("https://shop.example/deal?")

    only_this_partner = await client.get(f"/admin/links?partner_id={programme.partner['id']}")
    assert only_this_partner.text.count("/c/") == 2
    other, _ = await add_partner_with_link(client, programme, "Other")
    other_only = await client.get(f"/admin/links?partner_id={other['id']}")
    assert other_only.text.count("/c/") == 1
    assert link.code not in other_only.text


async def test_users_are_created_with_typed_or_generated_passwords_and_deleted(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    form = {
        "email": "Ann@Example.com",
        "role": "admin",
        "partner_id": "",
        "password": "long enough secret",
        "password_again": "long enough secrte",
    }
    differ = await submit(client, "/admin/users/new", form)
    assert differ.status_code == 400
    assert error_of(differ.text, "password_again") == "the two passwords differ"
    assert value_of(differ.text, "email") == "Ann@Example.com"
    assert "long enough" not in differ.text  # passwords are never sent back
    typed = await submit(client, "/admin/users/new", {**form, "password_again": form["password"]})
    assert typed.status_code == 303
    ann = await one(database, User, email="ann@example.com")
    assert ann.role == "admin"

    needs_partner = await submit(
        client,
        "/admin/users/new",
        {
            **form,
            "email": "bo@example.com",
            "role": "partner",
            "password": "",
            "password_again": "",
        },
    )
    assert needs_partner.status_code == 400
    assert error_of(needs_partner.text, "partner_id") == "a partner user needs a partner"
    generated = await submit(
        client,
        "/admin/users/new",
        {
            **form,
            "email": "bo@example.com",
            "role": "partner",
            "partner_id": str(programme.partner["id"]),
            "password": "",
            "password_again": "",
        },
    )
    assert generated.status_code == 200
    assert generated.headers["cache-control"] == "no-store"
    password = re.search(r'value="([^"]+)" class="code" id="secret"', generated.text)
    assert password is not None
    bo = await one(database, User, email="bo@example.com")
    assert (bo.role, bo.partner_id) == ("partner", programme.partner["id"])

    assert verify_password(bo.password_hash, html.unescape(password.group(1)))

    admin = await one(database, User, email="admin@example.com")
    myself = await submit(client, f"/admin/users/{admin.id}/delete", {})
    assert myself.status_code == 400
    deleted = await submit(client, f"/admin/users/{bo.id}/delete", {})
    assert deleted.status_code == 303
    assert await one(database, User, email="bo@example.com") is None
    assert await one(database, User, email="admin@example.com") is not None


async def test_api_key_is_shown_once_works_and_is_revoked(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    created = await submit(
        client, "/admin/api-keys/new", {"name": "shop backend", "partner_id": ""}
    )
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    found = re.search(r'value="(ctk_[^"]+)"', created.text)
    assert found is not None
    bearer = {"Authorization": f"Bearer {found.group(1)}"}
    assert (await client.get("/api/v1/merchants", headers=bearer)).status_code == 200

    listing = await client.get("/admin/api-keys")
    assert "shop backend" in listing.text
    assert found.group(1) not in listing.text
    key = await one(database, ApiKey, name="shop backend")
    revoked = await submit(client, f"/admin/api-keys/{key.id}/revoke", {})
    assert revoked.status_code == 303
    assert (await client.get("/api/v1/merchants", headers=bearer)).status_code == 401


async def test_forms_without_or_with_a_wrong_csrf_token_are_refused(
    client: AsyncTestClient[Any], database: Database, settings: Settings
) -> None:
    await sign_in(client, database)
    form = {"name": "Shop", "currency": "EUR", "domains": "", "attribution_window_days": ""}
    missing = await client.post("/admin/merchants/new", data=form)
    assert missing.status_code == 403
    wrong = await client.post("/admin/merchants/new", data={**form, "_csrf_token": "forged"})
    assert wrong.status_code == 403
    assert await one(database, Merchant, name="Shop") is None
    assert (await submit(client, "/admin/merchants/new", form)).status_code == 303
    secret = (await one(database, Merchant, name="Shop")).postback_secret
    posts = [path for method, path in admin_routes(settings) if method == "POST"]
    assert len(posts) >= 18
    for path in posts:
        assert (await client.post(path, data=form)).status_code == 403, path
    assert (await one(database, Merchant, name="Shop")).postback_secret == secret  # not rotated


def admin_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every admin route and method of the web router, ids filled in with 1."""
    return [
        (method, re.sub(r"\{[a-z_]+:int\}", "1", route.path))
        for route in Litestar([web_router(settings)]).routes
        if route.path.startswith("/admin")
        for method in sorted(route.methods - {"OPTIONS", "HEAD"})
    ]


async def test_partner_users_find_no_admin_page_or_form(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    anonymous = await client.get("/admin/merchants")
    assert (anonymous.status_code, anonymous.headers["location"]) == (302, "/login")
    await sign_in_partner(client, database, programme.partner["id"])
    routes = admin_routes(settings)
    assert len(routes) >= 39
    for method, path in routes:
        if method == "GET":
            response = await client.get(path)
        else:
            response = await submit(client, path, {"name": "Taken over", "ids": "1"})
        assert response.status_code == 404, (method, path)
    assert await one(database, Merchant, name="Taken over") is None
    merchant = await one(database, Merchant, id=programme.merchant["id"])
    assert merchant.postback_secret == programme.merchant["postback_secret"]
    overview = await client.get("/")
    assert 'href="/admin/merchants"' not in overview.text
    assert 'href="/conversions"' in overview.text


async def name_everything_hostile(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer
) -> None:
    """A conversion whose order id, and a merchant, partner and campaign whose names, are HTML."""
    await convert(client, programme, programme.link["code"], HOSTILE)
    await consumer.drain()
    for path, body in (
        (f"/api/v1/merchants/{programme.merchant['id']}", {"name": HOSTILE}),
        (f"/api/v1/partners/{programme.partner['id']}", {"name": HOSTILE}),
        (f"/api/v1/campaigns/{programme.campaign['id']}", {"name": HOSTILE}),
    ):
        assert (await client.patch(path, json=body, headers=programme.headers)).status_code == 200


async def test_hostile_names_are_escaped_on_every_admin_page(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await name_everything_hostile(client, programme, consumer)
    await sign_in(client, database)
    await submit(client, "/admin/api-keys/new", {"name": HOSTILE, "partner_id": ""})
    async with database.session(write=True) as session:
        await create_user(session, f"{HOSTILE}@x.example", Role.ADMIN, None, PASSWORD)
    pages = [
        "/admin/merchants",
        f"/admin/merchants/{programme.merchant['id']}",
        "/admin/partners",
        f"/admin/partners/{programme.partner['id']}",
        "/admin/campaigns",
        f"/admin/campaigns/{programme.campaign['id']}",
        "/admin/links",
        f"/admin/links/{programme.link['id']}",
        "/admin/links/new",
        "/admin/users",
        "/admin/users/new",
        "/admin/api-keys",
        "/conversions",
    ]
    for path in pages:
        page = await client.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
        assert ESCAPED in page.text, path
    conversions = await client.get("/conversions")
    assert (
        f'<td class="text">{ESCAPED}</td>' in conversions.text
    )  # the order id, as the pixel sent it


async def convert(
    client: AsyncTestClient[Any], programme: Programme, code: str, order: str
) -> None:
    click_id = await follow_link(client, code)
    pixel = await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": order, "amt": "10", "clk": click_id},
    )
    assert pixel.status_code == 200


async def statuses(database: Database) -> dict[str, str]:
    async with database.session() as session:
        rows = await session.execute(select(Conversion.order_id, Conversion.status))
        return {order: status for order, status in rows if order}


async def test_bulk_decisions_change_what_may_change_and_say_why_the_rest_did_not(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    for order in ("A1", "A2", "A3"):
        await convert(client, programme, programme.link["code"], order)
    await convert(client, programme, other_link["code"], "B1")
    await consumer.drain()
    async with database.session() as session:
        rows = await session.execute(select(Conversion.order_id, Conversion.id))
        ids = {order: conversion_id for order, conversion_id in rows}
    await sign_in(client, database)

    page = await client.get("/conversions")
    assert page.text.count('name="ids"') == 4
    rejected = await submit(
        client, "/admin/conversions/status", {"ids": [ids["A3"]], "action": "rejected"}
    )
    assert rejected.status_code == 200
    bulk = await submit(
        client,
        "/admin/conversions/status?status=pending",
        {"ids": [ids["A1"], ids["A2"], ids["A3"]], "action": "approved", "reason": "paid"},
    )
    assert bulk.status_code == 200
    assert await statuses(database) == {
        "A1": "approved",
        "A2": "approved",
        "A3": "rejected",
        "B1": "pending",
    }
    outcomes = dict(
        re.findall(
            r'<tr class="(?:changed|refused)"><th scope="row">(\d+)</th>'
            r"<td>[^<]*</td><td>([^<]+)</td>",
            bulk.text,
        )
    )
    assert outcomes[str(ids["A1"])] == "pending → approved"
    assert outcomes[str(ids["A3"])] == "refused: a rejected conversion cannot become approved"
    assert bulk.text.count('name="ids"') == 1  # the filter (pending) is kept: only B1 is left

    nothing_ticked = await submit(client, "/admin/conversions/status", {"action": "approved"})
    assert nothing_ticked.status_code == 400
    assert "Tick at least one conversion." in nothing_ticked.text
    reversed_ = await submit(
        client, "/admin/conversions/status", {"ids": [ids["A1"]], "action": "reversed"}
    )
    assert reversed_.status_code == 200
    assert (await statuses(database))["A1"] == "reversed"
    by_order = await client.get("/conversions", params={"order_id": "A", "status": "approved"})
    assert by_order.text.count('name="ids"') == 1
    assert 'action="/admin/conversions/status?status=approved&amp;order_id=A"' in by_order.text


async def test_partner_users_see_their_own_conversions_without_the_actions(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    _, other_link = await add_partner_with_link(client, programme, "Other")
    hidden = {**programme.campaign, "name": "Hidden campaign"}
    await post_json(
        client,
        "/api/v1/campaigns",
        {k: hidden[k] for k in ("merchant_id", "name", "destination_url")},
        programme.headers,
    )
    await convert(client, programme, programme.link["code"], "MINE")
    await convert(client, programme, other_link["code"], "THEIRS")
    await consumer.drain()
    await sign_in_partner(client, database, programme.partner["id"])
    page = await client.get("/conversions")
    assert page.status_code == 200
    assert "MINE" in page.text
    assert "THEIRS" not in page.text
    assert 'name="ids"' not in page.text
    assert "/admin/conversions/status" not in page.text
    other_partner = await client.get(
        "/conversions", params={"partner_id": str(programme.partner["id"] + 1)}
    )
    assert "THEIRS" not in other_partner.text
    assert "Hidden campaign" not in page.text  # no link of this partner leads to it
    exported = await client.get("/conversions", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert [row["order_id"] for row in csv.DictReader(io.StringIO(exported.text))] == ["MINE"]


async def test_conversions_are_paged_newest_first_and_export_whole(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number in range(52):
        pixel = await client.get(
            "/p.gif", params={"m": programme.merchant["key"], "oid": f"N{number}", "amt": "5"}
        )
        assert pixel.status_code == 200
    await consumer.drain()
    await sign_in(client, database)
    first = await client.get("/conversions", params={"status": "pending"})
    shown = [int(i) for i in re.findall(r'name="ids" value="(\d+)"', first.text)]
    assert len(shown) == 50
    assert shown == sorted(shown, reverse=True)
    older = re.search(r'href="(/conversions\?[^"]+)">Older conversions', first.text)
    assert older is not None
    assert html.unescape(older.group(1)) == f"/conversions?status=pending&before={shown[-1]}"
    rest = await client.get(html.unescape(older.group(1)))
    remaining = [int(i) for i in re.findall(r'name="ids" value="(\d+)"', rest.text)]
    assert len(remaining) == 2
    assert max(remaining) < min(shown)
    assert "Older conversions" not in rest.text

    monkeypatch.setattr(conversions, "CSV_CHUNK", 20)  # the export reads in several chunks
    exported = await client.get("/conversions", params={"status": "pending", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(row["id"]) for row in rows] == shown + remaining
    assert {row["order_id"] for row in rows} == {f"N{number}" for number in range(52)}
    assert {(row["amount_minor"], row["currency"], row["verified"]) for row in rows} == {
        ("500", "EUR", "no")
    }
