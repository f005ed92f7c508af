"""Done means, in Chromium against the real web process: a new partner applies to an open
programme, confirms by the link of the mail a real SMTP server on loopback received, is
approved by an admin, signs in, makes a deep link, the link is clicked, a sale lands (a signed
postback) and the partner sees it; and a partner who forgot the password resets it by mail."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from playwright.async_api import BrowserContext, Page

from backend.core.settings import Settings
from backend.domain.mail.delivery import deliver_due
from backend.storage.db.models import Conversion, Merchant
from backend.tooling.bench.processes import TrackerProcess
from tests.browser.conftest import TrackerDatabase
from tests.browser.support import ProgrammeFactory, Sites, Store
from tests.postback_support import PATH, sale, signed
from tests.support import PASSWORD, add_user

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
CHOSEN = "a long and private passphrase"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def link(self, to: str, path: str) -> str:
        """The link to ``path`` in the last mail to ``to``."""
        mail = [m for m in self.messages if m["To"] == to][-1]
        body = mail.get_body(("plain",))
        assert body is not None
        match = re.search(rf"https?://\S+{re.escape(path)}\S+", body.get_content())
        assert match is not None, body.get_content()
        return match.group(0)


@pytest.fixture
def smtp(tracker_settings: Settings) -> Iterator[tuple[Inbox, Settings]]:
    """A real SMTP server on loopback, and the settings the mail courier sends to it with."""
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield (
            inbox,
            tracker_settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none"),
        )
    finally:
        controller.stop()


async def sign_in(
    page: Page, origin: str, address: str, password: str, lands_on: str = "/"
) -> None:
    await page.goto(origin + "/login")
    await page.fill("input[name=email]", address)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(origin + lands_on)


async def test_a_new_partner_applies_is_approved_and_sees_the_sale_of_its_deep_link(
    page: Page,
    context: BrowserContext,
    sites: Sites,
    tracker: TrackerProcess,
    tracker_database: TrackerDatabase,
    make_programme: ProgrammeFactory,
    store: Store,
    smtp: tuple[Inbox, Settings],
    screenshots: Path,
) -> None:
    inbox, mail_settings = smtp
    database = tracker_database.database
    programme = await make_programme(sites.merchant.url("landing.html"))
    sites.merchant.values = {"snippet": ""}
    admin = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    applicant = f"ann-{uuid.uuid4().hex[:8]}@blog.example"
    slug = f"shop-{programme.merchant_id}"
    await add_user(database, admin)

    # The admin opens the programme to applications.
    await sign_in(page, tracker.origin, admin, PASSWORD)
    await page.goto(tracker.origin + "/admin/applications")
    form = page.locator(f"form[action='/admin/programmes/{programme.merchant_id}']")
    await form.locator("input[name=slug]").fill(slug)
    await form.locator("input[name=open]").check()
    await form.locator("textarea[name=terms]").fill("Honest reviews only.")
    await form.locator("button[type=submit]").click()
    await page.wait_for_url(tracker.origin + "/admin/applications")

    # A new partner applies, in a browser of their own.
    partner = await context.browser.new_context() if context.browser else None
    assert partner is not None
    visitor = await partner.new_page()
    await visitor.goto(f"{tracker.origin}/join/{slug}")
    assert "Honest reviews only." in await visitor.content()
    await visitor.fill("#field-name", "Ann's reviews")
    await visitor.fill("#field-email", applicant)
    await visitor.fill("#field-website", "https://blog.example")
    await visitor.fill("#field-promotion", "Reviews of winter gear")
    await visitor.fill("#field-password", CHOSEN)
    await visitor.check("input[name=terms]")
    await visitor.wait_for_timeout(3_100)  # a person takes a moment; a robot does not
    await visitor.click("button[type=submit]")
    await visitor.get_by_role("heading", name="Check your mail").wait_for()

    # The mail goes out through SMTP; the link in it confirms the address.
    assert await deliver_due(database, mail_settings) >= 1
    await visitor.goto(inbox.link(applicant, "/join/confirm/"))
    await visitor.click("button[type=submit]")
    await visitor.get_by_role("heading", name="Address confirmed").wait_for()

    # The admin approves.
    await page.goto(tracker.origin + "/admin/applications")
    row = page.locator("tr", has_text=applicant)
    await row.get_by_role("button", name="Approve").click()
    await page.wait_for_url(tracker.origin + "/admin/applications")
    assert await page.locator("tr", has_text=applicant).locator("td", has_text="approved").count()

    # The partner signs in and makes a deep link, refused off the merchant's domains.
    await sign_in(visitor, tracker.origin, applicant, CHOSEN, lands_on="/portal/links")
    await visitor.click("a[href='/portal/links']")
    await visitor.select_option("#field-campaign_id", str(programme.campaign_id))
    await visitor.fill("#field-destination_url", "https://elsewhere.example/")
    await visitor.click("form[action='/portal/links'] button[type=submit]")
    assert "Deep links must go to" in await visitor.locator("#error-destination_url").inner_text()
    deep = sites.merchant.url("landing.html") + "?item=scarf"
    await visitor.fill("#field-destination_url", deep)
    await visitor.click("form[action='/portal/links'] button[type=submit]")
    await visitor.fill("input[name=sub1]", "newsletter")
    await visitor.click("text=Build the URL")
    tracking = await visitor.locator("#tracking-url").inner_text()
    assert tracking.startswith(tracker.origin + "/c/")
    assert "sub1=newsletter" in tracking
    # The copy button puts the address on the clipboard (a script of the tracker's own origin).
    await partner.grant_permissions(["clipboard-read", "clipboard-write"], origin=tracker.origin)
    await visitor.click("button[data-copy=tracking-url]")
    await visitor.get_by_role("button", name="Copied").wait_for()
    assert await visitor.evaluate("navigator.clipboard.readText()") == tracking

    # The links page: every link's address with its copy button, at desktop and phone width.
    await visitor.goto(tracker.origin + "/portal/links")
    first = visitor.locator("button.copy").first
    address = await visitor.locator(
        "input#" + (await first.get_attribute("data-copy") or "")
    ).input_value()
    await first.click()
    assert await visitor.evaluate("navigator.clipboard.readText()") == address
    assert address.startswith(tracker.origin + "/c/")
    for width, suffix in ((1280, ""), (390, "-phone")):
        await visitor.set_viewport_size({"width": width, "height": 900})
        shot = screenshots / f"portal-links{suffix}.png"
        await visitor.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5_000
    assert await visitor.evaluate("document.documentElement.scrollWidth") <= 390

    # Someone clicks it and lands on the deep link; the shop reports the sale.
    shopper = await context.new_page()
    await shopper.goto(tracking)
    landed = urlsplit(shopper.url)
    assert (landed.path, parse_qs(landed.query)["item"]) == ("/landing.html", ["scarf"])
    (click_id,) = parse_qs(landed.query)["ct_click"]
    async with database.session() as session:
        merchant = await session.get(Merchant, programme.merchant_id)
    assert merchant is not None
    order = f"J-{uuid.uuid4().hex[:10]}"
    raw, headers = signed(
        {"merchant": merchant.key} | sale(order, click_id=click_id), merchant.postback_secret
    )
    async with httpx.AsyncClient(base_url=tracker.origin) as client:
        answer = await client.post(PATH, content=raw, headers=headers)
    assert answer.status_code in (200, 202), answer.text
    (conversion,) = await store.wait_for(Conversion, Conversion.order_id == order)
    assert conversion.click_id == click_id

    await visitor.goto(tracker.origin + "/conversions")
    assert order in await visitor.content()
    await partner.close()


async def test_a_partner_resets_a_forgotten_password(
    page: Page,
    tracker: TrackerProcess,
    tracker_database: TrackerDatabase,
    make_programme: ProgrammeFactory,
    store: Store,
    smtp: tuple[Inbox, Settings],
) -> None:
    inbox, mail_settings = smtp
    programme = await make_programme("http://localhost/shop")
    address = f"bob-{uuid.uuid4().hex[:8]}@blog.example"
    await add_user(tracker_database.database, address, "partner", programme.partner_id)

    await page.goto(tracker.origin + "/login")
    await page.click("text=Forgot your password?")
    await page.fill("input[name=email]", address)
    await page.click("button[type=submit]")
    await page.get_by_role("heading", name="Check your mail").wait_for()
    assert await deliver_due(tracker_database.database, mail_settings) >= 1

    await page.goto(inbox.link(address, "/reset/"))
    await page.fill("input[name=password]", CHOSEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(tracker.origin + "/portal/links")  # a partner lands on its links
    await page.click("text=Sign out")
    await sign_in(page, tracker.origin, address, CHOSEN, lands_on="/portal/links")
    await page.goto(inbox.link(address, "/reset/"))
    assert "no longer works" in await page.content()  # single-use
