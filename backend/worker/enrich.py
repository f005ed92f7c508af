"""Enrichment: queued events in, table rows and rollup deltas out.

A batch goes through three phases so that every outside question is asked once per batch:
1. resolve each event's link (the catalog's cache) and, for a conversion, its signed click id,
   collecting the questions for Redis (``backend.quality.windows``) and the click ids to look up;
2. ask Redis (one script call) and the database (one query for the credited clicks) at once;
3. build each row by running it through its kind's steps (``CLICK_STEPS``,
   ``CONVERSION_STEPS``): small functions that fill in or flag the row. A new rule is a new step.

What counts where in ``stats_hourly``: every stored click counts exactly once, as
- ``clicks``, billable: a human's click with no flag; ``unique_clicks``: those that were the
  visitor's first on the link that day;
- ``bot_clicks``: a bot's click (a ``bot:`` flag, ``clicks.is_bot``);
- ``flagged_clicks``: a human's click flagged ``duplicate`` or ``rate_limited:*``. Billing a
  double-click or a click storm would pay for nothing; hiding them would hide the abuse.
A conversion always counts with its revenue. Crediting a bot's click it earns no commission;
an attributed conversion with any flag (its own or its click's) is marked ``review`` and stays
pending for a person. A row's rollup delta is kept beside it and counted only if the insert
actually wrote the row, so a redelivered batch never counts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from sqlalchemy import select

from backend.catalog import Catalog, LinkInfo
from backend.db.engine import Database
from backend.db.models import Click, ConversionStatus, PartnerStatus
from backend.events import (
    ClickEvent,
    ConversionEvent,
    ImpressionEvent,
    QueuedEvent,
    RejectedEvent,
    RejectReason,
    Source,
)
from backend.ids import ClickIdSigner
from backend.money import commission_minor
from backend.quality.agents import AgentVerdict, classify
from backend.quality.flags import Flag
from backend.quality.windows import (
    DUPLICATE,
    PREFIX_BURST,
    RATE_LIMITED_LINK,
    RATE_LIMITED_PARTNER,
    UNIQUE,
    Counter,
    Questions,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CLOCK_SKEW_MS = 60_000
TOO_FAST_MS = 5_000  # from click to conversion: no person finds, fills in and pays that fast
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RollupKey:
    hour_ms: int
    merchant_id: int
    link_id: int
    currency: str


@dataclass(slots=True)
class Delta:
    """What one row adds to its hour in ``stats_hourly``."""

    key: RollupKey
    partner_id: int
    campaign_id: int
    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    impressions: int = 0
    conversions: int = 0
    revenue_minor: int = 0
    commission_minor: int = 0


@dataclass(slots=True)
class Prepared:
    """One batch, ready to write: rows per table and each row's rollup delta by its id."""

    clicks: list[Row] = field(default_factory=list)
    impressions: list[Row] = field(default_factory=list)
    conversions: list[Row] = field(default_factory=list)
    rejected: list[Row] = field(default_factory=list)
    deltas: dict[str, Delta] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreditedClick:
    """What a conversion needs to know of the click it credits."""

    is_bot: bool
    flags: str


@dataclass(slots=True)
class ConversionFacts:
    """A conversion's attribution and what phase 2 learnt about it."""

    event: ConversionEvent
    link: LinkInfo | None
    clicked_ms: int
    attribution_flag: str
    bits: int = 0
    click: CreditedClick | None = None


@dataclass(slots=True)
class _Pending:
    """A batch after phase 1: its events with what they refer to, and the questions for Redis."""

    questions: Questions = field(default_factory=Questions)
    clicks: list[tuple[ClickEvent, LinkInfo, AgentVerdict]] = field(default_factory=list)
    impressions: list[tuple[ImpressionEvent, LinkInfo, AgentVerdict]] = field(default_factory=list)
    conversions: list[ConversionFacts] = field(default_factory=list)


def _flag(row: Row, flag: Flag | str) -> None:
    row["flags"] = f"{row['flags']},{flag}" if row["flags"] else str(flag)


# Click steps: (row, the user agent's verdict, bits from Redis). The row arrives filled in from
# the event and its link, as a clean click.


def put_agent(row: Row, agent: AgentVerdict, bits: int) -> None:
    row["is_bot"] = agent.is_bot
    row["device_class"] = agent.device_class
    row["browser"] = agent.browser
    if agent.flags:
        _flag(row, agent.flags)


def flag_duplicate(row: Row, agent: AgentVerdict, bits: int) -> None:
    if bits & DUPLICATE:
        _flag(row, Flag.DUPLICATE)


