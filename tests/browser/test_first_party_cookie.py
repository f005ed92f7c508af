"""The first-party cookie in a real browser: a pixel without a click id is credited to the click
whose ``ct_click`` cookie the browser sends with it, which it does only when the shop's page and
the tracker are one site (the tracker served under the shop's own domain), not across sites."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page

from backend.storage.db.models import Conversion
from backend.tooling.bench.processes import TrackerProcess
from tests.browser.servers import StaticSite
from tests.browser.support import ProgrammeFactory, Sites, Store
from tests.browser.test_snippet import follow_link

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.mark.parametrize("same_site", [True, False], ids=["shop-on-trackers-site", "cross-site"])
async def test_a_pixel_without_a_click_id_is_credited_through_the_cookie_on_one_site_only(
    page: Page,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
    same_site: bool,
) -> None:
    # The tracker answers on 127.0.0.1; a shop there is its site (cookies ignore the port),
    # the merchant's usual site on "localhost" is another one.
    shop = StaticSite("merchant", "127.0.0.1").start() if same_site else sites.merchant
    try:
        programme = await make_programme(shop.url("pixel-thanks.html"))
        order_id = f"A-{uuid.uuid4().hex[:12]}"
        shop.values = {
            "pixel": f"{tracker.origin}/p.gif?m={programme.merchant_key}&oid={order_id}&amt=12.00"
        }
        async with page.expect_request(f"{tracker.origin}/p.gif?*") as pixel_info:
            click_id = await follow_link(page, programme)
        pixel = await pixel_info.value
        assert "clk=" not in pixel.url
        sent = await pixel.all_headers()
        assert (f"ct_click={click_id}" in sent.get("cookie", "")) is same_site
        (sale,) = await store.wait_for(Conversion, Conversion.order_id == order_id)
        assert sale.click_id == (click_id if same_site else None)
        assert sale.link_id == (programme.link_id if same_site else None)
    finally:
        if same_site:
            shop.stop()
