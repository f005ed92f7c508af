"""The outbox: what must be sent after a conversion changes, written in the change's own
transaction (Svix, Stripe webhooks: DESIGN's "Examples worth following").

A new conversion (the worker's write step) and a status change (``status.change_status``) each
add one message per active partner postback and webhook endpoint that asked for the event (and
a mail per partner user who asked for one, ``backend.domain.notifications``); the
worker delivers them later (``backend.domain.affiliate.delivery``), so nothing here calls a
remote server and a dead endpoint never holds a batch. Each message keeps its id (the
``webhook-id``, the receiver's idempotency key) on every attempt.

Events: ``conversion.created`` and ``conversion.status_changed``; an endpoint may ask instead
for one status (``conversion.approved``, ``conversion.rejected``, ``conversion.reversed``), and
then gets that name. An endpoint gets one message per change, never two. ``conversion.updated``
says a signed postback replaced the figures (click, partner, amount, currency) of a conversion
the pixel or the snippet stored; it is sent to the partner the conversion belongs to now.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, or_, select

from backend.core.clock import now_ms
from backend.core.money import format_minor
from backend.domain.notifications import conversion_mails, subscribers
from backend.storage.db.models import (
    DeliveryStatus,
    MailMessage,
    OutboxMessage,
    PartnerPostback,
    WebhookEndpoint,
)

CREATED = "conversion.created"
STATUS_CHANGED = "conversion.status_changed"
UPDATED = "conversion.updated"  # a signed postback replaced a pixel's click, amount or currency
TEST = "webhook.test"
PER_STATUS = ("conversion.approved", "conversion.rejected", "conversion.reversed")
EVENTS = (CREATED, STATUS_CHANGED, *PER_STATUS, UPDATED)
"""What an endpoint may ask for."""
MAILED = {CREATED: "new_conversion", STATUS_CHANGED: "status_change"}
"""The events a partner user may ask a mail for, by the name of the setting."""

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
_POSTBACKS: Table = PartnerPostback.__table__  # type: ignore[assignment]
_WEBHOOKS: Table = WebhookEndpoint.__table__  # type: ignore[assignment]
_MAIL: Table = MailMessage.__table__  # type: ignore[assignment]

# The conversion's columns a message carries.
FIELDS = (
    "id",
    "merchant_id",
    "partner_id",
    "campaign_id",
    "link_id",
    "click_id",
    "order_id",
    "amount_minor",
    "commission_minor",
    "currency",
    "status",
    "verified",
    "at_ms",
)


def new_message_id() -> str:
    """The message's id, sent as ``webhook-id`` on every attempt."""
    return "msg_" + secrets.token_urlsafe(18)


def event_for(subscribed: Iterable[str], event: str, status: str) -> str | None:
    """The event an endpoint subscribed to ``subscribed`` is sent for ``event`` (a conversion
    created, or its status changed to ``status``), or None."""
    wanted = set(subscribed)
    if event != STATUS_CHANGED:
        return event if event in wanted else None
    specific = f"conversion.{status}"
    if specific in wanted:
        return specific
    return STATUS_CHANGED if STATUS_CHANGED in wanted else None


def conversion_data(conversion: Mapping[str, Any], previous_status: str | None) -> dict[str, Any]:
    """The ``data`` of a webhook about ``conversion``, and the values of a postback's macros."""
    currency = conversion["currency"]
    data = {
        "conversion_id": conversion["id"],
        "merchant_id": conversion["merchant_id"],
        "partner_id": conversion["partner_id"],
        "campaign_id": conversion["campaign_id"],
        "link_id": conversion["link_id"],
        "click_id": conversion["click_id"],
        "order_id": conversion["order_id"],
        "amount_minor": conversion["amount_minor"],
        "amount": format_minor(conversion["amount_minor"], currency),
        "commission_minor": conversion["commission_minor"],
        "commission": format_minor(conversion["commission_minor"], currency),
        "currency": currency,
        "status": conversion["status"],
        "verified": bool(conversion["verified"]),
        "occurred_at": _iso(conversion["at_ms"]),
    }
    if previous_status is not None:
        data["previous_status"] = previous_status
    return data


def webhook_body(event: str, data: Mapping[str, Any], at_ms: int) -> str:
    """A Standard Webhooks payload: ``type``, ``timestamp`` and ``data``."""
    return json.dumps(
        {"type": event, "timestamp": _iso(at_ms), "data": data}, separators=(",", ":")
    )


