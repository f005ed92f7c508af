"""A partner's statement for one month and currency, read from the ledger: the balance at
the month's start, what was earned, reversed, adjusted and paid in it, the balance at its end,
and every entry with its conversion (order, date, amount, commission, status).

Every figure is a sum of ledger amounts with their sign (a reversal and a payout are negative),
so ``closing = opening + earned + reversed + adjusted + paid`` holds by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain.affiliate.ledger import Balance, balances
from backend.domain.affiliate.payouts import next_payout_for
from backend.storage.db.models import Conversion, LedgerEntry, LedgerKind

MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
PAID_KINDS = (LedgerKind.PAYOUT.value, LedgerKind.RETURNED.value)
MAX_MONTHS = 120  # the statement list's length


@dataclass(frozen=True, slots=True)
class StatementLine:
    at: datetime
    kind: str
    amount_minor: int
    reason: str
    conversion_id: int | None
    order_id: str | None
    sale_at: datetime | None
    sale_minor: int | None
    commission_minor: int | None
    status: str | None


@dataclass(frozen=True, slots=True)
class Statement:
    partner_id: int
    month: str
    currency: str
    opening_minor: int
    earned_minor: int
    reversed_minor: int
    adjusted_minor: int
    paid_minor: int
    closing_minor: int
    lines: list[StatementLine]


def month_span(month: str) -> tuple[int, int]:
    """The first and the next month's first millisecond of ``month`` ("YYYY-MM"), UTC."""
    found = MONTH.fullmatch(month)
    if found is None:
        raise FieldError("month", "a month as YYYY-MM, such as 2026-12")
    year, number = int(found[1]), int(found[2])
    if not 1970 <= year <= 9998:
        raise FieldError("month", "a year from 1970 to 9998")
    start = datetime(year, number, 1, tzinfo=UTC)
    after = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(after.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def currencies_of(session: AsyncSession, partner_id: int) -> list[str]:
    """The currencies ``partner_id``'s ledger holds."""
    found = await session.scalars(
        select(LedgerEntry.currency)
        .where(LedgerEntry.partner_id == partner_id)
        .distinct()
        .order_by(LedgerEntry.currency)
    )
    return list(found.all())


async def statement(session: AsyncSession, partner_id: int, month: str, currency: str) -> Statement:
    start, after = month_span(month)
    mine = (LedgerEntry.partner_id == partner_id, LedgerEntry.currency == currency)
    opening = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
            *mine, LedgerEntry.at_ms < start
        )
    )
    rows = (
        await session.execute(
            select(
                LedgerEntry.at_ms,
                LedgerEntry.kind,
                LedgerEntry.amount_minor,
                LedgerEntry.reason,
                LedgerEntry.conversion_id,
                Conversion.order_id,
                Conversion.at_ms,
                Conversion.amount_minor,
                Conversion.commission_minor,
                Conversion.status,
            )
            .outerjoin(Conversion, Conversion.id == LedgerEntry.conversion_id)
            .where(*mine, LedgerEntry.at_ms >= start, LedgerEntry.at_ms < after)
            .order_by(LedgerEntry.at_ms, LedgerEntry.id)
        )
    ).all()
    lines = [
        StatementLine(
            _at(at_ms),
            kind,
            amount,
            reason,
            conversion_id,
            order_id,
            None if sale_ms is None else _at(sale_ms),
            sale_minor,
            commission,
            status,
        )
        for (
            at_ms,
            kind,
            amount,
            reason,
            conversion_id,
            order_id,
            sale_ms,
            sale_minor,
            commission,
            status,
        ) in rows
    ]

    def total(*kinds: str) -> int:
        return sum(line.amount_minor for line in lines if line.kind in kinds)

    begin = int(opening or 0)
    return Statement(
        partner_id=partner_id,
        month=month,
        currency=currency,
        opening_minor=begin,
        earned_minor=total(LedgerKind.EARNED),
        reversed_minor=total(LedgerKind.REVERSED),
        adjusted_minor=total(LedgerKind.ADJUSTMENT),
        paid_minor=total(*PAID_KINDS),
        closing_minor=begin + sum(line.amount_minor for line in lines),
        lines=lines,
    )


STATEMENT_HEADER = (
    "date",
    "kind",
    "amount_minor",
    "currency",
    "conversion_id",
    "order_id",
    "sale_date",
    "sale_minor",
    "commission_minor",
    "status",
    "reason",
)


def statement_rows(found: Statement) -> list[list[str | int | None]]:
    """The statement as CSV rows: its figures, then one row per entry."""
    figures: list[list[str | int | None]] = [
        ["partner", found.partner_id],
        ["month", found.month],
        ["currency", found.currency],
        ["opening_minor", found.opening_minor],
        ["earned_minor", found.earned_minor],
        ["reversed_minor", found.reversed_minor],
        ["adjusted_minor", found.adjusted_minor],
        ["paid_minor", found.paid_minor],
        ["closing_minor", found.closing_minor],
        [],
        list(STATEMENT_HEADER),
    ]
    return figures + [
        [
            line.at.isoformat(),
            line.kind,
            line.amount_minor,
            found.currency,
            line.conversion_id,
            line.order_id,
            None if line.sale_at is None else line.sale_at.isoformat(),
            line.sale_minor,
            line.commission_minor,
            line.status,
            line.reason,
        ]
        for line in found.lines
    ]


@dataclass(frozen=True, slots=True)
class MoneySummary:
    """What a partner's overview shows: the balances, the next payout day and the last month
    with a statement."""

    balances: list[Balance]
    next_payout: date | None
    last_month: str | None


async def money_summary(session: AsyncSession, partner_id: int, now: int) -> MoneySummary:
    last = await session.scalar(
        select(func.max(LedgerEntry.at_ms)).where(LedgerEntry.partner_id == partner_id)
    )
    return MoneySummary(
        balances=await balances(session, partner_id, now),
        next_payout=await next_payout_for(session, partner_id, now),
        last_month=None if last is None else _at(last).strftime("%Y-%m"),
    )


async def statement_months(session: AsyncSession, partner_id: int) -> list[str]:
    """The months of ``partner_id``'s ledger, newest first."""
    first = await session.scalar(
        select(func.min(LedgerEntry.at_ms)).where(LedgerEntry.partner_id == partner_id)
    )
    if first is None:
        return []
    months: list[str] = []
    day = _at(first).date().replace(day=1)
    today = datetime.now(UTC).date()
    while day <= today and len(months) < MAX_MONTHS:
        months.append(day.strftime("%Y-%m"))
        day = (day + timedelta(days=32)).replace(day=1)
    return months[::-1]
