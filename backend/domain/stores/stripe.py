"""Stripe as a conversion source: its webhook events, verified with the official ``stripe``
package's helper (``Stripe-Signature``: a timestamp and HMAC-SHA256 of ``timestamp.body`` with
the endpoint's ``whsec_`` secret, five minutes' tolerance), turned into stream events.

- ``checkout.session.completed`` (paid), or ``checkout.session.async_payment_succeeded`` for
  a delayed payment method: a sale; the click id in ``client_reference_id`` or
  ``metadata.ct_click``, a partner's coupon in ``metadata.ct_coupon``, the customer (their
  Stripe customer id, else their e-mail) bound to the partner. The order is the session's
  invoice (subscriptions), else its payment intent, else the session.
- ``invoice.paid``: the order is the invoice. A subscription's first invoice
  (``billing_reason`` ``subscription_create``) is ignored unless it names a click itself
  (``metadata.ct_click`` of the invoice or its subscription): its checkout session is the sale
  and may arrive after it. A later one (``subscription_cycle``) is a renewal, credited to the
  customer's bound partner by the campaign's renewal rule.
- ``charge.refunded``: the charge's order (its invoice, else its payment intent) lowered to
  what is left (``amount - amount_refunded``), or reversed when nothing is.
- ``charge.dispute.created``: the disputed charge's order reversed.

Any other type is acknowledged and ignored. Amounts are Stripe's: the currency's smallest unit.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
import stripe

from backend.core.ids import CustomerHasher
from backend.domain.edge import Rejection
from backend.domain.events import NetworkEvent, RejectReason
from backend.domain.stores.webhooks import Ignored, StoreNotice, change_event, sale_event
from backend.storage.catalog import Catalog
from backend.storage.db.models import ConversionSource

SIGNATURE_HEADER = "stripe-signature"
TOLERANCE_S = 300
PAID = frozenset({"paid", "no_payment_required"})
# A session paid by card completes paid; one paid by a delayed method (SEPA debit, say)
# completes unpaid and is paid later: the sale is the first of the two that says paid.
SESSION_PAID = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


class _Object(msgspec.Struct):
    object: dict[str, Any]


class _Event(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _Object


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise ``Rejection`` (bad signature) unless Stripe signed ``body`` with ``secret``
    within the tolerance."""
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
        raise Rejection(RejectReason.BAD_SIGNATURE, SIGNATURE_HEADER, str(error)[:200]) from None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id_of(value: object) -> str:
    """An expandable field: the id, or the expanded object's id."""
    if isinstance(value, dict):
        return _text(value.get("id"))
    return _text(value)


def _metadata(obj: dict[str, Any], name: str) -> str:
    metadata = obj.get("metadata")
    return _text(metadata.get(name)) if isinstance(metadata, dict) else ""


def _customer(obj: dict[str, Any]) -> str:
    details = obj.get("customer_details")
    email = _text(details.get("email")) if isinstance(details, dict) else ""
    return _id_of(obj.get("customer")) or _text(obj.get("customer_email")) or email


def _subscription_click(invoice: dict[str, Any]) -> str:
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if isinstance(details, dict):
        return _metadata(details, "ct_click")
    return ""


async def parse(
    catalog: Catalog,
    source: ConversionSource,
    body: bytes,
    customers: CustomerHasher,
    now_ms: int,
) -> NetworkEvent | Ignored:
    """A verified Stripe event as a stream event, or ignored; raise ``Rejection``."""
    try:
        event = msgspec.json.decode(body, type=_Event)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise Rejection(RejectReason.INVALID_EVENT, "body", str(error)[:200]) from None
    obj = event.data.object
    notice = partial(StoreNotice, "stripe", event.type[:64], event.id, event.created * 1000)
    if event.type in SESSION_PAID:
        if _text(obj.get("payment_status")) not in PAID:
            return Ignored("not paid yet")
        order = _id_of(obj.get("invoice")) or _id_of(obj.get("payment_intent")) or _id_of(obj)
        sale = notice(
            order_id=order,
            amount_minor=_int(obj.get("amount_total")) or 0,
            currency=_text(obj.get("currency")),
            click_id=_text(obj.get("client_reference_id")) or _metadata(obj, "ct_click"),
            coupon=_metadata(obj, "ct_coupon"),
            customer=_customer(obj),
        )
        return await sale_event(catalog, source, sale, customers, now_ms)
    if event.type == "invoice.paid":
        paid = _int(obj.get("amount_paid")) or 0
        if paid <= 0:
            return Ignored("nothing paid")
        click_id = _metadata(obj, "ct_click") or _subscription_click(obj)
        reason = _text(obj.get("billing_reason"))
        if reason == "subscription_create" and not click_id:
            # Its checkout session is the sale (with the click id), and may arrive after it.
            return Ignored("a subscription's first invoice: its checkout session is the sale")
        sale = notice(
            order_id=_id_of(obj),
            amount_minor=paid,
            currency=_text(obj.get("currency")),
            click_id=click_id,
            customer=_customer(obj),
            renewal=reason == "subscription_cycle",
        )
        return await sale_event(catalog, source, sale, customers, now_ms)
    if event.type == "charge.refunded":
        order = _id_of(obj.get("invoice")) or _id_of(obj.get("payment_intent")) or _id_of(obj)
        amount = _int(obj.get("amount"))
        refunded = _int(obj.get("amount_refunded"))
        if amount is None or refunded is None or not refunded >= 0:
            raise Rejection(RejectReason.INVALID_AMOUNT, "amount_refunded", "not an amount")
        change = notice(order_id=order)
        if refunded >= amount:
            return await change_event(catalog, source, change, now_ms, reverse=True)
        return await change_event(
            catalog, source, change, now_ms, remaining_minor=amount - refunded
        )
    if event.type == "charge.dispute.created":
        order = _id_of(obj.get("payment_intent")) or _id_of(obj.get("charge"))
        change = notice(order_id=order)
        return await change_event(catalog, source, change, now_ms, reverse=True)
    return Ignored(f"event type {event.type[:64]!r} is not used")
