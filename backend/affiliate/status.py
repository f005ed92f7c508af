"""Conversion status transitions, the one place every status change passes through.

The management API, the admin pages, postbacks and the auto-approval job all call
``change_status``, so the allowed transitions and the rollup bookkeeping are written once. A
change that takes a conversion out of the counted set (rejected, reversed) takes it out of the
hourly rollup in the same transaction, so totals never disagree with the rows. The caller
commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Conversion, ConversionStatus, StatsHourly
from backend.worker.enrich import HOUR_MS

ALLOWED = frozenset(
    {
        (ConversionStatus.PENDING, ConversionStatus.APPROVED),
        (ConversionStatus.PENDING, ConversionStatus.REJECTED),
        (ConversionStatus.APPROVED, ConversionStatus.REVERSED),
    }
)
COUNTED = frozenset({ConversionStatus.PENDING, ConversionStatus.APPROVED})


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


async def change_status(
    session: AsyncSession,
    conversion: Conversion,
    wanted: ConversionStatus,
    *,
    actor: str,
    reason: str = "",
) -> None:
    """Move ``conversion`` to ``wanted`` or raise ``TransitionRefused``; the caller commits.

    ``actor`` says who asked (``user:<email>``, ``apikey:<id>``, ``postback``, ``auto-approval``)
    and ``reason`` why; both are kept for the audit trail.
    """
    current = ConversionStatus(conversion.status)
    if (current, wanted) not in ALLOWED:
        raise TransitionRefused(current, wanted)
    conversion.status = wanted
    if current in COUNTED and wanted not in COUNTED:
        await _uncount(session, conversion)


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
