"""Names by id for selects and table columns, within what the viewer may see."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.storage.db.models import Campaign, Link, Merchant, Partner


async def merchants_by_id(session: AsyncSession) -> dict[int, Merchant]:
    merchants = await session.scalars(select(Merchant).order_by(Merchant.name, Merchant.id))
    return {merchant.id: merchant for merchant in merchants}


async def partner_names(session: AsyncSession) -> dict[int, str]:
    rows = await session.execute(select(Partner.id, Partner.name).order_by(Partner.name))
    return {partner_id: name for partner_id, name in rows}


async def campaign_names(session: AsyncSession, viewer: Viewer) -> dict[int, str]:
    """Every campaign for an admin; for a partner, the campaigns it has links to."""
    statement = select(Campaign.id, Campaign.name).order_by(Campaign.name)
    if not viewer.is_admin:
        mine = viewer.restrict(select(Link.campaign_id), Link.partner_id)
        statement = statement.where(Campaign.id.in_(mine))
    return {campaign_id: name for campaign_id, name in await session.execute(statement)}
