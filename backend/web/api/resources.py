"""Merchants, partners, campaigns and links: create, list (keyset-paginated), read, edit.

Admin keys manage everything; a partner key reads only its own partner and links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeAlias, TypeVar

from litestar import Controller, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.domain.affiliate import auto_approval, catalogue
from backend.domain.affiliate.payout_details import mask, mask_email
from backend.domain.affiliate.schemas import (
    MAX_ID,
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
from backend.storage.db.models import Base, Campaign, Link, Merchant, Partner
from backend.web.api.deps import ADMIN_KEY, ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS

M = TypeVar("M", bound=Base)
Out = TypeVar("Out")
After: TypeAlias = Annotated[int, QueryParameter(ge=0, le=MAX_ID)]
Limit: TypeAlias = Annotated[int, QueryParameter(ge=1, le=500)]
PathId: TypeAlias = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
QueryId: TypeAlias = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)]


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
    """The row with ``object_id``, or 404; an id no row can have (outside 1 to ``MAX_ID``,
    from a caller whose type does not bound it) names nothing either, and is not sent to the
    database, where it would overflow the column."""
    found = await session.get(model, object_id) if 1 <= object_id <= MAX_ID else None
    if found is None:
        raise NotFoundException(f"no {model.__tablename__[:-1]} with id {object_id}")
    return found


def merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id,
        name=merchant.name,
        key=merchant.key,
        postback_secret=merchant.postback_secret,
        currency=merchant.currency,
        locale=merchant.locale,
        domains=list(merchant.domains),
        attribution_window_days=merchant.attribution_window_days,
        auto_approve_days=merchant.auto_approve_days,
        max_order_minor=merchant.max_order_minor,
        auto_approve_unverified_max_minor=merchant.auto_approve_unverified_max_minor,
        auto_approval=auto_approval.describe(merchant),
        coupon_over_click=merchant.coupon_over_click,
        payout_minimum_minor=merchant.payout_minimum_minor,
        hold_days=merchant.hold_days,
        payout_schedule=merchant.payout_schedule,
        legal_name=merchant.legal_name,
        iban=merchant.iban,
        bic=merchant.bic,
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
        payout_method=partner.payout_method,
        iban=mask(partner.iban),
        bic=partner.bic,
        account_holder=partner.account_holder,
        paypal_email=mask_email(partner.paypal_email),
        payout_note=partner.payout_note,
        group_id=partner.group_id,
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
        status=campaign.status,
        created_at=campaign.created_at,
        renewal_mode=campaign.renewal_mode,
        renewal_months=campaign.renewal_months,
        renewal_percent=(
            None if campaign.renewal_bps is None else percent_text(campaign.renewal_bps)
        ),
        renewal_flat_minor=campaign.renewal_flat_minor,
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


class MerchantController(Controller):
    path = "/merchants"
    tags = ["merchants"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self,
        data: JSONBody[MerchantCreate],
        writer: Writer,
        state: State,
    ) -> MerchantOut:
        return merchant_out(await catalogue.create_merchant(writer, state.catalog, data))

    @get("/", raises=ADMIN_KEY)
    async def list_merchants(
        self,
        reader: Reader,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[MerchantOut]:
        return await page_of(reader, select(Merchant), Merchant.id, after, limit, merchant_out)

    @get("/{merchant_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def read(
        self,
        merchant_id: PathId,
        reader: Reader,
    ) -> MerchantOut:
        return merchant_out(await get_or_404(reader, Merchant, merchant_id))

    @patch("/{merchant_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self,
        merchant_id: PathId,
        data: JSONBody[MerchantUpdate],
        writer: Writer,
        state: State,
    ) -> MerchantOut:
        merchant = await get_or_404(writer, Merchant, merchant_id)
        await catalogue.update_merchant(writer, state.catalog, merchant, data)
        return merchant_out(merchant)


class PartnerController(Controller):
    path = "/partners"
    tags = ["partners"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self,
        data: JSONBody[PartnerCreate],
        writer: Writer,
        state: State,
    ) -> PartnerOut:
        return partner_out(await catalogue.create_partner(writer, state.catalog, data))

    @get("/", raises=ANY_KEY, opt=PARTNER_KEYS)
    async def list_partners(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[PartnerOut]:
        statement = viewer.restrict(select(Partner), Partner.id)
        return await page_of(reader, statement, Partner.id, after, limit, partner_out)

    @get("/{partner_id:int}", raises=[*ANY_KEY, NotFoundException], opt=PARTNER_KEYS)
    async def read(
        self,
        partner_id: PathId,
        viewer: CurrentViewer,
        reader: Reader,
    ) -> PartnerOut:
        if not viewer.is_admin and viewer.partner_id != partner_id:
            raise NotFoundException(f"no partner with id {partner_id}")
        return partner_out(await get_or_404(reader, Partner, partner_id))

    @patch("/{partner_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self,
        partner_id: PathId,
        data: JSONBody[PartnerUpdate],
        writer: Writer,
        state: State,
    ) -> PartnerOut:
        partner = await get_or_404(writer, Partner, partner_id)
        await catalogue.update_partner(writer, state.catalog, partner, data)
        return partner_out(partner)


class CampaignController(Controller):
    path = "/campaigns"
    tags = ["campaigns"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self,
        data: JSONBody[CampaignCreate],
        writer: Writer,
        state: State,
    ) -> CampaignOut:
        return campaign_out(await catalogue.create_campaign(writer, state.catalog, data))

    @get("/", raises=ADMIN_KEY)
    async def list_campaigns(
        self,
        reader: Reader,
        merchant_id: QueryId = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[CampaignOut]:
        statement = select(Campaign)
        if merchant_id is not None:
            statement = statement.where(Campaign.merchant_id == merchant_id)
        return await page_of(reader, statement, Campaign.id, after, limit, campaign_out)

    @get("/{campaign_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def read(
        self,
        campaign_id: PathId,
        reader: Reader,
    ) -> CampaignOut:
        return campaign_out(await get_or_404(reader, Campaign, campaign_id))

    @patch("/{campaign_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self,
        campaign_id: PathId,
        data: JSONBody[CampaignUpdate],
        writer: Writer,
        state: State,
    ) -> CampaignOut:
        campaign = await get_or_404(writer, Campaign, campaign_id)
        await catalogue.update_campaign(writer, state.catalog, campaign, data)
        return campaign_out(campaign)


class LinkController(Controller):
    path = "/links"
    tags = ["links"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self,
        data: JSONBody[LinkCreate],
        writer: Writer,
        state: State,
    ) -> LinkOut:
        link = await catalogue.create_link(writer, state.catalog, data)
        return link_out(state.settings.public_url)(link)

    @get("/", raises=ANY_KEY, opt=PARTNER_KEYS)
    async def list_links(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        state: State,
        partner_id: QueryId = None,
        campaign_id: QueryId = None,
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

    @get("/{link_id:int}", raises=[*ANY_KEY, NotFoundException], opt=PARTNER_KEYS)
    async def read(
        self,
        link_id: PathId,
        viewer: CurrentViewer,
        reader: Reader,
        state: State,
    ) -> LinkOut:
        link = await get_or_404(reader, Link, link_id)
        if not viewer.is_admin and link.partner_id != viewer.partner_id:
            raise NotFoundException(f"no link with id {link_id}")
        return link_out(state.settings.public_url)(link)

    @patch("/{link_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self,
        link_id: PathId,
        data: JSONBody[LinkUpdate],
        writer: Writer,
        state: State,
    ) -> LinkOut:
        link = await get_or_404(writer, Link, link_id)
        await catalogue.update_link(writer, state.catalog, link, data)
        return link_out(state.settings.public_url)(link)


RESOURCE_CONTROLLERS: list[type[Controller]] = [
    MerchantController,
    PartnerController,
    CampaignController,
    LinkController,
]
