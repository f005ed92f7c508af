"""Mails a partner user can switch on (a new conversion, a status change, a payout sent) and
the admins' (a webhook delivery that failed for good). Each is written in the transaction of
the change that causes it, as the outbox's messages are (``backend.domain.affiliate.outbox``
looks up who asked, beside the postbacks and webhooks it looks up)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import format_minor
from backend.domain.mail import enqueue
from backend.domain.mail.outbox import mail_values
from backend.storage.db.models import NotificationSetting, Role, User

TEMPLATES = {"new_conversion": "conversion_new", "status_change": "conversion_status"}
"""The template of each conversion mail, by the setting that asks for it."""
_SETTINGS: Table = NotificationSetting.__table__  # type: ignore[assignment]
_USERS: Table = User.__table__  # type: ignore[assignment]


def subscribers(connection: Connection, partners: set[int]) -> Sequence[Any]:
    """The users of ``partners`` who asked for a conversion mail: (email, partner_id,
    new_conversion, status_change) rows."""
    if not partners:
        return []
    return connection.execute(
        select(
            _USERS.c.email,
            _USERS.c.partner_id,
            _SETTINGS.c.new_conversion,
            _SETTINGS.c.status_change,
        )
        .join(_SETTINGS, _SETTINGS.c.user_id == _USERS.c.id)
        .where(
            _USERS.c.partner_id.in_(sorted(partners)),
            _USERS.c.role == Role.PARTNER.value,
            _SETTINGS.c.new_conversion | _SETTINGS.c.status_change,
        )
    ).all()


def conversion_mails(
    conversion: Mapping[str, Any], wanted: str, previous: str | None, notified: Sequence[Any]
) -> list[dict[str, Any]]:
    """The ``mail_outbox`` rows ``conversion`` owes its partner's users who asked for
    ``wanted`` (``new_conversion`` or ``status_change``)."""
    rows: list[dict[str, Any]] = []
    currency = conversion["currency"]
    context = {
        "order_id": conversion["order_id"] or "—",
        "conversion_id": conversion["id"],
        "amount": f"{format_minor(conversion['amount_minor'], currency)} {currency}",
        "commission": f"{format_minor(conversion['commission_minor'], currency)} {currency}",
        "status": conversion["status"],
        "previous": previous or "",
    }
    for user in notified:
        if user.partner_id == conversion["partner_id"] and getattr(user, wanted):
            rows.append(mail_values(user.email, TEMPLATES[wanted], context))
    return rows


async def notify_payout_sent(
    session: AsyncSession, partner_id: int, context: Mapping[str, Any]
) -> int:
    """Mail a payout to the users of ``partner_id`` who asked (for the payouts code to call in
    the payout's transaction); ``context``: ``amount`` (as people write it, with its
    currency) and ``reference``. How many mails."""
    emails = (
        await session.scalars(
            select(User.email)
            .join(NotificationSetting, NotificationSetting.user_id == User.id)
            .where(User.partner_id == partner_id, NotificationSetting.payout_sent.is_(True))
        )
    ).all()
    for email in emails:
        enqueue(session, to=email, template="payout_sent", context=context)
    return len(emails)


ADMIN_EMAILS = select(_USERS.c.email).where(_USERS.c.role == Role.ADMIN.value)
"""Every admin's address, for the admins' mails."""


def failed_delivery_mails(
    admins: Sequence[str], url: str, event: str, attempts: int, detail: str
) -> list[dict[str, Any]]:
    """The ``mail_outbox`` rows telling ``admins`` that a webhook message failed for good."""
    context = {"url": url, "event": event, "attempts": attempts, "detail": detail}
    return [mail_values(email, "delivery_failed", context) for email in admins]
