"""The money pages in headless Chromium, served by the real web process: the payouts page and a
partner's statement render with no console error (no CSP violation), and the statement printed
(print media, A4) shows the statement alone, without the navigation, on a PDF page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from playwright.async_api import Page

from backend.domain.affiliate.ledger import add_adjustment
from backend.tooling.bench.processes import TrackerProcess
from tests.browser.conftest import TrackerDatabase
from tests.browser.support import ProgrammeFactory, Wire
from tests.support import PASSWORD, add_user

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_a_statement_prints_as_a_clean_a4_page(
    page: Page,
    wire: Wire,
    tracker: TrackerProcess,
    tracker_database: TrackerDatabase,
    make_programme: ProgrammeFactory,
) -> None:
    programme = await make_programme("http://localhost/shop")
    database = tracker_database.database
    async with database.session(write=True) as session:
        await add_adjustment(
            session,
            programme.partner_id,
            programme.merchant_id,
            1234,
            "EUR",
            actor="test",
            reason="launch bonus",
        )
        await session.commit()
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    await add_user(database, email)
    await page.goto(tracker.origin + "/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(tracker.origin + "/")

    payouts = await page.goto(tracker.origin + "/admin/payouts")
    assert payouts is not None
    assert payouts.status == 200
    month = datetime.now(UTC).strftime("%Y-%m")
    statement = await page.goto(f"{tracker.origin}/money/statements/{programme.partner_id}/{month}")
    assert statement is not None
    assert statement.status == 200
    assert await page.locator("nav.nav").is_visible()
    await page.emulate_media(media="print")
    assert not await page.locator("nav.nav").is_visible()
    assert not await page.locator("header.top").is_visible()
    assert await page.locator(".statement .total").is_visible()
    assert "12.34" in await page.locator(".statement .total").inner_text()
    pdf = await page.pdf(format="A4", prefer_css_page_size=True)
    assert pdf.startswith(b"%PDF")
    # one page, A4 (595 x 842 points)
    assert re.findall(rb"/MediaBox ?\[([^\]]*)\]", pdf) == [b"0 0 594.95996 841.91998"]
    assert wire.console_errors == []
    assert wire.page_errors == []
