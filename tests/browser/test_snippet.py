"""The snippet (``static/s.js``, served by the tracker at ``/s.js``) in a real browser.

The node tests in ``snippet/`` prove the functions; these prove the product: the built file,
embedded as the README says, on a publisher's site and a merchant's site that are different
origins from the tracker and from each other, in headless Chromium, talking to the real web
server, with the events written by the worker's consumer. Each test asserts what reached the
database, what went over the wire and what was left on the device; several assert what must
*not* happen (a request, a stored id, an error in the host page).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Request, Route

from backend.core.clock import DAY_MS
from backend.storage.db.models import Click, Conversion, Impression
from backend.tooling.bench.processes import TrackerProcess
from backend.web.ingest.snippet import Snippet
from tests.browser.servers import closed_port, snippet_tag
from tests.browser.support import (
    Programme,
    ProgrammeFactory,
    Sites,
    Store,
    Wire,
    accepted,
    beacon_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SNIPPET_LOADED = "() => !!(window.clicktrail && window.clicktrail.ct === 1)"
STORAGE = """() => ({
    cookie: document.cookie,
    local: localStorage.getItem('ct_click'),
    localLength: localStorage.length,
    sessionLength: sessionStorage.length,
})"""


def new_order_id() -> str:
    return f"A-{uuid.uuid4().hex[:12]}"


def click_id_of(location: str) -> str:
    """The ``ct_click`` the tracker put into a redirect's ``Location``."""
    values = parse_qs(urlsplit(location).query)["ct_click"]
    assert len(values) == 1
    return values[0]


def tracker_calls(wire: Wire, tracker: TrackerProcess) -> list[tuple[str, str]]:
    """``(method, path)`` of every request to the tracker except loading the snippet itself
    (``s.js``, and ``p.js`` on publisher pages)."""
    return [
        (r.method, urlsplit(r.url).path)
        for r in wire.to(tracker.origin)
        if urlsplit(r.url).path not in ("/s.js", "/p.js")
    ]


async def follow_link(page: Page, programme: Programme) -> str:
    """Open the tracking link directly (a link in an e-mail); return the click id issued."""
    async with page.expect_response(lambda r: r.url.startswith(programme.link_url)) as info:
        await page.goto(programme.link_url)
    redirect = await info.value
    assert redirect.status == 302
    return click_id_of(await redirect.header_value("location") or "")


