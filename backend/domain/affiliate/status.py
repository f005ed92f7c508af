"""Conversion status transitions and verification, the one place every change passes through.

The management API, the admin pages, postbacks and the auto-approval job all call
``change_status`` (and postbacks ``verify``), so the allowed transitions, the audit trail and
the rollup bookkeeping are written once. A change that takes a conversion out of the counted set
(rejected, reversed) takes it out of the rollups (hourly, and the dimension rollup's folded
rows) in the same transaction, so totals never disagree with the rows. A person approving
decides the money: a conversion held for review is paid by the rule that applies (its commission
may have been zeroed, for a bot's click, or doubted), or what they set; a commission changed so
is corrected in the rollups in the same transaction too, and the partner's ledger books what the
change did to the earned commission. Every change owes its partner's postbacks and the webhooks
a message, added to the outbox in the same transaction. Every change leaves a
``conversion_changes`` row saying who, when and why, and the commission before and after when it
changed. The caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS, now_ms
from backend.core.money import format_minor
from backend.domain.affiliate import converted
from backend.domain.affiliate.commission import rule_commission
from backend.domain.affiliate.ledger import record_commission_change, record_commission_change_in
from backend.domain.affiliate.outbox import FIELDS, STATUS_CHANGED, enqueue
from backend.domain.quality.flags import Flag
from backend.storage.db.models import (
    CommissionRule,
    Conversion,
    ConversionChange,
    ConversionStatus,
    StatsHourly,
)
from backend.storage.rollups.by_dimension import correct_commission, uncount_folded
from backend.storage.rollups.hourly import add_deltas
from backend.storage.rollups.measures import COUNTED

ALLOWED = frozenset(
    {
        (ConversionStatus.PENDING, ConversionStatus.APPROVED),
        (ConversionStatus.PENDING, ConversionStatus.REJECTED),
        (ConversionStatus.APPROVED, ConversionStatus.REVERSED),
    }
)
AUTO_APPROVAL = "auto-approval"
POSTBACK = "postback"
MAX_REASON = 500
BY_THE_RULE = "commission by the rule"
SET_BY_REVIEWER = "commission set by the reviewer"


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


class CommissionRefused(ValueError):
    """A commission that cannot be decided: not on an approval, nobody to pay, out of bounds."""


def change_row(
    conversion_id: int,
    from_status: str,
    to_status: str,
    verified: bool,
    actor: str,
    reason: str,
    commission: tuple[int, int] | None = None,
) -> dict[str, object]:
    """One audit trail row (also written by the worker when a postback verifies an order);
    ``commission``: before and after, when the change decided it."""
    earlier, decided = commission or (None, None)
    return {
        "conversion_id": conversion_id,
        "at_ms": now_ms(),
        "from_status": from_status,
        "to_status": to_status,
        "verified": verified,
        "actor": actor[:200],
        "reason": reason[:MAX_REASON],
        "commission_from_minor": earlier,
        "commission_to_minor": decided,
    }


def network_source(source_id: int) -> str:
    """The actor a conversion source's postback is recorded as."""
    return f"source:{source_id}"


def network_target(current: ConversionStatus, wanted: ConversionStatus) -> ConversionStatus:
    """What a network's status means for a conversion in ``current``: networks say
    "rejected" (declined) of a sale they approved before, which our rules call reversed."""
    if current == ConversionStatus.APPROVED and wanted == ConversionStatus.REJECTED:
        return ConversionStatus.REVERSED
    return wanted


