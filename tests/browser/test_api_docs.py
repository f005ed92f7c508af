"""The API docs (``/schema``) in headless Chromium, served by the real web process: Swagger UI
runs from Clicktrail's own files under the page's CSP, with no console error (a CSP violation
would be one) and no request to another origin, and "Try it out" calls the API with a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

from backend.tooling.bench.processes import TrackerProcess
from tests.browser.conftest import TrackerDatabase
from tests.browser.support import Wire

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_the_api_docs_run_from_clicktrail_alone_and_try_requests(
    page: Page,
    wire: Wire,
    tracker: TrackerProcess,
    tracker_database: TrackerDatabase,
    tmp_path: Path,
) -> None:
    response = await page.goto(tracker.origin + "/schema")
    assert response is not None
    assert response.status == 200
    await page.locator(".opblock").first.wait_for()
    assert await page.locator(".opblock").count() >= 25

    await page.click("button.authorize")
    await page.fill(".modal-ux input", tracker_database.admin_key)
    await page.click(".modal-ux .auth-btn-wrapper button.authorize")
    await page.click(".modal-ux button.btn-done")
    operation = page.locator("#operations-merchants-ApiV1MerchantsListMerchants")
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await status.wait_for()
    assert (await status.inner_text()).strip() == "200"
    await page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)

    assert wire.console_errors == []
    assert wire.page_errors == []
    assert wire.requests
    assert wire.to(tracker.origin) == wire.requests  # nothing from a CDN or a font host
