"""Commission override pages: a partner's own percent and/or flat commission on one campaign.

List (by partner or campaign), create, edit and delete, through the same rules as the API
(``catalogue.create_override``/``update_override``/``delete_override``).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN, Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import OverrideCreate, OverrideUpdate
from backend.storage.db.models import Campaign, CommissionOverride, Partner
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
from backend.web.admin.lookups import campaign_names, partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.overrides import override_out
from backend.web.api.resources import After, get_or_404, page_of

EDIT_FIELDS = (
    Field(
        "commission_percent",
        "Commission (percent of the sale)",
        "a percentage such as 10 or 7.5, or 0 for none",
    ),
    Field(
        "commission_flat_minor",
        "Flat commission per conversion (minor units, e.g. cents)",
        "a whole number of minor units such as 50 for 0.50, or 0 for none",
        kind="number",
    ),
)


async def _new_fields(session: AsyncSession) -> tuple[Field, ...]:
    partners = await partner_names(session)
    campaigns = await campaign_names(session, ADMIN)
    return (
        Field(
            "partner_id",
            "Partner",
            "one of the partners",
            kind="select",
            options=[(str(key), name) for key, name in partners.items()],
            required=True,
        ),
        Field(
            "campaign_id",
            "Campaign",
            "one of the campaigns",
            kind="select",
            options=[(str(key), name) for key, name in campaigns.items()],
            required=True,
        ),
        *EDIT_FIELDS,
    )


async def _new(
    viewer: Viewer,
    session: AsyncSession,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Template:
    return new_page(
        viewer,
        "New commission override",
        "/admin/commission-overrides/new",
        await _new_fields(session),
        values,
        errors,
        status=status,
        intro="The partner earns by this rule instead of the campaign's on every conversion "
        "credited to its links to that campaign.",
    )


def _show(
    override: CommissionOverride,
    partner: Partner,
    campaign: Campaign,
    viewer: Viewer,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    return edit_page(
        "admin/override.html",
        viewer,
        heading=f"{partner.name} on {campaign.name}",
        kind="commission override",
        object_id=override.id,
        action=f"/admin/commission-overrides/{override.id}",
        fields=EDIT_FIELDS,
        values=values if values is not None else form_values(override_out(override), EDIT_FIELDS),
        errors=errors or {},
        facts=[
            ("Partner", partner.name),
            ("Campaign", campaign.name),
            ("Created", f"{override.created_at:%Y-%m-%d %H:%M}"),
        ],
        status=status,
        partner_id=partner.id,
    )


class OverridePages(Controller):
    path = "/commission-overrides"

    @get("/")
    async def index(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
        after: After = 0,
    ) -> Template:
        statement = select(CommissionOverride)
        filters: dict[str, str] = {}
        if partner_id is not None:
            statement = statement.where(CommissionOverride.partner_id == partner_id)
            filters["partner_id"] = str(partner_id)
        if campaign_id is not None:
            statement = statement.where(CommissionOverride.campaign_id == campaign_id)
            filters["campaign_id"] = str(campaign_id)
        page = await page_of(
            reader, statement, CommissionOverride.id, after, PAGE_SIZE, override_out
        )
        query = "&".join(f"{name}={value}" for name, value in filters.items())
        context = {
            "viewer": viewer,
            "page": page,
            "partners": await partner_names(reader),
            "campaigns": await campaign_names(reader, viewer),
            "filters": filters,
            "base": "/admin/commission-overrides" + (f"?{query}" if query else ""),
        }
        return Template("admin/overrides.html", context=context)

    @get("/new")
    async def new(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
    ) -> Template:
        values = {
            "partner_id": "" if partner_id is None else str(partner_id),
            "campaign_id": "" if campaign_id is None else str(campaign_id),
            "commission_percent": "0",
            "commission_flat_minor": "0",
        }
        return await _new(viewer, reader, values, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            override = await submit(
                form,
                await _new_fields(writer),
                OverrideCreate,
                lambda data: catalogue.create_override(writer, state.catalog, data),
            )
        except FormInvalid as invalid:
            await writer.rollback()  # a refused duplicate leaves the session to be reset
            return await _new(viewer, writer, form, invalid.errors, 400)
        return Redirect(f"/admin/commission-overrides/{override.id}", status_code=303)

    @get("/{override_id:int}")
    async def show(
        self, override_id: FromPath[int], viewer: CurrentViewer, reader: Reader
    ) -> Template:
        override = await get_or_404(reader, CommissionOverride, override_id)
        partner = await get_or_404(reader, Partner, override.partner_id)
        campaign = await get_or_404(reader, Campaign, override.campaign_id)
        return _show(override, partner, campaign, viewer)

    @post("/{override_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        override_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        override = await get_or_404(writer, CommissionOverride, override_id)
        partner = await get_or_404(writer, Partner, override.partner_id)
        campaign = await get_or_404(writer, Campaign, override.campaign_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                EDIT_FIELDS,
                OverrideUpdate,
                lambda data: catalogue.update_override(writer, state.catalog, override, data),
            )
        except FormInvalid as invalid:
            return _show(override, partner, campaign, viewer, form, invalid.errors, 400)
        return Redirect(f"/admin/commission-overrides/{override_id}", status_code=303)

    @post("/{override_id:int}/delete")
    async def delete(self, override_id: FromPath[int], writer: Writer, state: State) -> Redirect:
        override = await get_or_404(writer, CommissionOverride, override_id)
        partner_id = override.partner_id
        await catalogue.delete_override(writer, state.catalog, override)
        return Redirect(f"/admin/partners/{partner_id}", status_code=303)
