"""The mail outbox: mails written in the caller's transaction, sent by the worker through a
real SMTP server on loopback (aiosmtpd), retried when the server is away, failed when it
refuses for good, and written owner-only to ``var/mail/`` when no SMTP server is configured."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import stat
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from backend.core.clock import DAY_MS, now_ms
from backend.core.settings import Settings
from backend.domain import account_tokens
from backend.domain.affiliate.delivery import deliver_due as deliver_outbox
from backend.domain.mail import enqueue
from backend.domain.mail.delivery import deliver_due, forget_files, mail_directory
from backend.domain.mail.outbox import MAIL_TEMPLATES, render
from backend.storage.db.engine import Database
from backend.storage.db.models import AccountToken, DeliveryStatus, MailMessage, TokenPurpose
from backend.worker.mail import MailCourier
from backend.worker.retention import purge_expired
from tests.browser.servers import closed_port
from tests.support import Programme, add_user

CONTEXT = {
    "link": "https://tracker.example/reset/abc",
    "minutes": 30,
    "days": 7,
    "partner": "Blog <b>",
    "inviter": "user:admin@example.com",
    "programme": "Shop & Co",
    "login": "https://tracker.example/login",
    "reset": "https://tracker.example/reset",
    "name": "<script>x</script>",
    "email": "a@b.example",
    "website": "https://blog.example",
    "order_id": "<A1>",
    "conversion_id": 7,
    "amount": "20.00 EUR",
    "commission": "2.00 EUR",
    "status": "approved",
    "previous": "pending",
    "reference": "PO-1",
    "url": "https://hooks.example/<x>",
    "event": "conversion.created",
    "attempts": 11,
    "detail": "HTTP 500",
    "code": "<C>",
}


class Inbox:
    """What a real SMTP server on loopback received; ``refuse`` makes it answer 550."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.refuse = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "550 mailbox unavailable"
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd checks the port it is given)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def write_mail(database: Database, to: str = "ann@example.com") -> int:
    async with database.session(write=True) as session:
        row = enqueue(session, to=to, template="password_reset", context=CONTEXT)
        await session.commit()
        return row.id


async def mail_row(database: Database, mail_id: int) -> MailMessage:
    async with database.session() as session:
        row = await session.get(MailMessage, mail_id)
        assert row is not None
        return row


def test_every_template_has_a_subject_text_and_escaped_html() -> None:
    names = sorted(path.stem for path in MAIL_TEMPLATES.glob("*.txt"))
    assert len(names) >= 11
    for name in names:
        assert (MAIL_TEMPLATES / f"{name}.html").is_file(), name
        subject, text, html = render(name, CONTEXT)
        assert subject, name
        assert "\n" not in subject, name
        assert text.strip(), name
        assert "Subject:" not in text, name
        assert "<script>" not in html, name
        assert "<b>" not in html, name


async def test_a_mail_goes_out_through_smtp_with_text_and_html(
    database: Database, settings: Settings, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    smtp = settings.with_overrides(
        smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none", mail_from="Shop <p@shop.example>"
    )
    mail_id = await write_mail(database)
    assert await deliver_due(database, smtp) == 1
    assert await deliver_due(database, smtp) == 0  # sent once

    ((envelope, message),) = handler.messages
    assert envelope.rcpt_tos == ["ann@example.com"]
    assert message["Subject"] == "Reset your Clicktrail password"
    assert message["From"] == "Shop <p@shop.example>"
    row = await mail_row(database, mail_id)
    assert message["Message-ID"] == f"<{row.message_id}>"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "https://tracker.example/reset/abc" in text.get_content()
    assert 'href="https://tracker.example/reset/abc"' in html.get_content()
    assert (row.status, row.attempts, row.detail) == (DeliveryStatus.DELIVERED, 1, "smtp")
    assert row.sent_ms is not None


async def test_a_server_that_is_away_is_tried_again_later_and_a_refusal_is_final(
    database: Database, settings: Settings, inbox: tuple[Inbox, int]
) -> None:
    mail_id = await write_mail(database)
    with closed_port() as port:
        away = settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
        assert await deliver_due(database, away) == 1
    row = await mail_row(database, mail_id)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.next_at_ms > now_ms()  # not due again at once
    assert "Error" in row.detail or "refused" in row.detail.lower()
    assert await deliver_due(database, away) == 0

    handler, port = inbox
    handler.refuse = True
    async with database.writing() as connection:  # the retry comes due
        await connection.execute(update(MailMessage).values(next_at_ms=0))
    server = settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    assert await deliver_due(database, server) == 1
    row = await mail_row(database, mail_id)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 2)
    assert row.detail.startswith("SMTP 550")