def change_by_network(
    connection: Connection, stored: Any, wanted: ConversionStatus, source_id: int
) -> bool:
    """The worker's status change for a conversion source's postback, by the same rules as
    ``change_status`` (allowed transitions, an audit row, the rollup uncounted in the same
    transaction, the messages it owes in the outbox), on the batch's connection; ``stored``: the
    conversion's row (the outbox's ``FIELDS`` and ``at_ms``). False when there is nothing to
    change; raise ``TransitionRefused`` when the rules refuse it."""
    current = ConversionStatus(stored["status"])
    wanted = network_target(current, wanted)
    if current == wanted:
        return False
    if (current, wanted) not in ALLOWED:
        raise TransitionRefused(current, wanted)
    uncounting = current in COUNTED and wanted not in COUNTED
    holders = converted.holders(connection, [stored["click_id"]] if uncounting else [])
    connection.execute(
        update(Conversion).where(Conversion.id == stored["id"]).values(status=wanted, verified=True)
    )
    reason = f"status {wanted} reported by the network"
    audit = change_row(stored["id"], current, wanted, True, network_source(source_id), reason)
    connection.execute(insert(ConversionChange), [audit])
    if uncounting:
        _uncount_rollups(connection, stored, holders)
    actor = network_source(source_id)
    record_commission_change(connection, [stored["id"]], actor=actor, reason=reason)
    changed = {**stored, "status": wanted.value, "verified": True}
    enqueue(connection, [changed], STATUS_CHANGED, {stored["id"]: current.value})
    return True


def held_for_review(conversion: Conversion) -> bool:
    return Flag.REVIEW in conversion.flags.split(",")


async def change_status(
    session: AsyncSession,
    conversion: Conversion,
    wanted: ConversionStatus,
    *,
    actor: str,
    reason: str = "",
    confirms: bool | None = None,
    commission: int | None = None,
    reviewed: bool = False,
) -> None:
    """Move ``conversion`` to ``wanted`` or raise ``TransitionRefused`` (or
    ``CommissionRefused``, before anything changed); the caller commits.

    ``actor`` says who asked (``user:<email>``, ``apikey:<id>``, ``postback``, ``auto-approval``)
    and ``reason`` why; both are kept in the audit trail. ``confirms`` says whether the change
    also verifies the sale: by default an approval does (someone with authority looked at it),
    a signed postback passes True whatever the status, auto-approval False (time is no proof).
    An approval pays ``commission`` when given (see ``decided_commission``); else, when a person
    decides (``reviewed``) on a conversion held for review, the rule's commission; else the
    commission stays as it was stored.
    """
    current = ConversionStatus(conversion.status)
    if (current, wanted) not in ALLOWED:
        raise TransitionRefused(current, wanted)
    decided = await decided_commission(session, conversion, wanted, commission, reviewed)
    uncounting = current in COUNTED and wanted not in COUNTED
    clicks = [conversion.click_id] if uncounting else []
    holders = await session.run_sync(lambda sync: converted.holders(sync.connection(), clicks))
    if confirms is None:
        confirms = wanted == ConversionStatus.APPROVED
    conversion.status = wanted
    conversion.verified = conversion.verified or confirms
    earlier = conversion.commission_minor
    if decided is not None:
        conversion.commission_rule = decided[1]
    if decided is None or decided[0] == earlier:
        await _record(session, conversion, current, actor, reason)
    else:
        conversion.commission_minor = decided[0]
        await _add_commission(session, conversion, decided[0] - earlier)
        why = reason or (SET_BY_REVIEWER if commission is not None else BY_THE_RULE)
        await _record(session, conversion, current, actor, why, (earlier, decided[0]))
    if uncounting:
        await _uncount(session, conversion, holders)
    if ConversionStatus.APPROVED in (current, wanted):
        await record_commission_change_in(session, [conversion.id], actor=actor, reason=reason)
    snapshot = {name: getattr(conversion, name) for name in FIELDS}
    before = {conversion.id: current.value}
    await session.run_sync(
        lambda sync: enqueue(sync.connection(), [snapshot], STATUS_CHANGED, before)
    )


