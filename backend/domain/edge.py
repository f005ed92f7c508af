"""Validation at the edge: request fields in, a stamped event or a rejection out.

Every field has a hard length limit here; after this, code trusts the typed event. Nothing in
this module does I/O except through the catalog it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus, urlsplit

import msgspec

from backend.core.clock import DAY_S
from backend.core.ids import ClickIdSigner, CustomerHasher, new_event_id
from backend.core.money import MoneyError, check_amount, normalise_currency, parse_amount
from backend.domain.destinations import MACROS, SUB_KEYS, UTM_KEYS, expand, is_template
from backend.domain.events import (
    MAX_REJECTED_PAYLOAD,
    ClickEvent,
    ConversionEvent,
    ImpressionEvent,
    RejectedEvent,
    RejectReason,
    Source,
    Visitor,
    coupon_key,
)
from backend.domain.quality.agents import classify
from backend.storage.catalog import Catalog, LinkInfo, MerchantInfo

MAX_URL = 2048
MAX_SUB = 255
MAX_ORDER_ID = 128
MAX_CLICK_ID = 64
MAX_EVENT_NAME = 64
MAX_KEY = 40
MAX_AMOUNT = 32
MAX_ITEMS_JSON = 8192
MAX_COUPON = 64
MAX_CUSTOMER = 128  # a customer reference (``cust``): kept only as its keyed hash
MAX_EVENTS_PER_REQUEST = 100
# The fields of a conversion or an impression the edge reads: all that a rejected one keeps of
# what was sent (with the reason, enough to see what was wrong), never what else came along (a
# shop's customer email, say). Nor the customer reference (``cust``), which is kept nowhere raw.
READ_FIELDS = frozenset({"m", "p", "t", "l", "oid", "amt", "cur", "clk", "ev", "items", "coupon"})
# The query fields the redirect and the pixel read; any other is ignored unread.
CLICK_FIELDS = frozenset({"to", "ct_page", *SUB_KEYS, *UTM_KEYS})
CONVERSION_FIELDS = frozenset({"m", "t", "oid", "amt", "cur", "clk", "ev", "coupon", "cust"})
_ITEM_VALUES = (str, int, float, bool, type(None))
Five = tuple[str, str, str, str, str]  # sub1..sub5, or utm_source..utm_content


_CONTROLS = re.compile("[\x00-\x1f\x7f]")
_SCALARS = (str, int, float, type(None))  # what a conversion's named fields may be


def without_controls(value: str) -> str:
    """Control characters (NUL above all, which PostgreSQL text refuses) removed."""
    return _CONTROLS.sub("", value) if _CONTROLS.search(value) else value


class Rejection(Exception):
    """An input that cannot become an event; ``field`` names the culprit for API answers."""

    def __init__(self, reason: RejectReason, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.field = field
        self.detail = detail


def rejected(source: Source, rejection: Rejection, payload: str, now_ms: int) -> RejectedEvent:
    return RejectedEvent(
        event_id=new_event_id(now_ms),
        at_ms=now_ms,
        source=source,
        reason=rejection.reason,
        detail=f"{rejection.field}: {rejection.detail}"[:500],
        payload=payload[:MAX_REJECTED_PAYLOAD].replace("\x00", "\ufffd"),
    )


def without_customer(fields: Mapping[str, str]) -> dict[str, str]:
    """Query fields as a rejected pixel keeps them: without the raw customer reference."""
    return {name: value for name, value in fields.items() if name != "cust"}


def read_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """``fields`` without those the edge does not read (``READ_FIELDS``)."""
    return {name: value for name, value in fields.items() if name in READ_FIELDS}


def origin_and_path(url: str) -> str:
    """``url`` without its user info, query string and fragment, where emails, tokens and
    session ids travel: what reports need of a referrer or a page. Not a URL: empty."""
    scheme, separator, rest = url.partition("#")[0].partition("?")[0].partition("://")
    if not separator:
        return ""
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def _limited(params: Mapping[str, str], name: str, limit: int) -> str:
    value = params.get(name, "")
    if not value:
        return value
    if len(value) > limit:
        raise Rejection(RejectReason.FIELD_TOO_LONG, name, f"longer than {limit} characters")
    if _CONTROLS.search(value):
        raise Rejection(RejectReason.INVALID_EVENT, name, "contains control characters")
    return value


def safe_deep_link(candidate: str, allowed_hosts: frozenset[str]) -> str | None:
    """``candidate`` if it is an absolute http(s) URL whose host is exactly an allowed domain.

    Refuses everything open redirects are made of: scheme-relative ``//``, backslashes,
    userinfo, control characters, other schemes and look-alike hosts.
    """
    if not candidate or len(candidate) > MAX_URL or "\\" in candidate:
        return None
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in candidate):
        return None
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or port not in (None, 80, 443):
        return None
    host = (parts.hostname or "").rstrip(".")
    return candidate if host and host in allowed_hosts else None


def with_query_param(url: str, name: str, value: str) -> str:
    """``url`` with ``name=value`` added to its query, before any fragment."""
    base, hash_mark, fragment = url.partition("#")
    separator = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return f"{base}{separator}{quote_plus(name)}={quote_plus(value)}{hash_mark}{fragment}"


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    click_id: str
    cookie_max_age_s: int


def build_click(
    link: LinkInfo,
    params: Mapping[str, str],
    referrer: str,
    visitor: Visitor,
    signer: ClickIdSigner,
    now_ms: int,
) -> tuple[Redirect, ClickEvent]:
    """The redirect and the click event; over-long optional fields are cut, never fatal."""
    destination = safe_deep_link(params.get("to", ""), link.merchant_domains)
    landing = destination or link.destination_url
    click_id = signer.issue(link.id, now_ms)
    params = {name: without_controls(value) for name, value in params.items()}
    referrer_url = origin_and_path(without_controls(referrer))
    page = params.get("ct_page", "")  # the snippet's path of the publisher's page
    if page.startswith("/") and referrer_url:
        referrer_url = origin_and_path("/".join(referrer_url.split("/", 3)[:3]) + page)
    subs, utm = _five(params, SUB_KEYS), _five(params, UTM_KEYS)
    if destination is None and is_template(landing):
        location = expand(landing, _macro_values(link, click_id, subs, utm))
    else:
        location = with_query_param(landing, "ct_click", click_id)
    event = click_event(
        link, click_id, now_ms, visitor, referrer_url[:MAX_URL], landing[:MAX_URL], subs, utm
    )
    redirect = Redirect(
        location=location, click_id=click_id, cookie_max_age_s=link.window_days * DAY_S
    )
    return redirect, event


def _macro_values(link: LinkInfo, click_id: str, subs: Five, utm: Five) -> dict[str, str]:
    own = (click_id, link.code, link.partner_key, str(link.campaign_id))
    return dict(zip(MACROS, (*own, *subs, *utm), strict=True))


def click_event(
    link: LinkInfo,
    click_id: str,
    at_ms: int,
    visitor: Visitor,
    referrer_url: str,
    landing_url: str,
    subs: Five,
    utm: Five,
) -> ClickEvent:
    """The click's row, stamped with its link's owners and its user agent's verdict."""
    agent = classify(visitor.user_agent, visitor.accept_language)
    return ClickEvent(
        click_id,
        at_ms,
        *_owners_and_visitor(link, visitor),
        agent.device_class,
        agent.browser,
        agent.os,
        visitor.country,
        _referrer_host(referrer_url),
        referrer_url,
        landing_url,
        *subs,
        *utm,
        agent.is_bot,
        False,  # unique or not: the worker asks Redis
        agent.flags,
        visitor.ip_prefix,
    )


