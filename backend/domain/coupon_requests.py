"""Coupon codes a partner asks for: a request on a campaign it is approved for (admins are
told by mail), an admin's approval that makes the coupon through the catalogue's own rules, and
what the partner's coupons brought (its conversions credited by coupon, per currency)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import CouponCode, CouponCreate
from backend.domain.events import coupon_key
from backend.domain.mail import notify_admins
from backend.domain.partner_links import open_campaigns
from backend.storage.catalog import Catalog
from backend.storage.db.models import (
    ApplicationStatus,
    Attribution,
    Campaign,
    Conversion,
    Coupon,
    CouponRequest,
    Partner,
)


async def request_coupon(
    session: AsyncSession, partner_id: int, campaign_id: int, code: str, url: str
) -> CouponRequest:
    allowed = {c.id: m for c, m in await open_campaigns(session, partner_id)}
    merchant = allowed.get(campaign_id)
    if merchant is None:
        raise FieldError("campaign_id", "choose one of the campaigns you are approved for")
    try:
        code = msgspec.convert(code.strip(), CouponCode)
    except msgspec.ValidationError:
        raise FieldError(
            "code", "up to 64 letters, digits, '-', '_' and '.', starting with a letter or digit"
        ) from None
    taken = await session.scalar(
        select(Coupon.id).where(
            Coupon.merchant_id == merchant.id, Coupon.code_key == coupon_key(code)
        )
    )
    if taken is not None:
        raise FieldError("code", f"{merchant.name} has the coupon {code!r} already")
    row = CouponRequest(
        partner_id=partner_id, campaign_id=campaign_id, code=code, status=ApplicationStatus.PENDING
    )
    session.add(row)
    partner = await session.get(Partner, partner_id)
    assert partner is not None  # the signed-in partner
    await notify_admins(
        session,
        "coupon_request",
        {
            "partner": partner.name,
            "code": code,
            "programme": merchant.name,
            "link": f"{url}/admin/coupon-requests",
        },
    )
    await session.commit()
    return row


async def approve(
    session: AsyncSession, catalog: Catalog, request: CouponRequest, actor: str
) -> Coupon:
    """The coupon, made by ``catalogue.create_coupon`` (a code taken meanwhile is refused
    there); the request remembers it."""
    if request.status != ApplicationStatus.PENDING:
        raise FieldError("status", f"the request is {request.status}, not pending")
    campaign = await session.get(Campaign, request.campaign_id)
    assert campaign is not None  # a foreign key
    data = CouponCreate(
        merchant_id=campaign.merchant_id,
        partner_id=request.partner_id,
        code=request.code,
        campaign_id=campaign.id,
    )
    coupon = await catalogue.create_coupon(session, catalog, data)
    request.status = ApplicationStatus.APPROVED
    request.coupon_id = coupon.id
    request.decided_by = actor
    await session.commit()
    return coupon


async def reject(session: AsyncSession, request: CouponRequest, actor: str) -> None:
    if request.status != ApplicationStatus.PENDING:
        raise FieldError("status", f"the request is {request.status}, not pending")
    request.status = ApplicationStatus.REJECTED
    request.decided_by = actor
    await session.commit()


@dataclass(frozen=True, slots=True)
class CouponUse:
    coupon: Coupon
    campaign: str
    conversions: int
    by_currency: list[tuple[str, int, int]]  # (currency, revenue, commission) minor units


async def coupon_use(session: AsyncSession, partner_id: int) -> list[CouponUse]:
    """The partner's coupons with the conversions credited to it by each, money per currency."""
    coupons = (
        await session.execute(
            select(Coupon, Campaign.name)
            .join(Campaign, Campaign.id == Coupon.campaign_id)
            .where(Coupon.partner_id == partner_id)
            .order_by(Coupon.code_key)
        )
    ).all()
    sums = await session.execute(
        select(
            Conversion.merchant_id,
            Conversion.coupon,
            Conversion.currency,
            func.count(),
            func.sum(Conversion.amount_minor),
            func.sum(Conversion.commission_minor),
        )
        .where(
            Conversion.partner_id == partner_id,
            Conversion.attribution == Attribution.COUPON.value,
        )
        .group_by(Conversion.merchant_id, Conversion.coupon, Conversion.currency)
    )
    found: dict[tuple[int, str], list[tuple[str, int, int, int]]] = {}
    for merchant_id, code, currency, count, revenue, commission in sums:
        found.setdefault((merchant_id, code or ""), []).append(
            (currency, int(count), int(revenue or 0), int(commission or 0))
        )
    uses = []
    for coupon, campaign in coupons:
        rows = found.get((coupon.merchant_id, coupon.code_key), [])
        uses.append(
            CouponUse(
                coupon=coupon,
                campaign=campaign,
                conversions=sum(row[1] for row in rows),
                by_currency=[(row[0], row[2], row[3]) for row in rows],
            )
        )
    return uses
