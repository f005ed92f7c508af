"""The queued-event contract between ingestion and the worker.

Handlers validate and stamp; what they put on the Redis stream is one of these structs, encoded
with msgpack. The worker trusts their shape (it was checked at the edge) but not their
references: a link or merchant may be gone by the time the event is written.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class RejectReason(StrEnum):
    """Why an event was kept in ``rejected_events`` instead of being counted."""

    UNKNOWN_MERCHANT = "unknown_merchant"
    UNKNOWN_PARTNER = "unknown_partner"
    UNKNOWN_LINK = "unknown_link"
    UNKNOWN_CURRENCY = "unknown_currency"
    INVALID_AMOUNT = "invalid_amount"
    NEGATIVE_AMOUNT = "negative_amount"
    MISSING_FIELD = "missing_field"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_EVENT = "invalid_event"
    DUPLICATE_ORDER = "duplicate_order"
    BAD_SIGNATURE = "bad_signature"  # a postback not signed with its merchant's secret
    POISON = "poison"


class Source(StrEnum):
    PIXEL = "pixel"
    JS = "js"
    POSTBACK = "postback"
    REDIRECT = "redirect"
    UNKNOWN = "unknown"  # a stream entry too broken to tell


class Visitor(msgspec.Struct, array_like=True, frozen=True):
    """What the edge keeps of the visitor: never the raw address."""

    ip_prefix: str
    visitor_hash: str
    user_agent: str
    accept_language: bool


class ClickEvent(msgspec.Struct, tag="c", array_like=True, frozen=True):
    click_id: str
    at_ms: int
    link_id: int
    visitor: Visitor
    referrer_url: str
    landing_url: str
    subs: tuple[str, str, str, str, str]
    utm: tuple[str, str, str, str, str]  # source, medium, campaign, term, content


class ImpressionEvent(msgspec.Struct, tag="i", array_like=True, frozen=True):
    event_id: str
    at_ms: int
    link_id: int
    visitor: Visitor
    page_url: str


class ConversionEvent(msgspec.Struct, tag="v", array_like=True, frozen=True):
    event_id: str
    at_ms: int
    merchant_id: int
    order_id: str | None
    amount_minor: int
    currency: str
    click_id: str | None
    source: Source
    event_name: str
    items_json: str | None
    visitor: Visitor | None


class RejectedEvent(msgspec.Struct, tag="r", array_like=True, frozen=True):
    event_id: str
    at_ms: int
    source: Source
    reason: RejectReason
    detail: str
    payload: str


QueuedEvent = ClickEvent | ImpressionEvent | ConversionEvent | RejectedEvent

MAX_REJECTED_PAYLOAD = 4096

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[QueuedEvent] = msgspec.msgpack.Decoder(QueuedEvent)


def encode_event(event: QueuedEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> QueuedEvent:
    """Raise ``msgspec.DecodeError`` (or ``ValidationError``) for an entry that is not an event."""
    return _decoder.decode(data)
