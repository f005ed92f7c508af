"""Customers and renewals: a customer (the keyed hash of the merchant's reference for them) is
bound to the partner and campaign of their first attributed conversion, and a later conversion
of theirs that credits no click or coupon (a subscription's renewal, a repeat order) is
credited to that partner, priced by the campaign's renewal rule while it pays.

The binding is written in the worker's batch transaction with ``ON CONFLICT DO NOTHING`` on
(merchant, customer): the first conversion written wins on SQLite and PostgreSQL alike, and a
batch delivered again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from backend.domain.affiliate.commission import RenewalRule, renewal_rule
from backend.storage.db.models import (
    Campaign,
    CommissionOverride,
    CommissionRule,
    Conversion,
    CustomerBinding,
    Merchant,
    Partner,
)

BINDINGS: Table = CustomerBinding.__table__  # type: ignore[assignment]
_CONVERSIONS: Table = Conversion.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class RenewalCredit:
    """Whom a renewal credits and by which rule (as a link or a coupon would say)."""

    partner_id: int
    partner_status: str
    campaign_id: int
    campaign_status: str
    currency: str  # the merchant's
    commission_bps: int
    commission_flat_minor: int
    rule: str  # what the conversion shows: which renewal rule priced it
    commission_rule: str = CommissionRule.RENEWAL


CustomerKey = tuple[int, str]  # merchant id, customer hash


@dataclass(frozen=True, slots=True)
class BoundCustomer:
    """A customer's binding with what pricing a renewal needs of its partner and campaign."""

    partner_id: int
    partner_status: str
    campaign_id: int
    campaign_status: str
    currency: str  # the merchant's
    base: tuple[int, int]  # the partner's override of the campaign's rule, else the campaign's
    mode: str
    months: int | None
    renewal_bps: int | None
    renewal_flat_minor: int | None
    bound_ms: int


_BOUND = (
    select(
        CustomerBinding.merchant_id,
        CustomerBinding.customer_hash,
        CustomerBinding.partner_id,
        Partner.status,
        CustomerBinding.campaign_id,
        Campaign.status,
        Merchant.currency,
        Campaign.commission_bps,
        Campaign.commission_flat_minor,
        CommissionOverride.commission_bps,
        CommissionOverride.commission_flat_minor,
        Campaign.renewal_mode,
        Campaign.renewal_months,
        Campaign.renewal_bps,
        Campaign.renewal_flat_minor,
        CustomerBinding.at_ms,
    )
    .join(Partner, Partner.id == CustomerBinding.partner_id)
    .join(Campaign, Campaign.id == CustomerBinding.campaign_id)
    .join(Merchant, Merchant.id == CustomerBinding.merchant_id)
    .outerjoin(
        CommissionOverride,
        (CommissionOverride.partner_id == CustomerBinding.partner_id)
        & (CommissionOverride.campaign_id == CustomerBinding.campaign_id),
    )
)


def bound_customers(
    connection: Connection, keys: list[CustomerKey]
) -> dict[CustomerKey, BoundCustomer]:
    """The bindings of these customers (those bound), in one query for a whole batch."""
    rows = connection.execute(
        _BOUND.where(tuple_(CustomerBinding.merchant_id, CustomerBinding.customer_hash).in_(keys))
    )
    bound: dict[CustomerKey, BoundCustomer] = {}
    for (merchant_id, customer_hash, partner_id, partner_status, campaign_id, campaign_status,
         currency, bps, flat, over_bps, over_flat, mode, months, renewal_bps, renewal_flat,
         bound_ms) in rows:  # fmt: skip
        base = (over_bps, over_flat) if over_bps is not None else (bps, flat)
        bound[merchant_id, customer_hash] = BoundCustomer(
            partner_id, partner_status, campaign_id, campaign_status, currency, base, mode,
            months, renewal_bps, renewal_flat, bound_ms,
        )  # fmt: skip
    return bound


def renewal_credit(bound: BoundCustomer, at_ms: int) -> RenewalCredit | None:
    """The bound partner's credit for a conversion of the customer at ``at_ms``; None when the
    campaign does not (or no longer) pay renewals."""
    rule: RenewalRule | None = renewal_rule(
        bound.mode,
        bound.months,
        bound.renewal_bps,
        bound.renewal_flat_minor,
        bound.base,
        bound.bound_ms,
        at_ms,
    )
    if rule is None:
        return None
    return RenewalCredit(
        partner_id=bound.partner_id,
        partner_status=bound.partner_status,
        campaign_id=bound.campaign_id,
        campaign_status=bound.campaign_status,
        currency=bound.currency,
        commission_bps=rule.bps,
        commission_flat_minor=rule.flat_minor,
        rule=rule.label,
    )


def bind_customers(connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Bind each new attributed conversion's customer to its partner, unless bound already
    (``rows``: conversion rows with their ``event_id``, inserted in this transaction)."""
    wanted = {
        row["event_id"]: row
        for row in rows
        if row["customer_hash"] and row["partner_id"] is not None and row["campaign_id"]
    }
    if not wanted:
        return
    found = connection.execute(
        select(_CONVERSIONS.c.event_id, _CONVERSIONS.c.id).where(
            _CONVERSIONS.c.event_id.in_(list(wanted))
        )
    )
    ids = {event_id: conversion_id for event_id, conversion_id in found}
    bindings = [
        {
            "merchant_id": row["merchant_id"],
            "customer_hash": row["customer_hash"],
            "partner_id": row["partner_id"],
            "campaign_id": row["campaign_id"],
            "conversion_id": ids[event_id],
            "at_ms": row["at_ms"],
        }
        for event_id, row in sorted(wanted.items(), key=lambda item: item[1]["at_ms"])
        if event_id in ids
    ]
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for binding in bindings:  # one by one: the earliest of a batch wins its customer
        connection.execute(dialect.insert(BINDINGS).on_conflict_do_nothing(), binding)
