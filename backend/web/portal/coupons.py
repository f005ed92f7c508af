"""A partner's coupons: what each brought, the codes it asked for, and a form to ask for one
on a campaign it is approved for (an admin approves)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import MAX_ID
from backend.domain.coupon_requests import coupon_use, request_coupon
from backend.domain.partner_links import open_campaigns
from backend.storage.db.models import Campaign, CouponRequest
from backend.web.admin.forms import typed_form
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.portal.links import partner_of


async def _page(
    session: AsyncSession,
    partner_id: int,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Template:
    requests = (
        await session.execute(
            select(CouponRequest, Campaign.name)
            .join(Campaign, Campaign.id == CouponRequest.campaign_id)
            .where(CouponRequest.partner_id == partner_id)
            .order_by(CouponRequest.id.desc())
        )
    ).all()
    context = {
        "viewer": Viewer(partner_id=partner_id),
        "uses": await coupon_use(session, partner_id),
        "requests": requests,
        "campaigns": await open_campaigns(session, partner_id),
        "values": values,
        "errors": errors,
    }
    return Template("portal/coupons.html", context=context, status_code=status_code)


@get("/portal/coupons")
async def coupons_page(viewer: CurrentViewer, reader: Reader) -> Template:
    return await _page(reader, partner_of(viewer), {}, {})


@post("/portal/coupons")
async def ask_for_coupon(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
) -> Template | Redirect:
    partner_id = partner_of(viewer)
    form = await typed_form(request)
    values = {name: form.get(name, "")[:200] for name in ("campaign_id", "code")}
    campaign = values["campaign_id"]
    if not campaign.isdigit() or not 1 <= int(campaign) <= MAX_ID:
        return await _page(writer, partner_id, values, {"campaign_id": "Choose a campaign."}, 400)
    try:
        await request_coupon(
            writer, partner_id, int(campaign), values["code"], state.settings.public_url
        )
    except FieldError as error:
        await writer.rollback()
        message = error.message[0].upper() + error.message[1:] + "."
        return await _page(writer, partner_id, values, {error.field: message}, 400)
    return Redirect("/portal/coupons")


COUPON_HANDLERS = [coupons_page, ask_for_coupon]
