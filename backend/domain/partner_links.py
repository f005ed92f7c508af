"""A partner's own links: to the campaigns of the programmes it is a member of (or already has
a link in), with its own sub-ids and deep links, which must stay on the merchant's listed
domains. A merchant that lists no domain takes no deep link from a partner: the campaign's
destination only."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.validation import FieldError
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import LinkCreate
from backend.domain.destinations import SUB_KEYS
from backend.domain.edge import safe_deep_link
from backend.storage.catalog import Catalog
from backend.storage.db.models import Campaign, Link, Merchant, ProgrammeMember, RunStatus

MAX_SUB = 255
MAX_URL = 2048


async def open_campaigns(session: AsyncSession, partner_id: int) -> list[tuple[Campaign, Merchant]]:
    """The active campaigns ``partner_id`` may make links to, with their merchants."""
    member_of = select(ProgrammeMember.merchant_id).where(ProgrammeMember.partner_id == partner_id)
    linked = select(Link.campaign_id).where(Link.partner_id == partner_id)
    rows = await session.execute(
        select(Campaign, Merchant)
        .join(Merchant, Merchant.id == Campaign.merchant_id)
        .where(
            Campaign.status == RunStatus.ACTIVE,
            or_(Campaign.merchant_id.in_(member_of), Campaign.id.in_(linked)),
        )
        .order_by(Merchant.name, Campaign.name, Campaign.id)
    )
    return [(campaign, merchant) for campaign, merchant in rows]


def check_deep_link(url: str, merchant: Merchant, field: str = "destination_url") -> str:
    """``url`` when the click redirect would follow it (an http(s) address on one of the
    merchant's domains), else ``FieldError`` saying why."""
    if not merchant.domains:
        raise FieldError(field, f"{merchant.name} lists no domain for deep links")
    try:
        host = urlsplit(url).hostname if len(url) <= MAX_URL else None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if host not in merchant.domains:
        domains = ", ".join(merchant.domains)
        raise FieldError(field, f"deep links must go to {merchant.name}'s domains: {domains}")
    return url


async def create_own_link(
    session: AsyncSession,
    catalog: Catalog,
    partner_id: int,
    campaign_id: int,
    destination_url: str | None,
) -> Link:
    allowed = {c.id: m for c, m in await open_campaigns(session, partner_id)}
    merchant = allowed.get(campaign_id)
    if merchant is None:
        raise FieldError("campaign_id", "choose one of the campaigns you are approved for")
    if destination_url:
        check_deep_link(destination_url, merchant)
    data = LinkCreate(
        partner_id=partner_id, campaign_id=campaign_id, destination_url=destination_url or None
    )
    return await catalogue.create_link(session, catalog, data)


def tracking_url(
    public_url: str, link: Link, merchant: Merchant, params: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The link's tracking URL with the sub-ids and the deep link (``to``) of ``params``, and
    each refused value's error by name."""
    query: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key in SUB_KEYS:
        value = params.get(key, "").strip()
        if len(value) > MAX_SUB:
            errors[key] = f"at most {MAX_SUB} characters"
        elif value:
            query[key] = value
    deep = params.get("to", "").strip()
    if deep:
        try:
            check_deep_link(deep, merchant, "to")
        except FieldError as error:
            errors["to"] = error.message
        else:
            if safe_deep_link(deep, frozenset(merchant.domains)) is None:
                errors["to"] = "use a plain http(s) address without a port or user name"
            else:
                query["to"] = deep
    url = f"{public_url}/c/{link.code}"
    return (f"{url}?{urlencode(query)}" if query else url), errors
