"""Commission override pages: a partner's own percent and/or flat commission on one campaign.

List (by partner or campaign), create, edit and delete, through the same rules as the API
(``catalogue.create_override``/``update_override``/``delete_override``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import OverrideCreate, OverrideUpdate
from backend.storage.db.models import Campaign, CommissionOverride, Partner
from backend.web.admin.campaigns import COMMISSION_FIELDS
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import (
    campaign_currency,
    chosen,
    narrowed,
    narrowed_list,
    partner_and_campaign,
)
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.overrides import override_out
from backend.web.api.resources import After, get_or_404, page_of


class OverridePages(ObjectPages[CommissionOverride, OverrideCreate, OverrideUpdate]):
    path = "/commission-overrides"
    kind = "commission override"
    model = CommissionOverride
    template = "admin/override.html"
    new_schema = OverrideCreate
    edit_schema = OverrideUpdate
    edit_fields = COMMISSION_FIELDS
    intro = (
        "The partner earns by this rule instead of the campaign's on every conversion "
        "credited to its links to that campaign."
    )

    @get("/")
    async def index(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
        after: After = 0,
    ) -> Template:
        statement, filters = narrowed(CommissionOverride, partner_id, campaign_id)
        page = await page_of(
            reader, statement, CommissionOverride.id, after, PAGE_SIZE, override_out
        )
        context = await narrowed_list(reader, viewer, page, filters, self.page_url())
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
            **chosen(partner_id, campaign_id),
            "commission_percent": "0",
            "commission_flat_minor": "0",
        }
        return await self.new_form(viewer, reader, values, {})

    async def form_currency(
        self, session: AsyncSession, form: Mapping[str, str], obj: object | None
    ) -> str | None:
        if isinstance(obj, CommissionOverride):
            return await campaign_currency(session, obj.campaign_id)
        return await campaign_currency(session, form.get("campaign_id"))

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        return (*await partner_and_campaign(session), *COMMISSION_FIELDS)

    async def create_object(
        self, writer: AsyncSession, state: State, data: OverrideCreate
    ) -> CommissionOverride:
        return await catalogue.create_override(writer, state.catalog, data)

    async def update_object(
        self, writer: AsyncSession, state: State, obj: CommissionOverride, data: OverrideUpdate
    ) -> None:
        await catalogue.update_override(writer, state.catalog, obj, data)

    async def object_page(
        self, session: AsyncSession, state: State, obj: CommissionOverride
    ) -> ObjectPage:
        partner = await get_or_404(session, Partner, obj.partner_id)
        campaign = await get_or_404(session, Campaign, obj.campaign_id)
        return ObjectPage(
            heading=f"{partner.name} on {campaign.name}",
            facts=[
                ("Partner", partner.name),
                ("Campaign", campaign.name),
                ("Created", f"{obj.created_at:%Y-%m-%d %H:%M}"),
            ],
            current=override_out(obj),
            extra={"partner_id": partner.id},
        )

    @post("/{object_id:int}/delete")
    async def delete(self, object_id: FromPath[int], writer: Writer, state: State) -> Redirect:
        override = await self.load(writer, object_id)
        partner_id = override.partner_id
        await catalogue.delete_override(writer, state.catalog, override)
        return Redirect(f"/admin/partners/{partner_id}", status_code=303)
