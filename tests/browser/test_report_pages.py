"""The report pages in headless Chromium, served by the real web process: signed in through
the login form, every main page rendered and photographed (desktop and phone width), with no
console error, so no CSP violation (an inline style or script would be one) and no failed load.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page

from backend.core.clock import DAY_MS, now_ms
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.tooling.bench.processes import TrackerProcess
from backend.tooling.bench.report_data import TargetLink, generate
from tests.browser.conftest import TrackerDatabase
from tests.browser.support import ProgrammeFactory, Wire
from tests.support import PASSWORD, add_user

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PAGES = (
    ("overview", "/?range=7d"),
    ("overview-today", "/?range=today&tz=Europe/Berlin"),
    ("by-referrer", "/breakdown/referrer?range=30d"),
    ("by-sub1-filtered", "/breakdown/sub1?range=30d&device=mobile"),
    ("live", "/live"),
    ("quality", "/quality?range=7d"),
    ("install", "/install"),
    ("conversions", "/conversions"),
    ("by-country", "/breakdown/country?range=30d"),
)


async def aligned(page: Page, headers: str, column: int) -> tuple[str, str]:
    """How the ``column``-th header of a table and the first row's cell under it align."""
    header = page.locator(headers).nth(column)
    cell = header.locator("xpath=ancestor::table").locator("tbody tr").first.locator("th, td")
    align = "el => getComputedStyle(el).textAlign"
    return await header.evaluate(align), await cell.nth(column).evaluate(align)


async def test_report_pages_render_cleanly_and_are_photographed(
    page: Page,
    wire: Wire,
    tracker: TrackerProcess,
    tracker_database: TrackerDatabase,
    make_programme: ProgrammeFactory,
    screenshots: Path,
) -> None:
    programme = await make_programme("http://localhost/shop")
    link = TargetLink(
        programme.link_id, programme.partner_id, programme.campaign_id, programme.merchant_id, "EUR"
    )
    database = tracker_database.database
    end = now_ms()
    await generate(database, 2_000, 100, end - 10 * DAY_MS, end, seed=9, links=[link])
    await fold_closed_hours(database)
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    await add_user(database, email)

    await page.goto(tracker.origin + "/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(tracker.origin + "/")

    shots: list[Path] = []
    for width, suffix in ((1280, ""), (390, "-phone")):
        await page.set_viewport_size({"width": width, "height": 900})
        for name, path in PAGES:
            response = await page.goto(tracker.origin + path)
            assert response is not None
            assert response.status == 200, path
            shot = screenshots / f"{name}{suffix}.png"
            await page.screenshot(path=str(shot), full_page=True)
            shots.append(shot)
    assert all(shot.stat().st_size > 5_000 for shot in shots)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(tracker.origin + "/?range=7d")
    assert await page.locator("svg.chart.wide rect.bar").count() == 7
    assert await page.locator("svg.chart.wide").is_visible()
    assert not await page.locator("svg.chart.narrow").is_visible()
    assert int(await page.locator("#kpi-clicks").inner_text()) > 0
    assert await page.locator(".panel").count() == 5  # partners, campaigns, referrers, countries,
    # devices
    # no horizontal scrolling of the page itself on a phone (wide tables scroll in their box),
    # and the chart drawn for a phone's width, its labels as large as the page's small print
    await page.set_viewport_size({"width": 390, "height": 900})
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390
    assert await page.locator("svg.chart.narrow").is_visible()
    assert not await page.locator("svg.chart.wide").is_visible()
    tick = page.locator("svg.chart.narrow text.tick").first
    assert (await tick.bounding_box() or {"height": 0})["height"] >= 9
    assert wire.console_errors == []
    assert wire.page_errors == []
    await page.set_viewport_size({"width": 1280, "height": 900})
    # Text left, numbers right, each header over its cells: a breakdown and an admin list.
    await page.goto(tracker.origin + "/breakdown/referrer?range=30d")
    assert await aligned(page, "table.numbers thead th", 0) == ("left", "left")
    assert await aligned(page, "table.numbers thead th", 1) == ("right", "right")
    await page.goto(tracker.origin + "/admin/partners")
    assert await aligned(page, "table thead th", 2) == ("left", "left")  # contact e-mail
    # A bad date answers a page in the layout (the browser logs the 400 itself, nothing else).
    for width, suffix in ((1280, ""), (390, "-phone")):
        await page.set_viewport_size({"width": width, "height": 900})
        error = await page.goto(tracker.origin + "/?range=custom&from=2026-02-30&to=2026-03-01")
        assert error is not None
        assert error.status == 400
        assert await page.locator("h1").inner_text() == "This cannot be shown"
        await page.screenshot(path=str(screenshots / f"error{suffix}.png"), full_page=True)
    assert wire.page_errors == []
