"""Shopify as a conversion source: its webhooks, verified as Shopify specifies
(``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256 of the raw body with the app's shared
secret), idempotent on ``X-Shopify-Webhook-Id``, turned into stream events.

- ``orders/create`` and ``orders/paid``: a sale (the second is the first's order again); the
  click id from the order's ``note_attributes`` (``ct_click``, which the snippet puts in the
  cart) or its ``landing_site`` query (``ct_click``), a partner's coupon from its first
  ``discount_codes`` entry, the customer by their Shopify id.
- ``refunds/create``: the refund's successful refund transactions lower the order by their sum,
  or reverse it when they cover what is left.
- ``orders/cancelled``: the order reversed.

Any other topic is acknowledged and ignored.
"""

from __future__ import annotations

import base64
import hmac
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from backend.core.ids import CustomerHasher
from backend.core.money import MoneyError, normalise_currency, parse_amount
from backend.domain.edge import Rejection
from backend.domain.events import NetworkEvent, RejectReason
from backend.domain.stores.webhooks import Ignored, StoreNotice, change_event, sale_event
from backend.storage.catalog import Catalog
from backend.storage.db.models import ConversionSource

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
TOPIC_HEADER = "x-shopify-topic"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
SHOP_HEADER = "x-shopify-shop-domain"
TRIGGERED_HEADER = "x-shopify-triggered-at"  # when Shopify raised the event (ISO 8601)
CLICK_FIELD = "ct_click"


def signature(body: bytes, secret: str) -> str:
    """What Shopify sends in ``X-Shopify-Hmac-Sha256`` for ``body``."""
    return base64.b64encode(hmac.digest(secret.encode(), body, "sha256")).decode()


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise ``Rejection`` (bad signature) unless Shopify signed ``body`` with ``secret``."""
    if not header or not hmac.compare_digest(header.encode(), signature(body, secret).encode()):
        raise Rejection(
            RejectReason.BAD_SIGNATURE, SIGNATURE_HEADER, "not signed with the shared secret"
        )


def _text(value: object) -> str:
    if isinstance(value, bool):
        return ""
    return str(value) if isinstance(value, str | int) else ""


def _click(order: dict[str, Any]) -> str:
    notes = order.get("note_attributes")
    for note in notes if isinstance(notes, list) else []:
        if isinstance(note, dict) and note.get("name") == CLICK_FIELD:
            return _text(note.get("value"))
    landing = _text(order.get("landing_site"))
    values = parse_qs(urlsplit(landing).query).get(CLICK_FIELD) if landing else None
    return values[0] if values else ""


def _coupon(order: dict[str, Any]) -> str:
    codes = order.get("discount_codes")
    first = codes[0] if isinstance(codes, list) and codes else None
    return _text(first.get("code")) if isinstance(first, dict) else ""


def _customer(order: dict[str, Any]) -> str:
    customer = order.get("customer")
    return _text(customer.get("id")) if isinstance(customer, dict) else ""


def triggered_ms(headers: dict[str, str], now_ms: int) -> int:
    """When Shopify raised the event (the same on every retry, so the event id derived from it
    is too); the arrival time when the header is missing or not a time."""
    try:
        at = datetime.fromisoformat(headers.get(TRIGGERED_HEADER, "")[:40].replace("Z", "+00:00"))
    except ValueError:
        return now_ms
    if at.tzinfo is None:
        return now_ms
    return int(at.timestamp() * 1000)


def refunded_minor(refund: dict[str, Any]) -> int:
    """The sum of a refund's successful refund transactions, in minor units."""
    total = 0
    transactions = refund.get("transactions")
    for transaction in transactions if isinstance(transactions, list) else []:
        if not isinstance(transaction, dict):
            continue
        if transaction.get("kind") != "refund" or transaction.get("status") != "success":
            continue
        try:
            currency = normalise_currency(_text(transaction.get("currency")))
            total += parse_amount(_text(transaction.get("amount")), currency)
        except MoneyError as error:
            raise Rejection(RejectReason(error.reason), "transactions", str(error)) from None
    return total


async def parse(
    catalog: Catalog,
    source: ConversionSource,
    headers: dict[str, str],
    body: bytes,
    customers: CustomerHasher,
    now_ms: int,
    stored_amount: int | None = None,
) -> NetworkEvent | Ignored:
    """A verified Shopify webhook as a stream event, or ignored; raise ``Rejection``.
    ``stored_amount``: the refunded order's amount as stored (None: not stored)."""
    topic = headers.get(TOPIC_HEADER, "")[:64]
    if topic not in ("orders/create", "orders/paid", "refunds/create", "orders/cancelled"):
        return Ignored(f"topic {topic!r} is not used")
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise Rejection(RejectReason.INVALID_EVENT, "body", str(error)[:200]) from None
    if not isinstance(obj, dict):
        raise Rejection(RejectReason.INVALID_EVENT, "body", "not a JSON object")
    webhook_id = headers.get(WEBHOOK_ID_HEADER, "")
    notice = partial(StoreNotice, "shopify", topic, webhook_id, triggered_ms(headers, now_ms))
    if topic in ("orders/create", "orders/paid"):
        sale = notice(
            order_id=_text(obj.get("id")),
            amount_text=_text(obj.get("total_price")) or "0",
            currency=_text(obj.get("currency")),
            click_id=_click(obj),
            coupon=_coupon(obj),
            customer=_customer(obj),
        )
        return await sale_event(catalog, source, sale, customers, now_ms)
    if topic == "orders/cancelled":
        change = notice(order_id=_text(obj.get("id")))
        return await change_event(catalog, source, change, now_ms, reverse=True)
    change = notice(order_id=_text(obj.get("order_id")))
    refund = refunded_minor(obj)
    if refund <= 0:
        return Ignored("no money refunded")
    if stored_amount is not None and refund >= stored_amount:
        return await change_event(catalog, source, change, now_ms, reverse=True)
    return await change_event(catalog, source, change, now_ms, refund_minor=refund)
