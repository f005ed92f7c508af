"""``POST /api/v1/postback`` (a merchant's server reports a sale or a status change, signed
with its postback secret) and ``POST /api/v1/merchants/{id}/rotate-secret``.

A new sale travels through the Redis stream like every event (source ``postback``, stored
verified); when Redis cannot take it the answer is 503 with ``Retry-After`` and the sender
retries, since a server, unlike a browser, can. A postback about an order already stored
verifies it; where the stored order is unverified (a pixel anyone can fire) and disagrees on the
click, the amount or the currency, the postback goes through the stream too and the worker puts
its figures on the order (``backend.worker.steps.write``). A status change for an order not stored
yet is 409 so the sender retries later.
Bad input gets 400 (signed) or 401 (unsigned) and is kept in ``rejected_events``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    NotFoundException,
    ServiceUnavailableException,
)
from litestar.openapi.datastructures import ResponseSpec
from msgspec import Meta
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.core.money import MoneyError, format_minor, normalise_currency
from backend.domain.affiliate.postback import (
    CLAIM_HOLD_S,
    SIGNATURE_HEADER,
    ReplayGuard,
    SignatureRefused,
    check_signature,
    rotate_secret,
    valid_secrets,
)
from backend.domain.affiliate.schemas import Currency, Minor, Reason, SecretRotated
from backend.domain.affiliate.status import POSTBACK, TransitionRefused, change_status, verify
from backend.domain.edge import Rejection, build_conversion, rejected
from backend.domain.events import ConversionEvent, RejectReason, Source, encode_event
from backend.storage.catalog import Catalog
from backend.storage.db.models import Conversion, ConversionStatus, Merchant
from backend.storage.streams.writer import StreamUnavailable
from backend.web.api.conversions import conversion_out, refused_error
from backend.web.api.deps import ADMIN_KEY, Reader, Writer
from backend.web.api.resources import PathId, get_or_404
from backend.web.ingest.routes import MAX_BODY, Ingest

RETRY_AFTER_S = CLAIM_HOLD_S  # a claim Redis carried out too late has lapsed by then
T = TypeVar("T")
Text = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Envelope(msgspec.Struct):
    """What is read before the signature is checked: whose secret signs the body."""

    merchant: Annotated[str, Meta(max_length=40)]


class SaleBody(msgspec.Struct, tag="conversion", forbid_unknown_fields=True):
    """A sale: the amount as a decimal string (``amount``) or in minor units (``amount_minor``)."""

    merchant: str
    order_id: Text
    amount: Annotated[str, Meta(max_length=32)] | None = None
    amount_minor: Minor | None = None
    currency: Currency | None = None
    click_id: Annotated[str, Meta(max_length=64)] | None = None
    event: Annotated[str, Meta(max_length=64)] = "sale"
    # A partner's coupon code the order used: credits that partner when no click is named
    # (or when the merchant lets coupons win).
    coupon: Annotated[str, Meta(max_length=64)] | None = None
    # The merchant's reference for the customer (its own customer id, say): kept only as a
    # keyed hash; binds the customer to the partner of their first attributed sale, so later
    # renewals (``"event": "renewal"``) without a click are credited to that partner.
    customer: Annotated[str, Meta(max_length=128)] | None = None


class StatusBody(msgspec.Struct, tag="status", forbid_unknown_fields=True):
    merchant: str
    order_id: Text
    status: Literal["approved", "rejected", "reversed"]
    reason: Reason = ""


PostbackBody = SaleBody | StatusBody
_ENVELOPE = msgspec.json.Decoder(Envelope)
_POSTBACK = msgspec.json.Decoder(PostbackBody)


def _unavailable(error: Exception) -> ServiceUnavailableException:
    return ServiceUnavailableException(
        detail=f"the event queue is unavailable ({type(error).__name__}); retry",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class BodyTooLarge(ClientException):
    """413: the body is over ``MAX_BODY``."""

    status_code = 413


class NotStoredYet(ClientException):
    """409: a status change for an order the worker has not stored yet; retry later."""

    status_code = 409


@post(
    "/postback",
    status_code=200,
    tags=["postback"],
    responses={
        202: ResponseSpec(data_container=dict[str, Any], description="queued for the worker")
    },
    raises=[
        ClientException,
        NotAuthorizedException,
        NotStoredYet,
        BodyTooLarge,
        ServiceUnavailableException,
    ],
)
async def postback(
    request: Request[Any, Any, Any], state: State, reader: Reader, writer: Writer
) -> Response[Any]:
    """A sale (``"type": "conversion"``) or a status change (``"type": "status"``) by order id,
    signed as DESIGN §3 says; a replayed request answers ``{"duplicate": true}``."""
    ingest: Ingest = state.ingest
    at_ms = now_ms()
    body = await request.body()
    if len(body) > MAX_BODY:
        too_long = Rejection(RejectReason.FIELD_TOO_LONG, "body", f"over {MAX_BODY} bytes")
        await _reject(ingest, too_long, body, at_ms)
        raise BodyTooLarge(detail=f"body over {MAX_BODY} bytes")
    try:
        merchant_key = _decode(_ENVELOPE, body).merchant
    except Rejection as rejection:
        await _reject(ingest, rejection, body, at_ms)
        raise ClientException(detail=f"body: {rejection.detail}") from None
    merchant = await reader.scalar(select(Merchant).where(Merchant.key == merchant_key))
    if merchant is None:
        unknown = Rejection(RejectReason.UNKNOWN_MERCHANT, "merchant", "no merchant has this key")
        await _reject(ingest, unknown, body, at_ms)
        raise NotAuthorizedException(detail=unknown.detail)
    try:
        signature = check_signature(
            request.headers.get(SIGNATURE_HEADER),
            body,
            valid_secrets(merchant, at_ms),
            at_ms // 1000,
        )
    except SignatureRefused as refused:
        bad = Rejection(RejectReason.BAD_SIGNATURE, SIGNATURE_HEADER, str(refused))
        await _reject(ingest, bad, body, at_ms)
        raise NotAuthorizedException(detail=str(refused)) from None
    try:
        parsed = _decode(_POSTBACK, body)
    except Rejection as rejection:
        await _reject(ingest, rejection, body, at_ms)
        raise ClientException(detail=rejection.detail) from None
    guard = ReplayGuard(state.redis)
    try:
        ingest.writer.raise_if_stalled()  # no claim Redis would carry out too late
        if not await guard.claim(merchant.id, signature, at_ms):
            return Response({"duplicate": True}, status_code=200)
    except (StreamUnavailable, RedisError, OSError) as error:
        raise _unavailable(error) from error
    try:
        if isinstance(parsed, SaleBody):
            response = await _sale(parsed, merchant, ingest, reader, writer, body, at_ms)
        else:
            response = await _status_change(parsed, merchant, writer)
    except Exception:  # refused or failed: the sender's retry must not count as a replay
        with contextlib.suppress(RedisError, OSError):
            await guard.release(merchant.id, signature)
        raise
    # Unconfirmed, the claim lapses after CLAIM_HOLD_S and a replay is acted on again: the
    # order is still stored once, a status already set only verified.
    with contextlib.suppress(RedisError, OSError):
        await guard.confirm(merchant.id, signature)
    return response


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """``body`` decoded, or a ``Rejection`` saying why not (JSON nested deeper than the
    decoder's recursion limit included)."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as error:
        raise Rejection(RejectReason.INVALID_EVENT, "body", str(error)) from None
    except RecursionError:
        raise Rejection(RejectReason.INVALID_EVENT, "body", "JSON nested too deeply") from None


async def _reject(ingest: Ingest, rejection: Rejection, body: bytes, at_ms: int) -> None:
    """Keep a refused postback in ``rejected_events`` (through the stream, like every event),
    without its customer reference, which is kept nowhere raw."""
    payload = body.decode("utf-8", "replace")
    if b'"customer"' in body:
        try:
            decoded = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            decoded = None
        payload = (
            msgspec.json.encode({**decoded, "customer": "…"}).decode()
            if isinstance(decoded, dict)
            else "(not kept: it names a customer)"
        )
    await ingest.queue(rejected(Source.POSTBACK, rejection, payload, at_ms))


async def _stored_order(
    session: AsyncSession, merchant_id: int, order_id: str
) -> Conversion | None:
    return await session.scalar(
        select(Conversion).where(
            Conversion.merchant_id == merchant_id, Conversion.order_id == order_id
        )
    )


async def _sale(
    sale: SaleBody,
    merchant: Merchant,
    ingest: Ingest,
    reader: Reader,
    writer: Writer,
    body: bytes,
    at_ms: int,
) -> Response[Any]:
    catalog: Catalog = ingest.catalog
    info = catalog.merchant_info(merchant)
    try:
        event = await build_conversion(
            catalog, _pixel_fields(sale, merchant), Source.POSTBACK, None, at_ms, info,
            customers=ingest.customers,
        )  # fmt: skip
    except Rejection as rejection:
        await _reject(ingest, rejection, body, at_ms)
        raise ClientException(
            detail=f"{rejection.field}: {rejection.detail}",
            extra=[{"key": rejection.field, "message": rejection.detail}],
        ) from None
    found = await _stored_order(reader, merchant.id, sale.order_id)
    differs = [] if found is None else _differences(found, event, sale.click_id is not None)
    if found is not None and (found.verified or not differs):
        # Verified in the writer's session (conversions are never deleted). An order verified
        # before keeps its figures: the answer says where this postback disagrees.
        stored = await get_or_404(writer, Conversion, found.id)
        await verify(writer, stored, actor=POSTBACK, reason="verified by postback")
        await writer.commit()
        answer = msgspec.to_builtins(conversion_out(stored))
        verified = {"verified": True, "conversion": answer, "differs": differs}
        return Response(verified, status_code=200)
    try:
        await ingest.writer.put_or_fail(encode_event(event))
    except StreamUnavailable as error:
        raise _unavailable(error) from error
    queued: dict[str, object] = {"queued": True, "event_id": event.event_id}
    if found is not None:
        queued["replaces"] = differs
    return Response(queued, status_code=202)


def _differences(stored: Conversion, event: ConversionEvent, names_click: bool) -> list[str]:
    """Where a postback disagrees with the stored order: its click (when it names one), its
    coupon (when it names one), its amount, its currency."""
    return [
        name
        for name, kept, sent in (
            ("click_id", stored.click_id, event.click_id if names_click else stored.click_id),
            ("coupon", stored.coupon, event.coupon or stored.coupon),
            ("amount_minor", stored.amount_minor, event.amount_minor),
            ("currency", stored.currency, event.currency),
        )
        if kept != sent
    ]


def _pixel_fields(sale: SaleBody, merchant: Merchant) -> dict[str, object]:
    """The sale in the pixel's field names, so one validator (``build_conversion``) serves all."""
    if (sale.amount is None) == (sale.amount_minor is None):
        raise Rejection(RejectReason.MISSING_FIELD, "amount", "give amount or amount_minor")
    currency = sale.currency or merchant.currency
    amount = sale.amount
    if sale.amount_minor is not None:
        try:
            amount = format_minor(sale.amount_minor, normalise_currency(currency))
        except MoneyError as error:
            raise Rejection(RejectReason(error.reason), "currency", str(error)) from None
    return {
        "oid": sale.order_id,
        "amt": amount,
        "cur": currency,
        "clk": sale.click_id or "",
        "cust": sale.customer or "",
        "ev": sale.event,
        "coupon": sale.coupon or "",
    }


async def _status_change(change: StatusBody, merchant: Merchant, writer: Writer) -> Response[Any]:
    conversion = await _stored_order(writer, merchant.id, change.order_id)
    if conversion is None:
        raise NotStoredYet(detail=f"order {change.order_id!r} is not stored yet; retry later")
    wanted = ConversionStatus(change.status)
    if conversion.status == wanted:
        changed = await verify(writer, conversion, actor=POSTBACK, reason=change.reason)
    else:
        try:
            await change_status(
                writer, conversion, wanted, actor=POSTBACK, reason=change.reason, confirms=True
            )
        except TransitionRefused as refused:
            raise refused_error(refused) from refused
        changed = True
    await writer.commit()
    answer = msgspec.to_builtins(conversion_out(conversion))
    return Response({"changed": changed, "conversion": answer}, status_code=200)


@post(
    "/merchants/{merchant_id:int}/rotate-secret",
    status_code=200,
    tags=["merchants"],
    raises=[*ADMIN_KEY, NotFoundException],
)
async def rotate_postback_secret(merchant_id: PathId, writer: Writer) -> SecretRotated:
    """A new postback secret; the previous one keeps signing for 24 hours."""
    merchant = await get_or_404(writer, Merchant, merchant_id)
    rotate_secret(merchant, now_ms())
    await writer.commit()
    until = merchant.previous_secret_until_ms or 0
    return SecretRotated(
        postback_secret=merchant.postback_secret,
        previous_valid_until=datetime.fromtimestamp(until / 1000, UTC),
    )
