"""Delivering the outbox: partners' postbacks and signed webhooks, with retries you can see.

The worker calls ``deliver_due`` in a task of its own (never inside an event batch): it claims
the messages that are due (a lease, so two workers never send one message at once), sends each
with a timeout, and records every attempt (time, status code, latency, a response excerpt) in
``delivery_attempts``. A 2xx answer delivers; anything else is tried again after
``SCHEDULE_S`` (5 s, 30 s, 2 min ... 8 h, about 24 h in all, each delay jittered), then the
message is ``failed`` until someone resends it. The message id (``webhook-id``) stays the same
on every attempt and resend, so a receiver can drop repeats.

Requests go only to public addresses, through the link checker's guard
(``link_health.resolve_public``: every address the host resolves to must be public, and the
connection goes to the address checked); ``allowed`` networks (the ``OUTBOUND_ALLOW`` setting)
are let through for tests and intranets. Redirects are never followed. A refused address is
final: the message fails at once, with the reason in its log.

Webhooks are signed per Standard Webhooks with the ``standardwebhooks`` package: headers
``webhook-id``, ``webhook-timestamp`` (of the attempt) and ``webhook-signature``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from standardwebhooks.webhooks import Webhook

from backend.core.clock import now_ms
from backend.core.settings import IpNetwork
from backend.domain.affiliate.link_health import CheckFailed, connect_public, read_head
from backend.domain.destinations import SUB_KEYS, expand
from backend.domain.notifications import ADMIN_EMAILS, failed_delivery_mails
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Click,
    DeliveryAttempt,
    DeliveryStatus,
    MailMessage,
    OutboxMessage,
    PartnerPostback,
    WebhookEndpoint,
)

SCHEDULE_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
"""The wait before each retry: the first within a minute, about 23.7 h in all."""
MAX_ATTEMPTS = len(SCHEDULE_S) + 1
JITTER = 0.2  # each wait is drawn from ±20 % of its step, so retries of many messages spread
TIMEOUT_S = 10.0
BATCH = 50
CONCURRENCY = 16
# A claimed message is left to its claimer this long: longer than a whole claim takes when every
# endpoint hangs until the timeout (after a crash, its messages wait this long to be retried).
LEASE_MS = 2 * -(-BATCH // CONCURRENCY) * int(TIMEOUT_S * 1000)
MAX_EXCERPT = 300
MAX_DETAIL = 500
USER_AGENT = "Clicktrail-Webhooks/1 (+outgoing postbacks and webhooks)"


@dataclass(frozen=True, slots=True)
class Outgoing:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    status_code: int | None
    latency_ms: int
    detail: str
    final: bool = False  # never worth another try (a refused address)


def retry_delay_ms(attempts: int, rng: random.Random | None = None) -> int | None:
    """The jittered wait after ``attempts`` failed attempts, or None when none is left."""
    if attempts >= MAX_ATTEMPTS:
        return None
    step = SCHEDULE_S[attempts - 1] * 1000
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return int(step * spread)


def _printable(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return "".join(char if char.isprintable() else " " for char in text)


async def send(
    outgoing: Outgoing, allowed: tuple[IpNetwork, ...] = (), timeout_s: float = TIMEOUT_S
) -> Answer:
    """Send ``outgoing`` once to its checked public address; never raises."""
    started = time.perf_counter()

    def answer(ok: bool, code: int | None, detail: str, final: bool = False) -> Answer:
        latency = int((time.perf_counter() - started) * 1000)
        return Answer(ok, code, latency, detail[:MAX_DETAIL], final)

    try:
        async with asyncio.timeout(timeout_s):
            code, excerpt = await _exchange(outgoing, allowed)
    except CheckFailed as refused:
        return answer(False, None, str(refused), final=str(refused).startswith("refused"))
    except TimeoutError:
        return answer(False, None, f"no answer within {timeout_s:g} s")
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        return answer(False, None, f"{type(error).__name__}: {error}")
    detail = f"HTTP {code}" + (f": {excerpt}" if excerpt else "")
    if 300 <= code < 400:
        detail += " (redirects are not followed)"
    return answer(200 <= code < 300, code, detail)


async def _exchange(outgoing: Outgoing, allowed: tuple[IpNetwork, ...]) -> tuple[int, str]:
    parts, reader, writer = await connect_public(outgoing.url, allowed)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Host": parts.netloc,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Connection": "close",
            "Content-Length": str(len(outgoing.body)),
            **outgoing.headers,
        }
        head = f"{outgoing.method} {target} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        writer.write((head + "\r\n").encode("latin-1") + outgoing.body)
        await writer.drain()
        status, _ = await read_head(reader)
        try:
            excerpt = await asyncio.wait_for(reader.read(MAX_EXCERPT), 1.0)
        except TimeoutError:
            excerpt = b""
    finally:
        writer.close()
    return status, _printable(excerpt).strip()


def postback_values(
    payload: Mapping[str, Any], event: str, subs: Sequence[str] = ()
) -> dict[str, str]:
    """The values of a postback's macros (``hooks.POSTBACK_MACROS``)."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    values = {
        "click_id": text(payload.get("click_id")),
        "order_id": text(payload.get("order_id")),
        "amount": text(payload.get("amount")),
        "commission": text(payload.get("commission")),
        "amount_minor": text(payload.get("amount_minor")),
        "commission_minor": text(payload.get("commission_minor")),
        "currency": text(payload.get("currency")),
        "status": text(payload.get("status")),
        "event": event,
        "conversion_id": text(payload.get("conversion_id")),
    }
    for key, value in zip(SUB_KEYS, [*subs, *[""] * len(SUB_KEYS)], strict=False):
        values[key] = value
    return values