def flag_link_rate(row: Row, agent: AgentVerdict, bits: int) -> None:
    if bits & RATE_LIMITED_LINK:
        _flag(row, Flag.RATE_LIMITED_LINK)


def flag_partner_rate(row: Row, agent: AgentVerdict, bits: int) -> None:
    if bits & RATE_LIMITED_PARTNER:
        _flag(row, Flag.RATE_LIMITED_PARTNER)


def put_unique(row: Row, agent: AgentVerdict, bits: int) -> None:
    """Unique among billable clicks only, so ``unique_clicks`` never exceeds ``clicks``."""
    row["is_unique"] = bool(bits & UNIQUE) and not row["flags"]


ClickStep = Callable[[Row, AgentVerdict, int], None]
CLICK_STEPS: tuple[ClickStep, ...] = (
    put_agent,
    flag_duplicate,
    flag_link_rate,
    flag_partner_rate,
    put_unique,
)


# Conversion steps: (row, facts). The row arrives attributed, with no commission yet.


def put_commission(row: Row, facts: ConversionFacts) -> None:
    link = facts.link
    if link is None:
        return
    if link.partner_status == PartnerStatus.BANNED:
        _flag(row, Flag.PARTNER_BANNED)
        return
    if link.partner_status == PartnerStatus.PAUSED:
        _flag(row, Flag.PARTNER_PAUSED)  # earned, but held for a person to decide
    flat = link.commission_flat_minor if facts.event.currency == link.currency else 0
    if flat != link.commission_flat_minor:
        _flag(row, Flag.FLAT_COMMISSION_CURRENCY_MISMATCH)
    row["commission_minor"] = commission_minor(facts.event.amount_minor, link.commission_bps, flat)


def flag_too_fast(row: Row, facts: ConversionFacts) -> None:
    if facts.link is not None and facts.event.at_ms - facts.clicked_ms < TOO_FAST_MS:
        _flag(row, Flag.TOO_FAST)


def flag_prefix_burst(row: Row, facts: ConversionFacts) -> None:
    if facts.bits & PREFIX_BURST:
        _flag(row, Flag.PREFIX_BURST)


def check_credited_click(row: Row, facts: ConversionFacts) -> None:
    """A bot's click earns nothing; a flagged or unknown one needs a person to look."""
    if facts.link is None:
        return
    if facts.click is None:
        _flag(row, Flag.CLICK_MISSING)
    elif facts.click.is_bot:
        row["commission_minor"] = 0
        _flag(row, Flag.BOT_CLICK)
    elif facts.click.flags:
        _flag(row, Flag.FLAGGED_CLICK)


def hold_for_review(row: Row, facts: ConversionFacts) -> None:
    """Last: any flag on an attributed conversion keeps it from automatic approval."""
    if facts.link is not None and row["flags"]:
        _flag(row, Flag.REVIEW)


ConversionStep = Callable[[Row, ConversionFacts], None]
CONVERSION_STEPS: tuple[ConversionStep, ...] = (
    put_commission,
    flag_too_fast,
    flag_prefix_burst,
    check_credited_click,
    hold_for_review,
)


def rejected_row(event: RejectedEvent) -> Row:
    return {
        "event_id": event.event_id,
        "at_ms": event.at_ms,
        "source": event.source.value,
        "reason": event.reason.value,
        "detail": event.detail,
        "payload": event.payload,
    }


def _rejected_from(
    event: ClickEvent | ImpressionEvent, event_id: str, reason: RejectReason, detail: str
) -> Row:
    return rejected_row(
        RejectedEvent(
            event_id=event_id[:64],
            at_ms=event.at_ms,
            source=Source.REDIRECT if isinstance(event, ClickEvent) else Source.JS,
            reason=reason,
            detail=detail,
            payload=msgspec.json.encode(event).decode()[:4096],
        )
    )


