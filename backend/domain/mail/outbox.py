"""Writing mail: rendered from ``templates/mail/`` (plain text and HTML) into a ``mail_outbox``
row in the caller's session, so the mail exists exactly when the change that causes it is
committed and is never sent from inside a request.

A template is two files of one name: the text one, ending ``.txt`` (its first line
``Subject: ...``, then a blank line, then the text), and the HTML one, ending ``.html``
(autoescaped). Other code (payouts, notifications) calls
``enqueue(session, to=..., template=..., context=...)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.storage.db.models import DeliveryStatus, MailMessage, Role, User

# backend/web/templates links to the checkout's templates/ (and is the wheel's copy of it).
MAIL_TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates" / "mail"
MAX_SUBJECT = 300
MAX_ADDRESS = 320


class MailTemplateError(ValueError):
    """A template without its ``Subject:`` line: a programming mistake, caught by the tests."""


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(MAIL_TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,  # a missing value is an error, never an empty link
        keep_trailing_newline=True,
    )


def render(template: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of ``template`` with ``context``."""
    environment = _environment()
    text = environment.get_template(f"{template}.txt").render(context)
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject: "):
        raise MailTemplateError(f"mail/{template}.txt must start with 'Subject: '")
    subject = " ".join(head.removeprefix("Subject: ").split())[:MAX_SUBJECT]
    html = environment.get_template(f"{template}.html").render({**context, "subject": subject})
    return subject, body, html


def _address(to: str) -> str:
    address = to.strip()
    if len(address) > MAX_ADDRESS or "@" not in address or any(c in address for c in "\r\n<>,"):
        raise ValueError(f"not one e-mail address: {to!r}")
    return address


def mail_values(to: str, template: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """A ``mail_outbox`` row's values, for callers that write with a connection (the worker's
    batch transaction) rather than a session."""
    subject, text, html = render(template, context)
    now = now_ms()
    return {
        "message_id": f"{secrets.token_hex(16)}@clicktrail",
        "to_address": _address(to),
        "template": template,
        "subject": subject,
        "text_body": text,
        "html_body": html,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_at_ms": now,
        "created_ms": now,
        "sent_ms": None,
        "detail": "",
    }


def enqueue(
    session: AsyncSession, *, to: str, template: str, context: Mapping[str, Any]
) -> MailMessage:
    """Add the mail to ``session``; it is sent once the caller commits."""
    row = MailMessage(**mail_values(to, template, context))
    session.add(row)
    return row


async def notify_admins(session: AsyncSession, template: str, context: Mapping[str, Any]) -> int:
    """The same mail to every admin user; how many."""
    admins = (await session.scalars(select(User.email).where(User.role == Role.ADMIN))).all()
    for email in admins:
        enqueue(session, to=email, template=template, context=context)
    return len(admins)
