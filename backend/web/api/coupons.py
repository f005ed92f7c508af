"""Coupon codes: a partner's code for a merchant, unique per merchant regardless of case.

Admin keys create, list and delete them; a partner's key lists and reads its own. A sale that
carries a code credits its partner (``backend.worker.steps.attribute``).
"""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from sqlalchemy import select

from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import CouponCreate, CouponOut, Page
from backend.storage.db.models import Coupon
from backend.web.api.deps import ADMIN_KEY, ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import After, Limit, PathId, QueryId, get_or_404, page_of


def coupon_out(coupon: Coupon) -> CouponOut:
    return CouponOut(
        id=coupon.id,
        merchant_id=coupon.merchant_id,
        partner_id=coupon.partner_id,
        campaign_id=coupon.campaign_id,
        code=coupon.code,
        created_at=coupon.created_at,
    )


class CouponController(Controller):
    path = "/coupons"
    tags = ["coupons"]

    @post("/", raises=ADMIN_KEY)
    async def create(self, data: JSONBody[CouponCreate], writer: Writer, state: State) -> CouponOut:
        return coupon_out(await catalogue.create_coupon(writer, state.catalog, data))

    @get("/", raises=ANY_KEY, opt=PARTNER_KEYS)
    async def list_coupons(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        merchant_id: QueryId = None,
        partner_id: QueryId = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[CouponOut]:
        statement = viewer.restrict(select(Coupon), Coupon.partner_id)
        if merchant_id is not None:
            statement = statement.where(Coupon.merchant_id == merchant_id)
        if partner_id is not None:
            statement = statement.where(Coupon.partner_id == partner_id)
        return await page_of(reader, statement, Coupon.id, after, limit, coupon_out)

    @get("/{coupon_id:int}", raises=[*ANY_KEY, NotFoundException], opt=PARTNER_KEYS)
    async def read(self, coupon_id: PathId, viewer: CurrentViewer, reader: Reader) -> CouponOut:
        coupon = await get_or_404(reader, Coupon, coupon_id)
        if not viewer.is_admin and coupon.partner_id != viewer.partner_id:
            raise NotFoundException(f"no coupon with id {coupon_id}")
        return coupon_out(coupon)

    @delete("/{coupon_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def remove(self, coupon_id: PathId, writer: Writer, state: State) -> None:
        coupon = await get_or_404(writer, Coupon, coupon_id)
        await catalogue.delete_coupon(writer, state.catalog, coupon)