def postback_request(postback: PartnerPostback, values: Mapping[str, str]) -> Outgoing:
    url = expand(postback.url, values)
    if postback.method == "POST":
        body = urlencode(values).encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        return Outgoing("POST", url, form, body)
    return Outgoing("GET", url)


def webhook_request(endpoint: WebhookEndpoint, message_id: str, body: str) -> Outgoing:
    data = body.encode()
    at = datetime.now(UTC)
    signature = Webhook(endpoint.secret).sign(msg_id=message_id, timestamp=at, data=data)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
    return Outgoing("POST", endpoint.url, headers, data)


async def deliver_due(
    database: Database,
    allowed: tuple[IpNetwork, ...] = (),
    *,
    timeout_s: float = TIMEOUT_S,
    limit: int = BATCH,
) -> int:
    """Send the messages that are due (at most ``limit``); return how many were tried."""
    now = now_ms()
    async with database.session() as session:
        due = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == DeliveryStatus.PENDING,
                    OutboxMessage.next_at_ms <= now,
                )
                .order_by(OutboxMessage.next_at_ms)
                .limit(limit)
            )
        ).all()
        if not due:
            return 0
        claimed = await _claim(database, [(m.id, m.next_at_ms) for m in due], now)
        messages = [message for message in due if message.id in claimed]
        if not messages:
            return 0  # another courier leased them all: nothing tried, nothing to record
        requests = await _requests(session, messages)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def attempt(message: OutboxMessage) -> Answer:
        outgoing = requests.get(message.id)
        if outgoing is None:
            return Answer(False, None, 0, "the endpoint is disabled or gone", final=True)
        async with gate:
            return await send(outgoing, allowed, timeout_s)

    answers = await asyncio.gather(*map(attempt, messages))
    await _record(database, list(zip(messages, answers, strict=True)))
    return len(messages)


async def _claim(database: Database, due: list[tuple[int, int]], now: int) -> set[int]:
    """Lease the ``due`` messages (id, next attempt) that no other worker claimed first."""
    claimed: set[int] = set()
    async with database.writing() as connection:
        for message_id, next_at in due:
            result = await connection.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.next_at_ms == next_at,
                    OutboxMessage.status == DeliveryStatus.PENDING,
                )
                .values(next_at_ms=now + LEASE_MS)
            )
            if result.rowcount == 1:
                claimed.add(message_id)
    return claimed