async def decided_commission(
    session: AsyncSession,
    conversion: Conversion,
    wanted: ConversionStatus,
    commission: int | None,
    reviewed: bool,
) -> tuple[int, str] | None:
    """The commission ``change_status`` pays and the ``CommissionRule`` that set it, or None
    to leave both as they are.

    A set commission is for an approval of an attributed conversion only, from 0 up to the
    sale's amount, or the rule's commission when that is more (a flat fee on a free sign-up).
    """
    approving = wanted == ConversionStatus.APPROVED
    if commission is not None and not approving:
        raise CommissionRefused(f"a commission is set only when approving, not when {wanted}")
    if not approving or (commission is None and not (reviewed and held_for_review(conversion))):
        return None
    by_rule, rule = await rule_commission(session, conversion)
    if commission is None:
        return by_rule, rule or ""
    if conversion.partner_id is None:
        raise CommissionRefused("an unattributed conversion has no partner to pay")
    ceiling = max(conversion.amount_minor, by_rule)
    if not 0 <= commission <= ceiling:
        raise CommissionRefused(
            f"the commission must be from 0 to at most"
            f" {format_minor(ceiling, conversion.currency)} {conversion.currency}"
            " (the sale's amount, or the rule's commission when that is more)"
        )
    return commission, CommissionRule.REVIEWER


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
    commission: tuple[int, int] | None = None,
) -> None:
    row = change_row(
        conversion.id, current, conversion.status, conversion.verified, actor, reason, commission
    )
    await session.execute(insert(ConversionChange), [row])


_STATS = StatsHourly.__table__.c


_ROLLUP_KEY = ("at_ms", "merchant_id", "link_id", "currency", "partner_id", "campaign_id")


def _stats_row(conversion: Conversion | Mapping[str, Any]) -> ColumnElement[bool]:
    """The ``stats_hourly`` row that counts ``conversion`` (a row, or a mapping of its columns)."""
    row = (
        conversion
        if isinstance(conversion, Mapping)
        else {name: getattr(conversion, name) for name in _ROLLUP_KEY}
    )
    return and_(
        _STATS.hour_ms == row["at_ms"] // HOUR_MS * HOUR_MS,
        _STATS.merchant_id == row["merchant_id"],
        _STATS.link_id == (row["link_id"] or 0),
        _STATS.currency == row["currency"],
        _STATS.partner_id == (row["partner_id"] or 0),
        _STATS.campaign_id == (row["campaign_id"] or 0),
    )


async def _add_commission(session: AsyncSession, conversion: Conversion, delta: int) -> None:
    """A counted conversion's commission changed by ``delta``: so do the rollups'."""
    await session.execute(
        update(StatsHourly)
        .where(_stats_row(conversion))
        .values(commission_minor=_STATS.commission_minor + delta)
    )
    await correct_commission(session, conversion, delta)


async def _uncount(
    session: AsyncSession, conversion: Conversion, holders: dict[str, converted.Holder]
) -> None:
    """``_uncount_rollups`` in the session's transaction, once the new status is written (the
    click's holders are read again after it)."""
    await session.flush()
    figures = {name: getattr(conversion, name) for name in FIELDS}
    await session.run_sync(lambda sync: _uncount_rollups(sync.connection(), figures, holders))


def _uncount_rollups(
    connection: Connection, conversion: Mapping[str, Any], holders: dict[str, converted.Holder]
) -> None:
    """Take a conversion that no longer counts out of the rollups (``conversion``: its row's
    ``FIELDS``); ``holders``: its click's, read before the change (the click may no longer count
    as converted, or count under another conversion)."""
    connection.execute(
        update(StatsHourly)
        .where(_stats_row(conversion))
        .values(
            conversions=_STATS.conversions - 1,
            revenue_minor=_STATS.revenue_minor - conversion["amount_minor"],
            commission_minor=_STATS.commission_minor - conversion["commission_minor"],
        )
    )
    uncount_folded(connection, conversion)
    after = converted.holders(connection, [conversion["click_id"]])
    add_deltas(connection, converted.moves(holders, after))
