"""The ingest routes: ``/c/{code}``, ``/p.gif`` and ``/e``.

They are the hottest paths, so ``IngestFirst`` answers them before Litestar's router and
middleware see the request (the framework's own request handling is a large share of the
budget); everything else goes on to the Litestar app. Each handler validates,
stamps, queues through the group-commit writer and answers. The pixel and the redirect always
answer the browser; bad input is queued as a rejected event with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from backend.core.clock import DAY_S, now_ms
from backend.core.ids import ClickIdSigner, CustomerHasher
from backend.core.settings import Settings
from backend.domain.destinations import expand
from backend.domain.edge import (
    CLICK_FIELDS,
    CONVERSION_FIELDS,
    MAX_CLICK_ID,
    MAX_EVENTS_PER_REQUEST,
    MAX_KEY,
    Rejection,
    build_click,
    build_conversion,
    build_impression,
    read_fields,
    rejected,
    without_customer,
)
from backend.domain.events import QueuedEvent, RejectReason, Source, Visitor, encode_event
from backend.domain.geo import Countries
from backend.domain.visitor import Clients, DailySalt, describe_client
from backend.storage.catalog import Catalog
from backend.storage.db.models import PartnerStatus
from backend.storage.streams.writer import StreamWriter
from backend.web.security_headers import SECURITY_HEADERS

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
MAX_BODY = 64 * 1024
MAX_REFUSED_PAYLOAD = 1024  # of each refused beacon event kept in rejected_events
_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_GIF_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    (b"cache-control", b"no-store, max-age=0"),
]
_NOT_FOUND_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    *SECURITY_HEADERS,  # the one HTML answer of these routes gets the app's headers
]
_beacon_decoder = msgspec.json.Decoder()
CLICK_COOKIE = "ct_click"
_PREFLIGHT_FIELDS = frozenset({"m"})
_PREFLIGHT_MAX_AGE = str(DAY_S).encode()  # browsers may cache a preflight a day
_UNCOUNTED_REDIRECT = [(b"cache-control", b"no-store"), (b"content-length", b"0")]


@dataclass(slots=True)
class Ingest:
    """What the ingest handlers need, built once per process by the app factory."""

    settings: Settings
    catalog: Catalog
    writer: StreamWriter
    salt: DailySalt
    signer: ClickIdSigner
    customers: CustomerHasher
    clients: Clients
    countries: Countries
    not_found_page: bytes
    queued: int = 0  # events handed to the writer, for /metrics

    async def visitor(
        self, scope: Scope, headers: Mapping[bytes, bytes], *, locate: bool = False
    ) -> Visitor:
        """``locate``: look the country up too (a click's: the only event that keeps it)."""
        return describe_client(
            self.clients.of_request(scope, headers.get(b"x-forwarded-for")),
            headers.get(b"user-agent", b"").decode("utf-8", "replace"),
            b"accept-language" in headers,
            await self.salt.current(),
            self.countries if locate else None,
        )

    async def queue(self, *events: QueuedEvent) -> None:
        self.queued += len(events)
        await self.writer.put(*(encode_event(event) for event in events))


def query_fields(scope: Scope, wanted: frozenset[str]) -> dict[str, str]:
    """The fields of the query string that a handler reads (the last of a repeated one, as
    ``parse_qsl`` into a dict would keep). Any other field, however many an ad platform
    appends, is passed over without being decoded: the answer and the event never depend on
    how many there are."""
    fields: dict[str, str] = {}
    for pair in scope["query_string"].decode("utf-8", "replace").split("&"):
        name, _, value = pair.partition("=")
        if name not in wanted:
            if "%" not in name and "+" not in name:
                continue
            name = unquote(name.replace("+", " "))
            if name not in wanted:
                continue
        fields[name] = unquote(value.replace("+", " ")) if "%" in value or "+" in value else value
    return fields


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])


