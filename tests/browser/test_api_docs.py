"""The API docs (``/schema``) in headless Chromium, served by the real web process: Swagger UI
runs from Clicktrail's own files under the page's CSP, with no console error (a CSP violation
would be one) and no request to another origin."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

from backend.bench.processes import TrackerProcess
from tests.browser.support import Wire

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_the_api_docs_run_from_clicktrail_alone(
    page: Page,
    wire: Wire,
    tracker: TrackerProcess,
    tmp_path: Path,
) -> None:
    response = await page.goto(tracker.origin + "/schema")
    assert response is not None
    assert response.status == 200
    await page.locator(".opblock").first.wait_for()
    assert await page.locator(".opblock").count() >= 25

    await page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)

    assert wire.console_errors == []
    assert wire.page_errors == []
    assert wire.requests
    assert wire.to(tracker.origin) == wire.requests  # nothing from a CDN or a font host
