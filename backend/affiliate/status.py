"""Conversion status transitions and verification, the one place every change passes through.

The management API, the admin pages, postbacks and the auto-approval job all call
``change_status`` (and postbacks ``verify``), so the allowed transitions, the audit trail and
the rollup bookkeeping are written once. A change that takes a conversion out of the counted set
(rejected, reversed) takes it out of the hourly rollup in the same transaction, so totals never
disagree with the rows. Every change leaves a ``conversion_changes`` row saying who, when and
why. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Conversion, ConversionChange, ConversionStatus, StatsHourly
from backend.ids import now_ms
from backend.worker.enrich import HOUR_MS

ALLOWED = frozenset(
    {
        (ConversionStatus.PENDING, ConversionStatus.APPROVED),
        (ConversionStatus.PENDING, ConversionStatus.REJECTED),
        (ConversionStatus.APPROVED, ConversionStatus.REVERSED),
    }
)
COUNTED = frozenset({ConversionStatus.PENDING, ConversionStatus.APPROVED})
AUTO_APPROVAL = "auto-approval"
POSTBACK = "postback"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class TransitionRefused(Exception):
    """The conversion's current status does not allow the wanted one."""

    current: ConversionStatus
    wanted: ConversionStatus

    def __str__(self) -> str:
        return f"a {self.current} conversion cannot become {self.wanted}"

    @property
    def allowed(self) -> list[str]:
        return sorted(wanted for current, wanted in ALLOWED if current == self.current)


def change_row(
    conversion_id: int, from_status: str, to_status: str, verified: bool, actor: str, reason: str
) -> dict[str, object]:
    """One audit trail row (also written by the worker when a postback verifies an order)."""
    return {
        "conversion_id": conversion_id,
        "at_ms": now_ms(),
        "from_status": from_status,
        "to_status": to_status,
        "verified": verified,
        "actor": actor[:200],
        "reason": reason[:MAX_REASON],
    }


async def change_status(
    session: AsyncSession,
    conversion: Conversion,
    wanted: ConversionStatus,
    *,
    actor: str,
    reason: str = "",
    confirms: bool | None = None,
) -> None:
    """Move ``conversion`` to ``wanted`` or raise ``TransitionRefused``; the caller commits.

    ``actor`` says who asked (``user:<email>``, ``apikey:<id>``, ``postback``, ``auto-approval``)
    and ``reason`` why; both are kept in the audit trail. ``confirms`` says whether the change
    also verifies the sale: by default an approval does (someone with authority looked at it),
    a signed postback passes True whatever the status, auto-approval False (time is no proof).
    """
    current = ConversionStatus(conversion.status)
    if (current, wanted) not in ALLOWED:
        raise TransitionRefused(current, wanted)
    if confirms is None:
        confirms = wanted == ConversionStatus.APPROVED
    conversion.status = wanted
    conversion.verified = conversion.verified or confirms
    await _record(session, conversion, current, actor, reason)
    if current in COUNTED and wanted not in COUNTED:
        await _uncount(session, conversion)


async def verify(session: AsyncSession, conversion: Conversion, *, actor: str, reason: str) -> bool:
    """Mark ``conversion`` verified, keeping its status; False when it already was."""
    if conversion.verified:
        return False
    conversion.verified = True
    await _record(session, conversion, ConversionStatus(conversion.status), actor, reason)
    return True


async def _record(
    session: AsyncSession,
    conversion: Conversion,
    current: ConversionStatus,
    actor: str,
    reason: str,
) -> None:
    row = change_row(conversion.id, current, conversion.status, conversion.verified, actor, reason)
    await session.execute(insert(ConversionChange), [row])


async def _uncount(session: AsyncSession, conversion: Conversion) -> None:
    stats = StatsHourly.__table__.c
    await session.execute(
        update(StatsHourly)
        .where(
            stats.hour_ms == conversion.at_ms // HOUR_MS * HOUR_MS,
            stats.merchant_id == conversion.merchant_id,
            stats.link_id == (conversion.link_id or 0),
            stats.currency == conversion.currency,
        )
        .values(
            conversions=stats.conversions - 1,
            revenue_minor=stats.revenue_minor - conversion.amount_minor,
            commission_minor=stats.commission_minor - conversion.commission_minor,
        )
    )
