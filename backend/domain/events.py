"""The queued-event contract between ingestion and the worker.

Handlers validate and stamp; what they put on the Redis stream is these structs, encoded with
msgpack, a group commit's events to a stream entry (``backend.storage.streams.entries``). The worker
trusts the events' shape (it was checked at the edge) but not their references: a link or merchant
may be gone by the time the event is written.

Clicks and impressions travel as their table's rows, stamped at the edge with their link's
owners and the user agent's verdict: the worker only adds what Redis answers, and no user agent
reaches the stream (nor Redis's append-only file). A click's and a conversion's network prefix
travel too, for the quality script's windows in Redis, and are never written to the database:
next to a visitor hash, a prefix narrows the address to 256 candidates.
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
    AMOUNT_TOO_LARGE = "amount_too_large"  # over the shared bound or the merchant's maximum
    MISSING_FIELD = "missing_field"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_EVENT = "invalid_event"
    DUPLICATE_ORDER = "duplicate_order"
    BAD_SIGNATURE = "bad_signature"  # a postback not signed with its merchant's secret
    POISON = "poison"
    PARTNER_BANNED = "partner_banned"  # a banned partner's click: redirected, never tracked
    UNKNOWN_SOURCE = "unknown_source"  # a network postback to a token no source has
    IP_NOT_ALLOWED = "ip_not_allowed"  # a network postback from outside its source's allow-list
    UNKNOWN_STATUS = "unknown_status"  # a network's status value its source does not map
    STATUS_REFUSED = "status_refused"  # a network's status change the status rules refuse
    NO_ATTRIBUTION = "no_attribution"  # a store's sale with no click, coupon or customer
    UNKNOWN_ORDER = "unknown_order"  # a store's refund or dispute of an order not stored


class Source(StrEnum):
    PIXEL = "pixel"
    JS = "js"
    POSTBACK = "postback"
    REDIRECT = "redirect"
    API = "api"  # the management API's click endpoint
    NETWORK = "network"  # a conversion source's postback (/pb/{token})
    UNKNOWN = "unknown"  # a stream entry too broken to tell


# Events are frozen and hold only strings, numbers and tuples of them, so they can be part of no
# reference cycle: ``gc=False`` keeps the garbage collector from tracking and scanning each of
# the thousands a worker decodes per second (in the benchmark: 14 µs of event-loop CPU per event
# with tracking, 9 without).


class Visitor(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What the edge knows of the visitor while it answers: never the raw address. The user
    agent stays at the edge (its verdict travels); the prefix travels for the quality script."""

    ip_prefix: str
    visitor_hash: str
    user_agent: str
    accept_language: bool
    country: str = ""  # looked up from the address before it is dropped; "" when unknown


class ClickEvent(msgspec.Struct, tag="c4", array_like=True, frozen=True, gc=False):
    """A ``clicks`` row as the edge stamps it, its fields the table's columns in order, then
    the network prefix (for the quality script, never stored): the link's owners and the user
    agent's verdict are known where the click happens, so the worker only adds Redis's verdict
    (``is_unique`` and the flags it raises after the agent's, which ``flags`` holds here) to a
    tuple it does not have to build."""

    click_id: str
    at_ms: int
    link_id: int
    partner_id: int
    campaign_id: int
    merchant_id: int
    visitor_hash: str
    device_class: str
    browser: str
    os: str
    country: str  # ISO 3166-1 alpha-2 from the address at the edge, "" when unknown
    referrer_host: str
    referrer_url: str
    landing_url: str
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str
    is_bot: bool
    is_unique: bool
    flags: str
    ip_prefix: str  # empty without an address


