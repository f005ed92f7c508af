"""An in-process, read-through cache of the objects every event refers to.

The ingest handlers resolve a link code or merchant key per request and the worker resolves a
link per conversion; a database query each time would put the database on the hot path.
Entries live ``ttl_s`` seconds (misses ``miss_ttl_s``), concurrent misses for one key share one
query, and the cache is bounded so random codes cannot grow it without limit. Misses (a code
that names nothing) are kept apart in a much smaller bound: a flood of made-up codes neither
pushes the real links out nor holds more than a few hundred kilobytes. Writers in this process
call ``invalidate``; other processes see a change within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, TypeVarTuple

from sqlalchemy import Select, select

from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Campaign,
    CommissionOverride,
    CommissionRule,
    Coupon,
    GroupRate,
    Link,
    Merchant,
    Partner,
)

Ts = TypeVarTuple("Ts")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

# Misses kept per cache, apart from the entries: made-up codes churn these, never the real ones.
MAX_MISSES = 4_096


def with_rules(statement: Select[*Ts]) -> Select[*Ts]:
    """``statement`` (over ``Partner`` and ``Campaign``) with the rules that may replace the
    campaign's for that partner: its own override, its group's rate."""
    return statement.outerjoin(
        CommissionOverride,
        (CommissionOverride.partner_id == Partner.id)
        & (CommissionOverride.campaign_id == Campaign.id),
    ).outerjoin(
        GroupRate,
        (GroupRate.group_id == Partner.group_id) & (GroupRate.campaign_id == Campaign.id),
    )


def choose_rule(
    campaign: Campaign, group_rate: GroupRate | None, override: CommissionOverride | None
) -> tuple[int, int, CommissionRule]:
    """The rule that pays: the partner's own override, else its group's rate for the campaign,
    else the campaign's; as (basis points, flat minor units, which)."""
    if override is not None:
        return override.commission_bps, override.commission_flat_minor, CommissionRule.PARTNER
    if group_rate is not None:
        return group_rate.commission_bps, group_rate.commission_flat_minor, CommissionRule.GROUP
    return campaign.commission_bps, campaign.commission_flat_minor, CommissionRule.CAMPAIGN


@dataclass(frozen=True, slots=True)
class MerchantInfo:
    id: int
    key: str
    currency: str
    domains: frozenset[str]
    window_days: int
    max_order_minor: int | None  # in ``currency``; None: only the shared bound
    coupon_over_click: bool = False  # another partner's coupon beats a click


@dataclass(frozen=True, slots=True)
class PartnerInfo:
    id: int
    key: str
    status: str


@dataclass(frozen=True, slots=True)
class LinkInfo:
    id: int
    code: str
    partner_id: int
    partner_key: str  # the {partner} of a destination template
    partner_status: str
    campaign_id: int
    merchant_id: int
    destination_url: str
    merchant_domains: frozenset[str]
    currency: str
    window_days: int
    commission_bps: int  # the rule ``choose_rule`` picks: override, group rate, campaign
    commission_flat_minor: int
    status: str  # the link's: active or paused
    campaign_status: str
    campaign_destination_url: str  # where a banned partner's link sends visitors
    commission_rule: str = CommissionRule.CAMPAIGN  # which rule that is


@dataclass(frozen=True, slots=True)
class CouponInfo:
    """A coupon as attribution needs it: whom it credits and by which rule (the partner's
    override of the coupon's campaign's rule, else the campaign's)."""

    id: int
    code: str
    merchant_id: int
    partner_id: int
    partner_status: str
    campaign_id: int
    campaign_status: str
    currency: str  # the merchant's
    commission_bps: int
    commission_flat_minor: int
    commission_rule: str = CommissionRule.CAMPAIGN


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl_s: float, miss_ttl_s: float, max_entries: int, max_misses: int = MAX_MISSES
    ) -> None:
        self._ttl_s = ttl_s
        self._miss_ttl_s = miss_ttl_s
        self._max_entries = max_entries
        self._max_misses = max_misses
        self._entries: dict[K, tuple[float, V]] = {}
        self._misses: dict[K, float] = {}  # key -> until when it is known to name nothing
        self._loading: dict[K, asyncio.Future[V | None]] = {}

    async def get(self, key: K, load: Callable[[K], Awaitable[V | None]]) -> V | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        missed_until = self._misses.get(key)
        if missed_until is not None and missed_until > now:
            return None
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load(key)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so an unawaited future logs nothing
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        if value is None:
            self._entries.pop(key, None)
            _put(self._misses, key, time.monotonic() + self._miss_ttl_s, self._max_misses)
        else:
            self._misses.pop(key, None)
            _put(self._entries, key, (time.monotonic() + self._ttl_s, value), self._max_entries)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._misses.clear()


def _put(entries: dict[K, T], key: K, value: T, bound: int) -> None:
    """Store ``value`` under ``key``, dropping the oldest stored entry first when full."""
    if key not in entries and len(entries) >= bound:
        entries.pop(next(iter(entries)))
    entries[key] = value


