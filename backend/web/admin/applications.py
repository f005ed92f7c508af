"""Partners joining: each merchant's public programme (its ``/join`` address, open or closed,
automatic approval, terms), the applications waiting for a decision, and invitations by
e-mail. Every change goes through ``backend.domain.applications`` or
``backend.domain.password_reset``, which write their mails in the same transaction."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN
from backend.core.validation import FieldError
from backend.domain import applications
from backend.domain.password_reset import invite
from backend.storage.db.models import ApplicationStatus, Merchant, PartnerApplication, Programme
from backend.web.admin.forms import typed_form
from backend.web.admin.lookups import merchants_by_id, partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404

SHOWN = 100
MAX_TERMS = 20_000


async def _page(
    session: AsyncSession, errors: dict[str, str] | None = None, status_code: int = 200
) -> Template:
    pending = (
        await session.scalars(
            select(PartnerApplication)
            .where(PartnerApplication.status == ApplicationStatus.PENDING)
            .order_by(PartnerApplication.id)
            .limit(SHOWN)
        )
    ).all()
    decided = (
        await session.scalars(
            select(PartnerApplication)
            .where(PartnerApplication.status != ApplicationStatus.PENDING)
            .order_by(PartnerApplication.id.desc())
            .limit(SHOWN)
        )
    ).all()
    programmes = {p.merchant_id: p for p in await session.scalars(select(Programme))}
    context = {
        "viewer": ADMIN,  # the admin pages' guard let only admins in
        "pending": pending,
        "decided": decided,
        "merchants": await merchants_by_id(session),
        "programmes": programmes,
        "partners": await partner_names(session),
        "errors": errors or {},
    }
    return Template("admin/applications.html", context=context, status_code=status_code)


@get("/applications")
async def applications_page(reader: Reader) -> Template:
    return await _page(reader)


async def _application(session: AsyncSession, application_id: int) -> PartnerApplication:
    return await get_or_404(session, PartnerApplication, application_id)


@post("/applications/{application_id:int}/approve")
async def approve(
    application_id: FromPath[int], writer: Writer, viewer: CurrentViewer, state: State
) -> Template | Redirect:
    application = await _application(writer, application_id)
    try:
        await applications.approve(writer, application, viewer.actor, state.settings.public_url)
    except FieldError as error:
        await writer.rollback()
        return await _page(writer, {f"application-{application_id}": error.message}, 400)
    return Redirect("/admin/applications")


@post("/applications/{application_id:int}/reject")
async def reject(
    application_id: FromPath[int], writer: Writer, viewer: CurrentViewer
) -> Template | Redirect:
    application = await _application(writer, application_id)
    try:
        await applications.reject(writer, application, viewer.actor)
    except FieldError as error:
        return await _page(writer, {f"application-{application_id}": error.message}, 400)
    return Redirect("/admin/applications")


@post("/programmes/{merchant_id:int}")
async def save_programme(
    request: Request[Any, Any, Any], merchant_id: FromPath[int], writer: Writer
) -> Template | Redirect:
    await get_or_404(writer, Merchant, merchant_id)
    form = await typed_form(request)
    slug = form.get("slug", "").strip().lower()
    terms = form.get("terms", "").strip()
    key = f"programme-{merchant_id}"
    if not applications.SLUG.match(slug):
        error = "Expected an address of lower-case letters, digits and dashes, up to 64."
        return await _page(writer, {key: error}, 400)
    if len(terms) > MAX_TERMS:
        return await _page(writer, {key: "The terms may have up to 20,000 characters."}, 400)
    programme = await writer.get(Programme, merchant_id) or Programme(merchant_id=merchant_id)
    programme.slug = slug
    programme.open = form.get("open") == "true"
    programme.auto_approve = form.get("auto_approve") == "true"
    programme.terms = terms
    writer.add(programme)
    try:
        await writer.commit()
    except IntegrityError:
        await writer.rollback()
        return await _page(writer, {key: f"/join/{slug} is another programme's address."}, 400)
    return Redirect("/admin/applications")


@post("/invitations")
async def send_invitation(
    request: Request[Any, Any, Any], writer: Writer, viewer: CurrentViewer, state: State
) -> Template | Redirect:
    form = await typed_form(request)
    email = form.get("email", "").strip()
    partner = form.get("partner_id", "")
    if not 3 <= len(email) <= 320 or "@" not in email:
        return await _page(writer, {"invite": "Give the e-mail address to invite."}, 400)
    if not partner.isdigit() or len(partner) > 10:
        return await _page(writer, {"invite": "Choose the partner account to invite to."}, 400)
    try:
        await invite(writer, email, int(partner), state.settings.public_url, viewer.actor)
    except FieldError as error:
        return await _page(writer, {"invite": error.message}, 400)
    return Redirect("/admin/mail")


APPLICATION_HANDLERS = [applications_page, approve, reject, save_programme, send_invitation]
