"""The mail outbox as admins see it: every mail with its state, and each one whole. With no
SMTP server configured this is where a first installation reads its invitation and reset
links (the mails are files under ``var/mail/`` too)."""

from __future__ import annotations

from litestar import get
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy import select

from backend.core.scope import ADMIN
from backend.storage.db.models import MailMessage
from backend.web.admin.forms import PAGE_SIZE
from backend.web.api.deps import Reader
from backend.web.api.resources import After, get_or_404, page_of


@get("/mail")
async def mail_page(reader: Reader, after: After = 0) -> Template:
    statement = select(MailMessage)
    page = await page_of(reader, statement, MailMessage.id, after, PAGE_SIZE, lambda row: row)
    return Template("admin/mail.html", context={"viewer": ADMIN, "page": page})


@get("/mail/{mail_id:int}")
async def one_mail(mail_id: FromPath[int], reader: Reader) -> Template:
    mail = await get_or_404(reader, MailMessage, mail_id)
    return Template("admin/mail_one.html", context={"viewer": ADMIN, "mail": mail})


MAIL_HANDLERS = [mail_page, one_mail]
