"""A partner's own links: the list, a new link to a campaign it is approved for (with a deep
link on the merchant's domains), and a builder that adds sub-ids and a deep link to a link's
tracking URL, with its QR code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_S
from backend.core.money_display import format_money
from backend.core.scope import Viewer
from backend.core.settings import Settings
from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import MAX_ID
from backend.domain.destinations import SUB_KEYS
from backend.domain.partner_links import create_own_link, open_campaigns, tracking_url
from backend.storage.catalog import choose_rule, with_rules
from backend.storage.db.models import (
    Campaign,
    CommissionOverride,
    GroupRate,
    Link,
    Merchant,
    Partner,
)
from backend.web.admin.forms import typed_form
from backend.web.admin.links import qr_svg
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import percent_text
from backend.web.security_headers import OWN_SCRIPTS_CSP

SHOWN = 500


def partner_of(viewer: Viewer) -> int:
    """The signed-in partner; the portal is not an admin's."""
    if viewer.partner_id is None:
        raise NotFoundException("the portal is a partner's")
    return viewer.partner_id


COPY_BUTTONS = {"Content-Security-Policy": OWN_SCRIPTS_CSP}
"""The link pages run static/copy.js, their copy buttons."""


@dataclass(frozen=True, slots=True)
class OwnLink:
    """A partner's link as its list shows it: the URL to share and the terms it earns by."""

    link: Link
    campaign: str
    url: str
    rate: str  # what a sale pays this partner: "8.00% + €0.50"
    window_days: int  # how long after a click a sale is still credited


def _rate(bps: int, flat_minor: int, merchant: Merchant) -> str:
    parts = [f"{percent_text(bps)}%"] if bps else []
    if flat_minor:
        parts.append(format_money(flat_minor, merchant.currency, merchant.locale))
    return " + ".join(parts) or "nothing"


async def _list(
    session: AsyncSession,
    settings: Settings,
    partner_id: int,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Template:
    rows = (
        await session.execute(
            with_rules(
                select(Link, Campaign, Merchant, GroupRate, CommissionOverride)
                .join(Campaign, Campaign.id == Link.campaign_id)
                .join(Merchant, Merchant.id == Campaign.merchant_id)
                .join(Partner, Partner.id == Link.partner_id)
            )
            .where(Link.partner_id == partner_id)
            .order_by(Link.id.desc())
            .limit(SHOWN)
        )
    ).all()
    links = []
    for link, campaign, merchant, group_rate, override in rows:
        bps, flat, _ = choose_rule(campaign, group_rate, override)
        url, _ = tracking_url(settings.public_url, link, merchant, {})
        window = merchant.attribution_window_days or settings.attribution_window_days
        links.append(OwnLink(link, campaign.name, url, _rate(bps, flat, merchant), window))
    context = {
        "viewer": Viewer(partner_id=partner_id),
        "links": links,
        "campaigns": await open_campaigns(session, partner_id),
        "values": values,
        "errors": errors,
    }
    return Template(
        "portal/links.html", context=context, status_code=status_code, headers=COPY_BUTTONS
    )


@get("/portal/links")
async def links_page(viewer: CurrentViewer, reader: Reader, state: State) -> Template:
    """Where a partner lands: every link with the URL to share and what it earns."""
    return await _list(reader, state.settings, partner_of(viewer), {}, {})


@post("/portal/links")
async def create_link(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
) -> Template | Redirect:
    partner_id = partner_of(viewer)
    form = await typed_form(request)
    values = {name: form.get(name, "")[:4000] for name in ("campaign_id", "destination_url")}
    campaign = values["campaign_id"]
    if not campaign.isdigit() or not 1 <= int(campaign) <= MAX_ID:
        return await _list(
            writer, state.settings, partner_id, values, {"campaign_id": "Choose a campaign."}, 400
        )
    try:
        link = await create_own_link(
            writer,
            state.catalog,
            partner_id,
            int(campaign),
            values["destination_url"].strip() or None,
        )
    except FieldError as error:
        await writer.rollback()
        message = error.message[0].upper() + error.message[1:] + "."
        return await _list(writer, state.settings, partner_id, values, {error.field: message}, 400)
    return Redirect(f"/portal/links/{link.id}")


async def _own_link(session: AsyncSession, viewer: Viewer, link_id: int) -> tuple[Link, Merchant]:
    """The partner's link and its merchant; another partner's does not exist."""
    partner_id = partner_of(viewer)
    if not 1 <= link_id <= MAX_ID:
        raise NotFoundException(f"no link with id {link_id}")
    row = (
        await session.execute(
            select(Link, Merchant)
            .join(Campaign, Campaign.id == Link.campaign_id)
            .join(Merchant, Merchant.id == Campaign.merchant_id)
            .where(Link.id == link_id, Link.partner_id == partner_id)
        )
    ).first()
    if row is None:
        raise NotFoundException(f"no link with id {link_id}")
    return row[0], row[1]


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {key: request.query_params.get(key, "")[:4000] for key in (*SUB_KEYS, "to")}


@get("/portal/links/{link_id:int}")
async def link_page(
    request: Request[Any, Any, Any],
    link_id: FromPath[int],
    viewer: CurrentViewer,
    reader: Reader,
    state: State,
) -> Template:
    link, merchant = await _own_link(reader, viewer, link_id)
    params = _params(request)
    url, errors = tracking_url(state.settings.public_url, link, merchant, params)
    campaign = await reader.get(Campaign, link.campaign_id)
    context = {
        "viewer": viewer,
        "link": link,
        "campaign": campaign,
        "merchant": merchant,
        "url": url,
        "values": params,
        "errors": errors,
        "sub_keys": SUB_KEYS,
        "query": request.url.query or "",
    }
    status = 400 if errors else 200
    return Template("portal/link.html", context=context, status_code=status, headers=COPY_BUTTONS)


@get("/portal/links/{link_id:int}/qr.svg")
async def link_qr(
    request: Request[Any, Any, Any],
    link_id: FromPath[int],
    viewer: CurrentViewer,
    reader: Reader,
    state: State,
) -> Response[bytes]:
    link, merchant = await _own_link(reader, viewer, link_id)
    url, _ = tracking_url(state.settings.public_url, link, merchant, _params(request))
    return Response(
        qr_svg(url),
        media_type="image/svg+xml",
        headers={"Cache-Control": f"private, max-age={HOUR_S}"},
    )


LINK_HANDLERS = [links_page, create_link, link_page, link_qr]
