"""Creating and editing merchants, partners, campaigns, links and commission overrides: the
rules, written once.

The management API and the admin pages both call these functions with the request bodies of
``backend.domain.affiliate.schemas`` (whose types already bound lengths, patterns and ranges);
the checks that need more than a type (currencies, domains, percentages, references to other
objects, a link's destination on its merchant's domains) raise ``FieldError`` here. Every change
commits and then empties the catalog cache, so this process serves the change at once.
"""

from __future__ import annotations

import secrets
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import MoneyError, normalise_currency, percent_to_bps
from backend.core.money_display import LocaleError, known_locale
from backend.core.validation import FieldError
from backend.domain.affiliate.payout_details import (
    checked_bic,
    checked_details,
    checked_iban,
    require_details,
)
from backend.domain.affiliate.postback import new_postback_secret
from backend.domain.affiliate.schemas import (
    CampaignCreate,
    CampaignUpdate,
    CouponCreate,
    LinkCreate,
    LinkUpdate,
    MerchantCreate,
    MerchantUpdate,
    OverrideCreate,
    OverrideUpdate,
    PartnerCreate,
    PartnerUpdate,
)
from backend.domain.auth import public_key
from backend.domain.destinations import template_problem
from backend.domain.events import coupon_key
from backend.storage.catalog import Catalog
from backend.storage.db.models import (
    Base,
    Campaign,
    CommissionOverride,
    Coupon,
    Link,
    Merchant,
    Partner,
    PartnerGroup,
    RunStatus,
)

M = TypeVar("M", bound=Base)
CODE_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_TRIES = 5


async def commit_and_refresh(session: AsyncSession, catalog: Catalog, target: Base) -> None:
    await session.commit()
    await session.refresh(target)
    catalog.invalidate()


def _apply_changes(target: Base, changes: msgspec.Struct) -> None:
    for name in changes.__struct_fields__:
        value = getattr(changes, name)
        if value is not msgspec.UNSET:
            setattr(target, name, value)


def _domain(raw: str) -> str:
    host = raw.strip().lower().rstrip(".")
    if "://" in host or "/" in host or "@" in host or not host or " " in host:
        raise FieldError("domains", f"{raw!r}: give a bare host name such as shop.example")
    return host


def _domains(raw: list[str]) -> list[str]:
    return sorted({_domain(domain) for domain in raw})


def _currency(code: str) -> str:
    try:
        return normalise_currency(code)
    except MoneyError as error:
        raise FieldError("currency", str(error)) from None


def _locale(name: str) -> str:
    try:
        return known_locale(name)
    except LocaleError as error:
        raise FieldError("locale", str(error)) from None


def commission_bps(percent: str | int) -> int:
    try:
        return percent_to_bps(percent)
    except MoneyError as error:
        raise FieldError("commission_percent", str(error)) from None


def _apply_commission_changes(
    target: Campaign | CommissionOverride, data: CampaignUpdate | OverrideUpdate
) -> None:
    """Apply ``data``; a commission percent is stored as basis points."""
    changes = msgspec.structs.replace(data)
    if not isinstance(changes.commission_percent, msgspec.UnsetType):
        target.commission_bps = commission_bps(changes.commission_percent)
        changes.commission_percent = msgspec.UNSET
    _apply_changes(target, changes)


def _apply_renewal_changes(campaign: Campaign, data: CampaignCreate | CampaignUpdate) -> None:
    """The campaign's renewal rule: ``months`` needs its number of months; a percent is kept
    as basis points (None: the campaign's rate)."""
    if not isinstance(data.renewal_mode, msgspec.UnsetType):
        campaign.renewal_mode = data.renewal_mode
    if not isinstance(data.renewal_months, msgspec.UnsetType):
        campaign.renewal_months = data.renewal_months
    if not isinstance(data.renewal_percent, msgspec.UnsetType):
        percent = data.renewal_percent
        campaign.renewal_bps = None if percent is None else commission_bps(percent)
    if not isinstance(data.renewal_flat_minor, msgspec.UnsetType):
        campaign.renewal_flat_minor = data.renewal_flat_minor
    if campaign.renewal_mode == "months" and not campaign.renewal_months:
        raise FieldError("renewal_months", "give the number of months renewals are paid for")


async def _referenced(session: AsyncSession, model: type[M], object_id: int, field: str) -> M:
    found = await session.get(model, object_id)
    if found is None:
        raise FieldError(field, f"no {model.__tablename__[:-1]} with id {object_id}")
    return found