class Enricher:
    def __init__(
        self, catalog: Catalog, redis: Redis, signer: ClickIdSigner, database: Database
    ) -> None:
        self._catalog = catalog
        self._counter = Counter(redis)
        self._signer = signer
        self._db = database

    async def prepare(self, events: list[QueuedEvent]) -> Prepared:
        batch = Prepared()
        pending = await self._resolve(events, batch)
        credited = {
            f.event.click_id for f in pending.conversions if f.link is not None and f.event.click_id
        }
        (click_bits, impression_bits, conversion_bits), stored = await asyncio.gather(
            self._counter.answer(pending.questions), self._stored_clicks(credited)
        )
        in_batch = _add_clicks(batch, pending.clicks, click_bits, credited)
        _add_impressions(batch, pending.impressions, impression_bits)
        for facts, bits in zip(pending.conversions, conversion_bits, strict=True):
            facts.bits = bits
            click_id = facts.event.click_id
            if facts.link is not None and click_id:
                facts.click = stored.get(click_id) or _credited(in_batch.get(click_id))
            _add_conversion(batch, facts)
        return batch

    async def _resolve(self, events: list[QueuedEvent], batch: Prepared) -> _Pending:
        """Phase 1: links, user agents and attribution; what to ask Redis. Rejects go to
        ``batch`` at once."""
        pending = _Pending()
        for event in events:
            if isinstance(event, ClickEvent):
                link = await self._catalog.link_by_id(event.link_id)
                if link is None:
                    batch.rejected.append(_link_gone(event, event.click_id))
                    continue
                agent = classify(event.visitor.user_agent, event.visitor.accept_language)
                pending.clicks.append((event, link, agent))
                if not agent.is_bot:
                    pending.questions.click(
                        event.click_id,
                        event.at_ms,
                        link.id,
                        link.partner_id,
                        event.visitor.visitor_hash,
                    )
            elif isinstance(event, ImpressionEvent):
                link = await self._catalog.link_by_id(event.link_id)
                if link is None:
                    batch.rejected.append(_link_gone(event, event.event_id))
                    continue
                agent = classify(event.visitor.user_agent, event.visitor.accept_language)
                pending.impressions.append((event, link, agent))
                if not agent.is_bot:
                    pending.questions.impression(
                        event.event_id, event.at_ms, link.id, event.visitor.visitor_hash
                    )
            elif isinstance(event, ConversionEvent):
                pending.conversions.append(await self._attribute(event))
                prefix = event.visitor.ip_prefix if event.visitor else ""
                pending.questions.conversion(event.event_id, event.at_ms, event.merchant_id, prefix)
            else:
                batch.rejected.append(rejected_row(event))
        return pending

    async def _attribute(self, event: ConversionEvent) -> ConversionFacts:
        """Last click within the window, from the signed click id alone."""
        if not event.click_id:
            return ConversionFacts(event, None, 0, "")
        ref = self._signer.verify(event.click_id)
        if ref is None:
            return ConversionFacts(event, None, 0, Flag.INVALID_CLICK_ID)
        link = await self._catalog.link_by_id(ref.link_id)
        if link is None:
            return ConversionFacts(event, None, 0, Flag.CLICK_LINK_DELETED)
        if link.merchant_id != event.merchant_id:
            return ConversionFacts(event, None, 0, Flag.CLICK_OF_OTHER_MERCHANT)
        age_ms = event.at_ms - ref.clicked_ms
        if age_ms < -CLOCK_SKEW_MS or age_ms > link.window_days * DAY_MS:
            return ConversionFacts(event, None, 0, Flag.CLICK_OUTSIDE_WINDOW)
        return ConversionFacts(event, link, ref.clicked_ms, "")

    async def _stored_clicks(self, click_ids: set[str]) -> dict[str, CreditedClick]:
        """The credited clicks already written, in one query (a stored row beats a replay)."""
        if not click_ids:
            return {}
        query = select(Click.click_id, Click.is_bot, Click.flags).where(
            Click.click_id.in_(click_ids)
        )
        async with self._db.read_engine.connect() as connection:
            rows = await connection.execute(query)
        return {click_id: CreditedClick(is_bot, flags) for click_id, is_bot, flags in rows}


def _link_gone(event: ClickEvent | ImpressionEvent, event_id: str) -> Row:
    return _rejected_from(event, event_id, RejectReason.UNKNOWN_LINK, "link deleted")


def _credited(row: Row | None) -> CreditedClick | None:
    return None if row is None else CreditedClick(row["is_bot"], row["flags"])