class Catalog:
    def __init__(
        self,
        database: Database,
        default_window_days: int,
        ttl_s: float = 30.0,
        miss_ttl_s: float = 5.0,
        max_entries: int = 50_000,
    ) -> None:
        self._db = database
        self._default_window_days = default_window_days
        self._links_by_code: TtlCache[str, LinkInfo] = TtlCache(ttl_s, miss_ttl_s, max_entries)
        self._links_by_id: TtlCache[int, LinkInfo] = TtlCache(ttl_s, miss_ttl_s, max_entries)
        self._merchants: TtlCache[str, MerchantInfo] = TtlCache(ttl_s, miss_ttl_s, max_entries)
        self._merchants_by_id: TtlCache[int, MerchantInfo] = TtlCache(
            ttl_s, miss_ttl_s, max_entries
        )
        self._partners: TtlCache[str, PartnerInfo] = TtlCache(ttl_s, miss_ttl_s, max_entries)
        self._coupons: TtlCache[tuple[int, str], CouponInfo] = TtlCache(
            ttl_s, miss_ttl_s, max_entries
        )

    def invalidate(self) -> None:
        for cache in (
            self._links_by_code,
            self._links_by_id,
            self._merchants,
            self._merchants_by_id,
            self._partners,
            self._coupons,
        ):
            cache.clear()

    async def link_by_code(self, code: str) -> LinkInfo | None:
        return await self._links_by_code.get(code, self._load_link_by_code)

    async def link_by_id(self, link_id: int) -> LinkInfo | None:
        return await self._links_by_id.get(link_id, self._load_link_by_id)

    async def merchant_by_key(self, key: str) -> MerchantInfo | None:
        return await self._merchants.get(key, self._load_merchant)

    async def merchant_by_id(self, merchant_id: int) -> MerchantInfo | None:
        return await self._merchants_by_id.get(merchant_id, self._load_merchant_by_id)

    async def partner_by_key(self, key: str) -> PartnerInfo | None:
        return await self._partners.get(key, self._load_partner)

    async def coupon(self, merchant_id: int, code_key: str) -> CouponInfo | None:
        """The merchant's coupon whose upper-cased code is ``code_key``."""
        return await self._coupons.get((merchant_id, code_key), self._load_coupon)

    async def _load_coupon(self, key: tuple[int, str]) -> CouponInfo | None:
        merchant_id, code_key = key
        query = (
            with_rules(
                select(Coupon, Campaign, Merchant, Partner, CommissionOverride, GroupRate)
                .join(Campaign, Coupon.campaign_id == Campaign.id)
                .join(Merchant, Coupon.merchant_id == Merchant.id)
                .join(Partner, Coupon.partner_id == Partner.id)
            )
        ).where(Coupon.merchant_id == merchant_id, Coupon.code_key == code_key)
        async with self._db.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        coupon, campaign, merchant, partner, override, group_rate = row
        bps, flat, chosen = choose_rule(campaign, group_rate, override)
        return CouponInfo(
            id=coupon.id,
            code=coupon.code,
            merchant_id=merchant.id,
            partner_id=partner.id,
            partner_status=partner.status,
            campaign_id=campaign.id,
            campaign_status=campaign.status,
            currency=merchant.currency,
            commission_bps=bps,
            commission_flat_minor=flat,
            commission_rule=chosen,
        )

    async def _load_link_by_code(self, code: str) -> LinkInfo | None:
        return await self._load_link(Link.code == code)

    async def _load_link_by_id(self, link_id: int) -> LinkInfo | None:
        return await self._load_link(Link.id == link_id)

    async def _load_link(self, condition: object) -> LinkInfo | None:
        query = (
            with_rules(
                select(Link, Campaign, Merchant, Partner, CommissionOverride, GroupRate)
                .join(Campaign, Link.campaign_id == Campaign.id)
                .join(Merchant, Campaign.merchant_id == Merchant.id)
                .join(Partner, Link.partner_id == Partner.id)
            )
        ).where(condition)  # type: ignore[arg-type]
        async with self._db.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        link, campaign, merchant, partner, override, group_rate = row
        bps, flat, chosen = choose_rule(campaign, group_rate, override)
        return LinkInfo(
            id=link.id,
            code=link.code,
            partner_id=partner.id,
            partner_key=partner.key,
            partner_status=partner.status,
            campaign_id=campaign.id,
            merchant_id=merchant.id,
            destination_url=link.destination_url or campaign.destination_url,
            merchant_domains=frozenset(merchant.domains),
            currency=merchant.currency,
            window_days=campaign.cookie_window_days
            or merchant.attribution_window_days
            or self._default_window_days,
            commission_bps=bps,
            commission_flat_minor=flat,
            status=link.status,
            campaign_status=campaign.status,
            campaign_destination_url=campaign.destination_url,
            commission_rule=chosen,
        )

    async def _load_merchant(self, key: str) -> MerchantInfo | None:
        async with self._db.session() as session:
            merchant = await session.scalar(select(Merchant).where(Merchant.key == key))
        return None if merchant is None else self.merchant_info(merchant)

    async def _load_merchant_by_id(self, merchant_id: int) -> MerchantInfo | None:
        async with self._db.session() as session:
            merchant = await session.get(Merchant, merchant_id)
        return None if merchant is None else self.merchant_info(merchant)

    def merchant_info(self, merchant: Merchant) -> MerchantInfo:
        """What ingestion needs of a merchant row (the postback has the row in hand)."""
        return MerchantInfo(
            id=merchant.id,
            key=merchant.key,
            currency=merchant.currency,
            domains=frozenset(merchant.domains),
            window_days=merchant.attribution_window_days or self._default_window_days,
            max_order_minor=merchant.max_order_minor,
            coupon_over_click=merchant.coupon_over_click,
        )

    async def _load_partner(self, key: str) -> PartnerInfo | None:
        async with self._db.session() as session:
            partner = await session.scalar(select(Partner).where(Partner.key == key))
        if partner is None:
            return None
        return PartnerInfo(id=partner.id, key=partner.key, status=partner.status)