def _destination(url: str) -> str:
    """``url`` if it can go into a redirect's Location header once its macros are filled: an
    absolute http(s) URL with a host, a valid port and no user info, whose macros are known and
    stay out of the host (the type already refused white space, control characters and
    backslashes)."""
    problem = template_problem(url)
    if problem is not None:
        raise FieldError("destination_url", problem)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number from 0 to 65535)
    except ValueError as error:
        raise FieldError("destination_url", f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise FieldError("destination_url", "an absolute http(s) URL with a host and no user")
    return url


async def _check_destination(session: AsyncSession, campaign: Campaign, url: str | None) -> None:
    """A link's own destination must stay on its merchant's domains (no redirects elsewhere)."""
    if url is None:
        return
    _destination(url)
    merchant = await _referenced(session, Merchant, campaign.merchant_id, "campaign_id")
    host = urlsplit(url).hostname or ""
    if merchant.domains and host not in merchant.domains:
        raise FieldError("destination_url", f"{host!r} is not a domain of the merchant")


async def create_merchant(
    session: AsyncSession, catalog: Catalog, data: MerchantCreate
) -> Merchant:
    merchant = Merchant(
        name=data.name,
        key=public_key("mk_"),
        postback_secret=new_postback_secret(),
        currency=_currency(data.currency),
        locale=_locale(data.locale),
        domains=_domains(data.domains),
        attribution_window_days=data.attribution_window_days,
        auto_approve_days=data.auto_approve_days,
        max_order_minor=data.max_order_minor,
        auto_approve_unverified_max_minor=data.auto_approve_unverified_max_minor,
        coupon_over_click=data.coupon_over_click,
    )
    session.add(merchant)
    await commit_and_refresh(session, catalog, merchant)
    return merchant


async def update_merchant(
    session: AsyncSession, catalog: Catalog, merchant: Merchant, data: MerchantUpdate
) -> None:
    changes = msgspec.structs.replace(data)
    if not isinstance(changes.currency, msgspec.UnsetType):
        changes.currency = _currency(changes.currency)
    if not isinstance(changes.locale, msgspec.UnsetType):
        changes.locale = _locale(changes.locale)
    if not isinstance(changes.domains, msgspec.UnsetType):
        changes.domains = _domains(changes.domains)
    if isinstance(changes.iban, str):
        changes.iban = checked_iban(changes.iban)
    if isinstance(changes.bic, str):
        changes.bic = checked_bic(changes.bic)
    _apply_changes(merchant, changes)
    await commit_and_refresh(session, catalog, merchant)


async def create_partner(session: AsyncSession, catalog: Catalog, data: PartnerCreate) -> Partner:
    partner = Partner(name=data.name, contact_email=data.contact_email, key=public_key("pk_"))
    session.add(partner)
    await commit_and_refresh(session, catalog, partner)
    return partner


async def update_partner(
    session: AsyncSession, catalog: Catalog, partner: Partner, data: PartnerUpdate
) -> None:
    if isinstance(data.group_id, int):
        await _referenced(session, PartnerGroup, data.group_id, "group_id")
    _apply_changes(partner, checked_details(data))
    require_details(partner)
    await commit_and_refresh(session, catalog, partner)


async def create_campaign(
    session: AsyncSession, catalog: Catalog, data: CampaignCreate
) -> Campaign:
    await _referenced(session, Merchant, data.merchant_id, "merchant_id")
    campaign = Campaign(
        merchant_id=data.merchant_id,
        name=data.name,
        destination_url=_destination(data.destination_url),
        commission_bps=commission_bps(data.commission_percent),
        commission_flat_minor=data.commission_flat_minor,
        cookie_window_days=data.cookie_window_days,
        status=data.status,
    )
    _apply_renewal_changes(campaign, data)
    session.add(campaign)
    await commit_and_refresh(session, catalog, campaign)
    return campaign


async def update_campaign(
    session: AsyncSession, catalog: Catalog, campaign: Campaign, data: CampaignUpdate
) -> None:
    if isinstance(data.destination_url, str):
        _destination(data.destination_url)
    _apply_renewal_changes(campaign, data)
    _apply_commission_changes(
        campaign,
        msgspec.structs.replace(
            data,
            renewal_mode=msgspec.UNSET,
            renewal_months=msgspec.UNSET,
            renewal_percent=msgspec.UNSET,
            renewal_flat_minor=msgspec.UNSET,
        ),
    )
    await commit_and_refresh(session, catalog, campaign)


async def create_link(session: AsyncSession, catalog: Catalog, data: LinkCreate) -> Link:
    await _referenced(session, Partner, data.partner_id, "partner_id")
    campaign = await _referenced(session, Campaign, data.campaign_id, "campaign_id")
    await _check_destination(session, campaign, data.destination_url)
    for _ in range(CODE_TRIES):
        link = Link(
            code="".join(secrets.choice(CODE_ALPHABET) for _ in range(8)),
            partner_id=data.partner_id,
            campaign_id=data.campaign_id,
            destination_url=data.destination_url,
        )
        session.add(link)
        try:
            await commit_and_refresh(session, catalog, link)
        except IntegrityError:
            await session.rollback()  # a code collision: draw another
            continue
        return link
    raise RuntimeError(f"could not draw a free link code in {CODE_TRIES} tries")


async def update_link(
    session: AsyncSession, catalog: Catalog, link: Link, data: LinkUpdate
) -> None:
    if isinstance(data.destination_url, str):
        campaign = await _referenced(session, Campaign, link.campaign_id, "campaign_id")
        await _check_destination(session, campaign, data.destination_url)
    _apply_changes(link, data)
    await commit_and_refresh(session, catalog, link)


async def create_override(
    session: AsyncSession, catalog: Catalog, data: OverrideCreate
) -> CommissionOverride:
    await _referenced(session, Partner, data.partner_id, "partner_id")
    await _referenced(session, Campaign, data.campaign_id, "campaign_id")
    override = CommissionOverride(
        partner_id=data.partner_id,
        campaign_id=data.campaign_id,
        commission_bps=commission_bps(data.commission_percent),
        commission_flat_minor=data.commission_flat_minor,
    )
    session.add(override)
    try:
        await commit_and_refresh(session, catalog, override)
    except IntegrityError:
        raise FieldError(
            "campaign_id", "this partner already has an override for this campaign: edit it"
        ) from None
    return override


async def update_override(
    session: AsyncSession, catalog: Catalog, override: CommissionOverride, data: OverrideUpdate
) -> None:
    _apply_commission_changes(override, data)
    await commit_and_refresh(session, catalog, override)


async def delete_override(
    session: AsyncSession, catalog: Catalog, override: CommissionOverride
) -> None:
    """The partner earns by the campaign's rule again."""
    await session.delete(override)
    await session.commit()
    catalog.invalidate()


async def _coupon_campaign(session: AsyncSession, data: CouponCreate) -> Campaign:
    """The campaign a coupon's sales earn by: the one named, which must be the merchant's, or
    the merchant's first active campaign (the first of any when none is active)."""
    if data.campaign_id is not None:
        campaign = await _referenced(session, Campaign, data.campaign_id, "campaign_id")
        if campaign.merchant_id != data.merchant_id:
            raise FieldError("campaign_id", "the campaign is another merchant's")
        return campaign
    found = await session.scalar(
        select(Campaign)
        .where(Campaign.merchant_id == data.merchant_id)
        .order_by((Campaign.status != RunStatus.ACTIVE.value), Campaign.id)
        .limit(1)
    )
    if found is None:
        raise FieldError("campaign_id", "the merchant has no campaign yet: create one first")
    return found


async def create_coupon(session: AsyncSession, catalog: Catalog, data: CouponCreate) -> Coupon:
    """A partner's coupon code for a merchant; a code the merchant has already (in any case)
    is refused."""
    await _referenced(session, Merchant, data.merchant_id, "merchant_id")
    await _referenced(session, Partner, data.partner_id, "partner_id")
    campaign = await _coupon_campaign(session, data)
    coupon = Coupon(
        merchant_id=data.merchant_id,
        partner_id=data.partner_id,
        campaign_id=campaign.id,
        code=data.code,
        code_key=coupon_key(data.code),
    )
    session.add(coupon)
    try:
        await commit_and_refresh(session, catalog, coupon)
    except IntegrityError:
        raise FieldError("code", f"the merchant has the coupon {data.code!r} already") from None
    return coupon


async def delete_coupon(session: AsyncSession, catalog: Catalog, coupon: Coupon) -> None:
    """Sales that carry the code from now on are flagged ``unknown_coupon``; those stored keep
    their attribution."""
    await session.delete(coupon)
    await session.commit()
    catalog.invalidate()
