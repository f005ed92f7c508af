"""Campaign pages: list, create, edit (destination, commission: percent and/or flat, status:
active or paused, and whether renewals of a bound customer are paid, how long and at which
rate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from litestar import get
from litestar.datastructures import State
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import CampaignCreate, CampaignUpdate
from backend.storage.db.models import Campaign, Merchant, RunStatus
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import merchant_currency, merchants_by_id
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.api.deps import CurrentViewer, Reader
from backend.web.api.resources import After, campaign_out, get_or_404, page_of

COMMISSION_FIELDS = (
    Field(
        "commission_percent",
        "Commission (percent of the sale)",
        "a percentage such as 10 or 7.5, or 0 for none",
    ),
    Field(
        "commission_flat_minor",
        "Flat commission per conversion",
        "an amount such as 0.50 in the merchant's currency, or 0 for none",
        kind="money",
    ),
)
"""A commission rule: a campaign's, or a partner's own on one campaign (an override)."""
EDIT_FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field(
        "destination_url",
        "Destination",
        "a full address starting with https:// on the merchant's shop",
        kind="url",
        required=True,
    ),
    *COMMISSION_FIELDS,
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
    Field(
        "renewal_mode",
        "Renewals",
        "none (a customer's later sales without a click earn nothing), for a number of months"
        " after the customer's first sale, or for the customer's lifetime",
        kind="select",
        options=[("none", "not paid"), ("months", "for some months"), ("lifetime", "lifetime")],
    ),
    Field(
        "renewal_months",
        "Renewals paid for (months)",
        "a whole number of months from 1 to 600, when renewals are paid for some months",
        kind="number",
    ),
    Field(
        "renewal_percent",
        "Renewal commission (percent)",
        "a percentage such as 5, or empty for the campaign's commission",
    ),
    Field(
        "renewal_flat_minor",
        "Renewal flat commission",
        "an amount such as 0.50 in the merchant's currency, or empty",
        kind="money",
    ),
)


class CampaignPages(ObjectPages[Campaign, CampaignCreate, CampaignUpdate]):
    path = "/campaigns"
    kind = "campaign"
    model = Campaign
    template = "admin/campaign.html"
    new_schema = CampaignCreate
    edit_schema = CampaignUpdate
    edit_fields = EDIT_FIELDS
    new_values = MappingProxyType(
        {"commission_percent": "0", "commission_flat_minor": "0", "status": "active"}
    )
    intro = "A campaign sends a merchant's visitors somewhere and sets what partners earn."

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Campaign), Campaign.id, after, PAGE_SIZE, campaign_out)
        merchants = await merchants_by_id(reader)
        context = {"viewer": viewer, "page": page, "merchants": merchants}
        return Template("admin/campaigns.html", context=context)

    async def form_currency(
        self, session: AsyncSession, form: Mapping[str, str], obj: object | None
    ) -> str | None:
        if isinstance(obj, Campaign):
            return await merchant_currency(session, obj.merchant_id)
        return await merchant_currency(session, form.get("merchant_id"))

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        merchants = await merchants_by_id(session)
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

    async def create_object(
        self, writer: AsyncSession, state: State, data: CampaignCreate
    ) -> Campaign:
        return await catalogue.create_campaign(writer, state.catalog, data)

    async def update_object(
        self, writer: AsyncSession, state: State, obj: Campaign, data: CampaignUpdate
    ) -> None:
        await catalogue.update_campaign(writer, state.catalog, obj, data)

    async def object_page(self, session: AsyncSession, state: State, obj: Campaign) -> ObjectPage:
        merchant = await get_or_404(session, Merchant, obj.merchant_id)
        return ObjectPage(
            heading=obj.name,
            facts=[
                ("Merchant", f"{merchant.name} ({merchant.currency})"),
                ("Created", f"{obj.created_at:%Y-%m-%d %H:%M}"),
            ],
            current=campaign_out(obj),
        )
