"""Link pages: list (by partner or campaign), create, edit, the tracking URL and its QR code,
and what the last health check found at the destination."""

from __future__ import annotations

import io
from typing import Any

import segno
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN, Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import LinkCreate, LinkUpdate
from backend.storage.db.models import Campaign, Link, Partner, RunStatus
from backend.web.admin.forms import (
    PAGE_SIZE,
    Field,
    FormInvalid,
    edit_page,
    form_values,
    new_page,
    submit,
    typed_form,
)
from backend.web.admin.lookups import campaign_names, partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, get_or_404, link_out, page_of

DESTINATION = Field(
    "destination_url",
    "Own destination",
    "a full address on the merchant's domains, or empty for the campaign's destination",
    kind="url",
)
EDIT_FIELDS = (
    DESTINATION,
    Field(
        "status",
        "Status",
        "active or paused (a paused link still redirects, but its conversions are held for review)",
        kind="select",
        options=[(status.value, status.value) for status in RunStatus],
        required=True,
    ),
)


async def _new_fields(session: AsyncSession) -> tuple[Field, ...]:
    partners = await partner_names(session)
    campaigns = await campaign_names(session, ADMIN)
    return (
        Field(
            "partner_id",
            "Partner",
            "one of the partners",
            kind="select",
            options=[(str(key), name) for key, name in partners.items()],
            required=True,
        ),
        Field(
            "campaign_id",
            "Campaign",
            "one of the campaigns",
            kind="select",
            options=[(str(key), name) for key, name in campaigns.items()],
            required=True,
        ),
        DESTINATION,
    )


async def _new(
    viewer: Viewer,
    session: AsyncSession,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Template:
    fields = await _new_fields(session)
    return new_page(viewer, "New link", "/admin/links/new", fields, values, errors, status=status)


def _show(
    link: Link,
    viewer: Viewer,
    state: State,
    partner: Partner,
    campaign: Campaign,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    out = link_out(state.settings.public_url)(link)
    return edit_page(
        "admin/link.html",
        viewer,
        heading=f"Link {link.code}",
        kind="link",
        object_id=link.id,
        action=f"/admin/links/{link.id}",
        fields=EDIT_FIELDS,
        values=values if values is not None else form_values(out, EDIT_FIELDS),
        errors=errors or {},
        facts=[
            ("Partner", partner.name),
            ("Campaign", campaign.name),
            ("Goes to", link.destination_url or campaign.destination_url),
            ("Status", link.status),
            ("Health", link.health or "unchecked"),
            ("Health detail", link.health_detail or "—"),
            ("Last checked", _checked(link)),
        ],
        status=status,
        tracking_url=out.url,
    )


def _checked(link: Link) -> str:
    checked = link.last_checked_at
    return "never" if checked is None else f"{checked:%Y-%m-%d %H:%M} UTC"


class LinkPages(Controller):
    path = "/links"

    @get("/")
    async def index(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        state: State,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
        after: After = 0,
    ) -> Template:
        statement = select(Link)
        filters: dict[str, str] = {}
        if partner_id is not None:
            statement = statement.where(Link.partner_id == partner_id)
            filters["partner_id"] = str(partner_id)
        if campaign_id is not None:
            statement = statement.where(Link.campaign_id == campaign_id)
            filters["campaign_id"] = str(campaign_id)
        render = link_out(state.settings.public_url)
        page = await page_of(reader, statement, Link.id, after, PAGE_SIZE, render)
        partners = await partner_names(reader)
        campaigns = await campaign_names(reader, viewer)
        query = "&".join(f"{name}={value}" for name, value in filters.items())
        context = {
            "viewer": viewer,
            "page": page,
            "partners": partners,
            "campaigns": campaigns,
            "filters": filters,
            "base": "/admin/links" + (f"?{query}" if query else ""),
        }
        return Template("admin/links.html", context=context)

    @get("/new")
    async def new(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
    ) -> Template:
        values = {
            "partner_id": "" if partner_id is None else str(partner_id),
            "campaign_id": "" if campaign_id is None else str(campaign_id),
        }
        return await _new(viewer, reader, values, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        fields = await _new_fields(writer)
        try:
            link = await submit(
                form,
                fields,
                LinkCreate,
                lambda data: catalogue.create_link(writer, state.catalog, data),
            )
        except FormInvalid as invalid:
            return await _new(viewer, writer, form, invalid.errors, 400)
        return Redirect(f"/admin/links/{link.id}", status_code=303)

    @get("/{link_id:int}")
    async def show(
        self, link_id: FromPath[int], viewer: CurrentViewer, reader: Reader, state: State
    ) -> Template:
        link = await get_or_404(reader, Link, link_id)
        partner = await get_or_404(reader, Partner, link.partner_id)
        campaign = await get_or_404(reader, Campaign, link.campaign_id)
        return _show(link, viewer, state, partner, campaign)

    @post("/{link_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        link_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        link = await get_or_404(writer, Link, link_id)
        partner = await get_or_404(writer, Partner, link.partner_id)
        campaign = await get_or_404(writer, Campaign, link.campaign_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                EDIT_FIELDS,
                LinkUpdate,
                lambda data: catalogue.update_link(writer, state.catalog, link, data),
            )
        except FormInvalid as invalid:
            return _show(link, viewer, state, partner, campaign, form, invalid.errors, 400)
        return Redirect(f"/admin/links/{link_id}", status_code=303)

    @get("/{link_id:int}/qr.svg")
    async def qr_code(
        self, link_id: FromPath[int], reader: Reader, state: State
    ) -> Response[bytes]:
        """The tracking URL as a QR code, drawn on the server (no script in the page)."""
        link = await get_or_404(reader, Link, link_id)
        return Response(
            qr_svg(link_out(state.settings.public_url)(link).url),
            media_type="image/svg+xml",
            headers={"Cache-Control": "private, max-age=3600"},
        )


def qr_svg(url: str) -> bytes:
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=4, xmldecl=False, title=url)
    return out.getvalue()
