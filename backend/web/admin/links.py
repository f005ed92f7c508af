"""Link pages: list (by partner or campaign), create, edit, the tracking URL and its QR code,
and what the last health check found at the destination."""

from __future__ import annotations

import io
from collections.abc import Sequence

import segno
from litestar import Response, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_S
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import LinkCreate, LinkUpdate
from backend.storage.db.models import Campaign, Link, Partner, RunStatus
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import chosen, narrowed, narrowed_list, partner_and_campaign
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.api.deps import CurrentViewer, Reader
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


def _checked(link: Link) -> str:
    checked = link.last_checked_at
    return "never" if checked is None else f"{checked:%Y-%m-%d %H:%M} UTC"


class LinkPages(ObjectPages[Link, LinkCreate, LinkUpdate]):
    path = "/links"
    kind = "link"
    model = Link
    template = "admin/link.html"
    new_schema = LinkCreate
    edit_schema = LinkUpdate
    edit_fields = EDIT_FIELDS

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
        statement, filters = narrowed(Link, partner_id, campaign_id)
        render = link_out(state.settings.public_url)
        page = await page_of(reader, statement, Link.id, after, PAGE_SIZE, render)
        context = await narrowed_list(reader, viewer, page, filters, self.page_url())
        return Template("admin/links.html", context=context)

    @get("/new")
    async def new(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: FromQuery[int | None] = None,
        campaign_id: FromQuery[int | None] = None,
    ) -> Template:
        return await self.new_form(viewer, reader, chosen(partner_id, campaign_id), {})

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        return (*await partner_and_campaign(session), DESTINATION)

    async def create_object(self, writer: AsyncSession, state: State, data: LinkCreate) -> Link:
        return await catalogue.create_link(writer, state.catalog, data)

    async def update_object(
        self, writer: AsyncSession, state: State, obj: Link, data: LinkUpdate
    ) -> None:
        await catalogue.update_link(writer, state.catalog, obj, data)

    async def object_page(self, session: AsyncSession, state: State, obj: Link) -> ObjectPage:
        partner = await get_or_404(session, Partner, obj.partner_id)
        campaign = await get_or_404(session, Campaign, obj.campaign_id)
        out = link_out(state.settings.public_url)(obj)
        return ObjectPage(
            heading=f"Link {obj.code}",
            facts=[
                ("Partner", partner.name),
                ("Campaign", campaign.name),
                ("Goes to", obj.destination_url or campaign.destination_url),
                ("Status", obj.status),
                ("Health", obj.health or "unchecked"),
                ("Health detail", obj.health_detail or "—"),
                ("Last checked", _checked(obj)),
            ],
            current=out,
            extra={"tracking_url": out.url},
        )

    @get("/{object_id:int}/qr.svg")
    async def qr_code(
        self, object_id: FromPath[int], reader: Reader, state: State
    ) -> Response[bytes]:
        """The tracking URL as a QR code, drawn on the server (no script in the page)."""
        link = await self.load(reader, object_id)
        return Response(
            qr_svg(link_out(state.settings.public_url)(link).url),
            media_type="image/svg+xml",
            headers={"Cache-Control": f"private, max-age={HOUR_S}"},
        )


def qr_svg(url: str) -> bytes:
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=4, xmldecl=False, title=url)
    return out.getvalue()
