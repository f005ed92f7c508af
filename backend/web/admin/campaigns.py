"""Campaign pages: list, create, edit (destination, commission: percent and/or flat, and
status: active or paused)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import CampaignCreate, CampaignUpdate
from backend.storage.db.models import Campaign, Merchant, RunStatus
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
from backend.web.admin.lookups import merchants_by_id
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, campaign_out, get_or_404, page_of

EDIT_FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field(
        "destination_url",
        "Destination",
        "a full address starting with https:// on the merchant's shop",
        kind="url",
        required=True,
    ),
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
    Field(
        "cookie_window_days",
        "Attribution window (days)",
        "a whole number of days from 1 to 365, or empty for the merchant's window",
        kind="number",
    ),
    Field(
        "status",
        "Status",
        "active or paused (a paused campaign's links still redirect, but their conversions are"
        " held for review)",
        kind="select",
        options=[(status.value, status.value) for status in RunStatus],
        required=True,
    ),
)


def _new_fields(merchants: dict[int, Merchant]) -> tuple[Field, ...]:
    choices = [(str(m.id), f"{m.name} ({m.currency})") for m in merchants.values()]
    merchant = Field(
        "merchant_id",
        "Merchant",
        "one of the merchants",
        kind="select",
        options=choices,
        required=True,
    )
    return (merchant, *EDIT_FIELDS)


async def _new(
    viewer: Viewer,
    session: AsyncSession,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Template:
    fields = _new_fields(await merchants_by_id(session))
    return new_page(
        viewer,
        "New campaign",
        "/admin/campaigns/new",
        fields,
        values,
        errors,
        status=status,
        intro="A campaign sends a merchant's visitors somewhere and sets what partners earn.",
    )


def _show(
    campaign: Campaign,
    merchant: Merchant,
    viewer: Viewer,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    out = campaign_out(campaign)
    return edit_page(
        "admin/campaign.html",
        viewer,
        heading=campaign.name,
        kind="campaign",
        object_id=campaign.id,
        action=f"/admin/campaigns/{campaign.id}",
        fields=EDIT_FIELDS,
        values=values if values is not None else form_values(out, EDIT_FIELDS),
        errors=errors or {},
        facts=[
            ("Merchant", f"{merchant.name} ({merchant.currency})"),
            ("Created", f"{campaign.created_at:%Y-%m-%d %H:%M}"),
        ],
        status=status,
    )


class CampaignPages(Controller):
    path = "/campaigns"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Campaign), Campaign.id, after, PAGE_SIZE, campaign_out)
        merchants = await merchants_by_id(reader)
        context = {"viewer": viewer, "page": page, "merchants": merchants}
        return Template("admin/campaigns.html", context=context)

    @get("/new")
    async def new(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await _new(
            viewer,
            reader,
            {"commission_percent": "0", "commission_flat_minor": "0", "status": "active"},
            {},
        )

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        fields = _new_fields(await merchants_by_id(writer))
        try:
            campaign = await submit(
                form,
                fields,
                CampaignCreate,
                lambda data: catalogue.create_campaign(writer, state.catalog, data),
            )
        except FormInvalid as invalid:
            return await _new(viewer, writer, form, invalid.errors, 400)
        return Redirect(f"/admin/campaigns/{campaign.id}", status_code=303)

    @get("/{campaign_id:int}")
    async def show(
        self, campaign_id: FromPath[int], viewer: CurrentViewer, reader: Reader
    ) -> Template:
        campaign = await get_or_404(reader, Campaign, campaign_id)
        return _show(campaign, await get_or_404(reader, Merchant, campaign.merchant_id), viewer)

    @post("/{campaign_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        campaign_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        campaign = await get_or_404(writer, Campaign, campaign_id)
        merchant = await get_or_404(writer, Merchant, campaign.merchant_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                EDIT_FIELDS,
                CampaignUpdate,
                lambda data: catalogue.update_campaign(writer, state.catalog, campaign, data),
            )
        except FormInvalid as invalid:
            return _show(campaign, merchant, viewer, form, invalid.errors, 400)
        return Redirect(f"/admin/campaigns/{campaign_id}", status_code=303)
