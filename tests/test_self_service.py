"""Partners serving themselves, through real HTTP: applying to an open programme (with its
spam checks), confirming by the link of the mail, approval, the partner's own links with
deep links held to the merchant's domains, invitations, password reset and account lockout,
and partner isolation on every new page, by direct URL too."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.domain import login_throttle
from backend.domain.login_throttle import ACCOUNT_FAILURES
from backend.domain.notifications import notify_payout_sent
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    AccountToken,
    ApiKey,
    ApplicationStatus,
    Conversion,
    CouponRequest,
    Link,
    MailMessage,
    NotificationSetting,
    PartnerApplication,
    ProgrammeMember,
    User,
)
from backend.web.account.join import MIN_FILL_S, _stamp
from backend.web.site import web_router
from backend.worker.consumer import StreamConsumer
from tests.support import (
    PASSWORD,
    Programme,
    add_partner_with_link,
    add_user,
    create_api_key,
    csrf_token,
    follow_link,
    sign_in,
)

NEW_PASSWORD = "a much longer passphrase"


async def submit(client: AsyncTestClient[Any], path: str, data: dict[str, Any]) -> httpx.Response:
    """Post a form as the browser does, with the CSRF token of the session's cookie."""
    if not client.cookies.get("csrftoken"):
        await csrf_token(client)
    return await client.post(path, data={**data, "_csrf_token": client.cookies.get("csrftoken")})


async def mails_to(database: Database, address: str) -> list[MailMessage]:
    async with database.session() as session:
        rows = await session.scalars(
            select(MailMessage).where(MailMessage.to_address == address).order_by(MailMessage.id)
        )
        return list(rows)


def link_in(mail: MailMessage, path: str) -> str:
    """The path of the first link to ``path`` in the mail's text (the public URL dropped)."""
    match = re.search(rf"http://testserver\.local({re.escape(path)}[^\s]+)", mail.text_body)
    assert match is not None, mail.text_body
    return match.group(1)


async def open_programme(
    client: AsyncTestClient[Any], programme: Programme, *, auto_approve: bool = False
) -> None:
    fields = {"slug": "shop", "open": "true", "terms": "Be nice.\nNo spam."}
    if auto_approve:
        fields["auto_approve"] = "true"
    saved = await submit(client, f"/admin/programmes/{programme.merchant['id']}", fields)
    assert saved.status_code == 201 or saved.status_code == 302, saved.text


def application(settings: Settings, **changes: str) -> dict[str, str]:
    started = _stamp(settings.secret_key, "shop", now_ms() - (MIN_FILL_S + 2) * 1000)
    return {
        "name": "Ann's reviews",
        "email": "ann@blog.example",
        "website": "https://blog.example",
        "promotion": "Reviews of winter gear",
        "password": NEW_PASSWORD,
        "terms": "accepted",
        "started": started,
        **changes,
    }


async def apply_and_confirm(
    client: AsyncTestClient[Any], database: Database, settings: Settings
) -> None:
    sent = await submit(client, "/join/shop", application(settings))
    assert sent.status_code == 200, sent.text
    assert "Check your mail" in sent.text
    (mail,) = await mails_to(database, "ann@blog.example")
    assert mail.template == "application_confirm"
    confirm = link_in(mail, "/join/confirm/")
    shown = await client.get(confirm)
    assert shown.status_code == 200
    assert "Confirm my e-mail address" in shown.text
    confirmed = await submit(client, confirm, {})
    assert confirmed.status_code == 200
    assert "Address confirmed" in confirmed.text