async def test_journey_from_publisher_page_to_attributed_conversion(
    page: Page,
    context: BrowserContext,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
    tmp_path: Path,
) -> None:
    """The whole journey across three origins ends in one conversion credited to the partner.

    Publisher page (impression) → click (redirect with ``ct_click``, page path as ``ct_page``) →
    merchant landing page (id kept first-party, cleaned from the address bar) → checkout on the
    same origin (conversion from the stored id) → rows the worker wrote.
    """
    publisher, merchant = sites.publisher, sites.merchant
    programme = await make_programme(merchant.url("landing.html?utm_source=blog"))
    order_id = new_order_id()
    publisher.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", partner=programme.partner_key),
        "link_url": programme.link_url,
    }
    merchant.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key),
        "order_id": order_id,
    }

    # The publisher's page: the visible tracking link is reported once, as an impression.
    async with page.expect_request(beacon_to(tracker.origin)) as impression_info:
        await page.goto(publisher.url("article.html?from=newsletter-private"))
    impression = await impression_info.value
    assert await accepted(impression) == {
        "p": programme.partner_key,
        "events": [{"t": "impression", "l": programme.link_code}],
    }

    # The click: the tracker answers 302 to the campaign's destination with a click id.
    async with page.expect_response(lambda r: r.url.startswith(programme.link_url)) as info:
        await page.click("#deal")
    redirect = await info.value
    assert redirect.status == 302
    assert parse_qs(urlsplit(redirect.url).query)["ct_page"] == ["/article.html"]
    location = await redirect.header_value("location") or ""
    click_id = click_id_of(location)
    assert location == f"{programme.destination}&ct_click={click_id}"

    # The landing page keeps the id first-party and takes it out of the address bar.
    await page.wait_for_url(f"{merchant.origin}/**")
    await page.wait_for_function(SNIPPET_LOADED)
    assert await page.evaluate("location.href") == programme.destination
    now_ms = time.time() * 1000
    (cookie,) = await context.cookies(merchant.origin)
    assert (cookie["name"], cookie["value"], cookie["path"]) == ("ct_click", click_id, "/")
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (False, False, "Lax")
    assert abs(cookie["expires"] * 1000 - (now_ms + 30 * DAY_MS)) < 60_000
    record = json.loads(await page.evaluate("localStorage.getItem('ct_click')"))
    assert record["id"] == click_id
    assert abs(record["exp"] - (now_ms + 30 * DAY_MS)) < 60_000

    # Checkout, a later page view: the conversion carries the stored id.
    async with page.expect_request(beacon_to(tracker.origin)) as conversion_info:
        await page.click("#checkout")
    conversion = await conversion_info.value
    assert conversion.headers["content-type"].startswith("text/plain")  # no CORS preflight
    assert await accepted(conversion) == {
        "m": programme.merchant_key,
        "events": [
            {"t": "conversion", "oid": order_id, "amt": "49.90", "cur": "EUR", "clk": click_id}
        ],
    }
    await page.wait_for_load_state()
    screenshot = tmp_path / "checkout.png"
    await page.screenshot(path=screenshot, full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    # What went to the tracker, and nothing more: no request on landing, no page query string.
    assert tracker_calls(wire, tracker) == [
        ("POST", "/e"),
        ("GET", f"/c/{programme.link_code}"),
        ("POST", "/e"),
    ]
    for request in wire.to(tracker.origin):
        assert "newsletter-private" not in request.url + (request.post_data or "")
        assert "newsletter-private" not in (await request.all_headers()).get("referer", "")

    # The rows the worker wrote.
    (sale,) = await store.wait_for(Conversion, Conversion.merchant_id == programme.merchant_id)
    assert (sale.click_id, sale.partner_id, sale.link_id, sale.campaign_id) == (
        click_id,
        programme.partner_id,
        programme.link_id,
        programme.campaign_id,
    )
    assert (sale.order_id, sale.amount_minor, sale.currency) == (order_id, 4990, "EUR")
    assert (sale.commission_minor, sale.source, sale.status, sale.flags) == (
        549,  # 10 % of 49.90 plus 0.50 flat
        "js",
        "pending",
        "too_fast,review",  # a scripted buyer checks out within seconds of the click
    )
    (click,) = await store.wait_for(Click, Click.click_id == click_id)
    assert (click.link_id, click.partner_id) == (programme.link_id, programme.partner_id)
    # The browser sends only the publisher's origin as Referer (cross-origin policy); the
    # snippet's ct_page puts the path back, and the query string never leaves the page.
    assert click.referrer_url == f"{publisher.origin}/article.html"
    assert click.referrer_host == urlsplit(publisher.origin).netloc
    assert click.landing_url == programme.destination
    assert (click.is_bot, click.browser, click.os, click.device_class) == (
        False,
        "Chrome",
        "Linux",
        "desktop",
    )
    (seen,) = await store.wait_for(Impression, Impression.link_id == programme.link_id)
    assert (seen.partner_id, seen.is_bot) == (programme.partner_id, False)
    assert seen.page_url == f"{publisher.origin}/"  # the beacon's Referer: the origin only
    assert wire.page_errors == []


async def land_and_convert_twice(
    page: Page, sites: Sites, programme: Programme, tracker: TrackerProcess, store: Store
) -> None:
    """Land on the checkout page through the link, then reload it without the id.

    The first conversion must carry the id from the landing URL; the second, on a later page
    view, must carry none: if it did, the id was kept somewhere on the device.
    """
    merchant = sites.merchant
    first, second = new_order_id(), new_order_id()
    merchant.values["order_id"] = first
    async with page.expect_request(beacon_to(tracker.origin)) as info:
        click_id = await follow_link(page, programme)
    assert (await accepted(await info.value))["events"][0]["clk"] == click_id
    assert await page.evaluate("location.href") == programme.destination  # cleaned all the same

    merchant.values["order_id"] = second
    async with page.expect_request(beacon_to(tracker.origin)) as info:
        await page.goto(programme.destination)
    assert "clk" not in (await accepted(await info.value))["events"][0]

    rows = await store.wait_for(
        Conversion, Conversion.merchant_id == programme.merchant_id, count=2
    )
    by_order = {row.order_id: row for row in rows}
    assert len(rows) == 2
    attributed, unattributed = by_order[first], by_order[second]
    assert (attributed.click_id, attributed.partner_id, attributed.link_id) == (
        click_id,
        programme.partner_id,
        programme.link_id,
    )
    assert attributed.amount_minor == 4990
    assert (unattributed.click_id, unattributed.partner_id) == (None, None)


async def nothing_on_the_device(page: Page) -> None:
    storage = await page.evaluate(STORAGE)
    assert storage == {"cookie": "", "local": None, "localLength": 0, "sessionLength": 0}


async def test_global_privacy_control_keeps_nothing_on_the_device_but_still_attributes(
    page: Page,
    context: BrowserContext,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
) -> None:
    """With GPC on, the id lives only in the landing page's memory: a conversion there counts.

    The browser behaves as a GPC browser does: ``navigator.globalPrivacyControl`` before any
    page script, and ``Sec-GPC: 1`` on every request (so the tracker sets no cookie either).
    """
    merchant = sites.merchant
    programme = await make_programme(merchant.url("checkout.html"))
    merchant.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key)
    }
    # Chromium has no GPC setting of its own; this is the property as GPC browsers expose it.
    await page.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})"
    )
    await context.set_extra_http_headers({"Sec-GPC": "1"})

    await land_and_convert_twice(page, sites, programme, tracker, store)

    assert await page.evaluate("navigator.globalPrivacyControl") is True
    await nothing_on_the_device(page)
    assert await context.cookies() == []  # neither the shop's nor the tracker's
    assert wire.page_errors == []


