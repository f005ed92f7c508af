"""The partners' ledger: every movement of a partner's money, append-only, per currency.

A balance is a sum of entries, never a stored total (docs/payouts.md). A conversion's entries
follow its *earned* commission: its commission while it is approved and credited to a partner,
0 otherwise. ``record_commission_change`` books the difference between what a conversion earns
now and what its entries already say, so every change (an approval, a reversal, a commission
decided by a reviewer or replaced by a postback, a refund that lowers it) only has to call it,
in its own transaction, after the change; run twice it books nothing the second time. An entry
is payable once the merchant's hold period after the sale has passed (entries of no
conversion at once) and while no payout line has locked it (``payout_items``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVarTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    cast,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import DAY_MS, now_ms
from backend.storage.db.models import (
    Conversion,
    ConversionStatus,
    LedgerEntry,
    LedgerKind,
    Merchant,
    PayoutItem,
    PayoutLine,
    PayoutLineStatus,
)

Ts = TypeVarTuple("Ts")
COMMISSION_KINDS = (LedgerKind.EARNED.value, LedgerKind.REVERSED.value)
MAX_REASON = 500


def earned_minor(status: str, partner_id: int | None, commission_minor: int) -> int:
    """What a conversion has earned its partner: its commission while approved."""
    approved = status == ConversionStatus.APPROVED and partner_id is not None
    return commission_minor if approved else 0


def entry_row(
    partner_id: int,
    merchant_id: int,
    currency: str,
    amount_minor: int,
    kind: LedgerKind,
    *,
    conversion_id: int | None = None,
    payout_line_id: int | None = None,
    actor: str = "",
    reason: str = "",
) -> dict[str, object]:
    return {
        "partner_id": partner_id,
        "merchant_id": merchant_id,
        "currency": currency,
        "amount_minor": amount_minor,
        "kind": kind.value,
        "conversion_id": conversion_id,
        "payout_line_id": payout_line_id,
        "actor": actor[:200],
        "reason": reason[:MAX_REASON],
        "at_ms": now_ms(),
    }


def record_commission_change(
    connection: Connection, conversion_ids: Iterable[int], *, actor: str, reason: str = ""
) -> int:
    """Book what ``conversion_ids`` earn now minus what their entries already say (per
    partner and currency, so a conversion moved to another partner is taken back from the
    first); return the number of entries written. Call it after the change, in its
    transaction, whose row lock on the conversion keeps two changes of it apart."""
    ids = sorted(set(conversion_ids))
    if not ids:
        return 0
    booked: dict[tuple[int, int, int, str], int] = defaultdict(int)
    key: tuple[int, int, int, str]
    for conversion_id, partner_id, merchant_id, currency, total in connection.execute(
        select(
            LedgerEntry.conversion_id,
            LedgerEntry.partner_id,
            LedgerEntry.merchant_id,
            LedgerEntry.currency,
            func.sum(LedgerEntry.amount_minor),
        )
        .where(LedgerEntry.conversion_id.in_(ids), LedgerEntry.kind.in_(COMMISSION_KINDS))
        .group_by(
            LedgerEntry.conversion_id,
            LedgerEntry.partner_id,
            LedgerEntry.merchant_id,
            LedgerEntry.currency,
        )
    ):
        booked[(conversion_id or 0, partner_id, merchant_id, currency)] = int(total)
    owed: dict[tuple[int, int, int, str], int] = {}
    for row in connection.execute(
        select(
            Conversion.id,
            Conversion.partner_id,
            Conversion.merchant_id,
            Conversion.currency,
            Conversion.status,
            Conversion.commission_minor,
        ).where(Conversion.id.in_(ids))
    ):
        earned = earned_minor(row.status, row.partner_id, row.commission_minor)
        if earned:
            owed[(row.id, row.partner_id, row.merchant_id, row.currency)] = earned
    entries = []
    for key in sorted(booked.keys() | owed.keys()):
        delta = owed.get(key, 0) - booked.get(key, 0)
        if delta:
            conversion_id, partner_id, merchant_id, currency = key
            kind = LedgerKind.EARNED if delta > 0 else LedgerKind.REVERSED
            entries.append(
                entry_row(
                    partner_id,
                    merchant_id,
                    currency,
                    delta,
                    kind,
                    conversion_id=conversion_id,
                    actor=actor,
                    reason=reason,
                )
            )
    if entries:
        connection.execute(insert(LedgerEntry), entries)
    return len(entries)


async def record_commission_change_in(
    session: AsyncSession, conversion_ids: Iterable[int], *, actor: str, reason: str = ""
) -> int:
    """``record_commission_change`` in an ORM session's transaction (flushing its changes)."""
    await session.flush()
    ids = list(conversion_ids)
    return await session.run_sync(
        lambda sync: record_commission_change(sync.connection(), ids, actor=actor, reason=reason)
    )