async def test_a_closed_programme_takes_no_application(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    assert (await client.get("/join/shop")).status_code == 404
    await sign_in(client, database)
    saved = await submit(
        client, f"/admin/programmes/{programme.merchant['id']}", {"slug": "shop", "terms": ""}
    )
    assert saved.status_code == 302
    assert (await client.get("/join/shop")).status_code == 404  # set up, but not open
    posted = await submit(client, "/join/shop", application(settings))
    assert posted.status_code == 404
    async with database.session() as session:
        assert (await session.scalars(select(PartnerApplication))).all() == []


async def test_an_applicant_confirms_is_approved_signs_in_and_makes_a_deep_link(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    settings: Settings,
    consumer: StreamConsumer,
) -> None:
    await sign_in(client, database)
    await open_programme(client, programme)
    page = await client.get("/join/shop")
    assert page.status_code == 200
    assert "No spam." in page.text
    assert 'name="company_url"' in page.text

    await apply_and_confirm(client, database, settings)
    (notice,) = await mails_to(database, "admin@example.com")
    assert notice.template == "application_new"
    assert "ann@blog.example" in notice.text_body
    async with database.session() as session:
        applied = await session.scalar(select(PartnerApplication))
    assert applied is not None
    assert applied.status == ApplicationStatus.PENDING
    assert "Ann&#39;s reviews" in (await client.get("/admin/applications")).text

    approved = await submit(client, f"/admin/applications/{applied.id}/approve", {})
    assert approved.status_code == 302
    again = await submit(client, f"/admin/applications/{applied.id}/approve", {})
    assert again.status_code == 400  # decided once
    welcome = (await mails_to(database, "ann@blog.example"))[-1]
    assert welcome.template == "application_approved"

    async with database.session() as session:
        user = await session.scalar(select(User).where(User.email == "ann@blog.example"))
        assert user is not None
        assert user.partner_id is not None
        member = await session.get(ProgrammeMember, (user.partner_id, programme.merchant["id"]))
        assert member is not None
    partner_id = user.partner_id

    client.cookies.clear()
    signed_in = await submit(
        client, "/login", {"email": "ann@blog.example", "password": NEW_PASSWORD}
    )
    assert signed_in.status_code == 302
    links = await client.get("/portal/links")
    assert links.status_code == 200
    assert "Winter sale" in links.text

    refused = await submit(
        client,
        "/portal/links",
        {"campaign_id": programme.campaign["id"], "destination_url": "https://evil.example/x"},
    )
    assert refused.status_code == 400
    assert "Deep links must go to Shop&#39;s domains" in refused.text
    made = await submit(
        client,
        "/portal/links",
        {
            "campaign_id": programme.campaign["id"],
            "destination_url": "https://shop.example/boots?size=42",
        },
    )
    assert made.status_code == 302
    link_page = await client.get(
        made.headers["location"],
        params={"sub1": "newsletter", "to": "https://www.shop.example/gloves"},
    )
    assert link_page.status_code == 200
    async with database.session() as session:
        link = await session.scalar(select(Link).where(Link.partner_id == partner_id))
    assert link is not None
    assert link.destination_url == "https://shop.example/boots?size=42"
    assert (
        f"http://testserver.local/c/{link.code}?sub1=newsletter&amp;to=https%3A%2F%2Fwww.shop"
        ".example%2Fgloves" in link_page.text
    )
    off_domain = await client.get(made.headers["location"], params={"to": "https://evil.example/"})
    assert off_domain.status_code == 400
    qr = await client.get(f"{made.headers['location']}/qr.svg", params={"sub1": "qr"})
    assert qr.headers["content-type"].startswith("image/svg+xml")

    redirect = await client.get(f"/c/{link.code}")
    assert redirect.headers["location"].startswith("https://shop.example/boots?size=42&ct_click=")
    click_id = await follow_link(client, link.code)
    pixel = await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "A1", "amt": "20", "clk": click_id},
    )
    assert pixel.status_code == 200
    await consumer.drain()
    async with database.session() as session:
        sale = await session.scalar(select(Conversion).where(Conversion.order_id == "A1"))
    assert sale is not None
    assert sale.partner_id == partner_id
    assert "A1" in (await client.get("/conversions")).text