async def test_cookieless_mode_keeps_nothing_on_the_device_but_still_attributes(
    page: Page,
    context: BrowserContext,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
) -> None:
    """``data-storage="none"``: attribution from the landing URL only, nothing stored."""
    merchant = sites.merchant
    programme = await make_programme(merchant.url("checkout.html"))
    merchant.values = {
        "snippet": snippet_tag(
            f"{tracker.origin}/s.js", merchant=programme.merchant_key, storage="none"
        )
    }

    await land_and_convert_twice(page, sites, programme, tracker, store)

    await nothing_on_the_device(page)
    assert await context.cookies(merchant.origin) == []
    # The snippet's option does not govern the tracker's own cookie, its documented fallback
    # (which also shows that the GPC test's "no cookie at all" is not vacuous).
    (fallback,) = await context.cookies(tracker.origin)
    assert (fallback["name"], fallback["httpOnly"]) == ("ct_click", True)
    assert wire.page_errors == []


@pytest.mark.parametrize(
    ("site_name", "page_name"),
    [("publisher", "article.html"), ("merchant", "checkout.html")],
)
async def test_a_tracker_that_is_down_never_breaks_the_page(
    page: Page, wire: Wire, sites: Sites, site_name: str, page_name: str
) -> None:
    """The script's origin refuses connections: the page's own scripts still run, no error.

    Chromium logs the failed load itself ("Failed to load resource"); that is the browser's
    message, not an exception in the page, and the only console error allowed.
    """
    site = getattr(sites, site_name)
    with closed_port() as port:
        dead = f"http://127.0.0.1:{port}"
        site.values = {
            "snippet": snippet_tag(f"{dead}/s.js", merchant="mk_test", partner="pk_test"),
            "link_url": f"{dead}/c/abc123",
            "order_id": new_order_id(),
        }
        async with page.expect_event("requestfailed") as failed_info:
            await page.goto(site.url(page_name))
        failed: Request = await failed_info.value
        assert failed.url == f"{dead}/s.js"
        assert await page.evaluate("document.body.dataset.pageScript") == "ran"
        if page_name == "checkout.html":
            # the stub keeps queueing, without throwing, for a snippet that never comes
            await page.evaluate("clicktrail('conversion', {orderId: 'B-2', amount: 1})")
            assert await page.evaluate("window.clicktrail.q.length") == 2

    assert wire.page_errors == []
    assert [m for m in wire.console_errors if not m.startswith("Failed to load resource")] == []


