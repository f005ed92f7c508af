"""Partners' postbacks and webhook endpoints: their bodies, checks and changes, their delivery
logs, the test message and the resend.

A postback URL is a template of ``POSTBACK_MACROS`` (the destination templates' machinery:
unknown macros refused when saved, the host fixed, each value URL-encoded at delivery). A
webhook endpoint's secret is a Standard Webhooks ``whsec_`` secret, shown when the endpoint is
made and when it is rotated. What the endpoints receive is written to the outbox
(``backend.domain.affiliate.outbox``) and sent by the worker (``delivery``).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.core.validation import FieldError
from backend.domain.affiliate.outbox import (
    EVENTS,
    OUTBOX,
    TEST,
    conversion_data,
    message_row,
    webhook_body,
)
from backend.domain.affiliate.schemas import MAX_ID, ActiveOrPaused, ObjectId, whole
from backend.domain.destinations import SUB_KEYS, template_problem
from backend.storage.db.models import (
    Base,
    Campaign,
    DeliveryAttempt,
    Merchant,
    OutboxMessage,
    Partner,
    PartnerPostback,
    WebhookEndpoint,
)

POSTBACK_MACROS = (
    "click_id",
    *SUB_KEYS,
    "order_id",
    "amount",
    "commission",
    "amount_minor",
    "commission_minor",
    "currency",
    "status",
    "event",
    "conversion_id",
)
MACRO_LIST = ", ".join(f"{{{name}}}" for name in POSTBACK_MACROS)
MAX_ENDPOINTS = 20  # per partner, and per merchant (or for all merchants)
ATTEMPTS_SHOWN = 20

Event = Literal[
    "conversion.created",
    "conversion.status_changed",
    "conversion.approved",
    "conversion.rejected",
    "conversion.reversed",
    "conversion.updated",
]
assert set(Event.__args__) == set(EVENTS)  # type: ignore[attr-defined]
Events = Annotated[list[Event], Meta(min_length=1, max_length=len(EVENTS))]
Method = Literal["GET", "POST"]
HookUrl = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=2048,
        pattern=whole(r"https?://[^\x00-\x20\x7f\\]+"),
        description=(
            "An absolute http(s) URL on a public host. A postback's may hold macros in its path,"
            f" query or fragment, filled with URL-encoded values: {MACRO_LIST}."
        ),
    ),
]


class PostbackCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: HookUrl
    method: Method = "GET"
    events: Events = msgspec.field(default_factory=lambda: ["conversion.created"])
    campaign_id: ObjectId | None = None


class PostbackUpdate(msgspec.Struct, forbid_unknown_fields=True):
    url: HookUrl | UnsetType = UNSET
    method: Method | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    campaign_id: ObjectId | UnsetType | None = UNSET
    status: ActiveOrPaused | UnsetType = UNSET


class PostbackOut(msgspec.Struct):
    id: int
    partner_id: int
    campaign_id: int | None
    url: str
    method: str
    events: list[str]
    status: str  # active, or paused: nothing is sent
    created_at: datetime


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: HookUrl
    events: Events
    merchant_id: ObjectId | None = None
    # A partner's endpoint hears that partner's conversions only (a partner's key makes its
    # own; an admin may make one for a partner).
    partner_id: ObjectId | None = None


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True):
    url: HookUrl | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    status: ActiveOrPaused | UnsetType = UNSET


class WebhookOut(msgspec.Struct):
    id: int
    merchant_id: int | None
    partner_id: int | None
    url: str
    events: list[str]
    status: str  # active, or paused: nothing is sent
    created_at: datetime
    secret: str | None = None  # only when made or rotated


class AttemptOut(msgspec.Struct):
    at: datetime
    attempt: int
    ok: bool
    status_code: int | None
    latency_ms: int
    detail: str


class DeliveryOut(msgspec.Struct):
    """One message to an endpoint and its attempts, latest first (at most 20)."""

    id: int
    message_id: str
    event: str
    conversion_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    last_status_code: int | None
    log: list[AttemptOut]


def _at(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def _status(active: bool) -> str:
    return "active" if active else "paused"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def checked_url(url: str, macros: tuple[str, ...] = ()) -> str:
    """``url`` if it is an absolute http(s) URL with a host and no user, whose braces are
    ``macros`` outside the host; else ``FieldError``."""
    problem = template_problem(url, macros)
    if problem is not None:
        raise FieldError("url", problem)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number from 0 to 65535)
    except ValueError as error:
        raise FieldError("url", f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise FieldError("url", "an absolute http(s) URL with a host and no user")
    return url


def postback_out(postback: PartnerPostback) -> PostbackOut:
    return PostbackOut(
        id=postback.id,
        partner_id=postback.partner_id,
        campaign_id=postback.campaign_id,
        url=postback.url,
        method=postback.method,
        events=list(postback.events),
        status=_status(postback.active),
        created_at=postback.created_at,
    )


def webhook_out(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        merchant_id=endpoint.merchant_id,
        partner_id=endpoint.partner_id,
        url=endpoint.url,
        events=list(endpoint.events),
        status=_status(endpoint.active),
        created_at=endpoint.created_at,
        secret=endpoint.secret if with_secret else None,
    )


async def _count(session: AsyncSession, model: type[Base], *where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def create_postback(
    session: AsyncSession, partner_id: int, data: PostbackCreate
) -> PartnerPostback:
    if await session.get(Partner, partner_id) is None:
        raise FieldError("partner_id", f"no partner with id {partner_id}")
    await _check_campaign(session, data.campaign_id)
    existing = await _count(session, PartnerPostback, PartnerPostback.partner_id == partner_id)
    if existing >= MAX_ENDPOINTS:
        raise FieldError("url", f"a partner has at most {MAX_ENDPOINTS} postbacks")
    postback = PartnerPostback(
        partner_id=partner_id,
        campaign_id=data.campaign_id,
        url=checked_url(data.url, POSTBACK_MACROS),
        method=data.method,
        events=sorted(set(data.events)),
        active=True,
    )
    session.add(postback)
    await session.commit()
    await session.refresh(postback)
    return postback


async def _check_campaign(session: AsyncSession, campaign_id: int | None) -> None:
    if campaign_id is not None and await session.get(Campaign, campaign_id) is None:
        raise FieldError("campaign_id", f"no campaign with id {campaign_id}")


async def update_postback(
    session: AsyncSession, postback: PartnerPostback, data: PostbackUpdate
) -> None:
    if not isinstance(data.url, UnsetType):
        postback.url = checked_url(data.url, POSTBACK_MACROS)
    if not isinstance(data.method, UnsetType):
        postback.method = data.method
    if not isinstance(data.events, UnsetType):
        postback.events = sorted(set(data.events))
    if not isinstance(data.campaign_id, UnsetType):
        await _check_campaign(session, data.campaign_id)
        postback.campaign_id = data.campaign_id
    if not isinstance(data.status, UnsetType):
        postback.active = data.status == "active"
    await session.commit()
    await session.refresh(postback)


async def create_webhook(session: AsyncSession, data: WebhookCreate) -> WebhookEndpoint:
    if data.merchant_id is not None and await session.get(Merchant, data.merchant_id) is None:
        raise FieldError("merchant_id", f"no merchant with id {data.merchant_id}")
    if data.partner_id is not None and await session.get(Partner, data.partner_id) is None:
        raise FieldError("partner_id", f"no partner with id {data.partner_id}")
    if data.partner_id is not None:
        owner, whose = WebhookEndpoint.partner_id == data.partner_id, "partner"
    elif data.merchant_id is None:
        owner, whose = WebhookEndpoint.merchant_id.is_(None), "merchant"
    else:
        owner, whose = WebhookEndpoint.merchant_id == data.merchant_id, "merchant"
    if await _count(session, WebhookEndpoint, owner) >= MAX_ENDPOINTS:
        raise FieldError("url", f"at most {MAX_ENDPOINTS} endpoints per {whose}")
    endpoint = WebhookEndpoint(
        merchant_id=data.merchant_id,
        partner_id=data.partner_id,
        url=checked_url(data.url),
        events=sorted(set(data.events)),
        secret=new_secret(),
        active=True,
    )
    session.add(endpoint)
    await session.commit()
    await session.refresh(endpoint)
    return endpoint


async def update_webhook(
    session: AsyncSession, endpoint: WebhookEndpoint, data: WebhookUpdate
) -> None:
    if not isinstance(data.url, UnsetType):
        endpoint.url = checked_url(data.url)
    if not isinstance(data.events, UnsetType):
        endpoint.events = sorted(set(data.events))
    if not isinstance(data.status, UnsetType):
        endpoint.active = data.status == "active"
    await session.commit()
    await session.refresh(endpoint)


async def rotate_secret(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """A new secret signs every attempt from now on, retries of older messages too."""
    endpoint.secret = new_secret()
    await session.commit()
    await session.refresh(endpoint)


SAMPLE = {
    "id": 0,
    "merchant_id": 0,
    "partner_id": 0,
    "campaign_id": 0,
    "link_id": 0,
    "click_id": "test-click-id",
    "order_id": "test-order",
    "amount_minor": 4990,
    "commission_minor": 350,
    "currency": "EUR",
    "status": "pending",
    "verified": False,
    "at_ms": 0,
}


async def send_test(
    session: AsyncSession,
    *,
    postback: PartnerPostback | None = None,
    endpoint: WebhookEndpoint | None = None,
) -> OutboxMessage:
    """Queue a test message (sample values, event ``webhook.test``) to one endpoint; the worker
    sends it like any other, and its log shows what the endpoint answered."""
    at_ms = now_ms()
    data = conversion_data(SAMPLE | {"at_ms": at_ms}, None) | {"test": True}
    if postback is not None:
        row = message_row(
            event=TEST,
            payload=json.dumps(data),
            at_ms=at_ms,
            conversion_id=None,
            postback_id=postback.id,
        )
    elif endpoint is not None:
        row = message_row(
            event=TEST,
            payload=webhook_body(TEST, data, at_ms),
            at_ms=at_ms,
            conversion_id=None,
            webhook_id=endpoint.id,
        )
    else:
        raise ValueError("send_test needs a postback or an endpoint")
    await session.execute(insert(OUTBOX), [row])
    await session.commit()
    message = await session.scalar(
        select(OutboxMessage).where(OutboxMessage.message_id == row["message_id"])
    )
    assert message is not None
    return message


async def deliveries(
    session: AsyncSession,
    *,
    postback_id: int | None = None,
    webhook_id: int | None = None,
    after: int = 0,
    limit: int = 50,
) -> tuple[list[DeliveryOut], int | None]:
    """One endpoint's messages, newest first (``after``: below this id), with their attempts."""
    statement = select(OutboxMessage)
    if postback_id is not None:
        statement = statement.where(OutboxMessage.postback_id == postback_id)
    else:
        statement = statement.where(OutboxMessage.webhook_id == webhook_id)
    if after:
        statement = statement.where(OutboxMessage.id < after)
    messages: Sequence[OutboxMessage] = (
        await session.scalars(statement.order_by(OutboxMessage.id.desc()).limit(limit + 1))
    ).all()
    page = list(messages[:limit])
    next_after = page[-1].id if len(messages) > limit else None
    logs: dict[int, list[AttemptOut]] = {message.id: [] for message in page}
    if page:
        attempts = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.outbox_id.in_(list(logs)))
            .order_by(DeliveryAttempt.id.desc())
        )
        for attempt in attempts:
            log = logs[attempt.outbox_id]
            if len(log) < ATTEMPTS_SHOWN:
                log.append(
                    AttemptOut(
                        at=_at(attempt.at_ms),
                        attempt=attempt.attempt,
                        ok=attempt.ok,
                        status_code=attempt.status_code,
                        latency_ms=attempt.latency_ms,
                        detail=attempt.detail,
                    )
                )
    return [delivery_out(message, logs[message.id]) for message in page], next_after


def delivery_out(message: OutboxMessage, log: list[AttemptOut]) -> DeliveryOut:
    return DeliveryOut(
        id=message.id,
        message_id=message.message_id,
        event=message.event,
        conversion_id=message.conversion_id,
        status=message.status,
        attempts=message.attempts,
        next_attempt_at=_at(message.next_at_ms) if message.status == "pending" else None,
        created_at=_at(message.created_ms),
        last_status_code=message.last_status_code,
        log=log,
    )


def valid_id(value: int) -> bool:
    return 1 <= value <= MAX_ID
