"""Payout runs: drafted from the ledger, confirmed once, their lines paid, failed or voided.

A draft proposes, per partner and currency, the payable balance (docs/payouts.md) at or above
the merchant's minimum; the rest rolls over. Confirming takes the merchant's row lock (SQLite:
the writer's ``BEGIN IMMEDIATE``), moves the run from draft to confirmed by a conditional
update (a second confirmation finds nothing to do), recomputes each line from the entries
payable at that moment and locks them in ``payout_items``, whose key is the entry: an entry is
paid once by construction. A line's payout is a ledger entry of its own; a failed or voided
line gives the amount back with another entry, never by deleting one. The caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import DAY_MS, now_ms
from backend.core.money import format_minor
from backend.core.validation import FieldError
from backend.domain.affiliate.ledger import entry_row, is_due, unlocked_entries, with_dates
from backend.domain.notifications import notify_payout_sent
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    LedgerEntry,
    LedgerKind,
    Merchant,
    PayoutItem,
    PayoutLine,
    PayoutLineStatus,
    PayoutRun,
    PayoutRunStatus,
)

SCHEDULES = ("", "monthly", "biweekly")
FORTNIGHT_DAYS = 14


class PayoutRefused(ValueError):
    """A payout change the line's or the run's state does not allow."""


@dataclass(frozen=True, slots=True)
class RunView:
    run: PayoutRun
    lines: Sequence[PayoutLine]


def minimum(merchant: Merchant) -> int:
    """The least a line pays: the merchant's minimum, and never nothing or less."""
    return max(merchant.payout_minimum_minor, 1)


