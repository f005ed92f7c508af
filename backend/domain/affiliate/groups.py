"""Partner groups (tiers): named sets of partners whose rates per campaign replace the
campaigns' rules for them; a partner's own override still wins (``choose_rule``). Changes
reach the redirect and the worker as every rule change does (the catalog cache)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain.affiliate.catalogue import commission_bps, commit_and_refresh
from backend.domain.affiliate.payout_schemas import GroupCreate, GroupRateSet
from backend.storage.catalog import Catalog
from backend.storage.db.models import Campaign, GroupRate, Partner, PartnerGroup


async def create_group(session: AsyncSession, data: GroupCreate) -> PartnerGroup:
    group = PartnerGroup(name=data.name)
    session.add(group)
    try:
        await session.commit()
    except IntegrityError:
        raise FieldError("name", f"there is a group named {data.name!r} already") from None
    await session.refresh(group)
    return group


async def set_rate(
    session: AsyncSession, catalog: Catalog, group: PartnerGroup, data: GroupRateSet
) -> GroupRate:
    """The group's rule for the campaign, made or replaced."""
    if await session.get(Campaign, data.campaign_id) is None:
        raise FieldError("campaign_id", f"no campaign with id {data.campaign_id}")
    rate = await session.scalar(
        select(GroupRate).where(
            GroupRate.group_id == group.id, GroupRate.campaign_id == data.campaign_id
        )
    )
    if rate is None:
        rate = GroupRate(group_id=group.id, campaign_id=data.campaign_id)
        session.add(rate)
    rate.commission_bps = commission_bps(data.commission_percent)
    rate.commission_flat_minor = data.commission_flat_minor
    await commit_and_refresh(session, catalog, rate)
    return rate


async def rates_of(session: AsyncSession, group_id: int) -> list[GroupRate]:
    found = await session.scalars(
        select(GroupRate).where(GroupRate.group_id == group_id).order_by(GroupRate.campaign_id)
    )
    return list(found.all())


async def members_of(session: AsyncSession, group_id: int) -> list[int]:
    found = await session.scalars(
        select(Partner.id).where(Partner.group_id == group_id).order_by(Partner.id)
    )
    return list(found.all())
