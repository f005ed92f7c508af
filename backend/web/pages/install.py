"""What to paste: the snippet and pixel tags for each merchant and partner a viewer may see, and
the coupon codes a partner can hand its audience.

Tags point at the versioned, immutable snippet file with its SRI hash, so a browser refuses a
snippet that was changed in transit or on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import MINOR_DIGITS, format_minor
from backend.core.scope import Viewer
from backend.core.settings import Settings
from backend.storage.db.models import Coupon, Merchant, Partner
from backend.web.ingest.snippet import Snippet


@dataclass(frozen=True, slots=True)
class Install:
    name: str
    kind: str
    tag: str
    extra: str
    coupons: tuple[tuple[str, str], ...] = ()  # a partner's codes: (code, merchant name)


def _script(settings: Settings, snippet: Snippet, attributes: str) -> str:
    privacy = ("" if settings.honor_gpc else ' data-gpc="ignore"') + (
        ' data-dnt="honor"' if settings.honor_dnt else ""
    )
    return (
        f'<script async src="{settings.public_url}{snippet.versioned_path}" '
        f'integrity="{snippet.integrity}" crossorigin="anonymous" {attributes}{privacy}></script>'
    )


def sample_amount(currency: str) -> str:
    """An order amount as the merchant's currency writes it: 49.90 EUR, 4990 JPY, 49.900 BHD
    (a tag copied with two decimals into a yen shop would be refused)."""
    return format_minor(4990 * 10 ** max(MINOR_DIGITS.get(currency, 2) - 2, 0), currency)


def merchant_install(merchant: Merchant, settings: Settings, snippet: Snippet) -> Install:
    """The shop's tag for every page and its conversion call (with the pixel as fallback)."""
    window = merchant.attribution_window_days or settings.attribution_window_days
    stub = (
        "<script>window.clicktrail=window.clicktrail||function(){"
        "(window.clicktrail.q=window.clicktrail.q||[]).push(arguments)};</script>"
    )
    tag = (
        stub
        + "\n"
        + _script(settings, snippet, f'data-merchant="{merchant.key}" data-window="{window}"')
    )
    amount = sample_amount(merchant.currency)
    conversion = (
        "<script>clicktrail('conversion', "
        f"{{orderId: 'ORDER_ID', amount: '{amount}', currency: "
        f"'{merchant.currency}'}});</script>\n"
        f'<noscript><img src="{settings.public_url}/p.gif?m={merchant.key}'
        f'&amp;oid=ORDER_ID&amp;amt={amount}&amp;cur={merchant.currency}" '
        'width="1" height="1" alt=""></noscript>'
    )
    return Install(merchant.name, "merchant", tag, conversion)


def partner_install(partner: Partner, settings: Settings, snippet: Snippet) -> Install:
    """The publisher's tag, which counts views of its tracking links."""
    return Install(
        partner.name, "partner", _script(settings, snippet, f'data-partner="{partner.key}"'), ""
    )


async def install_tags(
    session: AsyncSession, viewer: Viewer, settings: Settings, snippet: Snippet
) -> list[Install]:
    installs: list[Install] = []
    if viewer.is_admin:
        for merchant in (await session.scalars(select(Merchant).order_by(Merchant.id))).all():
            installs.append(merchant_install(merchant, settings, snippet))
    partners = viewer.restrict(select(Partner).order_by(Partner.id), Partner.id)
    for partner in (await session.scalars(partners)).all():
        install = partner_install(partner, settings, snippet)
        codes = await session.execute(
            select(Coupon.code, Merchant.name)
            .join(Merchant, Merchant.id == Coupon.merchant_id)
            .where(Coupon.partner_id == partner.id)
            .order_by(Merchant.name, Coupon.code)
        )
        installs.append(replace(install, coupons=tuple((code, name) for code, name in codes)))
    return installs
