"""The data model (DESIGN §4) as typed SQLAlchemy models.

Event tables (clicks, impressions, conversions, rejected events) store times as integer epoch
milliseconds (UTC): the same on SQLite and PostgreSQL, no per-row datetime conversion on the bulk
insert path, and no time-zone ambiguity. Their keys are the time-ordered ids of
``backend.core.ids``. Money is integer minor units beside an ISO 4217 code.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


# Time-ordered ids compare bytewise; PostgreSQL's default collation would not.
IdString = String(64).with_variant(String(64, collation="C"), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always read back in UTC with its offset. SQLite keeps no zone, so
    ``DateTime(timezone=True)`` reads back naive there; values are written in UTC, so a naive
    one read back is UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PartnerStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    BANNED = "banned"


class RunStatus(StrEnum):
    """A link's or a campaign's: a paused one still redirects, but what it brings is held for
    review."""

    ACTIVE = "active"
    PAUSED = "paused"


class ConversionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVERSED = "reversed"


class Attribution(StrEnum):
    """Why a conversion is credited to its partner (``conversions.attribution``); "" when it
    is not."""

    CLICK = "click"  # the click id the conversion named
    COOKIE = "cookie"  # the click id of the ``ct_click`` cookie the browser sent
    COUPON = "coupon"  # the partner's coupon code the sale carried
    CUSTOMER = "customer"  # the partner the customer is bound to (a renewal)


class CommissionRule(StrEnum):
    """Which rule set a conversion's commission (``conversions.commission_rule``); "" when
    nothing did (no partner is credited, or it was stored before rules were recorded)."""

    CAMPAIGN = "campaign"  # the campaign's own rule
    GROUP = "group"  # the rate of the partner's group for the campaign
    PARTNER = "partner"  # the partner's own override for the campaign
    NETWORK = "network"  # the figure a conversion source reported
    REVIEWER = "reviewer"  # set by the person who approved it
    RENEWAL = "renewal"  # a bound customer's renewal, by the campaign's renewal rule


class Role(StrEnum):
    ADMIN = "admin"
    PARTNER = "partner"


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(40), unique=True)
    postback_secret: Mapped[str] = mapped_column(String(80))
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    currency: Mapped[str] = mapped_column(String(3))
    # How the pages write this merchant's money ("en": €1,234.50; "de_DE": 1.234,50 €).
    locale: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    attribution_window_days: Mapped[int | None] = mapped_column(Integer)
    # Pending conversions older than this many days are approved by a cron job; None: never.
    auto_approve_days: Mapped[int | None] = mapped_column(Integer)
    # Sales over this many minor units (of the merchant's currency) are refused; None: only
    # the shared bound (backend.core.money.MAX_AMOUNT_MINOR).
    max_order_minor: Mapped[int | None] = mapped_column(BigInteger)
    # Unverified (pixel, snippet) conversions are auto-approved only up to this amount in the
    # merchant's currency; None: never (anyone can fire a pixel).
    auto_approve_unverified_max_minor: Mapped[int | None] = mapped_column(BigInteger)
    # After a rotation the old secret still signs postbacks until then, so senders can switch.
    previous_postback_secret: Mapped[str | None] = mapped_column(String(80))
    previous_secret_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    # A sale that names both a click and another partner's coupon goes to the coupon's partner
    # when this is set; by default the click wins.
    coupon_over_click: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Payouts (docs/payouts.md): commission is payable ``hold_days`` after the sale; a partner
    # is paid when the payable balance reaches ``payout_minimum_minor``; ``payout_schedule``
    # ("", "monthly", "biweekly") lets the worker draft runs; the payer of SEPA transfers.
    payout_minimum_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    hold_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    payout_schedule: Mapped[str] = mapped_column(String(16), default="", server_default="")
    legal_name: Mapped[str | None] = mapped_column(String(70))
    iban: Mapped[str | None] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    key: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PartnerStatus.ACTIVE)
    # How the partner is paid: "sepa" (IBAN, BIC, holder), "paypal" (e-mail), "other" (free
    # text); None: not given yet.
    payout_method: Mapped[str | None] = mapped_column(String(16))
    iban: Mapped[str | None] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11))
    account_holder: Mapped[str | None] = mapped_column(String(70))
    paypal_email: Mapped[str | None] = mapped_column(String(320))
    payout_note: Mapped[str | None] = mapped_column(String(500))
    # The partner's group (tier), whose rates per campaign replace the campaigns' own.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("partner_groups.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    destination_url: Mapped[str] = mapped_column(String(2048))
    commission_bps: Mapped[int] = mapped_column(Integer, default=0)
    commission_flat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    cookie_window_days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(
        String(16), default=RunStatus.ACTIVE, server_default=RunStatus.ACTIVE.value
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Renewals (a bound customer's later sales without a click): "none" (not paid), "months"
    # (for ``renewal_months`` after the customer's first sale) or "lifetime"; at
    # ``renewal_bps`` + ``renewal_flat_minor`` when set, else at the campaign's rule.
    renewal_mode: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    renewal_months: Mapped[int | None] = mapped_column(Integer)
    renewal_bps: Mapped[int | None] = mapped_column(Integer)
    renewal_flat_minor: Mapped[int | None] = mapped_column(BigInteger)


class Link(Base):
    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    destination_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.ACTIVE)
    # What the last health check found at the destination: "ok", "broken" or None (not checked).
    health: Mapped[str | None] = mapped_column(String(16))
    health_detail: Mapped[str] = mapped_column(String(255), default="", server_default="")
    last_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CommissionOverride(Base):
    """A partner's own commission rule for one campaign, replacing the campaign's."""

    __tablename__ = "commission_overrides"
    __table_args__ = (UniqueConstraint("partner_id", "campaign_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    commission_bps: Mapped[int] = mapped_column(Integer, default=0)
    commission_flat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Coupon(Base):
    """A partner's coupon code for a merchant: a sale that carries it (and no click, or the
    merchant lets coupons win) is credited to the partner, by the partner's rule for the
    coupon's campaign. Codes are unique per merchant regardless of case: ``code_key`` is the
    code upper-cased, ``code`` as it was written."""

    __tablename__ = "coupons"
    __table_args__ = (UniqueConstraint("merchant_id", "code_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    code_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Click(Base):
    __tablename__ = "clicks"
    # Monthly partitions on PostgreSQL: migration 0005 and backend/db/partitions.py.
    __table_args__ = ({"sqlite_with_rowid": False, "postgresql_partition_by": "RANGE (click_id)"},)

    click_id: Mapped[str] = mapped_column(IdString, primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    link_id: Mapped[int] = mapped_column(Integer)
    partner_id: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int] = mapped_column(Integer)
    merchant_id: Mapped[int] = mapped_column(Integer)
    visitor_hash: Mapped[str] = mapped_column(String(32))
    device_class: Mapped[str] = mapped_column(String(16))
    browser: Mapped[str] = mapped_column(String(32))
    os: Mapped[str] = mapped_column(String(32), server_default="")
    country: Mapped[str] = mapped_column(String(2), server_default="")
    referrer_host: Mapped[str] = mapped_column(String(255))
    referrer_url: Mapped[str] = mapped_column(String(2048))
    landing_url: Mapped[str] = mapped_column(String(2048))
    sub1: Mapped[str] = mapped_column(String(255))
    sub2: Mapped[str] = mapped_column(String(255))
    sub3: Mapped[str] = mapped_column(String(255))
    sub4: Mapped[str] = mapped_column(String(255))
    sub5: Mapped[str] = mapped_column(String(255))
    utm_source: Mapped[str] = mapped_column(String(255))
    utm_medium: Mapped[str] = mapped_column(String(255))
    utm_campaign: Mapped[str] = mapped_column(String(255))
    utm_term: Mapped[str] = mapped_column(String(255))
    utm_content: Mapped[str] = mapped_column(String(255))
    is_bot: Mapped[bool] = mapped_column(Boolean)
    is_unique: Mapped[bool] = mapped_column(Boolean)
    flags: Mapped[str] = mapped_column(String(255))


class Impression(Base):
    __tablename__ = "impressions"
    __table_args__ = ({"sqlite_with_rowid": False, "postgresql_partition_by": "RANGE (event_id)"},)

    event_id: Mapped[str] = mapped_column(IdString, primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    link_id: Mapped[int] = mapped_column(Integer)
    partner_id: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[int] = mapped_column(Integer)
    merchant_id: Mapped[int] = mapped_column(Integer)
    visitor_hash: Mapped[str] = mapped_column(String(32))
    page_url: Mapped[str] = mapped_column(String(2048))
    is_bot: Mapped[bool] = mapped_column(Boolean)
    is_unique: Mapped[bool] = mapped_column(Boolean)


class Conversion(Base):
    __tablename__ = "conversions"
    __table_args__ = (
        UniqueConstraint("merchant_id", "order_id"),
        Index(None, "partner_id", "at_ms"),
        Index(None, "at_ms"),
        Index(None, "status", "at_ms"),
        # The clicks that converted, counted from the index alone: migration 0019.
        Index(None, "status", "click_id", "at_ms", "flags"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(IdString, unique=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    merchant_id: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[str | None] = mapped_column(String(128))
    click_id: Mapped[str | None] = mapped_column(IdString)
    link_id: Mapped[int | None] = mapped_column(Integer)
    partner_id: Mapped[int | None] = mapped_column(Integer)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    commission_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    event_name: Mapped[str] = mapped_column(String(64))
    items_json: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[str] = mapped_column(String(255))
    # Confirmed by a signed postback or a person; pixel and JS conversions start unverified.
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The coupon code the sale carried (upper-cased), known or not.
    coupon: Mapped[str | None] = mapped_column(String(64))
    # Why it is credited to its partner: an ``Attribution``, "" when it is not.
    attribution: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # The conversion source (network) that reported it, and whether its commission is the
    # network's reported figure rather than the campaign's rule.
    source_id: Mapped[int | None] = mapped_column(Integer, index=True)
    commission_reported: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The customer reference's keyed hash (never the reference), and for a renewal the rule
    # that priced it ("" for a sale that is no renewal).
    customer_hash: Mapped[str | None] = mapped_column(String(64))
    renewal_rule: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Which rule set the commission: a ``CommissionRule``.
    commission_rule: Mapped[str] = mapped_column(String(16), default="", server_default="")


class ConversionChange(Base):
    """The audit trail: one row per status change or verification of a conversion.

    A verification without a status change has ``from_status == to_status``. A change that
    decided the commission (a person approving) keeps it before and after.
    """

    __tablename__ = "conversion_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversion_id: Mapped[int] = mapped_column(ForeignKey("conversions.id"), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    verified: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500))
    commission_from_minor: Mapped[int | None] = mapped_column(BigInteger)
    commission_to_minor: Mapped[int | None] = mapped_column(BigInteger)


class ConversionSource(Base):
    """An affiliate network (or any server) that reports a merchant's sales to ``/pb/{token}``
    in its own field names. The token is shown once; only its SHA-256 is kept."""

    __tablename__ = "conversion_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str] = mapped_column(String(32), default="", server_default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(16))  # the token's first characters
    # Which request field holds what: click_id, order_id, amount, commission, currency, status.
    fields: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The network's status values mapped to ours (pending, approved, rejected, reversed).
    statuses: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    allow_ips: Mapped[list[str]] = mapped_column(JSON, default=list)  # addresses or CIDRs
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # "network" (fields mapped from a postback), "stripe" or "shopify" (a store's webhooks,
    # verified with ``signing_secret``: the secret the store shows; ``shop_domain``: Shopify's).
    kind: Mapped[str] = mapped_column(String(16), default="network", server_default="network")
    signing_secret: Mapped[str | None] = mapped_column(String(200))
    shop_domain: Mapped[str | None] = mapped_column(String(255))


class StatsHourly(Base):
    """Rollup of events actually inserted, per hour, merchant, link and currency.

    Traffic counts (clicks, impressions) sit on the row of the merchant's currency at write
    time, so summing them across currencies never double-counts. ``link_id`` 0 holds
    conversions that no click could be credited with, per partner and campaign (0: none; a
    coupon's partner and campaign otherwise), which is why they are part of the key. Each
    stored click counts once: in ``clicks`` (billable), ``bot_clicks``, or ``flagged_clicks``
    (a person's duplicate or rate-limited click: shown, never billed).
    """

    __tablename__ = "stats_hourly"
    # SQLite keeps an overflowing integer sum as a float; these make it an error (migration 0009).
    __table_args__ = tuple(
        CheckConstraint(f"typeof({column}) = 'integer'", name=f"{column}_integer").ddl_if(
            dialect="sqlite"
        )
        for column in ("revenue_minor", "commission_minor")
    )

    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    partner_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    bot_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    flagged_clicks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Clicks of this hour that converted, under their first counted conversion's key
    # (``backend.domain.affiliate.converted``).
    converted_clicks: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RejectedEventRow(Base):
    __tablename__ = "rejected_events"
    __table_args__ = (Index(None, "reason", "at_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(IdString, unique=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(500))
    payload: Mapped[str] = mapped_column(Text)


def new_session_epoch() -> str:
    return secrets.token_urlsafe(16)


class User(Base):
    """A person who signs in. Ids are never given out twice (SQLite's AUTOINCREMENT; PostgreSQL's
    sequences never go back), so nothing that names a deleted user names the next one."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Every session carries it; a new one (accounts.end_sessions) ends them all.
    session_epoch: Mapped[str] = mapped_column(String(32), default=new_session_epoch)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DimensionHourly(Base):
    """Clicks and conversions per hour (``span_hours`` 1) or UTC day (24), click dimension
    value, partner and currency.

    Folded from raw rows by a cron job once an hour is closed (never by the worker's hot path),
    so breakdowns by referrer, device, sub-id... read a few rows per day instead of every
    click; hour rows serve the edges of a range in the viewer's zone. A conversion counts under
    the dimension values of its click. Traffic sits on rows with ``currency`` "" and money on
    rows of its currency, so summing never double-counts.
    """

    __tablename__ = "dimension_hourly"
    __table_args__ = (
        Index(None, "dimension", "span_hours", "hour_ms"),
        Index(None, "dimension", "value", "span_hours", "hour_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hour_ms: Mapped[int] = mapped_column(BigInteger)
    span_hours: Mapped[int] = mapped_column(Integer)
    dimension: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(2048))
    partner_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    clicks: Mapped[int] = mapped_column(BigInteger)
    unique_clicks: Mapped[int] = mapped_column(BigInteger)
    bot_clicks: Mapped[int] = mapped_column(BigInteger)
    flagged_clicks: Mapped[int] = mapped_column(BigInteger)
    conversions: Mapped[int] = mapped_column(BigInteger)
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    commission_minor: Mapped[int] = mapped_column(BigInteger)


class RollupWatermark(Base):
    """How far a rollup has been folded: every hour before ``hour_ms`` is in it."""

    __tablename__ = "rollup_watermarks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour_ms: Mapped[int] = mapped_column(BigInteger)


class RollupRepair(Base):
    """An hour whose conversions changed after it may have been folded into
    ``dimension_hourly`` (a signed postback replaced a pixel's figures): the fold job folds its
    conversions again."""

    __tablename__ = "rollup_repairs"

    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class PartnerPostback(Base):
    """A partner's tracker to call when one of its conversions is created or changes status:
    a URL template (``backend.domain.affiliate.hooks.POSTBACK_MACROS``), GET or POST, for all the
    partner's campaigns or one."""

    __tablename__ = "partner_postbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    url: Mapped[str] = mapped_column(String(2048))
    method: Mapped[str] = mapped_column(String(8))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """A merchant's, an admin's or a partner's receiver of signed JSON events (Standard
    Webhooks). The secret signs, so it is kept as it is (not hashed); ``merchant_id`` None:
    every merchant's; ``partner_id`` set: that partner's, which hears its own conversions
    only."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxMessage(Base):
    """Something to send after a change, written in the change's own transaction and delivered
    by the worker: to a partner's postback or to a webhook endpoint. ``message_id`` is the
    idempotency key (the ``webhook-id``), the same on every attempt; ``payload`` is the webhook's
    JSON body, or the postback's macro values as JSON."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(None, "status", "next_at_ms"),
        Index(None, "postback_id", "id"),
        Index(None, "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    postback_id: Mapped[int | None] = mapped_column(ForeignKey("partner_postbacks.id"))
    webhook_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event: Mapped[str] = mapped_column(String(40))
    conversion_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_status_code: Mapped[int | None] = mapped_column(Integer)


class DeliveryAttempt(Base):
    """One try at delivering an outbox message: what the other side answered, or why not."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(500))


class CustomerBinding(Base):
    """A merchant's customer (by the keyed hash of their reference) bound to the partner and
    campaign of their first attributed conversion: the first one written wins, for good."""

    __tablename__ = "customer_bindings"
    __table_args__ = (UniqueConstraint("merchant_id", "customer_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(Integer)
    customer_hash: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[int] = mapped_column(Integer, index=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    conversion_id: Mapped[int] = mapped_column(Integer)  # the first attributed conversion
    at_ms: Mapped[int] = mapped_column(BigInteger)  # that conversion's time


class StoreEvent(Base):
    """A store's webhook event (Stripe, Shopify) that created or changed a conversion: once per
    source and event id, which is what makes a retried delivery change nothing."""

    __tablename__ = "store_events"
    __table_args__ = (UniqueConstraint("source_id", "event_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(Integer)
    event_key: Mapped[str] = mapped_column(String(128))  # the store's event id
    event_type: Mapped[str] = mapped_column(String(64))  # e.g. charge.refunded
    conversion_id: Mapped[int] = mapped_column(Integer, index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(255))


class MailMessage(Base):
    """An e-mail to send after a change, written in the change's own transaction and sent by
    the worker's mail courier (SMTP, or a file under ``var/mail/`` when no SMTP server is
    configured). Rendered when written, so what was sent is what the row says."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index(None, "status", "next_at_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), unique=True)  # the Message-ID header
    to_address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Where it went: "smtp", or the file's name under var/mail/; or why the last try failed.
    detail: Mapped[str] = mapped_column(String(500), default="", server_default="")


class Programme(Base):
    """A merchant's programme as the public sees it: whether ``/join/{slug}`` takes
    applications (off by default), whether confirmed applications are approved at once, and
    the terms an applicant accepts."""

    __tablename__ = "programmes"

    merchant_id: Mapped[int] = mapped_column(
        ForeignKey("merchants.id"), primary_key=True, autoincrement=False
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    open: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    terms: Mapped[str] = mapped_column(Text, default="", server_default="")


class ApplicationStatus(StrEnum):
    UNCONFIRMED = "unconfirmed"  # the applicant has not followed the e-mail's link yet
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class PartnerApplication(Base):
    """Someone's application to a merchant's programme. The password is kept as its argon2
    hash until approval makes the partner and its user."""

    __tablename__ = "partner_applications"
    __table_args__ = (Index(None, "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    website: Mapped[str] = mapped_column(String(2048))
    promotion: Mapped[str] = mapped_column(String(2000))
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=ApplicationStatus.UNCONFIRMED)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    decided_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ProgrammeMember(Base):
    """A partner approved for a merchant's programme: it may make links to its campaigns."""

    __tablename__ = "programme_members"

    partner_id: Mapped[int] = mapped_column(
        ForeignKey("partners.id"), primary_key=True, autoincrement=False
    )
    merchant_id: Mapped[int] = mapped_column(
        ForeignKey("merchants.id"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TokenPurpose(StrEnum):
    RESET = "reset"  # a forgotten password
    INVITE = "invite"  # an invited partner sets a first password
    CONFIRM = "confirm"  # an applicant confirms the e-mail address


class AccountToken(Base):
    """A link sent by e-mail: single-use (``used_ms``) and short-lived (``expires_ms``). Only
    the token's SHA-256 is kept, so a copy of the database opens no account."""

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("partner_applications.id"))
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class NotificationSetting(Base):
    """Which mails a partner user asked for; none without a row. (Admins get new applications
    and failed webhook deliveries whatever this says.)"""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    new_conversion: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    payout_sent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CouponRequest(Base):
    """A partner's request for a coupon code on a campaign it is approved for; an admin's
    approval makes the ``Coupon``."""

    __tablename__ = "coupon_requests"
    __table_args__ = (Index(None, "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ApplicationStatus.PENDING)
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id", ondelete="SET NULL"))
    decided_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LedgerKind(StrEnum):
    EARNED = "earned"  # a conversion's earned commission went up (approved, raised)
    REVERSED = "reversed"  # it went down (reversed, lowered, moved to another partner)
    ADJUSTMENT = "adjustment"  # a person's correction, with a reason
    PAYOUT = "payout"  # a confirmed payout line took the amount out of the balance
    RETURNED = "returned"  # a failed or voided payout gave it back


def _integer_money() -> CheckConstraint:
    """SQLite keeps an overflowing integer sum as a float; this makes it an error."""
    check = CheckConstraint("typeof(amount_minor) = 'integer'", name="amount_minor_integer")
    return check.ddl_if(dialect="sqlite")


class LedgerEntry(Base):
    """One movement of a partner's money in one currency: append-only, never updated or
    deleted; a balance is a sum of entries (docs/payouts.md)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        _integer_money(),
        Index(None, "partner_id", "currency", "at_ms"),
        Index(None, "conversion_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    conversion_id: Mapped[int | None] = mapped_column(Integer)
    payout_line_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200), default="", server_default="")
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    at_ms: Mapped[int] = mapped_column(BigInteger)


class PayoutRunStatus(StrEnum):
    DRAFT = "draft"
    CONFIRMED = "confirmed"


class PayoutLineStatus(StrEnum):
    DRAFT = "draft"  # proposed; nothing is locked yet
    ROLLED_OVER = "rolled_over"  # below the minimum when the run was confirmed
    CONFIRMED = "confirmed"  # its entries are locked and taken out of the balance
    PAID = "paid"
    FAILED = "failed"  # the amount went back to the balance
    VOIDED = "voided"  # withdrawn by a person, with a reason; the amount went back


class PayoutRun(Base):
    """A merchant's payout run: a draft until confirmed. ``period`` names the schedule's
    period a scheduled run was drafted for (one per merchant and period); None: by hand."""

    __tablename__ = "payout_runs"
    __table_args__ = (UniqueConstraint("merchant_id", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=PayoutRunStatus.DRAFT)
    period: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    confirmed_ms: Mapped[int | None] = mapped_column(BigInteger)


class PayoutLine(Base):
    """What one partner is paid in one currency by a run."""

    __tablename__ = "payout_lines"
    __table_args__ = (
        _integer_money(),
        UniqueConstraint("run_id", "partner_id", "currency"),
        Index(None, "partner_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=PayoutLineStatus.DRAFT)
    reference: Mapped[str | None] = mapped_column(String(140))
    paid_on: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    changed_ms: Mapped[int] = mapped_column(BigInteger)


class PayoutItem(Base):
    """A ledger entry locked by the payout line that pays it: an entry is locked once (its
    id is the key), so nothing is paid twice, whoever confirms what at the same time."""

    __tablename__ = "payout_items"

    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("payout_lines.id"), index=True)


class PartnerGroup(Base):
    """A group (tier) of partners; its rates per campaign replace the campaigns' rules for its
    members, and a partner's own override still wins over them."""

    __tablename__ = "partner_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class GroupRate(Base):
    """A group's commission rule for one campaign."""

    __tablename__ = "group_rates"
    __table_args__ = (UniqueConstraint("group_id", "campaign_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("partner_groups.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    commission_bps: Mapped[int] = mapped_column(Integer, default=0)
    commission_flat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