def is_due(now: int) -> ColumnElement[bool]:
    """An entry is due when it is no conversion's or its sale is older than the hold period
    of its merchant (the query joins ``Merchant`` and outer-joins ``Conversion``)."""
    return or_(
        LedgerEntry.conversion_id.is_(None),
        Conversion.at_ms + cast(Merchant.hold_days, BigInteger) * DAY_MS <= now,
    )


def unlocked_entries() -> ColumnElement[bool]:
    """An entry no payout line has locked (``payout_items``): still the partner's balance."""
    return ~select(PayoutItem.entry_id).where(PayoutItem.entry_id == LedgerEntry.id).exists()


def with_dates(statement: Select[*Ts]) -> Select[*Ts]:
    """``statement`` over ``ledger_entries`` joined to what ``is_due`` reads."""
    joined = statement.join(Merchant, Merchant.id == LedgerEntry.merchant_id)
    return joined.outerjoin(Conversion, Conversion.id == LedgerEntry.conversion_id)


@dataclass(frozen=True, slots=True)
class Balance:
    """A partner's money in one currency. ``balance_minor`` = ``pending_minor`` +
    ``payable_minor``: what is owed and not yet taken by a payout; ``paid_minor``: paid out."""

    currency: str
    pending_minor: int
    payable_minor: int
    paid_minor: int
    balance_minor: int


async def balances(session: AsyncSession, partner_id: int, now: int | None = None) -> list[Balance]:
    """``partner_id``'s balance per currency, from the ledger."""
    moment = now_ms() if now is None else now
    due, unlocked = is_due(moment), unlocked_entries()
    sums = (
        await session.execute(
            with_dates(
                select(
                    LedgerEntry.currency,
                    func.coalesce(func.sum(LedgerEntry.amount_minor).filter(unlocked, ~due), 0),
                    func.coalesce(func.sum(LedgerEntry.amount_minor).filter(unlocked, due), 0),
                )
            )
            .where(LedgerEntry.partner_id == partner_id)
            .group_by(LedgerEntry.currency)
        )
    ).all()
    paid = dict(
        (
            await session.execute(
                select(PayoutLine.currency, func.sum(PayoutLine.amount_minor))
                .where(
                    PayoutLine.partner_id == partner_id,
                    PayoutLine.status == PayoutLineStatus.PAID,
                )
                .group_by(PayoutLine.currency)
            )
        ).all()
    )
    figures = {currency: (int(pending), int(payable)) for currency, pending, payable in sums}
    return [
        Balance(
            currency,
            figures.get(currency, (0, 0))[0],
            figures.get(currency, (0, 0))[1],
            int(paid.get(currency, 0)),
            sum(figures.get(currency, (0, 0))),
        )
        for currency in sorted(figures.keys() | paid.keys())
    ]


async def add_adjustment(
    session: AsyncSession,
    partner_id: int,
    merchant_id: int,
    amount_minor: int,
    currency: str,
    *,
    actor: str,
    reason: str,
) -> LedgerEntry:
    """A person's correction of a partner's balance, kept with who made it and why; the
    caller commits."""
    entry = LedgerEntry(
        **entry_row(
            partner_id,
            merchant_id,
            currency,
            amount_minor,
            LedgerKind.ADJUSTMENT,
            actor=actor,
            reason=reason,
        )
    )
    session.add(entry)
    await session.flush()
    return entry