async def _requests(session: AsyncSession, messages: list[OutboxMessage]) -> dict[int, Outgoing]:
    """Each message's request, by message id; none for a disabled or deleted endpoint."""
    postback_ids = {m.postback_id for m in messages if m.postback_id is not None}
    webhook_ids = {m.webhook_id for m in messages if m.webhook_id is not None}
    postbacks = {
        p.id: p
        for p in await session.scalars(
            select(PartnerPostback).where(PartnerPostback.id.in_(postback_ids))
        )
    }
    webhooks = {
        w.id: w
        for w in await session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.id.in_(webhook_ids))
        )
    }
    payloads = {m.id: json.loads(m.payload) for m in messages if m.postback_id is not None}
    click_ids = {p["click_id"] for p in payloads.values() if p.get("click_id")}
    subs: dict[str, tuple[str, ...]] = {}
    if click_ids:
        columns = [Click.click_id, *(getattr(Click, key) for key in SUB_KEYS)]
        for row in await session.execute(select(*columns).where(Click.click_id.in_(click_ids))):
            subs[row[0]] = tuple(row[1:])
    requests: dict[int, Outgoing] = {}
    for message in messages:
        if message.postback_id is not None:
            postback = postbacks.get(message.postback_id)
            if postback is not None and postback.active:
                payload = payloads[message.id]
                values = postback_values(
                    payload, message.event, subs.get(payload.get("click_id") or "", ())
                )
                requests[message.id] = postback_request(postback, values)
        elif message.webhook_id is not None:
            endpoint = webhooks.get(message.webhook_id)
            if endpoint is not None and endpoint.active:
                requests[message.id] = webhook_request(
                    endpoint, message.message_id, message.payload
                )
    return requests


async def _record(database: Database, tried: list[tuple[OutboxMessage, Answer]]) -> None:
    now = now_ms()
    async with database.writing() as connection:
        attempts = []
        failed: list[tuple[OutboxMessage, Answer]] = []
        for message, answer in tried:
            number = message.attempts + 1
            attempts.append(
                {
                    "outbox_id": message.id,
                    "at_ms": now,
                    "attempt": number,
                    "ok": answer.ok,
                    "status_code": answer.status_code,
                    "latency_ms": answer.latency_ms,
                    "detail": answer.detail,
                }
            )
            wait = None if answer.ok or answer.final else retry_delay_ms(number)
            if answer.ok:
                status = DeliveryStatus.DELIVERED
            elif wait is None:
                status = DeliveryStatus.FAILED
                failed.append((message, answer))
            else:
                status = DeliveryStatus.PENDING
            await connection.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id)
                .values(
                    attempts=number,
                    status=status,
                    next_at_ms=now + (wait or 0),
                    last_status_code=answer.status_code,
                )
            )
        await connection.execute(insert(DeliveryAttempt), attempts)
        await _tell_admins(connection, failed)


async def _tell_admins(
    connection: AsyncConnection, failed: list[tuple[OutboxMessage, Answer]]
) -> None:
    """A mail to every admin per webhook message that failed for good, in the transaction
    that records it."""
    webhook_ids = {m.webhook_id for m, _ in failed if m.webhook_id is not None}
    if not webhook_ids:
        return
    endpoints = await connection.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.url).where(WebhookEndpoint.id.in_(webhook_ids))
    )
    urls = {endpoint_id: url for endpoint_id, url in endpoints}
    admins = (await connection.execute(ADMIN_EMAILS)).scalars().all()
    mails = [
        mail
        for message, answer in failed
        if message.webhook_id is not None
        for mail in failed_delivery_mails(
            admins,
            urls.get(message.webhook_id, "a deleted endpoint"),
            message.event,
            message.attempts + 1,
            answer.detail,
        )
    ]
    if mails:
        await connection.execute(insert(MailMessage), mails)


async def resend(session: AsyncSession, message: OutboxMessage) -> None:
    """Queue ``message`` again now, with a fresh round of attempts and the same id; the caller
    commits. A delivered message may be sent again too (the receiver drops repeats by id)."""
    message.status = DeliveryStatus.PENDING
    message.attempts = 0
    message.next_at_ms = now_ms()