async def respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    """Send a whole response from a raw ASGI handler."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def cookie_click_id(headers: Mapping[bytes, bytes]) -> str:
    """The click id of the ``ct_click`` cookie the redirect set, when the request carries it:
    a conversion without a click id then still reaches its click wherever the browser sends the
    cookie to the tracker (served under the shop's own domain, or third-party cookies allowed).
    A malformed value is ignored: it is the browser's, not the merchant's."""
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == CLICK_COOKIE:
            well_formed = 0 < len(value) <= MAX_CLICK_ID and _CODE_CHARS.issuperset(value)
            return value if well_formed else ""
    return ""


def _opted_out(settings: Settings, headers: Mapping[bytes, bytes]) -> bool:
    """Global Privacy Control (and Do Not Track, when configured): no cookie on the device."""
    gpc = settings.honor_gpc and headers.get(b"sec-gpc") == b"1"
    return gpc or (settings.honor_dnt and headers.get(b"dnt") == b"1")


async def click_redirect(ingest: Ingest, code: str, scope: Scope, send: Send) -> None:
    """302 to the link's destination with the click id; 404 page for an unknown code.

    Only a GET is a visit: link unfurlers and prefetchers send HEAD (some other methods), and
    are redirected to the destination without a click id, a cookie or an event. A banned
    partner's link still takes the visitor somewhere: the campaign's destination, without a
    click id (nothing it brings can be credited)."""
    link = None
    if 0 < len(code) <= 32 and _CODE_CHARS.issuperset(code):
        link = await ingest.catalog.link_by_code(code)
    visit = scope.get("method") == "GET"
    if link is None:
        if visit:
            await _untracked(ingest, scope, RejectReason.UNKNOWN_LINK, "no link has this code")
        await respond(send, 404, _NOT_FOUND_HEADERS, ingest.not_found_page)
        return
    banned = link.partner_status == PartnerStatus.BANNED
    if banned or not visit:
        if banned and visit:
            detail = "the link's partner is banned"
            await _untracked(ingest, scope, RejectReason.PARTNER_BANNED, detail)
        destination = link.campaign_destination_url if banned else link.destination_url
        location = expand(destination, {})  # a template's macros empty: nothing to credit
        await respond(send, 302, [(b"location", location.encode()), *_UNCOUNTED_REDIRECT])
        return
    headers = _headers(scope)
    visitor = await ingest.visitor(scope, headers, locate=True)
    redirect, event = build_click(
        link,
        query_fields(scope, CLICK_FIELDS),
        headers.get(b"referer", b"").decode("utf-8", "replace"),
        visitor,
        ingest.signer,
        now_ms(),
    )
    await ingest.queue(event)
    response_headers = [
        (b"location", redirect.location.encode()),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ]
    if not _opted_out(ingest.settings, headers):
        site = "SameSite=None; Secure" if ingest.settings.secure_cookies else "SameSite=Lax"
        cookie = (
            f"{CLICK_COOKIE}={redirect.click_id}; Max-Age={redirect.cookie_max_age_s}; "
            f"Path=/; HttpOnly; {site}"
        )
        response_headers.append((b"set-cookie", cookie.encode()))
    await respond(send, 302, response_headers)


async def _untracked(ingest: Ingest, scope: Scope, reason: RejectReason, detail: str) -> None:
    """A visit through ``/c/`` that is not tracked as a click, kept as a rejected event: the
    path names the code; the query string is the visitor's (sub-ids, a deep link)."""
    await ingest.queue(
        rejected(Source.REDIRECT, Rejection(reason, "code", detail), scope["path"], now_ms())
    )


async def conversion_pixel(ingest: Ingest, scope: Scope, send: Send) -> None:
    """Always the 43-byte GIF; a bad conversion is kept as a rejected event."""
    at_ms = now_ms()
    params = query_fields(scope, CONVERSION_FIELDS)
    headers = _headers(scope)
    cookie = "" if params.get("clk") else cookie_click_id(headers)
    visitor = await ingest.visitor(scope, headers)
    event: QueuedEvent
    try:
        event = await build_conversion(
            ingest.catalog, params, Source.PIXEL, visitor, at_ms, cookie_click_id=cookie,
            customers=ingest.customers, opted_out=_opted_out(ingest.settings, headers),
        )  # fmt: skip
    except Rejection as rejection:
        event = rejected(Source.PIXEL, rejection, urlencode(without_customer(params)), at_ms)
    await ingest.queue(event)
    await respond(send, 200, _GIF_HEADERS, GIF)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away
        chunk = message["body"]
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message["more_body"]:
            return b"".join(chunks)


def _allowed_origin(origin: bytes | None, domains: frozenset[str]) -> bytes | None:
    if not origin:
        return None
    host = urlsplit(origin.decode("latin-1")).hostname or ""
    return origin if host in domains else None


async def _json(send: Send, status: int, body: object, origin: bytes | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    if origin:
        headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
    await respond(send, status, headers, msgspec.json.encode(body))


async def event_beacon(ingest: Ingest, scope: Scope, receive: Receive, send: Send) -> None:
    """Batched events from the snippet: ``{"m": key, "events": [...]}`` or ``{"p": key, ...}``.

    Accepted as any content type so ``sendBeacon`` with ``text/plain`` needs no preflight.
    Valid events are queued even when others in the same request are not; those are listed in
    the answer with their index and kept as rejected events, one per reason and request (the
    first such event, cut to ``MAX_REFUSED_PAYLOAD``, and how many more there were), so what
    one request can store stays small however many bad events it carries.
    """
    headers = _headers(scope)
    origin = headers.get(b"origin")
    method = scope.get("method")
    if method == "OPTIONS":
        await _preflight(send, ingest, query_fields(scope, _PREFLIGHT_FIELDS), origin)
        return
    if method != "POST":
        await _json(send, 405, {"errors": [{"field": "method", "detail": "use POST"}]})
        return
    at_ms = now_ms()
    body = await _read_body(receive, MAX_BODY)
    if body is None:
        rejection = Rejection(RejectReason.FIELD_TOO_LONG, "body", f"over {MAX_BODY} bytes")
        await ingest.queue(rejected(Source.JS, rejection, "", at_ms))
        await _json(send, 413, {"errors": [_error(None, rejection)]})
        return
    allowed: bytes | None = None
    try:
        key_field, key, events = _envelope(body)
        visitor = await ingest.visitor(scope, headers)
        if key_field == "m":
            merchant = await ingest.catalog.merchant_by_key(key)
            if merchant is None:
                raise Rejection(RejectReason.UNKNOWN_MERCHANT, "m", "no merchant has this key")
            allowed = _allowed_origin(origin, merchant.domains)
            cookie = cookie_click_id(headers)
            opted_out = _opted_out(ingest.settings, headers)

            async def build(fields: dict[str, object]) -> QueuedEvent:
                return await build_conversion(
                    ingest.catalog, fields, Source.JS, visitor, at_ms, merchant, cookie,
                    ingest.customers, opted_out,
                )  # fmt: skip
        else:
            partner = await ingest.catalog.partner_by_key(key)
            if partner is None:
                raise Rejection(RejectReason.UNKNOWN_PARTNER, "p", "no partner has this key")
            allowed = origin  # publishers' sites are not registered; impressions carry no money
            page = headers.get(b"referer", b"").decode("utf-8", "replace")

            async def build(fields: dict[str, object]) -> QueuedEvent:
                return await build_impression(
                    ingest.catalog, partner.id, fields, visitor, page, at_ms
                )
    except Rejection as rejection:
        await ingest.queue(rejected(Source.JS, rejection, _read_envelope(body), at_ms))
        await _json(send, 400, {"errors": [_error(None, rejection)]}, allowed)
        return
    queued: list[QueuedEvent] = []
    errors: list[dict[str, object]] = []
    refused: dict[RejectReason, tuple[int, Rejection, object, int]] = {}
    for index, fields in enumerate(events):
        try:
            if not isinstance(fields, dict):
                raise Rejection(RejectReason.INVALID_EVENT, "events", "not an object")
            queued.append(await build(fields))
        except Rejection as rejection:
            errors.append(_error(index, rejection))
            seen = refused.get(rejection.reason, (index, rejection, fields, 0))
            refused[rejection.reason] = (*seen[:3], seen[3] + 1)
    accepted = len(queued)
    for index, first, fields, count in refused.values():
        more = f" (and {count - 1} more events of this request)" if count > 1 else ""
        summary = Rejection(first.reason, f"events[{index}].{first.field}", first.detail + more)
        kept = read_fields(fields) if isinstance(fields, dict) else None
        payload = msgspec.json.encode(kept).decode()[:MAX_REFUSED_PAYLOAD]
        queued.append(rejected(Source.JS, summary, payload, at_ms))
    await ingest.queue(*queued)
    await _json(send, 202, {"accepted": accepted, "errors": errors}, allowed)


def _envelope(body: bytes) -> tuple[str, str, list[object]]:
    """``("m" | "p", key, events)`` from a beacon body, or ``Rejection``."""
    try:
        envelope = _beacon_decoder.decode(body)
    except msgspec.DecodeError:
        raise Rejection(RejectReason.INVALID_EVENT, "body", "not valid JSON") from None
    except RecursionError:
        raise Rejection(RejectReason.INVALID_EVENT, "body", "JSON nested too deeply") from None
    if not isinstance(envelope, dict):
        raise Rejection(RejectReason.INVALID_EVENT, "body", "expected a JSON object")
    events = envelope.get("events")
    if not isinstance(events, list) or not events:
        raise Rejection(RejectReason.MISSING_FIELD, "events", "a non-empty list is required")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise Rejection(RejectReason.FIELD_TOO_LONG, "events", f"at most {MAX_EVENTS_PER_REQUEST}")
    for field in ("m", "p"):
        key = envelope.get(field)
        if isinstance(key, str) and key:
            if len(key) > MAX_KEY:
                raise Rejection(RejectReason.FIELD_TOO_LONG, field, f"longer than {MAX_KEY}")
            return field, key, events
    raise Rejection(RejectReason.MISSING_FIELD, "m", "a merchant (m) or partner (p) key")


def _read_envelope(body: bytes) -> str:
    """What a refused beacon keeps of its body: its key and its events' ``read_fields``; of a
    body that is not a JSON object, nothing."""
    try:
        envelope = _beacon_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return ""
    if not isinstance(envelope, dict):
        return ""
    kept = read_fields(envelope)
    if isinstance(events := envelope.get("events"), list):
        kept["events"] = [read_fields(e) if isinstance(e, dict) else None for e in events]
    return msgspec.json.encode(kept).decode()


async def _preflight(
    send: Send, ingest: Ingest, params: Mapping[str, str], origin: bytes | None
) -> None:
    """CORS preflight for JSON callers, who name the merchant in ``?m=``."""
    merchant = await ingest.catalog.merchant_by_key(params.get("m", "")[:MAX_KEY])
    allowed = _allowed_origin(origin, merchant.domains) if merchant else None
    headers = [
        (b"access-control-allow-methods", b"POST"),
        (b"access-control-allow-headers", b"content-type"),
        (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
        (b"vary", b"Origin"),
    ]
    if allowed:
        headers.append((b"access-control-allow-origin", allowed))
    await respond(send, 204, headers)


def _error(index: int | None, rejection: Rejection) -> dict[str, object]:
    error: dict[str, object] = {
        "field": rejection.field,
        "reason": rejection.reason,
        "detail": rejection.detail,
    }
    if index is not None:
        error["index"] = index
    return error


def load_not_found_page(templates: Path) -> bytes:
    return (templates / "link_not_found.html").read_bytes()


class IngestFirst:
    """The ASGI application: ingest routes here, everything else to the Litestar ``app``.

    ``state`` is the app's state, where its lifespan puts the ``Ingest`` at startup.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            path = scope["path"]
            # path_template as Litestar sets it for its routes: the route label of /metrics.
            if path == "/p.gif":
                scope["path_template"] = path
                await conversion_pixel(self.state.ingest, scope, send)
                return
            if path.startswith("/c/") or path == "/c":
                scope["path_template"] = "/c/{code}"
                await click_redirect(self.state.ingest, path[3:].strip("/"), scope, send)
                return
            if path == "/e":
                scope["path_template"] = path
                await event_beacon(self.state.ingest, scope, receive, send)
                return
        await self.app(scope, receive, send)
