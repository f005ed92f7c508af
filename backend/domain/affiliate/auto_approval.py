"""Auto-approval: pending conversions older than their merchant's ``auto_approve_days`` become
approved, run by an arq cron job.

Only what cannot be forged by default: verified conversions (a signed postback confirmed the
sale). Anyone can fire a pixel with any amount, so unverified pixel and snippet conversions are
approved only when their merchant opts in, and then only up to
``auto_approve_unverified_max_minor`` in the merchant's currency. Conversions held for
``review`` are left for a person; approval by time does not verify a sale (only a signed
postback or a person does). Idempotent (approved conversions are no longer pending) and
batched, one transaction per batch, so the writer is never held for long.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    SQLColumnExpression,
    and_,
    cast,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core import clock
from backend.core.clock import DAY_MS
from backend.core.money import commission_minor, format_minor
from backend.domain.affiliate.status import AUTO_APPROVAL, change_status
from backend.domain.quality.flags import Flag
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Campaign,
    CommissionOverride,
    Conversion,
    ConversionStatus,
    Merchant,
)

BATCH = 500


def has_flag(flags: SQLColumnExpression[str], flag: Flag) -> ColumnElement[bool]:
    """``flag`` is one of the comma-separated ``flags`` (not merely a substring of one)."""
    return or_(
        flags == flag,
        flags.like(f"{flag},%"),
        flags.like(f"%,{flag}"),
        flags.like(f"%,{flag},%"),
    )


async def approve_due(database: Database, now_ms: int | None = None, batch: int = BATCH) -> int:
    """Approve every conversion that is due; return how many were approved."""
    now = clock.now_ms() if now_ms is None else now_ms
    due = (
        select(Conversion, Merchant.auto_approve_days)
        .join(Merchant, Merchant.id == Conversion.merchant_id)
        .where(
            Merchant.auto_approve_days.is_not(None),
            Conversion.status == ConversionStatus.PENDING,
            Conversion.at_ms <= now - cast(Merchant.auto_approve_days, BigInteger) * DAY_MS,
            ~has_flag(Conversion.flags, Flag.REVIEW),
            or_(
                Conversion.verified.is_(True),
                and_(
                    Merchant.auto_approve_unverified_max_minor.is_not(None),
                    Conversion.amount_minor <= Merchant.auto_approve_unverified_max_minor,
                    Conversion.currency == Merchant.currency,
                ),
            ),
        )
        .order_by(Conversion.id)
        .limit(batch)
        .with_for_update(of=Conversion)
    )
    approved = 0
    while True:
        async with database.session(write=True) as session:
            rows = (await session.execute(due)).all()
            for conversion, days in rows:
                await change_status(
                    session,
                    conversion,
                    ConversionStatus.APPROVED,
                    actor=AUTO_APPROVAL,
                    reason=f"pending for {days} days without review"
                    + ("" if conversion.verified else ", unverified within the merchant's limit"),
                    confirms=False,
                )
            await session.commit()
        approved += len(rows)
        if len(rows) < batch:
            return approved


def describe(merchant: Merchant) -> str:
    """What the merchant's auto-approval does, and what it puts at risk, in plain words."""
    days, limit = merchant.auto_approve_days, merchant.auto_approve_unverified_max_minor
    if days is None:
        return (
            "Auto-approval is off: conversions are never approved automatically; a person or"
            " a signed postback decides each one."
        )
    verified = (
        f"Verified conversions (confirmed by a signed postback) still pending after {days} days"
        " and not held for review are approved automatically."
    )
    if limit is None:
        return (
            f"{verified} Unverified pixel and snippet conversions are never approved"
            " automatically: anyone can fire the pixel."
        )
    amount = f"{format_minor(limit, merchant.currency)} {merchant.currency}"
    return (
        f"{verified} So are unverified pixel and snippet conversions of up to {amount}:"
        f" anyone can fire the pixel, so a forged sale of up to {amount} becomes approved"
        f" commission after {days} days without anyone looking."
    )


async def commission_at_risk(session: AsyncSession, merchant: Merchant) -> int | None:
    """The most a forged pixel conversion could earn a partner once auto-approved: the most
    generous rule (a campaign's, or a partner's override) on a sale of the merchant's limit.
    None when unverified conversions are not auto-approved."""
    limit = merchant.auto_approve_unverified_max_minor
    if merchant.auto_approve_days is None or limit is None:
        return None
    campaigns = select(Campaign.commission_bps, Campaign.commission_flat_minor).where(
        Campaign.merchant_id == merchant.id
    )
    overrides = (
        select(CommissionOverride.commission_bps, CommissionOverride.commission_flat_minor)
        .join(Campaign, Campaign.id == CommissionOverride.campaign_id)
        .where(Campaign.merchant_id == merchant.id)
    )
    rules = (await session.execute(campaigns.union_all(overrides))).all()
    return max((commission_minor(limit, bps, flat) for bps, flat in rules), default=0)
