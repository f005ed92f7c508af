"""What Stripe's and Shopify's parsers share: a verified store event becomes either a
``NetworkEvent`` for the stream (a sale, a renewal, a refund, a dispute) or is acknowledged
and ignored (an event type Clicktrail does not use), or raises ``Rejection``.

A sale's event id is derived from the store's event id (``derived_event_id``), so a retried
delivery is the same event to the worker's idempotent insert; a refund's or a dispute's is the
same kind of id, recorded once per source in ``store_events``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from backend.core.ids import CustomerHasher, derived_event_id
from backend.core.money import MoneyError, format_minor, normalise_currency
from backend.domain.edge import MAX_CUSTOMER, Rejection, build_conversion
from backend.domain.events import ConversionEvent, NetworkEvent, RejectReason, Source
from backend.storage.catalog import Catalog
from backend.storage.db.models import ConversionSource, ConversionStatus

MAX_EVENT_ID = 128
FUTURE_SKEW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event acknowledged (200) and not used; ``why`` goes into the answer."""

    why: str


@dataclass(frozen=True, slots=True)
class StoreNotice:
    """The fields of a store's event that Clicktrail uses, before validation."""

    kind: str  # "stripe" or "shopify"
    event_type: str
    event_id: str
    created_ms: int
    order_id: str
    amount_minor: int | None = None  # a sale's amount in minor units, or
    amount_text: str | None = None  # a decimal string (Shopify)
    currency: str = ""
    click_id: str = ""
    coupon: str = ""
    customer: str = ""
    renewal: bool = False


def event_time(created_ms: int, now_ms: int) -> int:
    """The store's event time, unless it is not sane (then the time it arrived)."""
    return created_ms if 0 < created_ms <= now_ms + FUTURE_SKEW_MS else now_ms


def event_key(kind: str, event_type: str, event_id: str) -> str:
    return f"{kind} {event_type} {event_id}"


def _id(source: ConversionSource, event: StoreNotice, at_ms: int) -> str:
    return derived_event_id(at_ms, f"{source.id}:{event.event_id}")


def _checked_id(event: StoreNotice) -> None:
    if not event.event_id or len(event.event_id) > MAX_EVENT_ID:
        raise Rejection(RejectReason.MISSING_FIELD, "id", "the store's event id is required")
    if not event.order_id:
        raise Rejection(RejectReason.MISSING_FIELD, "order", "the event names no order")


async def sale_event(
    catalog: Catalog,
    source: ConversionSource,
    event: StoreNotice,
    customers: CustomerHasher,
    now_ms: int,
) -> NetworkEvent:
    """A store's sale (or renewal) as a ``NetworkEvent``; raise ``Rejection`` for one that
    cannot be used: no click, coupon or customer to attribute it by, an unknown currency, a bad
    amount."""
    _checked_id(event)
    merchant = await catalog.merchant_by_id(source.merchant_id)
    if merchant is None:
        raise Rejection(RejectReason.UNKNOWN_MERCHANT, "merchant", "the source's merchant is gone")
    if not (event.click_id or event.coupon or event.customer):
        raise Rejection(
            RejectReason.NO_ATTRIBUTION, "click_id", "no click id, coupon or customer to credit"
        )
    amount = event.amount_text or ""
    try:
        currency = normalise_currency(event.currency or merchant.currency)
        if event.amount_minor is not None:
            amount = format_minor(event.amount_minor, currency)
    except MoneyError as error:
        raise Rejection(RejectReason(error.reason), "currency", str(error)) from None
    at_ms = event_time(event.created_ms, now_ms)
    fields = {
        "oid": event.order_id,
        "amt": amount,
        "cur": currency,
        "clk": event.click_id,
        "ev": "renewal" if event.renewal else "sale",
        "coupon": event.coupon[:64],
        "cust": event.customer[:MAX_CUSTOMER],
    }
    sale = await build_conversion(
        catalog, fields, Source.NETWORK, None, at_ms, merchant, customers=customers
    )
    sale = _with_id(sale, _id(source, event, at_ms))
    return NetworkEvent(
        sale=sale,
        source_id=source.id,
        commission_minor=-1,
        status="",
        store_event=event_key(event.kind, event.event_type, event.event_id),
    )


async def change_event(
    catalog: Catalog,
    source: ConversionSource,
    event: StoreNotice,
    now_ms: int,
    *,
    reverse: bool = False,
    refund_minor: int = 0,
    remaining_minor: int = -1,
) -> NetworkEvent:
    """A refund, a dispute or a cancellation of a stored order: ``reverse`` (the whole order:
    status "rejected", which the status rules make "reversed" once approved), or lowered by
    ``refund_minor`` or to ``remaining_minor``."""
    _checked_id(event)
    merchant = await catalog.merchant_by_id(source.merchant_id)
    if merchant is None:
        raise Rejection(RejectReason.UNKNOWN_MERCHANT, "merchant", "the source's merchant is gone")
    at_ms = event_time(event.created_ms, now_ms)
    fields = {"oid": event.order_id, "amt": "0", "cur": merchant.currency, "ev": "refund"}
    sale = await build_conversion(catalog, fields, Source.NETWORK, None, at_ms, merchant)
    return NetworkEvent(
        sale=_with_id(sale, _id(source, event, at_ms)),
        source_id=source.id,
        commission_minor=-1,
        status=ConversionStatus.REJECTED.value if reverse else "",
        refund_minor=refund_minor,
        remaining_minor=remaining_minor,
        store_event=event_key(event.kind, event.event_type, event.event_id),
    )


def _with_id(sale: ConversionEvent, event_id: str) -> ConversionEvent:
    return msgspec.structs.replace(sale, event_id=event_id)
