"""A partner's own links: the list, a new link to a campaign it is approved for (with a deep
link on the merchant's domains), and a builder that adds sub-ids and a deep link to a link's
tracking URL, with its QR code."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_S
from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import MAX_ID
from backend.domain.destinations import SUB_KEYS
from backend.domain.partner_links import create_own_link, open_campaigns, tracking_url
from backend.storage.db.models import Campaign, Link, Merchant
from backend.web.admin.forms import typed_form
from backend.web.admin.links import qr_svg
from backend.web.api.deps import CurrentViewer, Reader, Writer

SHOWN = 500


def partner_of(viewer: Viewer) -> int:
    """The signed-in partner; the portal is not an admin's."""
    if viewer.partner_id is None:
        raise NotFoundException("the portal is a partner's")
    return viewer.partner_id


async def _list(
    session: AsyncSession,
    partner_id: int,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Template:
    links = (
        await session.execute(
            select(Link, Campaign.name)
            .join(Campaign, Campaign.id == Link.campaign_id)
            .where(Link.partner_id == partner_id)
            .order_by(Link.id.desc())
            .limit(SHOWN)
        )
    ).all()
    context = {
        "viewer": Viewer(partner_id=partner_id),
        "links": links,
        "campaigns": await open_campaigns(session, partner_id),
        "values": values,
        "errors": errors,
    }
    return Template("portal/links.html", context=context, status_code=status_code)


@get("/portal/links")
async def links_page(viewer: CurrentViewer, reader: Reader) -> Template:
    return await _list(reader, partner_of(viewer), {}, {})


@post("/portal/links")
async def create_link(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
) -> Template | Redirect:
    partner_id = partner_of(viewer)
    form = await typed_form(request)
    values = {name: form.get(name, "")[:4000] for name in ("campaign_id", "destination_url")}
    campaign = values["campaign_id"]
    if not campaign.isdigit() or not 1 <= int(campaign) <= MAX_ID:
        return await _list(writer, partner_id, values, {"campaign_id": "Choose a campaign."}, 400)
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
        return await _list(writer, partner_id, values, {error.field: message}, 400)
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
    return Template("portal/link.html", context=context, status_code=400 if errors else 200)


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