def _iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def message_row(
    *,
    event: str,
    payload: str,
    at_ms: int,
    conversion_id: int | None,
    postback_id: int | None = None,
    webhook_id: int | None = None,
) -> dict[str, Any]:
    return {
        "message_id": new_message_id(),
        "postback_id": postback_id,
        "webhook_id": webhook_id,
        "event": event,
        "conversion_id": conversion_id,
        "payload": payload,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_at_ms": at_ms,
        "created_ms": at_ms,
        "last_status_code": None,
    }


@dataclass(frozen=True, slots=True)
class Targets:
    """The active postbacks and webhook endpoints some conversions may owe messages to, and
    the partner users who asked for a mail (``backend.domain.notifications``)."""

    postbacks: Sequence[Any]
    webhooks: Sequence[Any]
    notified: Sequence[Any] = ()

    def __bool__(self) -> bool:
        return bool(self.postbacks or self.webhooks or self.notified)


def targets(connection: Connection, partners: set[int], merchants: set[int]) -> Targets:
    """The active postbacks of ``partners``, and the webhooks of ``merchants`` (or of all)
    that are no partner's or one of ``partners``'."""
    postbacks = (
        connection.execute(
            select(
                _POSTBACKS.c.id,
                _POSTBACKS.c.partner_id,
                _POSTBACKS.c.campaign_id,
                _POSTBACKS.c.events,
            ).where(_POSTBACKS.c.active, _POSTBACKS.c.partner_id.in_(sorted(partners)))
        ).all()
        if partners
        else []
    )
    webhooks = connection.execute(
        select(
            _WEBHOOKS.c.id, _WEBHOOKS.c.merchant_id, _WEBHOOKS.c.partner_id, _WEBHOOKS.c.events
        ).where(
            _WEBHOOKS.c.active,
            or_(_WEBHOOKS.c.merchant_id.is_(None), _WEBHOOKS.c.merchant_id.in_(sorted(merchants))),
            or_(_WEBHOOKS.c.partner_id.is_(None), _WEBHOOKS.c.partner_id.in_(sorted(partners))),
        )
    ).all()
    return Targets(postbacks, webhooks, subscribers(connection, partners))


def targets_of(connection: Connection, conversions: Iterable[Mapping[str, Any]]) -> Targets:
    rows = list(conversions)
    partners = {row["partner_id"] for row in rows if row["partner_id"] is not None}
    return targets(connection, partners, {row["merchant_id"] for row in rows})


def enqueue(
    connection: Connection,
    conversions: Sequence[Mapping[str, Any]],
    event: str,
    previous: Mapping[int, str] | None = None,
    found: Targets | None = None,
) -> int:
    """Add the messages that ``event`` on ``conversions`` (mappings with ``FIELDS``) owes, in
    the caller's transaction; ``previous``: each conversion's status before a change;
    ``found``: their ``targets_of``, when the caller looked them up. Return how many were
    added."""
    if not conversions:
        return 0
    found = found if found is not None else targets_of(connection, conversions)
    if not found:
        return 0
    at_ms = now_ms()
    rows: list[dict[str, Any]] = []
    mails: list[dict[str, Any]] = []
    for conversion in conversions:
        earlier = (previous or {}).get(conversion["id"])
        if event in MAILED:
            mails += conversion_mails(conversion, MAILED[event], earlier, found.notified)
        data = conversion_data(conversion, earlier)
        payload = json.dumps(data, separators=(",", ":"))
        for postback in found.postbacks:
            if postback.partner_id != conversion["partner_id"] or postback.campaign_id not in (
                None,
                conversion["campaign_id"],
            ):
                continue
            sent = event_for(postback.events, event, conversion["status"])
            if sent is not None:
                rows.append(
                    message_row(
                        event=sent,
                        payload=payload,
                        at_ms=at_ms,
                        conversion_id=conversion["id"],
                        postback_id=postback.id,
                    )
                )
        for webhook in found.webhooks:
            if webhook.merchant_id not in (None, conversion["merchant_id"]):
                continue
            if webhook.partner_id not in (None, conversion["partner_id"]):
                continue  # a partner's endpoint hears its own conversions only
            sent = event_for(webhook.events, event, conversion["status"])
            if sent is not None:
                rows.append(
                    message_row(
                        event=sent,
                        payload=webhook_body(sent, data, at_ms),
                        at_ms=at_ms,
                        conversion_id=conversion["id"],
                        webhook_id=webhook.id,
                    )
                )
    if rows:
        connection.execute(insert(OUTBOX), rows)
    if mails:
        connection.execute(insert(_MAIL), mails)
    return len(rows)
