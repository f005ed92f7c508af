"""Auto-approval: pending conversions older than their merchant's ``auto_approve_days`` become
approved, run by an arq cron job.

Conversions held for ``review`` are left for a person; approval by time does not verify a sale
(only a signed postback or a person does). Idempotent (approved conversions are no longer
pending) and batched, one transaction per batch, so the writer is never held for long.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ColumnElement, SQLColumnExpression, cast, or_, select

from backend import ids
from backend.affiliate.status import AUTO_APPROVAL, change_status
from backend.db.engine import Database
from backend.db.models import Conversion, ConversionStatus, Merchant
from backend.quality.flags import Flag

DAY_MS = 86_400_000
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
    now = ids.now_ms() if now_ms is None else now_ms
    due = (
        select(Conversion, Merchant.auto_approve_days)
        .join(Merchant, Merchant.id == Conversion.merchant_id)
        .where(
            Merchant.auto_approve_days.is_not(None),
            Conversion.status == ConversionStatus.PENDING,
            Conversion.at_ms <= now - cast(Merchant.auto_approve_days, BigInteger) * DAY_MS,
            ~has_flag(Conversion.flags, Flag.REVIEW),
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
                    reason=f"pending for {days} days without review",
                    confirms=False,
                )
            await session.commit()
        approved += len(rows)
        if len(rows) < batch:
            return approved
