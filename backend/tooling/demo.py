"""``clicktrail demo``: realistic traffic through the real HTTP ingestion path of a running system.

Whoever runs the server runs the demo, so it makes itself an admin API key directly in the
database; everything else goes through HTTP like real users: the management API builds a small
programme (two merchants in EUR and JPY, four partners, campaigns with different commission
rules, links), then visitors click tracking links from publishers' pages (browsers, a few
crawlers), some of them buy and the merchant's pixel fires with the click id from the landing
URL, and a few malformed requests show that bad input is kept as rejected events, not dropped.
Every run adds new objects and unique order ids, so it can run again on the same system.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select

from backend.core.money import format_minor
from backend.core.settings import Settings
from backend.domain.auth import generate_api_key, hash_api_key
from backend.domain.quality.flags import Flag
from backend.storage.db.engine import Database
from backend.storage.db.models import ApiKey, Click, Conversion, Link
from backend.storage.rollups.measures import STORED_CLICKS
from backend.tooling.bench.traffic import (
    BROWSERS,
    LANGUAGES,
    Browser,
    browsers,
    referrer,
    tracking_params,
)

CONVERSION_SHARE = 0.06
CLICK_KINDS = ("billable", "bots", "duplicates", "rate-limited")
BUY_AFTER_S = (6.0, 12.0)  # after the click; the worker flags a sale within 5 s as too fast
DEEP_LINK_SHARE = 0.2
STATS_WAIT_S = 15.0
MERCHANTS = (
    ("Nordlicht Outdoor", "EUR", ("nordlicht-outdoor.example", "www.nordlicht-outdoor.example")),
    ("Sakura Tea House", "JPY", ("sakura-tea.example",)),
)
PARTNERS = (
    ("Trailrunning Weekly", "trailrunning-weekly.example"),
    ("Deal Hunter", "dealhunter.example"),
    ("Tea Ceremony Vlog", "tea-ceremony.example"),
    ("Cashback Club", "cashback-club.example"),
)
# (merchant index, name, landing path, commission percent, flat commission in minor units)
CAMPAIGNS = (
    (0, "Spring collection", "/collections/spring", "8", 0),
    (0, "New customers", "/welcome", "0", 500),
    (1, "Matcha subscription", "/matcha/subscribe", "12.5", 100),
    (1, "Gift sets", "/gifts", "0", 300),
)
# (partner index, campaign index): each partner promotes two campaigns
LINKS = ((0, 0), (0, 1), (1, 1), (1, 3), (2, 2), (2, 3), (3, 0), (3, 2))


class DemoError(RuntimeError):
    """The running system could not be reached or refused a request the demo needs."""


@dataclass(frozen=True, slots=True)
class DemoLink:
    code: str
    url: str
    publisher_site: str
    merchant_key: str
    currency: str
    shop_domain: str


@dataclass(slots=True)
class DemoSummary:
    api_key: str
    merchants: list[dict[str, Any]] = field(default_factory=list)
    partners: list[dict[str, Any]] = field(default_factory=list)
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    links: list[DemoLink] = field(default_factory=list)
    clicks: int = 0
    bot_clicks: int = 0
    conversions: int = 0
    rejected: int = 0  # requests sent to be refused: bad pixels, an unknown link
    totals: dict[str, Any] | None = None  # /api/v1/stats totals once the worker caught up
    run: str = field(default_factory=lambda: secrets.token_hex(3).upper())  # in order ids
    stored: dict[str, int] = field(default_factory=dict)  # this run's clicks by ``click_kind``
    too_fast: int = 0  # this run's conversions flagged too fast


async def create_admin_key(database_url: str) -> str:
    """An admin API key stored as its hash; the key itself exists only in the summary."""
    key = generate_api_key()
    database = Database.connect(database_url)
    try:
        async with database.session(write=True) as session:
            session.add(
                ApiKey(name=f"demo {time.strftime('%Y-%m-%d %H:%M')}", key_hash=hash_api_key(key))
            )
            await session.commit()
    finally:
        await database.dispose()
    return key


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    if response.status_code != 201:
        raise DemoError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    created: dict[str, Any] = response.json()
    return created


async def create_programme(client: httpx.AsyncClient, summary: DemoSummary) -> None:
    """Merchants, partners, campaigns and links through the management API."""
    body: dict[str, Any]
    for name, currency, domains in MERCHANTS:
        body = {"name": name, "currency": currency, "domains": list(domains)}
        summary.merchants.append(await _post(client, "/api/v1/merchants", body))
    for name, site in PARTNERS:
        body = {"name": name, "contact_email": f"partners@{site}"}
        summary.partners.append(await _post(client, "/api/v1/partners", body))
    for merchant_index, name, path, percent, flat in CAMPAIGNS:
        merchant = summary.merchants[merchant_index]
        body = {
            "merchant_id": merchant["id"],
            "name": name,
            "destination_url": f"https://{merchant['domains'][0]}{path}?ref=affiliate",
            "commission_percent": percent,
            "commission_flat_minor": flat,
        }
        summary.campaigns.append(await _post(client, "/api/v1/campaigns", body))
    for partner_index, campaign_index in LINKS:
        partner, campaign = summary.partners[partner_index], summary.campaigns[campaign_index]
        merchant = summary.merchants[CAMPAIGNS[campaign_index][0]]
        body = {"partner_id": partner["id"], "campaign_id": campaign["id"]}
        link = await _post(client, "/api/v1/links", body)
        summary.links.append(
            DemoLink(
                code=link["code"],
                url=link["url"],
                publisher_site=PARTNERS[partner_index][1],
                merchant_key=merchant["key"],
                currency=merchant["currency"],
                shop_domain=merchant["domains"][0],
            )
        )


async def click(
    client: httpx.AsyncClient, link: DemoLink, browser: Browser, rng: random.Random
) -> str:
    """Follow a tracking link as ``browser`` would, without the redirect; the click id."""
    params = tracking_params(rng, link.publisher_site)
    if rng.random() < DEEP_LINK_SHARE:
        params["to"] = f"https://{link.shop_domain}/products/{rng.randrange(1000, 9999)}"
    headers = browser.headers()
    page = referrer(rng, link.publisher_site)
    if page:
        headers["Referer"] = page
    response = await client.get(f"/c/{link.code}", params=params, headers=headers)
    location: str = response.headers.get("location", "")
    click_ids = parse_qs(urlsplit(location).query).get("ct_click")
    if response.status_code != 302 or not click_ids:
        raise DemoError(f"/c/{link.code} answered {response.status_code}, not a redirect")
    return click_ids[0]


async def pixel(
    client: httpx.AsyncClient, link: DemoLink, browser: Browser, params: dict[str, str]
) -> None:
    """The merchant's thank-you page firing the conversion pixel in the buyer's browser."""
    headers = {**browser.headers(), "Referer": f"https://{link.shop_domain}/checkout/thank-you"}
    response = await client.get(
        "/p.gif", params={"m": link.merchant_key, **params}, headers=headers
    )
    if response.status_code != 200:
        raise DemoError(f"/p.gif answered {response.status_code}")


def _amount(rng: random.Random, currency: str) -> str:
    if currency == "JPY":
        return str(rng.randrange(12, 150) * 100)
    cents = rng.randrange(1_990, 24_990)
    return f"{cents // 100}.{cents % 100:02d}"


async def send_traffic(
    client: httpx.AsyncClient, summary: DemoSummary, clicks: int, rng: random.Random
) -> None:
    """Clicks from a pool of repeat visitors; about 6% of the human ones buy something, each
    ``BUY_AFTER_S`` after its click (as people take time to choose and pay, and as a sale
    within seconds of its click is flagged ``too_fast``) while the other clicks go on."""
    pool = browsers(rng, max(4, clicks // 3))
    plan = [(rng.choice(summary.links), rng.choice(pool)) for _ in range(clicks)]
    humans = [index for index, (_, browser) in enumerate(plan) if not browser.is_bot]
    buyers = set(rng.sample(humans, min(len(humans), max(1, round(clicks * CONVERSION_SHARE)))))
    purchases: list[asyncio.Task[None]] = []

    async def buy(link: DemoLink, browser: Browser, order: dict[str, str], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await pixel(client, link, browser, order)

    for index, (link, browser) in enumerate(plan):
        click_id = await click(client, link, browser, rng)
        summary.clicks += 1
        summary.bot_clicks += int(browser.is_bot)
        if index in buyers:
            order = {
                "oid": f"DEMO-{summary.run}-{index:05d}",
                "amt": _amount(rng, link.currency),
                "cur": link.currency,
                "clk": click_id,
            }
            delay_s = rng.uniform(*BUY_AFTER_S)
            purchases.append(asyncio.create_task(buy(link, browser, order, delay_s)))
            summary.conversions += 1
    await asyncio.gather(*purchases)


async def send_rejected(client: httpx.AsyncClient, summary: DemoSummary) -> None:
    """Input a tracker must refuse yet keep: unknown currency, negative amount, unknown link."""
    shopper = Browser("198.51.100.7", BROWSERS[2], LANGUAGES[0])
    for number, link in enumerate({link.merchant_key: link for link in summary.links}.values()):
        await pixel(
            client, link, shopper, {"oid": f"BAD-CUR-{number}", "amt": "19.99", "cur": "XYZ"}
        )
        await pixel(client, link, shopper, {"oid": f"BAD-AMT-{number}", "amt": "-5"})
        summary.rejected += 2
    response = await client.get("/c/no-such-link", headers=shopper.headers())
    if response.status_code != 404:
        raise DemoError(f"/c/no-such-link answered {response.status_code}, not 404")
    summary.rejected += 1


async def _totals(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/v1/stats")
    if response.status_code != 200:
        raise DemoError(f"/api/v1/stats answered {response.status_code}: {response.text[:300]}")
    totals: dict[str, Any] = response.json()["totals"]
    return totals


def _counts(totals: dict[str, Any]) -> tuple[int, int]:
    """All clicks (people and bots) and all conversions in a stats answer."""
    return sum(int(totals[name]) for name in STORED_CLICKS), int(totals["conversions"])


async def wait_for_worker(
    client: httpx.AsyncClient, before: tuple[int, int], summary: DemoSummary
) -> None:
    """Poll the stats until the worker has written this run's clicks and conversions."""
    deadline = time.monotonic() + STATS_WAIT_S
    while time.monotonic() < deadline:
        totals = await _totals(client)
        clicks, conversions = _counts(totals)
        if clicks >= before[0] + summary.clicks and conversions >= before[1] + summary.conversions:
            summary.totals = totals
            return
        await asyncio.sleep(0.25)