async def payable_by_partner(
    session: AsyncSession, merchant_id: int, currency: str | None, now: int
) -> list[tuple[int, str, int]]:
    """(partner, currency, payable minor) of the merchant's unlocked, due entries."""
    statement = with_dates(
        select(LedgerEntry.partner_id, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
    ).where(LedgerEntry.merchant_id == merchant_id, unlocked_entries(), is_due(now))
    if currency is not None:
        statement = statement.where(LedgerEntry.currency == currency)
    rows = await session.execute(
        statement.group_by(LedgerEntry.partner_id, LedgerEntry.currency).order_by(
            LedgerEntry.partner_id, LedgerEntry.currency
        )
    )
    return [(partner, code, int(total)) for partner, code, total in rows]


async def create_run(
    session: AsyncSession,
    merchant: Merchant,
    *,
    currency: str | None,
    actor: str,
    period: str | None = None,
    now: int | None = None,
) -> RunView:
    """A draft run of ``merchant``'s payable balances (of ``currency``, or every one)."""
    moment = now_ms() if now is None else now
    run = PayoutRun(
        merchant_id=merchant.id,
        currency=currency,
        status=PayoutRunStatus.DRAFT,
        period=period,
        actor=actor[:200],
        created_ms=moment,
    )
    session.add(run)
    await session.flush()
    floor = minimum(merchant)
    lines = [
        PayoutLine(
            run_id=run.id,
            partner_id=partner_id,
            currency=code,
            amount_minor=total,
            status=PayoutLineStatus.DRAFT,
            changed_ms=moment,
        )
        for partner_id, code, total in await payable_by_partner(
            session, merchant.id, currency, moment
        )
        if total >= floor
    ]
    session.add_all(lines)
    await session.flush()
    return RunView(run, lines)


async def run_lines(session: AsyncSession, run_id: int) -> list[PayoutLine]:
    return list(
        (
            await session.scalars(
                select(PayoutLine).where(PayoutLine.run_id == run_id).order_by(PayoutLine.id)
            )
        ).all()
    )


async def confirm_run(
    session: AsyncSession, run: PayoutRun, *, actor: str, now: int | None = None
) -> bool:
    """Confirm ``run``: lock each line's payable entries and take them out of the balance.
    False when it was confirmed already (by someone else at the same time, or a retry)."""
    moment = now_ms() if now is None else now
    merchant = (
        await session.execute(
            select(Merchant).where(Merchant.id == run.merchant_id).with_for_update()
        )
    ).scalar_one()
    moved = await session.execute(
        update(PayoutRun)
        .where(PayoutRun.id == run.id, PayoutRun.status == PayoutRunStatus.DRAFT)
        .values(status=PayoutRunStatus.CONFIRMED, confirmed_ms=moment)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(run)
        return False
    floor = minimum(merchant)
    for line in await run_lines(session, run.id):
        if line.status != PayoutLineStatus.DRAFT:
            continue
        entries = (
            await session.execute(
                with_dates(select(LedgerEntry.id, LedgerEntry.amount_minor)).where(
                    LedgerEntry.merchant_id == merchant.id,
                    LedgerEntry.partner_id == line.partner_id,
                    LedgerEntry.currency == line.currency,
                    unlocked_entries(),
                    is_due(moment),
                )
            )
        ).all()
        total = sum(amount for _, amount in entries)
        line.amount_minor = total
        line.changed_ms = moment
        if total < floor:
            line.status = PayoutLineStatus.ROLLED_OVER
            line.reason = "below the minimum when the run was confirmed"
            continue
        line.status = PayoutLineStatus.CONFIRMED
        payout = LedgerEntry(
            **entry_row(
                line.partner_id,
                merchant.id,
                line.currency,
                -total,
                LedgerKind.PAYOUT,
                payout_line_id=line.id,
                actor=actor,
                reason=f"payout run #{run.id}",
            )
        )
        session.add(payout)
        await session.flush()
        locked = [entry_id for entry_id, _ in entries] + [payout.id]
        await session.execute(
            insert(PayoutItem), [{"entry_id": entry_id, "line_id": line.id} for entry_id in locked]
        )
    await session.flush()
    await session.refresh(run)
    return True


async def mark_paid(
    session: AsyncSession, line: PayoutLine, *, reference: str, paid_on: date
) -> bool:
    """Record ``line`` as paid with the payment's reference and date, and mail the partner's
    users who asked for it (in the same transaction: the mail outbox); False when it already
    was, with that reference (a retry). Paid with another reference, or not confirmed:
    ``PayoutRefused``."""
    moved = await session.execute(
        update(PayoutLine)
        .where(PayoutLine.id == line.id, PayoutLine.status == PayoutLineStatus.CONFIRMED)
        .values(
            status=PayoutLineStatus.PAID,
            reference=reference,
            paid_on=paid_on.isoformat(),
            changed_ms=now_ms(),
        )
        .execution_options(synchronize_session=False)
    )
    await session.refresh(line)
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        amount = f"{format_minor(line.amount_minor, line.currency)} {line.currency}"
        await notify_payout_sent(
            session, line.partner_id, {"amount": amount, "reference": reference}
        )
        return True
    if line.status == PayoutLineStatus.PAID and line.reference == reference:
        return False
    if line.status == PayoutLineStatus.PAID:
        raise PayoutRefused(f"the line was paid already, with the reference {line.reference!r}")
    raise PayoutRefused(f"a {line.status} line cannot be marked paid; confirm its run first")


async def give_back(
    session: AsyncSession,
    line: PayoutLine,
    wanted: PayoutLineStatus,
    *,
    actor: str,
    reason: str,
) -> bool:
    """Mark ``line`` failed (a confirmed or paid line whose payment did not arrive or came
    back) or voided (a draft or confirmed line withdrawn), with ``reason``; a confirmed or
    paid line's amount goes back to the balance. False when it already was."""
    sources = (
        (PayoutLineStatus.CONFIRMED, PayoutLineStatus.PAID)
        if wanted == PayoutLineStatus.FAILED
        else (PayoutLineStatus.DRAFT, PayoutLineStatus.CONFIRMED)
    )
    before = line.status
    moved = await session.execute(
        update(PayoutLine)
        .where(PayoutLine.id == line.id, PayoutLine.status.in_(sources))
        .values(status=wanted, reason=reason[:500], changed_ms=now_ms())
        .execution_options(synchronize_session=False)
    )
    await session.refresh(line)
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        if line.status == wanted:
            return False
        raise PayoutRefused(f"a {line.status} line cannot be marked {wanted}")
    if before != PayoutLineStatus.DRAFT:
        run = await session.get(PayoutRun, line.run_id)
        assert run is not None
        returned = entry_row(
            line.partner_id,
            run.merchant_id,
            line.currency,
            line.amount_minor,
            LedgerKind.RETURNED,
            payout_line_id=line.id,
            actor=actor,
            reason=reason,
        )
        await session.execute(insert(LedgerEntry), [returned])
    return True


def period_of(schedule: str, now: int) -> str | None:
    """The schedule's period ``now`` falls in ("2026-12", or "f" and the fortnight's number
    since the epoch), for one scheduled run per merchant and period; None: no schedule."""
    if schedule == "monthly":
        return datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m")
    if schedule == "biweekly":
        return f"f{now // (FORTNIGHT_DAYS * DAY_MS)}"
    return None


def next_payout(schedule: str, now: int) -> date | None:
    """The day the schedule drafts its next run: the first of next month, or the next
    fortnight's first day; None without a schedule."""
    if schedule == "monthly":
        today = datetime.fromtimestamp(now / 1000, UTC).date()
        return (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    if schedule == "biweekly":
        fortnight = now // (FORTNIGHT_DAYS * DAY_MS) + 1
        return datetime.fromtimestamp(fortnight * FORTNIGHT_DAYS * DAY_MS / 1000, UTC).date()
    return None


async def draft_scheduled(database: Database, now: int | None = None) -> list[int]:
    """The worker's cron: a draft run for each merchant on a schedule whose current period
    has none yet (one per merchant and period, by the runs' unique key, however many workers
    try); return the new runs' ids. A person confirms them."""
    moment = now_ms() if now is None else now
    async with database.session() as session:
        scheduled = (
            await session.execute(
                select(Merchant.id, Merchant.payout_schedule).where(Merchant.payout_schedule != "")
            )
        ).all()
    drafted: list[int] = []
    for merchant_id, schedule in scheduled:
        period = period_of(schedule, moment)
        async with database.session(write=True) as session:
            taken = await session.scalar(
                select(PayoutRun.id).where(
                    PayoutRun.merchant_id == merchant_id, PayoutRun.period == period
                )
            )
            merchant = await session.get(Merchant, merchant_id)
            if taken is not None or merchant is None:
                continue
            try:  # the run's insert, or the commit, finds another worker's run of the period
                view = await create_run(
                    session, merchant, currency=None, actor="schedule", period=period, now=moment
                )
                await session.commit()
            except IntegrityError:
                await session.rollback()
                continue
            drafted.append(view.run.id)
    return drafted


async def next_payout_for(session: AsyncSession, partner_id: int, now: int) -> date | None:
    """The earliest next scheduled run of the merchants whose money ``partner_id`` holds."""
    schedules = await session.scalars(
        select(Merchant.payout_schedule)
        .where(
            Merchant.payout_schedule != "",
            select(LedgerEntry.id)
            .where(LedgerEntry.merchant_id == Merchant.id, LedgerEntry.partner_id == partner_id)
            .exists(),
        )
        .distinct()
    )
    days = [day for schedule in schedules if (day := next_payout(schedule, now)) is not None]
    return min(days, default=None)


async def paying_merchant(session: AsyncSession, merchant_id: int | None) -> Merchant:
    """``merchant_id``'s merchant, or the only one there is; a ``FieldError`` otherwise."""
    if merchant_id is not None:
        merchant = await session.get(Merchant, merchant_id)
        if merchant is None:
            raise FieldError("merchant_id", f"no merchant with id {merchant_id}")
        return merchant
    found = (await session.scalars(select(Merchant).order_by(Merchant.id).limit(2))).all()
    if len(found) != 1:
        raise FieldError("merchant_id", "name the merchant (there is not exactly one)")
    return found[0]