async def test_auto_approval_and_the_spam_checks(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    await sign_in(client, database)
    await open_programme(client, programme, auto_approve=True)

    no_token = await client.post("/join/shop", data=application(settings))
    assert no_token.status_code == 403  # CSRF, as on every form
    robot = await submit(client, "/join/shop", application(settings, company_url="http://x.y"))
    assert robot.status_code == 200
    assert "Check your mail" in robot.text  # it learns nothing
    hasty_stamp = _stamp(settings.secret_key, "shop", now_ms())
    hasty = await submit(client, "/join/shop", application(settings, started=hasty_stamp))
    assert hasty.status_code == 400
    assert "too quickly" in hasty.text
    forged = await submit(client, "/join/shop", application(settings, started="1.abc"))
    assert forged.status_code == 400
    bad = await submit(
        client,
        "/join/shop",
        application(settings, email="nope", website="blog", password="short", terms=""),
    )
    assert bad.status_code == 400
    for field in ("email", "website", "password", "terms"):
        assert f'id="error-{field}"' in bad.text, field
    async with database.session() as session:
        assert (await session.scalars(select(PartnerApplication))).all() == []
    assert await mails_to(database, "ann@blog.example") == []

    await apply_and_confirm(client, database, settings)
    async with database.session() as session:
        applied = await session.scalar(select(PartnerApplication))
    assert applied is not None
    assert (applied.status, applied.decided_by) == (ApplicationStatus.APPROVED, "auto-approval")
    used = await submit(
        client, link_in((await mails_to(database, "ann@blog.example"))[0], "/join/confirm/"), {}
    )
    assert used.status_code == 404  # single-use

    # the same address again: no second application, the owner is told instead
    again = await submit(client, "/join/shop", application(settings))
    assert "Check your mail" in again.text
    assert (await mails_to(database, "ann@blog.example"))[-1].template == "application_taken"
    for _ in range(2):  # three per address per hour, whatever became of them
        await submit(client, "/join/shop", application(settings))
    limited = await submit(client, "/join/shop", application(settings))
    assert limited.status_code == 429


async def test_password_reset_is_single_use_short_lived_and_ends_sessions(
    client: AsyncTestClient[Any], database: Database, settings: Settings
) -> None:
    await sign_in(client, database)  # the admin: every account can reset
    other = AsyncTestClient(client.app)
    unknown = await submit(client, "/reset", {"email": "nobody@example.com"})
    asked = await submit(client, "/reset", {"email": "Admin@Example.com"})
    assert unknown.status_code == asked.status_code == 200
    assert "Check your mail" in unknown.text
    assert await mails_to(database, "nobody@example.com") == []
    (mail,) = await mails_to(database, "admin@example.com")
    link = link_in(mail, "/reset/")
    assert (await client.get(link)).status_code == 200

    short = await submit(client, link, {"password": "short"})
    assert short.status_code == 400
    assert "at least 10 characters" in short.text
    done = await submit(client, link, {"password": NEW_PASSWORD})
    assert (done.status_code, done.headers["location"]) == (302, "/")
    assert (await client.get("/")).status_code == 200  # signed in by the link
    assert (await submit(client, link, {"password": "another long one"})).status_code == 404
    del other

    client.cookies.clear()
    old = await submit(client, "/login", {"email": "admin@example.com", "password": PASSWORD})
    assert old.status_code == 400
    new = await submit(client, "/login", {"email": "admin@example.com", "password": NEW_PASSWORD})
    assert new.status_code == 302

    await submit(client, "/reset", {"email": "admin@example.com"})
    expired = link_in((await mails_to(database, "admin@example.com"))[-1], "/reset/")
    async with database.writing() as connection:
        await connection.execute(update(AccountToken).values(expires_ms=now_ms() - 1))
    assert (await client.get(expired)).status_code == 404
    assert (await submit(client, expired, {"password": NEW_PASSWORD + "!"})).status_code == 404
    assert (await client.get("/reset/" + "x" * 500)).status_code == 404

    await submit(client, "/reset", {"email": "admin@example.com"})
    limited = await submit(client, "/reset", {"email": "admin@example.com"})
    assert limited.status_code == 429


async def test_a_distributed_guess_locks_the_account_until_a_reset(
    client: AsyncTestClient[Any], database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a lower bound than production's, read at each attempt: 20 argon2 checks instead of 100
    monkeypatch.setattr(login_throttle, "ACCOUNT_LOCKOUT", 2 * ACCOUNT_FAILURES)
    await add_user(database, "admin@example.com")
    await csrf_token(client)

    async def attempt(address: str, password: str) -> int:
        response = await client.post(
            "/login",
            data={
                "email": "admin@example.com",
                "password": password,
                "_csrf_token": client.cookies["csrftoken"],
            },
            headers={"X-Forwarded-For": address},
        )
        return response.status_code

    clients = -(-login_throttle.ACCOUNT_LOCKOUT // ACCOUNT_FAILURES)
    for number in range(clients):
        for _ in range(ACCOUNT_FAILURES):
            await attempt(f"203.0.113.{number + 1}", "guess")
    assert await attempt("198.51.100.9", PASSWORD) == 429  # locked for everyone

    asked = await submit(client, "/reset", {"email": "admin@example.com"})
    assert asked.status_code == 200
    link = link_in((await mails_to(database, "admin@example.com"))[-1], "/reset/")
    assert (await submit(client, link, {"password": NEW_PASSWORD})).status_code == 302
    client.cookies.clear()
    await csrf_token(client)
    assert await attempt("198.51.100.9", NEW_PASSWORD) == 302


async def test_an_invited_partner_sets_a_password_and_lands_in_the_portal(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    invited = await submit(
        client,
        "/admin/invitations",
        {"email": "bob@blog.example", "partner_id": str(programme.partner["id"])},
    )
    assert (invited.status_code, invited.headers["location"]) == (302, "/admin/mail")
    duplicate = await submit(
        client,
        "/admin/invitations",
        {"email": "bob@blog.example", "partner_id": str(programme.partner["id"])},
    )
    assert duplicate.status_code == 400
    (mail,) = await mails_to(database, "bob@blog.example")
    listed = await client.get("/admin/mail")
    assert mail.subject.replace("'", "&#39;") in listed.text
    assert link_in(mail, "/invite/") in (await client.get(f"/admin/mail/{mail.id}")).text

    client.cookies.clear()
    accepted = await submit(client, link_in(mail, "/invite/"), {"password": NEW_PASSWORD})
    assert (accepted.status_code, accepted.headers["location"]) == (302, "/portal/links")
    links = await client.get("/portal/links")
    assert links.status_code == 200
    assert programme.link["code"] in links.text
    assert (await client.get("/admin/mail")).status_code == 404


def portal_routes(settings: Settings) -> list[tuple[str, str]]:
    return [
        (method, route.path)
        for route in Litestar([web_router(settings)]).routes
        if route.path.startswith("/portal")
        for method in sorted(route.methods - {"OPTIONS", "HEAD"})
    ]


async def test_partner_isolation_on_the_portal_by_direct_url(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    other, other_link = await add_partner_with_link(client, programme, "Other")
    routes = portal_routes(settings)
    assert len(routes) == 11
    other_key = await create_api_key(database, other["id"])
    async with database.session() as session:
        key_row = await session.scalar(select(ApiKey).where(ApiKey.partner_id == other["id"]))
    assert key_row is not None

    await sign_in(client, database)  # the portal is a partner's: to an admin it does not exist
    for method, path in routes:
        path = path.replace("{link_id:int}", str(other_link["id"]))
        path = path.replace("{key_id:int}", str(key_row.id))
        response = await (client.get(path) if method == "GET" else submit(client, path, {}))
        assert response.status_code == 404, (method, path)

    client.cookies.clear()
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    for method, path in routes:
        if "{link_id:int}" in path:
            for link_id in (other_link["id"], 2**31 - 1, 2**40):
                url = path.replace("{link_id:int}", str(link_id))
                response = await client.get(url)
                assert response.status_code == 404, (method, url)
        if "{key_id:int}" in path:
            for key_id in (key_row.id, 2**31 - 1, 2**40):
                url = path.replace("{key_id:int}", str(key_id))
                response = await submit(client, url, {})
                assert response.status_code == 404, (method, url)
    still = await client.get("/api/v1/links", headers={"Authorization": f"Bearer {other_key}"})
    assert still.status_code == 200  # the other partner's key survived every attempt
    profile = await client.get("/portal/profile")
    assert profile.status_code == 200
    assert key_row.name not in profile.text.replace("Name", "")
    listed = await client.get("/portal/links")
    assert other_link["code"] not in listed.text
    assert programme.link["code"] in listed.text

    # a campaign of a programme the partner is not a member of, and has no link in
    other_campaign = await client.post(
        "/api/v1/campaigns",
        json={
            "merchant_id": programme.merchant["id"],
            "name": "Hidden",
            "destination_url": "https://shop.example/hidden",
        },
        headers=programme.headers,
    )
    hidden = other_campaign.json()["id"]
    assert "Hidden" not in listed.text
    refused = await submit(client, "/portal/links", {"campaign_id": str(hidden)})
    assert refused.status_code == 400
    async with database.session() as session:
        assert await session.scalar(select(Link).where(Link.campaign_id == hidden)) is None
    del other


@pytest.mark.parametrize("path", ["/admin/applications", "/admin/mail", "/admin/mail/1"])
async def test_the_new_admin_pages_need_an_admin(
    client: AsyncTestClient[Any], database: Database, programme: Programme, path: str
) -> None:
    assert (await client.get(path)).headers.get("location") == "/login"
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    assert (await client.get(path)).status_code == 404


async def test_a_partner_s_profile_keys_and_the_mails_it_asks_for(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    page = await client.get("/portal/profile")
    assert page.status_code == 200
    assert "Blog" in page.text

    saved = await submit(client, "/portal/profile/notifications", {"new_conversion": "true"})
    assert saved.status_code == 200
    assert 'name="new_conversion" value="true" checked' in saved.text
    assert 'name="status_change" value="true" checked' not in saved.text

    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif", params={"m": programme.merchant["key"], "oid": "N1", "amt": "20", "clk": click_id}
    )
    await consumer.drain()
    (mail,) = await mails_to(database, "partner@example.com")
    assert (mail.template, mail.subject) == (
        "conversion_new",
        "New conversion: 20.00 EUR, order N1",
    )

    made = await submit(client, "/portal/keys", {"name": "my dashboard"})
    assert made.status_code == 201
    key = re.search(r'value="(ctk_[^"]+)"', made.text)
    assert key is not None
    bearer = {"Authorization": f"Bearer {key.group(1)}"}
    mine = await client.get("/api/v1/links", headers=bearer)
    assert mine.status_code == 200
    assert [link["code"] for link in mine.json()["items"]] == [programme.link["code"]]
    merchant = await client.post(
        "/api/v1/merchants", json={"name": "X", "currency": "EUR", "domains": []}, headers=bearer
    )
    assert merchant.status_code == 403  # scoped to the partner: no admin's call
    async with database.session() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.name == "my dashboard"))
    assert row is not None
    assert key.group(1) not in (await client.get("/portal/profile")).text  # shown once
    revoked = await submit(client, f"/portal/keys/{row.id}/revoke", {})
    assert revoked.status_code == 302
    assert (await client.get("/api/v1/links", headers=bearer)).status_code == 401

    wrong = await submit(
        client, "/portal/profile/password", {"current": "nope", "password": NEW_PASSWORD}
    )
    assert wrong.status_code == 400
    changed = await submit(
        client, "/portal/profile/password", {"current": PASSWORD, "password": NEW_PASSWORD}
    )
    assert changed.status_code == 200
    assert (await client.get("/portal/profile")).status_code == 200  # still signed in


async def test_a_partner_asks_for_a_coupon_an_admin_approves_and_the_partner_sees_its_use(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    await add_user(database, "boss@example.com")
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    campaign = str(programme.campaign["id"])
    bad = await submit(client, "/portal/coupons", {"campaign_id": campaign, "code": "no spaces"})
    assert bad.status_code == 400
    assert 'id="error-code"' in bad.text
    asked = await submit(client, "/portal/coupons", {"campaign_id": campaign, "code": "Blog10"})
    assert asked.status_code == 302
    (notice,) = await mails_to(database, "boss@example.com")
    assert notice.template == "coupon_request"
    page = await client.get("/portal/coupons")
    assert "Blog10" in page.text
    assert "pending" in page.text
    assert (await client.get("/admin/coupon-requests")).status_code == 404

    client.cookies.clear()
    await sign_in(client, database, "boss@example.com")
    listed = await client.get("/admin/coupon-requests")
    assert "Blog10" in listed.text
    async with database.session() as session:
        row = await session.scalar(select(CouponRequest))
    assert row is not None
    assert (await submit(client, f"/admin/coupon-requests/{row.id}/approve", {})).status_code == 302
    assert (await submit(client, f"/admin/coupon-requests/{row.id}/reject", {})).status_code == 400

    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "C1", "amt": "40", "coupon": "blog10"},
    )
    await consumer.drain()
    client.cookies.clear()
    await sign_in(client, database, "partner@example.com")
    used = await client.get("/portal/coupons")
    row_html = re.search(r"<code>Blog10</code>.*?</tr>", used.text, re.DOTALL)
    assert row_html is not None
    assert "€40.00" in row_html.group(0)
    assert '<td class="num">1</td>' in row_html.group(0)
    taken = await submit(client, "/portal/coupons", {"campaign_id": campaign, "code": "BLOG10"})
    assert taken.status_code == 400


@pytest.mark.parametrize(
    ("to", "stored"),
    [
        ("http://[broken/x", False),
        ("javascript:alert(1)", False),
        ("https://shop.example:8443/", True),  # a link's own destination may name a port
    ],
)
async def test_a_deep_link_the_redirect_would_not_follow_is_refused_with_a_message(
    client: AsyncTestClient[Any], database: Database, programme: Programme, to: str, stored: bool
) -> None:
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    page = await client.get(f"/portal/links/{programme.link['id']}", params={"to": to})
    assert page.status_code == 400
    assert 'id="error-to"' in page.text
    made = await submit(
        client,
        "/portal/links",
        {"campaign_id": str(programme.campaign["id"]), "destination_url": to},
    )
    assert made.status_code == (302 if stored else 400)
    assert ('id="error-destination_url"' in made.text) is not stored


async def test_a_payout_mail_goes_only_to_the_partner_s_users_who_asked(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    other, _ = await add_partner_with_link(client, programme, "Other")
    await add_user(database, "asked@example.com", "partner", programme.partner["id"])
    await add_user(database, "quiet@example.com", "partner", programme.partner["id"])
    await add_user(database, "elsewhere@example.com", "partner", other["id"])
    async with database.session(write=True) as session:
        for email in ("asked@example.com", "elsewhere@example.com"):
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            session.add(NotificationSetting(user_id=user.id, payout_sent=True))
        await session.commit()
    async with database.session(write=True) as session:
        context = {"amount": "120.00 EUR", "reference": "PO-7"}
        assert await notify_payout_sent(session, programme.partner["id"], context) == 1
        await session.commit()
    (mail,) = await mails_to(database, "asked@example.com")
    assert mail.subject == "Payout sent: 120.00 EUR"
    assert await mails_to(database, "quiet@example.com") == []
    assert await mails_to(database, "elsewhere@example.com") == []


async def test_the_new_pages_carry_the_navigation_of_who_is_signed_in(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await add_user(database, "partner@example.com", "partner", programme.partner["id"])
    await sign_in(client, database, "partner@example.com")
    for path in (
        "/portal/links",
        f"/portal/links/{programme.link['id']}",
        "/portal/coupons",
        "/portal/profile",
    ):
        page = await client.get(path)
        assert 'href="/portal/profile"' in page.text, path
        assert 'href="/admin/merchants"' not in page.text, path
    client.cookies.clear()
    await sign_in(client, database)
    for path in ("/admin/applications", "/admin/mail", "/admin/coupon-requests"):
        page = await client.get(path)
        assert 'href="/admin/merchants"' in page.text, path
        assert 'href="/portal/links"' not in page.text, path


async def test_an_applicant_s_hostile_details_stay_text_on_the_admin_page_and_in_the_mail(
    client: AsyncTestClient[Any], database: Database, programme: Programme, settings: Settings
) -> None:
    await sign_in(client, database)
    await open_programme(client, programme)
    hostile = "<script>alert(1)</script>"
    details = application(settings, name=hostile, promotion=hostile)
    assert (await submit(client, "/join/shop", details)).status_code == 200
    (mail,) = await mails_to(database, "ann@blog.example")
    await submit(client, link_in(mail, "/join/confirm/"), {})
    page = await client.get("/admin/applications")
    assert hostile not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    (notice,) = await mails_to(database, "admin@example.com")
    assert hostile not in notice.html_body
    assert "\n" not in notice.subject
