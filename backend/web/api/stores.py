"""A store's webhooks at its source's ``/pb/{token}``: verified, parsed and queued for the
worker within a millisecond or two, since stores retry after a few seconds.

A bad signature is 400 (the store retries, and succeeds once the secret is right); an event
that cannot be used (no attribution, an unknown currency, a refund of an order never stored)
is 200 with its reason, since no retry would help; both are kept in ``rejected_events``,
without the body (a store's payload carries the customer's address). A retried delivery
answers ``{"duplicate": true}``; a type Clicktrail does not use, ``{"ignored": ...}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.exceptions import ValidationException
from sqlalchemy import select

from backend.domain.edge import Rejection, rejected
from backend.domain.events import NetworkEvent, RejectReason, Source
from backend.domain.stores import shopify, stripe
from backend.domain.stores.changes import store_event_parts
from backend.domain.stores.webhooks import Ignored
from backend.storage.db.models import Conversion, ConversionSource, StoreEvent
from backend.web.api.deps import Reader
from backend.web.ingest.routes import Ingest

# A store's event may list many line items (a Shopify order's run to kilobytes each): bounded,
# but well above what a network's postback may send (``MAX_BODY``).
STORE_MAX_BODY = 1024 * 1024


class _Envelope(msgspec.Struct):
    id: str = ""
    type: str = ""


def _described(source: ConversionSource, headers: dict[str, str], body: bytes) -> str:
    """What a rejected store event keeps: whose, which type, which id; never the body."""
    if source.kind == "shopify":
        kind = headers.get(shopify.TOPIC_HEADER, "")
        event_id = headers.get(shopify.WEBHOOK_ID_HEADER, "")
    else:
        try:
            envelope = msgspec.json.decode(body, type=_Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = _Envelope()
        kind, event_id = envelope.type, envelope.id
    return f"source #{source.id} ({source.kind}) {kind[:64]} {event_id[:128]}"


async def _stored_amount(reader: Reader, source: ConversionSource, body: bytes) -> int | None:
    """For a Shopify refund: the refunded order's stored amount."""
    try:
        order_id = msgspec.json.decode(body, type=dict[str, Any]).get("order_id")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    amount: int | None = await reader.scalar(
        select(Conversion.amount_minor).where(
            Conversion.merchant_id == source.merchant_id,
            Conversion.order_id == str(order_id),
            Conversion.source_id == source.id,
        )
    )
    return amount


async def _parse(
    ingest: Ingest,
    reader: Reader,
    source: ConversionSource,
    headers: dict[str, str],
    body: bytes,
    at_ms: int,
) -> NetworkEvent | Ignored:
    secret = source.signing_secret or ""
    if source.kind == "stripe":
        stripe.verify(body, headers.get(stripe.SIGNATURE_HEADER), secret)
        return await stripe.parse(ingest.catalog, source, body, ingest.customers, at_ms)
    shopify.verify(body, headers.get(shopify.SIGNATURE_HEADER), secret)
    shop = headers.get(shopify.SHOP_HEADER, "")
    if source.shop_domain and shop and shop.lower() != source.shop_domain:
        raise Rejection(RejectReason.INVALID_EVENT, "shop", f"{shop[:64]!r} is another shop")
    stored = None
    if headers.get(shopify.TOPIC_HEADER) == "refunds/create":
        stored = await _stored_amount(reader, source, body)
    return await shopify.parse(
        ingest.catalog, source, headers, body, ingest.customers, at_ms, stored
    )


async def _is_repeat(reader: Reader, event: NetworkEvent) -> bool:
    """Whether the store's event was recorded or its conversion written."""
    _, _, event_key = store_event_parts(event.store_event)
    found = await reader.scalar(
        select(StoreEvent.id).where(
            StoreEvent.source_id == event.source_id, StoreEvent.event_key == event_key
        )
    )
    if found is not None:
        return True
    written = await reader.scalar(
        select(Conversion.id).where(Conversion.event_id == event.sale.event_id)
    )
    return written is not None


async def _order_stored(reader: Reader, event: NetworkEvent) -> bool:
    found = await reader.scalar(
        select(Conversion.id).where(
            Conversion.merchant_id == event.sale.merchant_id,
            Conversion.order_id == event.sale.order_id,
            Conversion.source_id == event.source_id,
        )
    )
    return found is not None


async def store_webhook(
    ingest: Ingest,
    reader: Reader,
    source: ConversionSource,
    headers: dict[str, str],
    body: bytes,
    at_ms: int,
) -> Response[dict[str, Any]]:
    """Verify, parse and queue a store's webhook; see the module's docstring for the
    answers."""
    try:
        parsed = await _parse(ingest, reader, source, headers, body, at_ms)
        if isinstance(parsed, Ignored):
            return Response({"ok": True, "ignored": parsed.why}, status_code=200)
        if await _is_repeat(reader, parsed):
            return Response({"ok": True, "duplicate": True}, status_code=200)
        is_change = parsed.status or parsed.refund_minor or parsed.remaining_minor >= 0
        if is_change and not await _order_stored(reader, parsed):
            raise Rejection(
                RejectReason.UNKNOWN_ORDER,
                "order",
                f"no order {parsed.sale.order_id!r} from this source",
            )
    except Rejection as rejection:
        payload = _described(source, headers, body)
        await ingest.queue(rejected(Source.NETWORK, rejection, payload, at_ms))
        if rejection.reason == RejectReason.BAD_SIGNATURE:
            raise ValidationException(
                detail=f"{rejection.field}: {rejection.detail}",
                extra=[{"key": rejection.field, "message": rejection.detail}],
            ) from None
        answer = {"ok": True, "rejected": rejection.reason.value, "detail": rejection.detail}
        return Response(answer, status_code=200)
    await ingest.queue(parsed)
    answer = {"ok": True, "queued": True, "event_id": parsed.sale.event_id}
    return Response(answer, status_code=200)
