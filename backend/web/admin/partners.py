"""Partner pages: list, create, edit (including active, paused or banned), with the partner's
commission overrides."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN, Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import PartnerCreate, PartnerUpdate
from backend.storage.db.models import CommissionOverride, Partner, PartnerStatus
from backend.web.admin.forms import (
    PAGE_SIZE,
    Field,
    FormInvalid,
    edit_page,
    form_values,
    new_page,
    submit,
    typed_form,
)
from backend.web.admin.lookups import campaign_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.overrides import override_out
from backend.web.api.resources import After, get_or_404, page_of, partner_out
from backend.web.pages.install import partner_install

NEW_FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field("contact_email", "Contact email", "an email address, or empty", kind="email"),
)
EDIT_FIELDS = (
    *NEW_FIELDS,
    Field(
        "status",
        "Status",
        "active, paused or banned (a paused partner's conversions are held for review; a"
        " banned partner's links send visitors to the campaign's destination, untracked, and"
        " earn nothing)",
        kind="select",
        options=[(status.value, status.value) for status in PartnerStatus],
        required=True,
    ),
)


def _new(
    viewer: Viewer, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Template:
    return new_page(
        viewer, "New partner", "/admin/partners/new", NEW_FIELDS, values, errors, status=status
    )


async def _show(
    partner: Partner,
    viewer: Viewer,
    state: State,
    session: AsyncSession,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    overrides = await session.scalars(
        select(CommissionOverride)
        .where(CommissionOverride.partner_id == partner.id)
        .order_by(CommissionOverride.id)
    )
    return edit_page(
        "admin/partner.html",
        viewer,
        heading=partner.name,
        kind="partner",
        object_id=partner.id,
        action=f"/admin/partners/{partner.id}",
        fields=EDIT_FIELDS,
        values=values if values is not None else form_values(partner_out(partner), EDIT_FIELDS),
        errors=errors or {},
        facts=[
            ("Public key", partner.key),
            ("Status", partner.status),
            ("Created", f"{partner.created_at:%Y-%m-%d %H:%M}"),
        ],
        status=status,
        install=partner_install(partner, state.settings, state.snippet),
        overrides=[override_out(override) for override in overrides],
        campaigns=await campaign_names(session, ADMIN),
    )


class PartnerPages(Controller):
    path = "/partners"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Partner), Partner.id, after, PAGE_SIZE, partner_out)
        return Template("admin/partners.html", context={"viewer": viewer, "page": page})

    @get("/new")
    async def new(self, viewer: CurrentViewer) -> Template:
        return _new(viewer, {}, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            partner = await submit(
                form,
                NEW_FIELDS,
                PartnerCreate,
                lambda data: catalogue.create_partner(writer, state.catalog, data),
            )
        except FormInvalid as invalid:
            return _new(viewer, form, invalid.errors, 400)
        return Redirect(f"/admin/partners/{partner.id}", status_code=303)

    @get("/{partner_id:int}")
    async def show(
        self, partner_id: FromPath[int], viewer: CurrentViewer, reader: Reader, state: State
    ) -> Template:
        return await _show(await get_or_404(reader, Partner, partner_id), viewer, state, reader)

    @post("/{partner_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        partner_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        partner = await get_or_404(writer, Partner, partner_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                EDIT_FIELDS,
                PartnerUpdate,
                lambda data: catalogue.update_partner(writer, state.catalog, partner, data),
            )
        except FormInvalid as invalid:
            return await _show(partner, viewer, state, writer, form, invalid.errors, 400)
        return Redirect(f"/admin/partners/{partner_id}", status_code=303)