@pytest.mark.parametrize("how", ["held back", "injected late"])
async def test_a_conversion_called_before_the_snippet_loads_is_sent(
    page: Page,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
    how: str,
) -> None:
    """The queue stub keeps the call until the snippet loads, which then replays it.

    "held back": the async tag is in the page, its response is held until the page has made
    the call. "injected late": the page has no tag at all until after the call.
    """
    merchant = sites.merchant
    programme = await make_programme(merchant.url("checkout.html"))
    order_id = new_order_id()
    tag = snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key)
    merchant.values = {"snippet": tag if how == "held back" else "", "order_id": order_id}
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    if how == "held back":
        await page.route(f"{tracker.origin}/s.js", hold)
    async with page.expect_response(lambda r: r.url.startswith(programme.link_url)) as info:
        await page.goto(programme.link_url, wait_until="domcontentloaded")
    click_id = click_id_of(await (await info.value).header_value("location") or "")

    # The call has been made and is waiting in the stub's queue; nothing has been sent.
    assert await page.evaluate("window.clicktrail.q.length") == 1
    assert await page.evaluate("window.clicktrail.ct") is None
    assert tracker_calls(wire, tracker) == [("GET", f"/c/{programme.link_code}")]

    async with page.expect_request(beacon_to(tracker.origin)) as beacon_info:
        if how == "held back":
            release.set()
        else:
            await page.evaluate(
                """([src, key]) => {
                    const tag = document.createElement('script')
                    tag.async = true
                    tag.src = src
                    tag.dataset.merchant = key
                    document.head.appendChild(tag)
                }""",
                [f"{tracker.origin}/s.js", programme.merchant_key],
            )
    assert (await accepted(await beacon_info.value))["events"] == [
        {"t": "conversion", "oid": order_id, "amt": "49.90", "cur": "EUR", "clk": click_id}
    ]
    assert await page.evaluate("window.clicktrail.ct") == 1  # the real function now

    (sale,) = await store.wait_for(Conversion, Conversion.merchant_id == programme.merchant_id)
    assert (sale.order_id, sale.click_id, sale.partner_id) == (
        order_id,
        click_id,
        programme.partner_id,
    )
    assert wire.page_errors == []


async def test_without_send_beacon_the_conversion_travels_by_the_pixel(
    page: Page,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
) -> None:
    """A browser without ``navigator.sendBeacon`` still records the sale, through ``/p.gif``."""
    merchant = sites.merchant
    programme = await make_programme(merchant.url("checkout.html"))
    order_id = new_order_id()
    merchant.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key),
        "order_id": order_id,
    }
    await page.add_init_script("delete Navigator.prototype.sendBeacon")

    async with page.expect_request(f"{tracker.origin}/p.gif?*") as pixel_info:
        click_id = await follow_link(page, programme)
    pixel = await pixel_info.value
    response = await pixel.response()
    assert response is not None
    assert (response.status, response.headers["content-type"]) == (200, "image/gif")
    assert parse_qs(urlsplit(pixel.url).query) == {
        "m": [programme.merchant_key],
        "t": ["conversion"],
        "oid": [order_id],
        "amt": ["49.90"],
        "cur": ["EUR"],
        "clk": [click_id],
    }
    assert ("POST", "/e") not in tracker_calls(wire, tracker)

    (sale,) = await store.wait_for(Conversion, Conversion.merchant_id == programme.merchant_id)
    assert (sale.source, sale.order_id, sale.amount_minor, sale.click_id, sale.link_id) == (
        "pixel",
        order_id,
        4990,
        click_id,
        programme.link_id,
    )
    assert wire.page_errors == []


@pytest.mark.parametrize("query", ["", "?ct_click=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGh"])
async def test_a_merchant_page_without_a_command_sends_nothing(
    page: Page,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
    query: str,
) -> None:
    """Loading the snippet is the only request to the tracker: no hit on load, none on landing.

    With no click id in the URL nothing is stored either; with one, it is kept first-party
    (see the journey) but still nothing is sent until a conversion is recorded.
    """
    merchant = sites.merchant
    programme = await make_programme(merchant.url("landing.html"))
    merchant.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key)
    }

    await page.goto(merchant.url(f"landing.html{query}"), wait_until="networkidle")
    await page.wait_for_function(SNIPPET_LOADED)

    assert [(r.method, urlsplit(r.url).path) for r in wire.to(tracker.origin)] == [("GET", "/s.js")]
    assert await store.queued() == 0
    assert await page.evaluate("location.href") == merchant.url("landing.html")
    if not query:
        await nothing_on_the_device(page)
    assert wire.page_errors == []


P_JS = Path(__file__).resolve().parents[2] / "static" / "p.js"
P_INTEGRITY = "sha256-" + base64.b64encode(hashlib.sha256(P_JS.read_bytes()).digest()).decode()
PUBLISHER_HALF = "() => document.querySelector('script[src*=\"/p.js?\"]')"


