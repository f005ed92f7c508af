"""Names by id for selects and table columns, within what the viewer may see; the selects built
from them; and the lists narrowed to one partner or campaign (links, overrides)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN, Viewer
from backend.storage.db.models import Campaign, CommissionOverride, Link, Merchant, Partner
from backend.web.admin.forms import Field, FormInvalid

Narrowed = TypeVar("Narrowed", Link, CommissionOverride)


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


def choices(names: Mapping[int, str]) -> list[tuple[str, str]]:
    """A select's (value, label) pairs from names by id."""
    return [(str(key), name) for key, name in names.items()]


async def partner_and_campaign(session: AsyncSession) -> tuple[Field, Field]:
    """The selects of a form about one partner on one campaign (a link, an override)."""
    partners = await partner_names(session)
    campaigns = await campaign_names(session, ADMIN)
    return (
        Field(
            "partner_id",
            "Partner",
            "one of the partners",
            kind="select",
            options=choices(partners),
            required=True,
        ),
        Field(
            "campaign_id",
            "Campaign",
            "one of the campaigns",
            kind="select",
            options=choices(campaigns),
            required=True,
        ),
    )


def chosen(partner_id: int | None, campaign_id: int | None) -> dict[str, str]:
    """What those selects start with: the partner or campaign whose list the form came from."""
    return {
        "partner_id": "" if partner_id is None else str(partner_id),
        "campaign_id": "" if campaign_id is None else str(campaign_id),
    }


def narrowed(
    model: type[Narrowed], partner_id: int | None, campaign_id: int | None
) -> tuple[Select[Narrowed], dict[str, str]]:
    """The rows of one partner and/or one campaign, and those choices as the list's filters."""
    statement = select(model)
    filters: dict[str, str] = {}
    if partner_id is not None:
        statement = statement.where(model.partner_id == partner_id)
        filters["partner_id"] = str(partner_id)
    if campaign_id is not None:
        statement = statement.where(model.campaign_id == campaign_id)
        filters["campaign_id"] = str(campaign_id)
    return statement, filters


async def narrowed_list(
    session: AsyncSession, viewer: Viewer, page: object, filters: Mapping[str, str], listed: str
) -> dict[str, object]:
    """The context of a list with those filters: their choices, and where its next page is."""
    partners = await partner_names(session)
    campaigns = await campaign_names(session, viewer)
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return {
        "viewer": viewer,
        "page": page,
        "partners": partners,
        "campaigns": campaigns,
        "filters": filters,
        "base": listed + (f"?{query}" if query else ""),
    }


def _id_in(raw: str | int | None) -> int | None:
    text = str(raw or "").strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


async def merchant_currency(session: AsyncSession, merchant_id: str | int | None) -> str | None:
    """The currency of the merchant a form names (None: none chosen); ``FormInvalid`` when there
    is no such merchant, the form's real mistake."""
    chosen_id = _id_in(merchant_id)
    if chosen_id is None:
        return None
    currency = await session.scalar(select(Merchant.currency).where(Merchant.id == chosen_id))
    if currency is None:
        raise FormInvalid({"merchant_id": f"no merchant with id {chosen_id}"})
    return currency


async def campaign_currency(session: AsyncSession, campaign_id: str | int | None) -> str | None:
    """The currency a campaign's commission is paid in: its merchant's."""
    chosen_id = _id_in(campaign_id)
    if chosen_id is None:
        return None
    currency = await session.scalar(
        select(Merchant.currency)
        .join(Campaign, Campaign.merchant_id == Merchant.id)
        .where(Campaign.id == chosen_id)
    )
    if currency is None:
        raise FormInvalid({"campaign_id": f"no campaign with id {chosen_id}"})
    return currency
