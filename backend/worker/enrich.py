"""Enrichment: queued events in, table rows and rollup deltas out.

One function per event kind turns an event into its row; the shared steps (user-agent
classification, uniqueness, attribution, commission) are small functions of their own. A row's
rollup delta is kept beside it and counted only if the insert actually wrote the row, so a
redelivered batch never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis

from backend.catalog import Catalog, LinkInfo
from backend.db.models import ConversionStatus, PartnerStatus
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
from backend.worker.useragent import classify

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CLOCK_SKEW_MS = 60_000
UNIQUE_TTL_S = 2 * 86_400
Row = dict[str, Any]

# SET NX remembers the first id per (kind, day, link, visitor); a replayed id finds itself and
# stays unique, so a batch retried after a failed commit gets the same answer.
_FIRST_SEEN = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local id = ARGV[i + 1]
  if redis.call('SET', key, id, 'NX', 'EX', ttl) or redis.call('GET', key) == id then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


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
    def __init__(self, catalog: Catalog, redis: Redis, signer: ClickIdSigner) -> None:
        self._catalog = catalog
        self._first_seen = redis.register_script(_FIRST_SEEN)
        self._signer = signer

    async def prepare(self, events: list[QueuedEvent]) -> Prepared:
        batch = Prepared()
        traffic: list[tuple[ClickEvent | ImpressionEvent, LinkInfo]] = []
        for event in events:
            if isinstance(event, RejectedEvent):
                batch.rejected.append(rejected_row(event))
            elif isinstance(event, ConversionEvent):
                await self._add_conversion(batch, event)
            else:
                link = await self._catalog.link_by_id(event.link_id)
                event_id = event.click_id if isinstance(event, ClickEvent) else event.event_id
                if link is None:
                    batch.rejected.append(
                        _rejected_from(event, event_id, RejectReason.UNKNOWN_LINK, "link deleted")
                    )
                else:
                    traffic.append((event, link))
        unique = await self._uniqueness(traffic)
        for (event, link), is_unique in zip(traffic, unique, strict=True):
            if isinstance(event, ClickEvent):
                _add_click(batch, event, link, is_unique)
            else:
                _add_impression(batch, event, link, is_unique)
        return batch

    async def _uniqueness(
        self, traffic: list[tuple[ClickEvent | ImpressionEvent, LinkInfo]]
    ) -> list[bool]:
        if not traffic:
            return []
        keys: list[str] = []
        ids: list[str] = []
        for event, link in traffic:
            kind, event_id = (
                ("c", event.click_id) if isinstance(event, ClickEvent) else ("i", event.event_id)
            )
            day = event.at_ms // DAY_MS
            keys.append(f"ct:u:{kind}:{day}:{link.id}:{event.visitor.visitor_hash}")
            ids.append(event_id)
        flags = await self._first_seen(keys=keys, args=[UNIQUE_TTL_S, *ids])
        return [bool(flag) for flag in flags]

    async def _add_conversion(self, batch: Prepared, event: ConversionEvent) -> None:
        link, flags = await self._attribute(event)
        commission = 0
        if link is not None and link.partner_status != PartnerStatus.BANNED:
            flat = link.commission_flat_minor if event.currency == link.currency else 0
            if flat != link.commission_flat_minor:
                flags.append("flat_commission_currency_mismatch")
            commission = commission_minor(event.amount_minor, link.commission_bps, flat)
        elif link is not None:
            flags.append("partner_banned")
        batch.conversions.append(
            {
                "event_id": event.event_id,
                "at_ms": event.at_ms,
                "merchant_id": event.merchant_id,
                "order_id": event.order_id,
                "click_id": event.click_id,
                "link_id": link.id if link else None,
                "partner_id": link.partner_id if link else None,
                "campaign_id": link.campaign_id if link else None,
                "amount_minor": event.amount_minor,
                "commission_minor": commission,
                "currency": event.currency,
                "status": ConversionStatus.PENDING.value,
                "source": event.source.value,
                "event_name": event.event_name,
                "items_json": event.items_json,
                "ip_prefix": event.visitor.ip_prefix if event.visitor else "",
                "flags": ",".join(flags),
            }
        )
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
            commission_minor=commission,
        )

    async def _attribute(self, event: ConversionEvent) -> tuple[LinkInfo | None, list[str]]:
        """Last click within the window, from the signed click id alone."""
        if not event.click_id:
            return None, []
        ref = self._signer.verify(event.click_id)
        if ref is None:
            return None, ["invalid_click_id"]
        link = await self._catalog.link_by_id(ref.link_id)
        if link is None:
            return None, ["click_link_deleted"]
        if link.merchant_id != event.merchant_id:
            return None, ["click_of_other_merchant"]
        age_ms = event.at_ms - ref.clicked_ms
        if age_ms < -CLOCK_SKEW_MS or age_ms > link.window_days * DAY_MS:
            return None, ["click_outside_window"]
        return link, []


def _add_click(batch: Prepared, event: ClickEvent, link: LinkInfo, is_unique: bool) -> None:
    agent = classify(event.visitor.user_agent, event.visitor.accept_language)
    referrer_host = ""
    if event.referrer_url.startswith(("http://", "https://")):
        referrer_host = event.referrer_url.split("/", 3)[2].rsplit("@", 1)[-1][:255]
    sub1, sub2, sub3, sub4, sub5 = event.subs
    source, medium, campaign, term, content = event.utm
    batch.clicks.append(
        {
            "click_id": event.click_id,
            "at_ms": event.at_ms,
            "link_id": link.id,
            "partner_id": link.partner_id,
            "campaign_id": link.campaign_id,
            "merchant_id": link.merchant_id,
            "ip_prefix": event.visitor.ip_prefix,
            "visitor_hash": event.visitor.visitor_hash,
            "device_class": agent.device_class,
            "browser": agent.browser,
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
            "is_bot": agent.is_bot,
            "is_unique": is_unique and not agent.is_bot,
            "flags": "",
        }
    )
    human = not agent.is_bot
    batch.deltas[event.click_id] = Delta(
        key=RollupKey(event.at_ms // HOUR_MS * HOUR_MS, link.merchant_id, link.id, link.currency),
        partner_id=link.partner_id,
        campaign_id=link.campaign_id,
        clicks=int(human),
        unique_clicks=int(human and is_unique),
        bot_clicks=int(agent.is_bot),
    )


def _add_impression(
    batch: Prepared, event: ImpressionEvent, link: LinkInfo, is_unique: bool
) -> None:
    agent = classify(event.visitor.user_agent, event.visitor.accept_language)
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
            "is_unique": is_unique and not agent.is_bot,
        }
    )
    batch.deltas[event.event_id] = Delta(
        key=RollupKey(event.at_ms // HOUR_MS * HOUR_MS, link.merchant_id, link.id, link.currency),
        partner_id=link.partner_id,
        campaign_id=link.campaign_id,
        impressions=int(not agent.is_bot),
    )