def _owners_and_visitor(link: LinkInfo, visitor: Visitor) -> tuple[int, int, int, int, str]:
    """The columns a click's and an impression's rows share after their id and time."""
    return (link.id, link.partner_id, link.campaign_id, link.merchant_id, visitor.visitor_hash)


def _five(params: Mapping[str, str], keys: tuple[str, ...]) -> Five:
    first, second, third, fourth, fifth = (params.get(key, "")[:MAX_SUB] for key in keys)
    return first, second, third, fourth, fifth


def _referrer_host(url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url.split("/", 3)[2].rsplit("@", 1)[-1][:255]
    return ""


async def build_conversion(
    catalog: Catalog,
    params: Mapping[str, object],
    source: Source,
    visitor: Visitor | None,
    now_ms: int,
    merchant: MerchantInfo | None = None,
    cookie_click_id: str = "",
    customers: CustomerHasher | None = None,
    opted_out: bool = False,
) -> ConversionEvent:
    """A conversion from pixel or beacon fields; raise ``Rejection`` naming the bad field.
    ``cookie_click_id``: the ``ct_click`` cookie's click id, used when the fields name none;
    ``customers``: hashes the customer reference (``cust``), which is ignored without it;
    ``opted_out``: the buyer's browser asked not to be tracked."""
    text = {k: v for k, v in params.items() if isinstance(v, str)}
    for name in ("oid", "clk", "ev", "cur", "amt", "t", "coupon", "cust"):
        if name in params and not isinstance(params[name], _SCALARS):
            raise Rejection(RejectReason.INVALID_EVENT, name, "must be a string")
    if merchant is None:
        key = _limited(text, "m", MAX_KEY)
        if not key:
            raise Rejection(RejectReason.MISSING_FIELD, "m", "merchant key is required")
        merchant = await catalog.merchant_by_key(key)
        if merchant is None:
            raise Rejection(RejectReason.UNKNOWN_MERCHANT, "m", "no merchant has this key")
    kind = text.get("t", "conversion")
    if kind != "conversion":
        raise Rejection(RejectReason.INVALID_EVENT, "t", f"unsupported event type {kind[:20]!r}")
    order_id = _limited(text, "oid", MAX_ORDER_ID)
    click_id = _limited(text, "clk", MAX_CLICK_ID)
    from_cookie = not click_id and bool(cookie_click_id)
    if from_cookie:
        click_id = cookie_click_id
    coupon = coupon_key(_limited(text, "coupon", MAX_COUPON))
    customer = _limited(text, "cust", MAX_CUSTOMER).strip()
    event_name = _limited(text, "ev", MAX_EVENT_NAME) or "sale"
    amount_raw = params.get("amt", "")
    amount_text = amount_raw if isinstance(amount_raw, str) else str(amount_raw)
    if len(amount_text) > MAX_AMOUNT:
        raise Rejection(RejectReason.FIELD_TOO_LONG, "amt", f"longer than {MAX_AMOUNT}")
    try:
        currency = normalise_currency(_limited(text, "cur", 3) or merchant.currency)
        amount_minor = parse_amount(amount_text or "0", currency)
        if merchant.max_order_minor is not None and currency == merchant.currency:
            check_amount(amount_minor, currency, merchant.max_order_minor)
    except MoneyError as error:
        field = "cur" if error.reason == RejectReason.UNKNOWN_CURRENCY else "amt"
        raise Rejection(RejectReason(error.reason), field, str(error)) from error
    items_json = _items_json(params.get("items"))
    return ConversionEvent(
        event_id=new_event_id(now_ms),
        at_ms=now_ms,
        merchant_id=merchant.id,
        order_id=order_id or None,
        amount_minor=amount_minor,
        currency=currency,
        click_id=click_id or None,
        source=source,
        event_name=event_name,
        items_json=items_json,
        ip_prefix=visitor.ip_prefix if visitor else "",
        coupon=coupon,
        click_from_cookie=from_cookie,
        customer=customers.hash(merchant.id, customer) if customers and customer else "",
        opted_out=opted_out,
    )


def _items_json(items: object) -> str | None:
    """A sale's line items as JSON: a list of flat objects (``{"sku": "X", "qty": 1, "price":
    "49.90"}``) whose values are text, numbers, booleans or null, so nothing nests."""
    if items is None:
        return None
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and all(isinstance(v, _ITEM_VALUES) for v in item.values())
        for item in items
    ):
        raise Rejection(
            RejectReason.INVALID_EVENT, "items", "a list of objects of text or number values"
        )
    items_json = msgspec.json.encode(items).decode()
    if len(items_json) > MAX_ITEMS_JSON:
        raise Rejection(RejectReason.FIELD_TOO_LONG, "items", f"over {MAX_ITEMS_JSON} bytes")
    return items_json


