"""Request and response bodies of the money routes (balances, adjustments, payout runs,
statements, partner groups); money in integer minor units, every value bounded as ``schemas``
bounds it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from backend.core.money import MAX_AMOUNT_MINOR
from backend.domain.affiliate.schemas import ONE_LINE, Currency, Minor, Name, ObjectId, Percent

SignedMinor = Annotated[int, Meta(ge=-MAX_AMOUNT_MINOR, le=MAX_AMOUNT_MINOR)]
Why = Annotated[str, Meta(min_length=1, max_length=500, pattern=ONE_LINE)]
Reference = Annotated[str, Meta(min_length=1, max_length=140, pattern=ONE_LINE)]


class BalanceOut(msgspec.Struct):
    """``balance_minor`` = ``pending_minor`` (in the hold period) + ``payable_minor``; it
    may be negative after a clawback. ``paid_minor``: paid out so far."""

    currency: str
    pending_minor: int
    payable_minor: int
    paid_minor: int
    balance_minor: int


class BalancesOut(msgspec.Struct):
    partner_id: int
    balances: list[BalanceOut]
    next_payout: date | None  # the next scheduled run of the partner's merchants


class AdjustmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A correction of the balance, positive or negative, with its reason; ``merchant_id``:
    whose runs pay it (may be left out when there is one merchant)."""

    amount_minor: SignedMinor
    currency: Currency
    reason: Why
    merchant_id: ObjectId | None = None


class AdjustmentOut(msgspec.Struct):
    id: int
    partner_id: int
    merchant_id: int
    amount_minor: int
    currency: str
    reason: str
    actor: str
    at: datetime


class PayoutRunCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Without ``merchant_id``: the one merchant there is; without ``currency``: each."""

    merchant_id: ObjectId | None = None
    currency: Currency | None = None


class PayoutLineOut(msgspec.Struct):
    id: int
    partner_id: int
    amount_minor: int
    currency: str
    status: str
    reference: str | None
    paid_on: date | None
    reason: str


class PayoutRunOut(msgspec.Struct):
    id: int
    merchant_id: int
    currency: str | None
    status: str
    period: str | None
    created_at: datetime
    confirmed_at: datetime | None
    lines: list[PayoutLineOut]


class LinePaid(msgspec.Struct, forbid_unknown_fields=True):
    """The payment's reference (the bank's or PayPal's) and day, today by default."""

    reference: Reference
    paid_on: date | None = None


class LineReturned(msgspec.Struct, forbid_unknown_fields=True):
    reason: Why


class StatementLineOut(msgspec.Struct):
    at: datetime
    kind: str  # earned, reversed, adjustment, payout, returned
    amount_minor: int
    reason: str
    conversion_id: int | None
    order_id: str | None
    sale_at: datetime | None
    sale_minor: int | None
    commission_minor: int | None
    status: str | None


class StatementOut(msgspec.Struct):
    """``closing_minor`` = ``opening_minor`` + ``earned_minor`` + ``reversed_minor`` +
    ``adjusted_minor`` + ``paid_minor`` (reversals and payouts are negative)."""

    partner_id: int
    month: str
    currency: str
    opening_minor: int
    earned_minor: int
    reversed_minor: int
    adjusted_minor: int
    paid_minor: int
    closing_minor: int
    lines: list[StatementLineOut]
    currencies: list[str]  # every currency of the partner's ledger


class GroupCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class GroupRateSet(msgspec.Struct, forbid_unknown_fields=True):
    """The group's rule for one campaign, replacing the campaign's for the group's partners
    (a partner's own override still wins)."""

    campaign_id: ObjectId
    commission_percent: Percent = 0
    commission_flat_minor: Minor = 0


class GroupRateOut(msgspec.Struct):
    campaign_id: int
    commission_percent: str
    commission_flat_minor: int


class GroupOut(msgspec.Struct):
    id: int
    name: str
    created_at: datetime
    partner_ids: list[int]
    rates: list[GroupRateOut]