def click_kind(is_bot: bool, flags: str) -> str:
    """Where a stored click went: billable, a bot's, a duplicate or rate-limited (the
    quality flags' families; a bot's click carries its ``bot:`` reasons too)."""
    if is_bot:
        return "bots"
    if not flags:
        return "billable"
    return "duplicates" if flags.startswith(Flag.DUPLICATE.value) else "rate-limited"


async def account_for(database_url: str, summary: DemoSummary) -> None:
    """Every click this run sent, found in the database by kind, and its too-fast sales."""
    codes = [link.code for link in summary.links]
    database = Database.connect(database_url)
    try:
        async with database.session() as session:
            kinds = await session.execute(
                select(Click.is_bot, Click.flags, func.count())
                .join(Link, Link.id == Click.link_id)
                .where(Link.code.in_(codes))
                .group_by(Click.is_bot, Click.flags)
            )
            for is_bot, flags, count in kinds:
                kind = click_kind(is_bot, flags)
                summary.stored[kind] = summary.stored.get(kind, 0) + count
            summary.too_fast = (
                await session.scalar(
                    select(func.count())
                    .select_from(Conversion)
                    .where(Conversion.order_id.startswith(f"DEMO-{summary.run}-"))
                    .where(Conversion.flags.contains(Flag.TOO_FAST.value))
                )
                or 0
            )
    finally:
        await database.dispose()