async def build_impression(
    catalog: Catalog,
    partner_id: int,
    fields: Mapping[str, object],
    visitor: Visitor,
    page_url: str,
    now_ms: int,
) -> ImpressionEvent:
    code = fields.get("l")
    if not isinstance(code, str) or not code:
        raise Rejection(RejectReason.MISSING_FIELD, "l", "link code is required")
    if len(code) > 32:
        raise Rejection(RejectReason.FIELD_TOO_LONG, "l", "longer than 32 characters")
    link = await catalog.link_by_code(code)
    if link is None or link.partner_id != partner_id:
        raise Rejection(RejectReason.UNKNOWN_LINK, "l", "no link with this code for this partner")
    page = origin_and_path(without_controls(page_url))[:MAX_URL]
    return impression_event(link, new_event_id(now_ms), now_ms, visitor, page)


def impression_event(
    link: LinkInfo, event_id: str, at_ms: int, visitor: Visitor, page_url: str
) -> ImpressionEvent:
    """The impression's row, stamped with its link's owners and its user agent's verdict."""
    return ImpressionEvent(
        event_id,
        at_ms,
        *_owners_and_visitor(link, visitor),
        page_url,
        classify(visitor.user_agent, visitor.accept_language).is_bot,
        False,  # unique or not: the worker asks Redis
    )
