"""Merchants, partners, campaigns and links: create, list (keyset-paginated), read, edit.

Admin keys manage everything; a partner key reads only its own partner and links.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import msgspec
from litestar import Controller, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.affiliate.postback import new_postback_secret
from backend.api.deps import CurrentViewer, Reader, Writer, require_admin
from backend.api.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignUpdate,
    LinkCreate,
    LinkOut,
    LinkUpdate,
    MerchantCreate,
    MerchantOut,
    MerchantUpdate,
    Page,
    PartnerCreate,
    PartnerOut,
    PartnerUpdate,
)
from backend.auth import public_key
from backend.catalog import Catalog
from backend.db.models import Base, Campaign, Link, Merchant, Partner
from backend.money import MoneyError, normalise_currency, percent_to_bps

M = TypeVar("M", bound=Base)
Out = TypeVar("Out")
After: TypeAlias = Annotated[int, QueryParameter(ge=0)]
Limit: TypeAlias = Annotated[int, QueryParameter(ge=1, le=500)]
CODE_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def field_error(field: str, message: str) -> ValidationException:
    return ValidationException(
        detail=f"Validation failed: {field}", extra=[{"key": field, "message": message}]
    )


async def page_of(
    session: AsyncSession,
    statement: Select[M],
    id_column: Any,
    after: int,
    limit: int,
    render: Callable[[M], Out],
) -> Page[Out]:
    """Keyset pagination by id: stable under inserts, no OFFSET scans."""
    rows: Sequence[M] = (
        await session.scalars(
            statement.where(id_column > after).order_by(id_column).limit(limit + 1)
        )
    ).all()
    items = [render(row) for row in rows[:limit]]
    next_after = int(getattr(rows[limit - 1], "id")) if len(rows) > limit else None  # noqa: B009
    return Page(items=items, next_after=next_after)


async def get_or_404(session: AsyncSession, model: type[M], object_id: int) -> M:
    found = await session.get(model, object_id)
    if found is None:
        raise NotFoundException(f"no {model.__tablename__[:-1]} with id {object_id}")
    return found


def apply_changes(target: Base, changes: msgspec.Struct) -> None:
    for name in changes.__struct_fields__:
        value = getattr(changes, name)
        if value is not msgspec.UNSET:
            setattr(target, name, value)


async def commit_and_refresh(session: AsyncSession, state: State, target: Base) -> None:
    await session.commit()
    await session.refresh(target)
    catalog: Catalog = state.catalog
    catalog.invalidate()


def _domain(raw: str) -> str:
    host = raw.strip().lower().rstrip(".")
    if "://" in host or "/" in host or "@" in host or not host or " " in host:
        raise field_error("domains", f"{raw!r}: give a bare host name such as shop.example")
    return host


def _currency(code: str, field: str = "currency") -> str:
    try:
        return normalise_currency(code)
    except MoneyError as error:
        raise field_error(field, str(error)) from None


def commission_bps(percent: str | int) -> int:
    try:
        return percent_to_bps(percent)
    except MoneyError as error:
        raise field_error("commission_percent", str(error)) from None


def merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id,
        name=merchant.name,
        key=merchant.key,
        postback_secret=merchant.postback_secret,
        currency=merchant.currency,
        domains=list(merchant.domains),
        attribution_window_days=merchant.attribution_window_days,
        auto_approve_days=merchant.auto_approve_days,
        created_at=merchant.created_at,
    )


def partner_out(partner: Partner) -> PartnerOut:
    return PartnerOut(
        id=partner.id,
        name=partner.name,
        key=partner.key,
        status=partner.status,
        contact_email=partner.contact_email,
        created_at=partner.created_at,
    )


def percent_text(bps: int) -> str:
    """Basis points as the percent the API speaks: 750 -> "7.50"."""
    whole, hundredths = divmod(bps, 100)
    return f"{whole}.{hundredths:02d}"


def campaign_out(campaign: Campaign) -> CampaignOut:
    return CampaignOut(
        id=campaign.id,
        merchant_id=campaign.merchant_id,
        name=campaign.name,
        destination_url=campaign.destination_url,
        commission_percent=percent_text(campaign.commission_bps),
        commission_flat_minor=campaign.commission_flat_minor,
        cookie_window_days=campaign.cookie_window_days,
        created_at=campaign.created_at,
    )


def link_out(public_url: str) -> Callable[[Link], LinkOut]:
    def render(link: Link) -> LinkOut:
        return LinkOut(
            id=link.id,
            code=link.code,
            url=f"{public_url}/c/{link.code}",
            partner_id=link.partner_id,
            campaign_id=link.campaign_id,
            destination_url=link.destination_url,
            status=link.status,
            health=link.health,
            health_detail=link.health_detail,
            last_checked_at=link.last_checked_at,
            created_at=link.created_at,
        )

    return render


async def _check_destination(session: AsyncSession, campaign: Campaign, url: str | None) -> None:
    """A link's own destination must stay on its merchant's domains (no redirects elsewhere)."""
    if url is None:
        return
    merchant = await get_or_404(session, Merchant, campaign.merchant_id)
    host = urlsplit(url).hostname or ""
    if merchant.domains and host not in merchant.domains:
        raise field_error("destination_url", f"{host!r} is not a domain of the merchant")


class MerchantController(Controller):
    path = "/merchants"
    tags = ["merchants"]

    @post("/")
    async def create(
        self,
        data: JSONBody[MerchantCreate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> MerchantOut:
        require_admin(viewer)
        merchant = Merchant(
            name=data.name,
            key=public_key("mk_"),
            postback_secret=new_postback_secret(),
            currency=_currency(data.currency),
            domains=sorted({_domain(d) for d in data.domains}),
            attribution_window_days=data.attribution_window_days,
            auto_approve_days=data.auto_approve_days,
        )
        writer.add(merchant)
        await commit_and_refresh(writer, state, merchant)
        return merchant_out(merchant)

    @get("/")
    async def list_merchants(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[MerchantOut]:
        require_admin(viewer)
        return await page_of(reader, select(Merchant), Merchant.id, after, limit, merchant_out)

    @get("/{merchant_id:int}")
    async def read(
        self,
        merchant_id: FromPath[int],
        viewer: CurrentViewer,
        reader: Reader,
    ) -> MerchantOut:
        require_admin(viewer)
        return merchant_out(await get_or_404(reader, Merchant, merchant_id))

    @patch("/{merchant_id:int}")
    async def update(
        self,
        merchant_id: FromPath[int],
        data: JSONBody[MerchantUpdate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> MerchantOut:
        require_admin(viewer)
        merchant = await get_or_404(writer, Merchant, merchant_id)
        if not isinstance(data.currency, msgspec.UnsetType):
            data.currency = _currency(data.currency)
        if not isinstance(data.domains, msgspec.UnsetType):
            data.domains = sorted({_domain(d) for d in data.domains})
        apply_changes(merchant, data)
        await commit_and_refresh(writer, state, merchant)
        return merchant_out(merchant)


class PartnerController(Controller):
    path = "/partners"
    tags = ["partners"]

    @post("/")
    async def create(
        self,
        data: JSONBody[PartnerCreate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> PartnerOut:
        require_admin(viewer)
        partner = Partner(name=data.name, contact_email=data.contact_email, key=public_key("pk_"))
        writer.add(partner)
        await commit_and_refresh(writer, state, partner)
        return partner_out(partner)

    @get("/")
    async def list_partners(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[PartnerOut]:
        statement = viewer.restrict(select(Partner), Partner.id)
        return await page_of(reader, statement, Partner.id, after, limit, partner_out)

    @get("/{partner_id:int}")
    async def read(
        self,
        partner_id: FromPath[int],
        viewer: CurrentViewer,
        reader: Reader,
    ) -> PartnerOut:
        if not viewer.is_admin and viewer.partner_id != partner_id:
            raise NotFoundException(f"no partner with id {partner_id}")
        return partner_out(await get_or_404(reader, Partner, partner_id))

    @patch("/{partner_id:int}")
    async def update(
        self,
        partner_id: FromPath[int],
        data: JSONBody[PartnerUpdate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> PartnerOut:
        require_admin(viewer)
        partner = await get_or_404(writer, Partner, partner_id)
        apply_changes(partner, data)
        await commit_and_refresh(writer, state, partner)
        return partner_out(partner)


class CampaignController(Controller):
    path = "/campaigns"
    tags = ["campaigns"]

    @post("/")
    async def create(
        self,
        data: JSONBody[CampaignCreate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> CampaignOut:
        require_admin(viewer)
        if await writer.get(Merchant, data.merchant_id) is None:
            raise field_error("merchant_id", f"no merchant with id {data.merchant_id}")
        campaign = Campaign(
            merchant_id=data.merchant_id,
            name=data.name,
            destination_url=data.destination_url,
            commission_bps=commission_bps(data.commission_percent),
            commission_flat_minor=data.commission_flat_minor,
            cookie_window_days=data.cookie_window_days,
        )
        writer.add(campaign)
        await commit_and_refresh(writer, state, campaign)
        return campaign_out(campaign)

    @get("/")
    async def list_campaigns(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        merchant_id: FromQuery[int | None] = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[CampaignOut]:
        require_admin(viewer)
        statement = select(Campaign)
        if merchant_id is not None:
            statement = statement.where(Campaign.merchant_id == merchant_id)
        return await page_of(reader, statement, Campaign.id, after, limit, campaign_out)

    @get("/{campaign_id:int}")
    async def read(
        self,
        campaign_id: FromPath[int],
        viewer: CurrentViewer,
        reader: Reader,
    ) -> CampaignOut:
        require_admin(viewer)
        return campaign_out(await get_or_404(reader, Campaign, campaign_id))

    @patch("/{campaign_id:int}")
    async def update(
        self,
        campaign_id: FromPath[int],
        data: JSONBody[CampaignUpdate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> CampaignOut:
        require_admin(viewer)
        campaign = await get_or_404(writer, Campaign, campaign_id)
        if not isinstance(data.commission_percent, msgspec.UnsetType):
            campaign.commission_bps = commission_bps(data.commission_percent)
            data.commission_percent = msgspec.UNSET
        apply_changes(campaign, data)
        await commit_and_refresh(writer, state, campaign)
        return campaign_out(campaign)


class LinkController(Controller):
    path = "/links"
    tags = ["links"]

    @post("/")
    async def create(
        self,
        data: JSONBody[LinkCreate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> LinkOut:
        require_admin(viewer)
        if await writer.get(Partner, data.partner_id) is None:
            raise field_error("partner_id", f"no partner with id {data.partner_id}")
        campaign = await writer.get(Campaign, data.campaign_id)
        if campaign is None:
            raise field_error("campaign_id", f"no campaign with id {data.campaign_id}")
        await _check_destination(writer, campaign, data.destination_url)
        for _ in range(5):
            link = Link(
                code="".join(secrets.choice(CODE_ALPHABET) for _ in range(8)),
                partner_id=data.partner_id,
                campaign_id=data.campaign_id,
                destination_url=data.destination_url,
            )
            writer.add(link)
            try:
                await commit_and_refresh(writer, state, link)
            except IntegrityError:
                await writer.rollback()  # a code collision: draw another
                continue
            return link_out(state.settings.public_url)(link)
        raise RuntimeError("could not draw a free link code in 5 tries")

    @get("/")
    async def list_links(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        state: State,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[LinkOut]:
        statement = viewer.restrict(select(Link), Link.partner_id)
        if partner_id is not None:
            statement = statement.where(Link.partner_id == partner_id)
        if campaign_id is not None:
            statement = statement.where(Link.campaign_id == campaign_id)
        render = link_out(state.settings.public_url)
        return await page_of(reader, statement, Link.id, after, limit, render)

    @get("/{link_id:int}")
    async def read(
        self,
        link_id: FromPath[int],
        viewer: CurrentViewer,
        reader: Reader,
        state: State,
    ) -> LinkOut:
        link = await get_or_404(reader, Link, link_id)
        if not viewer.is_admin and link.partner_id != viewer.partner_id:
            raise NotFoundException(f"no link with id {link_id}")
        return link_out(state.settings.public_url)(link)

    @patch("/{link_id:int}")
    async def update(
        self,
        link_id: FromPath[int],
        data: JSONBody[LinkUpdate],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> LinkOut:
        require_admin(viewer)
        link = await get_or_404(writer, Link, link_id)
        if isinstance(data.destination_url, str):
            campaign = await get_or_404(writer, Campaign, link.campaign_id)
            await _check_destination(writer, campaign, data.destination_url)
        apply_changes(link, data)
        await commit_and_refresh(writer, state, link)
        return link_out(state.settings.public_url)(link)


RESOURCE_CONTROLLERS: list[type[Controller]] = [
    MerchantController,
    PartnerController,
    CampaignController,
    LinkController,
]
