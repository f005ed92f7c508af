"""Sending the mail outbox: through SMTP (``aiosmtplib``) when ``SMTP_HOST`` is set, else as
``.eml`` files under ``var/mail/`` (owner-only: they hold sign-in links) that the admin page
Mail lists, so a first installation still sees its invitation and reset links.

The worker's mail courier calls ``deliver_due``: it leases the due messages (two workers never
send one at once), sends each, and marks it sent, or due again after the outbox's retry
schedule (``backend.domain.affiliate.delivery.retry_delay_ms``), or failed when the schedule is
spent or the server refused the message for good (a 5xx answer). The ``Message-ID`` is the same
on every attempt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from sqlalchemy import select, update

from backend.core.clock import now_ms
from backend.core.private_files import private_directory, private_opener
from backend.core.settings import Settings
from backend.domain.affiliate.delivery import retry_delay_ms
from backend.storage.db.engine import Database
from backend.storage.db.models import DeliveryStatus, MailMessage

BATCH = 20
TIMEOUT_S = 30.0
LEASE_MS = BATCH * int(TIMEOUT_S * 1000)
MAX_DETAIL = 500
MAIL_DIRECTORY = "mail"


@dataclass(frozen=True, slots=True)
class Sent:
    ok: bool
    detail: str
    final: bool = False  # never worth another try


def message_of(settings: Settings, mail: MailMessage) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = formatdate(mail.created_ms / 1000, usegmt=True)
    message["Message-ID"] = f"<{mail.message_id}>"
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    return message


def mail_directory(settings: Settings) -> Path:
    return settings.var_dir / MAIL_DIRECTORY


def file_name(mail: MailMessage) -> str:
    return f"{mail.id:08d}-{mail.template}.eml"


def _write_file(settings: Settings, mail: MailMessage, message: EmailMessage) -> Sent:
    directory = private_directory(mail_directory(settings))
    name = file_name(mail)
    with open(directory / name, "wb", opener=private_opener) as file:
        file.write(message.as_bytes())
    return Sent(True, f"file {name}")


async def _send_smtp(settings: Settings, message: EmailMessage, timeout_s: float) -> Sent:
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=timeout_s,
        )
    except aiosmtplib.SMTPResponseException as error:
        return Sent(False, f"SMTP {error.code}: {error.message}", final=error.code >= 500)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        return Sent(False, f"{type(error).__name__}: {error}")
    return Sent(True, "smtp")


def forget_files(settings: Settings, before_ms: int) -> int:
    """Delete the mail files written before ``before_ms`` (retention); how many."""
    directory = mail_directory(settings)
    if not directory.is_dir():
        return 0
    doomed = [p for p in directory.glob("*.eml") if p.stat().st_mtime * 1000 < before_ms]
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)


async def send_one(settings: Settings, mail: MailMessage, timeout_s: float = TIMEOUT_S) -> Sent:
    message = message_of(settings, mail)
    if settings.smtp_host is None:
        return await asyncio.to_thread(_write_file, settings, mail, message)
    return await _send_smtp(settings, message, timeout_s)


async def deliver_due(database: Database, settings: Settings, timeout_s: float = TIMEOUT_S) -> int:
    """Send the mails that are due; return how many were tried."""
    now = now_ms()
    async with database.session() as session:
        due = (
            await session.scalars(
                select(MailMessage)
                .where(MailMessage.status == DeliveryStatus.PENDING, MailMessage.next_at_ms <= now)
                .order_by(MailMessage.next_at_ms)
                .limit(BATCH)
            )
        ).all()
    if not due:
        return 0
    claimed: list[MailMessage] = []
    async with database.writing() as connection:
        for mail in due:
            result = await connection.execute(
                update(MailMessage)
                .where(
                    MailMessage.id == mail.id,
                    MailMessage.next_at_ms == mail.next_at_ms,
                    MailMessage.status == DeliveryStatus.PENDING,
                )
                .values(next_at_ms=now + LEASE_MS)
            )
            if result.rowcount == 1:
                claimed.append(mail)
    for mail in claimed:  # one at a time: one SMTP server, and mail is never hurried
        await _record(database, mail, await send_one(settings, mail, timeout_s))
    return len(claimed)


async def _record(database: Database, mail: MailMessage, sent: Sent) -> None:
    now = now_ms()
    attempts = mail.attempts + 1
    wait = None if sent.ok or sent.final else retry_delay_ms(attempts)
    if sent.ok:
        status = DeliveryStatus.DELIVERED
    elif wait is None:
        status = DeliveryStatus.FAILED
    else:
        status = DeliveryStatus.PENDING
    async with database.writing() as connection:
        await connection.execute(
            update(MailMessage)
            .where(MailMessage.id == mail.id)
            .values(
                attempts=attempts,
                status=status,
                next_at_ms=now + (wait or 0),
                sent_ms=now if sent.ok else None,
                detail=sent.detail[:MAX_DETAIL],
            )
        )