async def demo(settings: Settings, url: str, clicks: int, seed: int | None = None) -> DemoSummary:
    """Build a programme and send traffic to the Clicktrail at ``url``; what was done."""
    rng = random.Random(seed)
    summary = DemoSummary(api_key=await create_admin_key(settings.database_url))
    headers = {"Authorization": f"Bearer {summary.api_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0) as client:
        try:
            before = _counts(await _totals(client))
            await create_programme(client, summary)
            await send_traffic(client, summary, clicks, rng)
            await send_rejected(client, summary)
            await wait_for_worker(client, before, summary)
        except httpx.TransportError as error:
            raise DemoError(f"cannot reach Clicktrail at {url} ({error!r})") from error
    await account_for(settings.database_url, summary)
    return summary


def _rule(campaign: dict[str, Any], currency: str) -> str:
    parts = []
    if campaign["commission_percent"] not in ("0.00", "0"):
        parts.append(f"{campaign['commission_percent'].removesuffix('.00')}%")
    if campaign["commission_flat_minor"]:
        parts.append(f"{format_minor(campaign['commission_flat_minor'], currency)} {currency}")
    return " + ".join(parts) or "no commission"


def format_summary(summary: DemoSummary, url: str) -> str:
    currencies = {merchant["id"]: merchant["currency"] for merchant in summary.merchants}
    lines = [
        f"Demo traffic sent to {url}",
        "  merchants: "
        + ", ".join(f"{m['name']} ({m['currency']}, key {m['key']})" for m in summary.merchants),
        "  partners:  " + ", ".join(partner["name"] for partner in summary.partners),
        "  campaigns: "
        + "; ".join(
            f"{c['name']} ({_rule(c, currencies[c['merchant_id']])})" for c in summary.campaigns
        ),
        f"  links:     {len(summary.links)}, e.g. {summary.links[0].url}",
        f"  sent:      {summary.clicks} clicks ({summary.bot_clicks} by crawlers and scripts), "
        f"{summary.conversions} conversions by pixel, {summary.rejected} bad requests "
        "(kept as rejected events)",
    ]
    stored = sum(summary.stored.values())
    kinds = ", ".join(f"{summary.stored.get(kind, 0)} {kind}" for kind in CLICK_KINDS)
    lines.append(f"  stored:    {stored} of the {summary.clicks} clicks: {kinds}")
    if stored < summary.clicks:
        lines.append(
            f"  the worker has not written {summary.clicks - stored} clicks within "
            f"{STATS_WAIT_S:.0f}s: is it running?"
        )
    lines.append(
        f"  sales:     {summary.conversions} conversions {BUY_AFTER_S[0]:.0f} to "
        f"{BUY_AFTER_S[1]:.0f} s after their click, {summary.too_fast} flagged too fast"
    )
    lines += [
        f"  API key (admin, shown only now): {summary.api_key}",
        f"  look at:   {url}/  (the overview; sign in as the admin 'clicktrail run' printed)",
        f"             curl -H 'Authorization: Bearer {summary.api_key}' "
        f"'{url}/api/v1/stats?group_by=partner'",
    ]
    return "\n".join(lines)


def run_demo(settings: Settings, url: str, clicks: int) -> None:
    """The ``clicktrail demo`` command: run the demo and print what it did."""
    if clicks < 1:
        raise SystemExit("--clicks must be at least 1")
    url = url.rstrip("/")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the summary
    try:
        summary = asyncio.run(demo(settings, url, clicks))
    except DemoError as error:
        raise SystemExit(
            f"demo stopped: {error}\nIs Clicktrail running at {url} ('clicktrail run'), with the "
            "same CLICKTRAIL_DATABASE_URL as this command?"
        ) from None
    print(format_summary(summary, url))