class ClickEventC3(msgspec.Struct, tag="c3", array_like=True, frozen=True, gc=False):
    """A click queued by a release before browsers' operating system and the visitor's country
    were stamped (a spool or stream entry from before an upgrade); ``upgraded`` is the click."""

    click_id: str
    at_ms: int
    link_id: int
    partner_id: int
    campaign_id: int
    merchant_id: int
    visitor_hash: str
    device_class: str
    browser: str
    referrer_host: str
    referrer_url: str
    landing_url: str
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str
    is_bot: bool
    is_unique: bool
    flags: str
    ip_prefix: str

    def upgraded(self) -> ClickEvent:
        return ClickEvent(**msgspec.structs.asdict(self), os="", country="")


class ImpressionEvent(msgspec.Struct, tag="i3", array_like=True, frozen=True, gc=False):
    """An ``impressions`` row as the edge stamps it, its fields the table's columns in order;
    the worker adds ``is_unique``."""

    event_id: str
    at_ms: int
    link_id: int
    partner_id: int
    campaign_id: int
    merchant_id: int
    visitor_hash: str
    page_url: str
    is_bot: bool
    is_unique: bool


class ConversionEvent(msgspec.Struct, tag="v2", array_like=True, frozen=True, gc=False):
    """A conversion as the edge validated it: of the visitor only the network prefix travels
    (the quality script counts conversions per prefix). The last fields have defaults, so
    entries queued before they existed still decode."""

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
    ip_prefix: str  # empty for a postback (no visitor)
    coupon: str = ""  # the coupon code the sale carried, upper-cased; "" for none
    click_from_cookie: bool = False  # ``click_id`` is the ``ct_click`` cookie's
    # The customer reference's keyed hash (``CustomerHasher``), never the reference; "" for none.
    customer: str = ""
    # The buyer's browser asked not to be tracked (Global Privacy Control, or Do Not Track when
    # honoured): no click was kept for it, so an unattributed sale is noted as such.
    opted_out: bool = False


def coupon_key(code: str) -> str:
    """A coupon code as it travels and is matched: case does not matter, nor white space
    around it."""
    return code.strip().upper()


class NetworkEvent(msgspec.Struct, tag="n1", array_like=True, frozen=True, gc=False):
    """A conversion source's postback (``/pb/{token}``): the sale as the network reports it
    (source ``network``; amount 0 when it sends none), which source, the commission it reports
    (-1: none) and the status it reports, mapped to ours ("" when it sends none)."""

    sale: ConversionEvent
    source_id: int
    commission_minor: int
    status: str
    # A store's refund (``backend.domain.stores``): the order's amount is lowered by
    # ``refund_minor`` or to ``remaining_minor`` (-1: not given); "" and 0 for a network.
    refund_minor: int = 0
    remaining_minor: int = -1
    store_event: str = ""  # the store's event: "<kind> <type> <id>", "" for a network


class RejectedEvent(msgspec.Struct, tag="r", array_like=True, frozen=True, gc=False):
    event_id: str
    at_ms: int
    source: Source
    reason: RejectReason
    detail: str
    payload: str


QueuedEvent = (
    ClickEvent | ClickEventC3 | ImpressionEvent | ConversionEvent | NetworkEvent | RejectedEvent
)

MAX_REJECTED_PAYLOAD = 4096

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[QueuedEvent] = msgspec.msgpack.Decoder(QueuedEvent)
_entry_decoder = msgspec.msgpack.Decoder(list[QueuedEvent])


def encode_event(event: QueuedEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> QueuedEvent:
    """Raise ``msgspec.DecodeError`` (or ``ValidationError``) for an entry that is not an event."""
    return _decoder.decode(data)


def storable(data: bytes) -> bytes:
    """An encoded event as it may be kept in the database (a dead letter): without its network
    prefix, which travels only for the quality script. What does not decode is kept as it is."""
    try:
        event = decode_event(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return data
    if isinstance(event, ClickEvent | ClickEventC3 | ConversionEvent) and event.ip_prefix:
        return encode_event(msgspec.structs.replace(event, ip_prefix=""))
    return data


def decode_entry(data: bytes) -> list[QueuedEvent]:
    """All events of an entry in one go; raise like ``decode_event`` if any part is not one."""
    return _entry_decoder.decode(data)