async def test_the_publisher_half_loads_only_for_data_partner_pinned_and_in_cors_mode(
    page: Page, wire: Wire, sites: Sites, tracker: TrackerProcess, make_programme: ProgrammeFactory
) -> None:
    """A merchant tag loads s.js alone; a partner tag also loads p.js, by a CORS request that
    Chromium checks against the hash s.js carries (the impression proves that it ran): a site
    that pins s.js, as the install page's tags do, runs only pinned code."""
    publisher, merchant = sites.publisher, sites.merchant
    programme = await make_programme(merchant.url("landing.html"))
    merchant.values = {
        "snippet": snippet_tag(f"{tracker.origin}/s.js", merchant=programme.merchant_key)
    }
    await page.goto(merchant.url("landing.html"), wait_until="networkidle")
    await page.wait_for_function(SNIPPET_LOADED)
    assert [urlsplit(r.url).path for r in wire.to(tracker.origin)] == ["/s.js"]
    assert await page.evaluate(f"({PUBLISHER_HALF})() === null")

    # The publisher's tag as the install page gives it: s.js pinned by its own SRI hash.
    pinned = Snippet.load(P_JS.with_name("s.js"))
    publisher.values = {
        "snippet": f'<script async src="{tracker.origin}{pinned.versioned_path}" '
        f'integrity="{pinned.integrity}" crossorigin="anonymous" '
        f'data-partner="{programme.partner_key}"></script>',
        "link_url": programme.link_url,
    }
    async with page.expect_request(beacon_to(tracker.origin)) as impression_info:
        await page.goto(publisher.url("article.html"))
    assert (await accepted(await impression_info.value))["events"] == [
        {"t": "impression", "l": programme.link_code}
    ]
    loads = [r for r in wire.to(tracker.origin) if urlsplit(r.url).path == "/p.js"]
    assert [urlsplit(r.url).query for r in loads] == [P_INTEGRITY]
    headers = await loads[0].all_headers()
    assert (headers["sec-fetch-mode"], headers["origin"]) == ("cors", publisher.origin)
    response = await loads[0].response()
    assert response is not None
    assert (response.status, response.headers["access-control-allow-origin"]) == (200, "*")
    element = await page.evaluate(
        f"(() => {{ const s = ({PUBLISHER_HALF})(); return [s.integrity, s.crossOrigin] }})()"
    )
    assert element == [P_INTEGRITY, "anonymous"]  # s.js sets '', which HTML reads as anonymous
    assert wire.page_errors == []


async def test_a_publisher_half_that_does_not_match_its_hash_never_runs(
    page: Page,
    wire: Wire,
    sites: Sites,
    tracker: TrackerProcess,
    store: Store,
    make_programme: ProgrammeFactory,
) -> None:
    """p.js changed on the way (or on the server): Chromium refuses to run it, so no impression
    is counted, and the merchant side of the same tag still records a sale."""
    publisher, merchant = sites.publisher, sites.merchant
    programme = await make_programme(merchant.url("landing.html"))
    publisher.values = {
        "snippet": snippet_tag(
            f"{tracker.origin}/s.js",
            merchant=programme.merchant_key,
            partner=programme.partner_key,
        ),
        "link_url": programme.link_url,
    }

    async def tamper(route: Route) -> None:
        genuine = await route.fetch()
        assert await genuine.body() == P_JS.read_bytes()
        await route.fulfill(response=genuine, body=b"window.tampered=1;" + await genuine.body())

    await page.route(f"{tracker.origin}/p.js?*", tamper)
    async with page.expect_event(
        "console", lambda message: "integrity" in message.text
    ) as refused_info:
        await page.goto(publisher.url("article.html"))
    assert "blocked" in (await refused_info.value).text
    assert await page.evaluate("window.tampered") is None  # not one statement of it ran

    order_id = new_order_id()
    async with page.expect_request(beacon_to(tracker.origin)) as conversion_info:
        await page.evaluate(
            "(id) => clicktrail('conversion', {orderId: id, amount: '5.00', currency: 'EUR'})",
            order_id,
        )
    assert await accepted(await conversion_info.value) == {
        "m": programme.merchant_key,
        "events": [{"t": "conversion", "oid": order_id, "amt": "5.00", "cur": "EUR"}],
    }
    (sale,) = await store.wait_for(Conversion, Conversion.merchant_id == programme.merchant_id)
    assert (sale.order_id, sale.amount_minor) == (order_id, 500)
    assert tracker_calls(wire, tracker) == [("POST", "/e")]  # the sale, no impression
    assert wire.page_errors == []
    # (the sites have no favicon: "Failed to load resource" is the browser's 404 for it)
    unexpected = [m for m in wire.console_errors if not m.startswith("Failed to load resource")]
    assert [m for m in unexpected if "integrity" not in m] == []
