"""Conversion sources: ``/api/v1/sources`` (admin keys) to manage them, and ``GET|POST
/pb/{token}``, where a network reports a sale or a status in its own field names, or a store
(Stripe, Shopify) sends its webhooks (``backend.web.api.stores``).

The postback handler reads (the source by its token's hash, the order it names), never writes:
what it accepts travels through the Redis stream as a ``NetworkEvent`` and the worker stores it
(``backend.worker.steps``), so a network's postback answers in about a millisecond. A repeat of
what is stored (same source, same transaction id, same status) is answered as a duplicate
without being queued. A wrong token is 404, an address outside the source's allow-list 403, bad
input 400; each is kept in ``rejected_events`` (through the stream) with its reason.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, route
from litestar.datastructures import State
from litestar.exceptions import (
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.params import JSONBody, PathParameter
from sqlalchemy import select

from backend.core.clock import now_ms
from backend.domain.affiliate.schemas import Page
from backend.domain.edge import Rejection, rejected
from backend.domain.events import NetworkEvent, RejectReason, Source
from backend.domain.sources import (
    SourceCreate,
    SourceOut,
    SourceUpdate,
    create_source,
    ip_allowed,
    parse_postback,
    rotate_token,
    source_by_token,
    source_out,
    update_source,
)
from backend.domain.visitor import request_address
from backend.storage.db.models import Conversion, ConversionSource, ConversionStatus
from backend.web.api.deps import ADMIN_KEY, Reader, Writer
from backend.web.api.postback import BodyTooLarge
from backend.web.api.resources import After, Limit, PathId, QueryId, get_or_404, page_of
from backend.web.api.stores import STORE_MAX_BODY, store_webhook
from backend.web.ingest.routes import MAX_BODY, Ingest

MAX_FIELDS = 100  # of a postback's query, form or JSON object
MAX_REJECTED_TOKEN = 10  # characters of a wrong token kept with its rejection


class SourceController(Controller):
    path = "/sources"
    tags = ["sources"]

    @post("/", raises=ADMIN_KEY)
    async def create(self, data: JSONBody[SourceCreate], writer: Writer) -> SourceOut:
        """A source with its ``token``: shown in this answer only; keep it."""
        source, token = await create_source(writer, data)
        return source_out(source, token)

    @get("/", raises=ADMIN_KEY)
    async def list_sources(
        self, reader: Reader, merchant_id: QueryId = None, after: After = 0, limit: Limit = 50
    ) -> Page[SourceOut]:
        statement = select(ConversionSource)
        if merchant_id is not None:
            statement = statement.where(ConversionSource.merchant_id == merchant_id)
        return await page_of(reader, statement, ConversionSource.id, after, limit, source_out)

    @get("/{source_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def read(self, source_id: PathId, reader: Reader) -> SourceOut:
        return source_out(await get_or_404(reader, ConversionSource, source_id))

    @patch("/{source_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self, source_id: PathId, data: JSONBody[SourceUpdate], writer: Writer
    ) -> SourceOut:
        source = await get_or_404(writer, ConversionSource, source_id)
        await update_source(writer, source, data)
        return source_out(source)

    @delete("/{source_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def remove(self, source_id: PathId, writer: Writer) -> None:
        """The source and its token go; its conversions stay (they keep its id)."""
        await writer.delete(await get_or_404(writer, ConversionSource, source_id))
        await writer.commit()

    @post("/{source_id:int}/rotate-token", status_code=200, raises=[*ADMIN_KEY, NotFoundException])
    async def rotate(self, source_id: PathId, writer: Writer) -> SourceOut:
        """A new token, shown in this answer only; the old one stops working at once."""
        source = await get_or_404(writer, ConversionSource, source_id)
        return source_out(source, await rotate_token(writer, source))


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _fields(query: bytes, body: bytes, content_type: str) -> dict[str, str]:
    """The query's fields, then the form's or the JSON object's over them; raise
    ``Rejection``."""
    fields: dict[str, str] = {}
    try:
        fields.update(
            parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True,
                      max_num_fields=MAX_FIELDS)
        )  # fmt: skip
        if body.strip() and ("json" in content_type or body.lstrip()[:1] == b"{"):
            decoded = msgspec.json.decode(body)
            if not isinstance(decoded, dict) or len(decoded) > MAX_FIELDS:
                raise Rejection(
                    RejectReason.INVALID_EVENT, "body", f"a JSON object of at most {MAX_FIELDS}"
                )
            for name, value in decoded.items():
                text = _scalar_text(value)
                if text is not None:
                    fields[name] = text
        elif body.strip():
            fields.update(
                parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
            )  # fmt: skip
    except ValueError as error:  # too many fields; msgspec.DecodeError is a ValueError too
        raise Rejection(RejectReason.INVALID_EVENT, "body", str(error)[:200]) from None
    except RecursionError:
        raise Rejection(RejectReason.INVALID_EVENT, "body", "JSON nested too deeply") from None
    return fields


async def _reject(ingest: Ingest, rejection: Rejection, payload: str, at_ms: int) -> None:
    await ingest.queue(rejected(Source.NETWORK, rejection, payload, at_ms))


async def _is_repeat(reader: Reader, event: NetworkEvent) -> bool:
    """Whether the order is stored from this source with this status (or none is sent)."""
    stored = await reader.scalar(
        select(Conversion).where(
            Conversion.merchant_id == event.sale.merchant_id,
            Conversion.order_id == event.sale.order_id,
        )
    )
    if stored is None or stored.source_id != event.source_id:
        return False
    wanted = event.status
    if stored.status == ConversionStatus.REVERSED and wanted == ConversionStatus.REJECTED:
        return True  # a network's "declined" after approval: reversed already
    return not wanted or stored.status == wanted


@route(
    "/pb/{token:str}",
    http_method=["GET", "POST"],
    tags=["sources"],
    raises=[
        ValidationException,
        NotFoundException,
        PermissionDeniedException,
        BodyTooLarge,
    ],
)
async def network_postback(
    token: Annotated[str, PathParameter(max_length=200)],
    request: Request[Any, Any, Any],
    state: State,
    reader: Reader,
) -> Response[dict[str, Any]]:
    """A network's postback: fields in the query, a form or a JSON object, named as its
    source's mapping says. 200 ``{"queued": true}`` or ``{"duplicate": true}``."""
    ingest: Ingest = state.ingest
    at_ms = now_ms()
    query = request.scope["query_string"]
    body = await request.body() if request.method == "POST" else b""
    payload = (query + b" " + body[:MAX_BODY]).decode("utf-8", "replace")
    if len(body) > STORE_MAX_BODY:
        too_long = Rejection(RejectReason.FIELD_TOO_LONG, "body", f"over {STORE_MAX_BODY} bytes")
        await _reject(ingest, too_long, payload, at_ms)
        raise BodyTooLarge(detail=f"body over {STORE_MAX_BODY} bytes")
    source = await source_by_token(reader, token)
    if source is None:
        unknown = Rejection(
            RejectReason.UNKNOWN_SOURCE,
            "token",
            f"no source has the token {token[:MAX_REJECTED_TOKEN]}…",
        )
        await _reject(ingest, unknown, payload, at_ms)
        raise NotFoundException(detail="no conversion source has this token")
    address = request_address(
        request.scope, request.headers.get("x-forwarded-for", "").encode() or None,
        ingest.settings.trusted_proxies,
    )  # fmt: skip
    if not ip_allowed(source.allow_ips, address):
        outside = Rejection(
            RejectReason.IP_NOT_ALLOWED,
            "ip",
            f"{address} is not in source #{source.id}'s allow-list",
        )
        await _reject(ingest, outside, payload, at_ms)
        raise PermissionDeniedException(detail=f"{address} may not report for this source")
    if source.kind != "network":
        headers = {name.lower(): value for name, value in request.headers.items()}
        return await store_webhook(ingest, reader, source, headers, body, at_ms)
    if len(body) > MAX_BODY:  # a network's postback is a handful of fields
        too_long = Rejection(RejectReason.FIELD_TOO_LONG, "body", f"over {MAX_BODY} bytes")
        await _reject(ingest, too_long, payload, at_ms)
        raise BodyTooLarge(detail=f"body over {MAX_BODY} bytes")
    try:
        fields = _fields(query, body, request.headers.get("content-type", ""))
        event = await parse_postback(ingest.catalog, source, fields, at_ms)
    except Rejection as rejection:
        await _reject(ingest, rejection, payload, at_ms)
        raise ValidationException(
            detail=f"{rejection.field}: {rejection.detail}",
            extra=[{"key": rejection.field, "message": rejection.detail}],
        ) from None
    if await _is_repeat(reader, event):
        return Response({"ok": True, "duplicate": True}, status_code=200)
    # Into Redis or, while Redis is down, the spool file: networks seldom retry, so the
    # postback is kept either way rather than answered 503.
    await ingest.queue(event)
    return Response({"ok": True, "queued": True, "event_id": event.sale.event_id}, status_code=200)
