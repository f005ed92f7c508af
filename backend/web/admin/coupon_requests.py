"""Partners' requests for coupon codes: the ones waiting, approve (the coupon is made by the
catalogue's rules, as on the coupons page) or reject."""

from __future__ import annotations

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN
from backend.core.validation import FieldError
from backend.domain import coupon_requests
from backend.storage.db.models import ApplicationStatus, Campaign, CouponRequest
from backend.web.admin.lookups import partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404

SHOWN = 200


async def _page(session: AsyncSession, errors: dict[int, str] | None = None) -> Template:
    rows = (
        await session.execute(
            select(CouponRequest, Campaign.name)
            .join(Campaign, Campaign.id == CouponRequest.campaign_id)
            .order_by(
                (CouponRequest.status != ApplicationStatus.PENDING.value), CouponRequest.id.desc()
            )
            .limit(SHOWN)
        )
    ).all()
    context = {
        "viewer": ADMIN,
        "rows": rows,
        "partners": await partner_names(session),
        "errors": errors or {},
    }
    return Template(
        "admin/coupon_requests.html", context=context, status_code=400 if errors else 200
    )


@get("/coupon-requests")
async def coupon_requests_page(reader: Reader) -> Template:
    return await _page(reader)


@post("/coupon-requests/{request_id:int}/approve")
async def approve_coupon(
    request_id: FromPath[int], writer: Writer, viewer: CurrentViewer, state: State
) -> Template | Redirect:
    row = await get_or_404(writer, CouponRequest, request_id)
    try:
        await coupon_requests.approve(writer, state.catalog, row, viewer.actor)
    except FieldError as error:
        await writer.rollback()
        return await _page(writer, {request_id: error.message})
    return Redirect("/admin/coupon-requests")


@post("/coupon-requests/{request_id:int}/reject")
async def reject_coupon(
    request_id: FromPath[int], writer: Writer, viewer: CurrentViewer
) -> Template | Redirect:
    row = await get_or_404(writer, CouponRequest, request_id)
    try:
        await coupon_requests.reject(writer, row, viewer.actor)
    except FieldError as error:
        return await _page(writer, {request_id: error.message})
    return Redirect("/admin/coupon-requests")


COUPON_REQUEST_HANDLERS = [coupon_requests_page, approve_coupon, reject_coupon]
