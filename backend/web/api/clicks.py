"""``POST /api/v1/clicks``: a click recorded by a server or an app instead of a browser.

A caller that sends its visitors on itself (an app's own link handling, a server-side redirect)
reports the click here with what it saw of the visitor, and gets the click id and the URL to send
the visitor to. It is the redirect's click in every other respect: the same quality checks in the
worker, the same stream, the same destination templates. The visitor's address and user agent are
taken from the body, so only an API key may send them; a partner's key may click its own links only.
Refused bodies are answered 400 and kept in ``rejected_events`` with their reason.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from msgspec import Meta

from backend.core.clock import now_ms
from backend.core.scope import Viewer
from backend.domain.destinations import SUB_KEYS, UTM_KEYS, expand
from backend.domain.edge import Rejection, build_click, rejected
from backend.domain.events import RejectReason, Source
from backend.domain.visitor import MAX_USER_AGENT, describe_visitor
from backend.storage.db.models import PartnerStatus
from backend.web.api.deps import ANY_KEY, CurrentViewer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.openapi import raw_body_operation
from backend.web.ingest.routes import MAX_BODY, MAX_REFUSED_PAYLOAD, Ingest

Field = Annotated[str, Meta(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]


class ClickRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What the caller saw of the visitor, and the link's optional fields as ``/c/{code}`` takes
    them (``to`` is a deep link on the merchant's domains)."""

    link: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    user_agent: Annotated[str, Meta(max_length=MAX_USER_AGENT)] = ""
    ip: Annotated[str, Meta(max_length=45)] | None = None
    accept_language: Field | None = None  # the visitor's header: its absence suggests a bot
    referrer: Annotated[str, Meta(max_length=2048, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""
    to: Annotated[str, Meta(max_length=2048)] = ""
    sub1: Field = ""
    sub2: Field = ""
    sub3: Field = ""
    sub4: Field = ""
    sub5: Field = ""
    utm_source: Field = ""
    utm_medium: Field = ""
    utm_campaign: Field = ""
    utm_term: Field = ""
    utm_content: Field = ""


class ClickOut(msgspec.Struct):
    """``click_id`` is null when the click is not tracked (its partner is banned): ``url`` then
    is the campaign's destination, untracked, as the redirect would send the visitor."""

    click_id: str | None
    url: str


_REQUEST = msgspec.json.Decoder(ClickRequest)
_ANY = msgspec.json.Decoder()
_PATH = re.compile(r"at `\$\.(\w+)")  # the field msgspec names in a validation error
_FIELDS = ("to", *SUB_KEYS, *UTM_KEYS)


@post(
    "/clicks",
    status_code=201,
    tags=["clicks"],
    raises=[*ANY_KEY, ClientException, NotFoundException],
    operation_class=raw_body_operation(ClickRequest),
    opt=PARTNER_KEYS,
)
async def create_click(
    request: Request[Any, Any, Any], state: State, viewer: CurrentViewer
) -> ClickOut:
    """Record a click as the redirect would, with the visitor's user agent and address as the
    caller saw them; answer its id and where to send the visitor."""
    ingest: Ingest = state.ingest
    at_ms = now_ms()
    body = await request.body()
    try:
        click = _decode(body)
        address = _address(click.ip)
    except Rejection as rejection:
        await _refuse(ingest, rejection, body, at_ms)
        raise ClientException(
            detail=f"Validation failed: {rejection.field}",
            extra=[{"key": rejection.field, "message": rejection.detail}],
        ) from None
    link = await ingest.catalog.link_by_code(click.link)
    if link is None or not _may_click(viewer, link.partner_id):
        unknown = Rejection(RejectReason.UNKNOWN_LINK, "link", "no link has this code")
        await _refuse(ingest, unknown, body, at_ms)
        raise NotFoundException(detail="no link has this code")
    if link.partner_status == PartnerStatus.BANNED:
        banned = Rejection(RejectReason.PARTNER_BANNED, "link", "the link's partner is banned")
        await _refuse(ingest, banned, body, at_ms)
        return ClickOut(click_id=None, url=expand(link.campaign_destination_url, {}))
    visitor = describe_visitor(
        address,
        click.user_agent,
        bool(click.accept_language),
        await ingest.salt.current(),
        locate=True,
        countries=ingest.countries,
    )
    params = {name: getattr(click, name) for name in _FIELDS}
    redirect, event = build_click(link, params, click.referrer, visitor, ingest.signer, at_ms)
    await ingest.queue(event)
    return ClickOut(click_id=redirect.click_id, url=redirect.location)


def _decode(body: bytes) -> ClickRequest:
    if len(body) > MAX_BODY:
        raise Rejection(RejectReason.FIELD_TOO_LONG, "body", f"over {MAX_BODY} bytes")
    try:
        return _REQUEST.decode(body)
    except msgspec.ValidationError as error:
        named = _PATH.search(str(error))
        field = named[1] if named else "body"
        raise Rejection(RejectReason.INVALID_EVENT, field, str(error)) from None
    except msgspec.DecodeError as error:
        raise Rejection(RejectReason.INVALID_EVENT, "body", str(error)) from None
    except RecursionError:
        raise Rejection(RejectReason.INVALID_EVENT, "body", "JSON nested too deeply") from None


def _address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ip is None:
        return None
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        raise Rejection(RejectReason.INVALID_EVENT, "ip", "not an IPv4 or IPv6 address") from None


def _may_click(viewer: Viewer, partner_id: int) -> bool:
    """An admin key clicks any link, a partner's key its own only (others look unknown)."""
    return viewer.is_admin or viewer.partner_id == partner_id


async def _refuse(ingest: Ingest, rejection: Rejection, body: bytes, at_ms: int) -> None:
    """Keep the refusal with what the body said, minus the visitor's address (no raw address
    is stored anywhere); a body that is not a JSON object is not kept at all, as it may hold one."""
    await ingest.queue(rejected(Source.API, rejection, _without_address(body), at_ms))


def _without_address(body: bytes) -> str:
    try:
        fields = _ANY.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return ""
    if not isinstance(fields, dict):
        return ""
    fields.pop("ip", None)
    return msgspec.json.encode(fields).decode()[:MAX_REFUSED_PAYLOAD]
