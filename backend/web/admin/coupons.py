"""Coupon pages: a partner's coupon codes per merchant, listed (by merchant or partner), created
and deleted through the same rules as the API (``catalogue.create_coupon``/``delete_coupon``)."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import CouponCreate
from backend.storage.db.models import Coupon
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import (
    campaign_names,
    choices,
    merchants_by_id,
    partner_and_campaign,
    partner_names,
)
from backend.web.admin.object_pages import NewObjectPages
from backend.web.api.coupons import coupon_out
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, get_or_404, page_of


class CouponPages(NewObjectPages[CouponCreate, Coupon]):
    path = "/coupons"
    kind = "coupon"
    new_schema = CouponCreate
    intro = (
        "A sale that carries the code (pixel coupon=, the snippet's coupon, the postback's"
        " coupon field) and names no click is credited to the partner, by the partner's rule"
        " for the campaign. Codes are matched regardless of case."
    )

    @get("/")
    async def index(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        merchant_id: FromQuery[int | None] = None,
        partner_id: FromQuery[int | None] = None,
        after: After = 0,
    ) -> Template:
        statement = select(Coupon)
        filters: dict[str, str] = {}
        if merchant_id is not None:
            statement = statement.where(Coupon.merchant_id == merchant_id)
            filters["merchant_id"] = str(merchant_id)
        if partner_id is not None:
            statement = statement.where(Coupon.partner_id == partner_id)
            filters["partner_id"] = str(partner_id)
        page = await page_of(reader, statement, Coupon.id, after, PAGE_SIZE, coupon_out)
        query = "&".join(f"{name}={value}" for name, value in filters.items())
        merchants = {key: m.name for key, m in (await merchants_by_id(reader)).items()}
        context = {
            "viewer": viewer,
            "page": page,
            "filters": filters,
            "merchants": merchants,
            "partners": await partner_names(reader),
            "campaigns": await campaign_names(reader, viewer),
            "base": self.page_url() + (f"?{query}" if query else ""),
        }
        return Template("admin/coupons.html", context=context)

    new_values = MappingProxyType({"campaign_id": ""})

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        merchants = {key: m.name for key, m in (await merchants_by_id(session)).items()}
        partner, campaign = await partner_and_campaign(session)
        return (
            Field(
                "merchant_id",
                "Merchant",
                "one of the merchants",
                kind="select",
                options=choices(merchants),
                required=True,
            ),
            partner,
            Field(
                "code",
                "Code",
                "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
                required=True,
            ),
            Field(
                "campaign_id",
                "Campaign",
                "one of the merchant's campaigns, whose rule the coupon's sales earn by, or"
                " empty for the merchant's first active campaign",
                kind="select",
                options=campaign.options,
            ),
        )

    async def create_object(self, writer: AsyncSession, state: State, data: CouponCreate) -> Coupon:
        return await catalogue.create_coupon(writer, state.catalog, data)

    def created(self, viewer: Viewer, made: Coupon) -> Redirect:
        return Redirect(f"{self.page_url()}?merchant_id={made.merchant_id}", status_code=303)

    @post("/{object_id:int}/delete")
    async def delete(self, object_id: FromPath[int], writer: Writer, state: State) -> Redirect:
        coupon = await get_or_404(writer, Coupon, object_id)
        await catalogue.delete_coupon(writer, state.catalog, coupon)
        return Redirect(self.page_url(), status_code=303)