async def test_without_smtp_the_mail_is_an_owner_only_file(
    database: Database, settings: Settings
) -> None:
    assert settings.smtp_host is None
    mail_id = await write_mail(database)
    assert await deliver_due(database, settings) == 1
    directory = mail_directory(settings)
    (path,) = directory.iterdir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ann@example.com"
    assert "https://tracker.example/reset/abc" in path.read_text()
    row = await mail_row(database, mail_id)
    assert (row.status, row.detail) == (DeliveryStatus.DELIVERED, f"file {path.name}")


async def test_a_mail_exists_only_when_its_change_commits(database: Database) -> None:
    async with database.session(write=True) as session:
        enqueue(session, to="ann@example.com", template="password_reset", context=CONTEXT)
        await session.rollback()
    async with database.session() as session:
        assert (await session.scalars(select(MailMessage))).all() == []


@pytest.mark.parametrize("to", ["", "a@b.example\r\nBcc: x@y.example", "x" * 400 + "@a.example"])
async def test_an_address_that_is_not_one_address_is_refused(database: Database, to: str) -> None:
    async with database.session(write=True) as session:
        with pytest.raises(ValueError, match="not one e-mail address"):
            enqueue(session, to=to, template="password_reset", context=CONTEXT)


async def test_a_webhook_message_that_fails_for_good_is_mailed_to_every_admin(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    await add_user(database, "admin@example.com")
    await add_user(database, "second@example.com")
    made = await client.post(
        "/api/v1/webhooks",
        json={"url": "http://10.255.255.1/hooks", "events": ["conversion.created"]},
        headers=programme.headers,
    )
    assert made.status_code == 201, made.text
    sent = await client.post(
        f"/api/v1/webhooks/{made.json()['id']}/test", headers=programme.headers
    )
    assert sent.status_code == 202
    assert await deliver_outbox(database) == 1  # a private address: refused, final at once

    async with database.session() as session:
        mails = (await session.scalars(select(MailMessage).order_by(MailMessage.to_address))).all()
    assert [(m.to_address, m.template) for m in mails] == [
        ("admin@example.com", "delivery_failed"),
        ("second@example.com", "delivery_failed"),
    ]
    assert "http://10.255.255.1/hooks" in mails[0].text_body
    assert "webhook.test" in mails[0].subject


async def test_retention_deletes_finished_mail_its_files_and_old_tokens_and_keeps_the_rest(
    database: Database, settings: Settings, redis: Redis
) -> None:
    sent_id = await write_mail(database, "old@example.com")
    assert await deliver_due(database, settings) == 1
    pending_id = await write_mail(database, "later@example.com")
    async with database.session(write=True) as session:
        account_tokens.issue(session, TokenPurpose.RESET)
        await session.commit()
    later = now_ms() + 400 * DAY_MS  # far past the retention and every token's life
    await purge_expired(database, redis, retention_days=90, now_ms=later)
    assert forget_files(settings, later) == 1
    async with database.session() as session:
        left = (await session.scalars(select(MailMessage.id))).all()
        tokens = (await session.scalars(select(AccountToken))).all()
    assert left == [pending_id]  # unsent mail waits, whatever its age
    assert sent_id not in left
    assert tokens == []
    assert list(mail_directory(settings).iterdir()) == []


async def test_the_worker_s_mail_courier_sends_what_is_due_and_stops(
    database: Database, settings: Settings
) -> None:
    mail_id = await write_mail(database)
    courier = MailCourier(database, settings, poll_s=0.01)
    task = asyncio.create_task(courier.run())
    for _ in range(200):
        if (await mail_row(database, mail_id)).status == DeliveryStatus.DELIVERED:
            break
        await asyncio.sleep(0.01)
    courier.stop()
    await asyncio.wait_for(task, 5)
    assert (await mail_row(database, mail_id)).status == DeliveryStatus.DELIVERED