def _click_row(event: ClickEvent, link: LinkInfo) -> Row:
    referrer_host = ""
    if event.referrer_url.startswith(("http://", "https://")):
        referrer_host = event.referrer_url.split("/", 3)[2].rsplit("@", 1)[-1][:255]
    sub1, sub2, sub3, sub4, sub5 = event.subs
    source, medium, campaign, term, content = event.utm
    return {
        "click_id": event.click_id,
        "at_ms": event.at_ms,
        "link_id": link.id,
        "partner_id": link.partner_id,
        "campaign_id": link.campaign_id,
        "merchant_id": link.merchant_id,
        "ip_prefix": event.visitor.ip_prefix,
        "visitor_hash": event.visitor.visitor_hash,
        "device_class": "",
        "browser": "",
        "referrer_host": referrer_host,
        "referrer_url": event.referrer_url,
        "landing_url": event.landing_url,
        "sub1": sub1,
        "sub2": sub2,
        "sub3": sub3,
        "sub4": sub4,
        "sub5": sub5,
        "utm_source": source,
        "utm_medium": medium,
        "utm_campaign": campaign,
        "utm_term": term,
        "utm_content": content,
        "is_bot": False,
        "is_unique": False,
        "flags": "",
    }


def _click_delta(row: Row, link: LinkInfo) -> Delta:
    billable = not row["flags"]
    return Delta(
        key=RollupKey(row["at_ms"] // HOUR_MS * HOUR_MS, link.merchant_id, link.id, link.currency),
        partner_id=link.partner_id,
        campaign_id=link.campaign_id,
        clicks=int(billable),
        unique_clicks=int(row["is_unique"]),
        bot_clicks=int(row["is_bot"]),
        flagged_clicks=int(not billable and not row["is_bot"]),
    )


def _add_clicks(
    batch: Prepared,
    clicks: list[tuple[ClickEvent, LinkInfo, AgentVerdict]],
    human_bits: list[int],
    credited: set[str],
) -> dict[str, Row]:
    """Phase 3 for clicks (bots were not asked about); returns the rows conversions credit."""
    answers = iter(human_bits)
    in_batch: dict[str, Row] = {}
    for event, link, agent in clicks:
        bits = 0 if agent.is_bot else next(answers)
        row = _click_row(event, link)
        for step in CLICK_STEPS:
            step(row, agent, bits)
        batch.clicks.append(row)
        batch.deltas[event.click_id] = _click_delta(row, link)
        if event.click_id in credited:
            in_batch[event.click_id] = row
    return in_batch


def _add_impressions(
    batch: Prepared,
    impressions: list[tuple[ImpressionEvent, LinkInfo, AgentVerdict]],
    human_bits: list[int],
) -> None:
    answers = iter(human_bits)
    for event, link, agent in impressions:
        bits = 0 if agent.is_bot else next(answers)
        batch.impressions.append(
            {
                "event_id": event.event_id,
                "at_ms": event.at_ms,
                "link_id": link.id,
                "partner_id": link.partner_id,
                "campaign_id": link.campaign_id,
                "merchant_id": link.merchant_id,
                "ip_prefix": event.visitor.ip_prefix,
                "visitor_hash": event.visitor.visitor_hash,
                "page_url": event.page_url,
                "is_bot": agent.is_bot,
                "is_unique": bool(bits & UNIQUE),
            }
        )
        batch.deltas[event.event_id] = Delta(
            key=RollupKey(
                event.at_ms // HOUR_MS * HOUR_MS, link.merchant_id, link.id, link.currency
            ),
            partner_id=link.partner_id,
            campaign_id=link.campaign_id,
            impressions=int(not agent.is_bot),
        )


def _add_conversion(batch: Prepared, facts: ConversionFacts) -> None:
    event, link = facts.event, facts.link
    row: Row = {
        "event_id": event.event_id,
        "at_ms": event.at_ms,
        "merchant_id": event.merchant_id,
        "order_id": event.order_id,
        "click_id": event.click_id,
        "link_id": link.id if link else None,
        "partner_id": link.partner_id if link else None,
        "campaign_id": link.campaign_id if link else None,
        "amount_minor": event.amount_minor,
        "commission_minor": 0,
        "currency": event.currency,
        "status": ConversionStatus.PENDING.value,
        "source": event.source.value,
        "event_name": event.event_name,
        "items_json": event.items_json,
        "ip_prefix": event.visitor.ip_prefix if event.visitor else "",
        "flags": str(facts.attribution_flag),
        "verified": event.source == Source.POSTBACK,
    }
    for step in CONVERSION_STEPS:
        step(row, facts)
    batch.conversions.append(row)
    batch.deltas[event.event_id] = Delta(
        key=RollupKey(
            event.at_ms // HOUR_MS * HOUR_MS,
            event.merchant_id,
            link.id if link else 0,
            event.currency,
        ),
        partner_id=link.partner_id if link else 0,
        campaign_id=link.campaign_id if link else 0,
        conversions=1,
        revenue_minor=event.amount_minor,
        commission_minor=row["commission_minor"],
    )
