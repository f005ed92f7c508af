"""Partner pages: list, create, edit (including active, paused or banned), with the partner's
commission overrides."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import get
from litestar.datastructures import State
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import ADMIN
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import PartnerCreate, PartnerUpdate
from backend.storage.db.models import CommissionOverride, Partner, PartnerStatus
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import campaign_names
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.api.deps import CurrentViewer, Reader
from backend.web.api.overrides import override_out
from backend.web.api.resources import After, page_of, partner_out
from backend.web.pages.install import partner_install

NEW_FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field("contact_email", "Contact email", "an email address, or empty", kind="email"),
)
EDIT_FIELDS = (
    *NEW_FIELDS,
    Field(
        "status",
        "Status",
        "active, paused or banned (a paused partner's conversions are held for review; a"
        " banned partner's links send visitors to the campaign's destination, untracked, and"
        " earn nothing)",
        kind="select",
        options=[(status.value, status.value) for status in PartnerStatus],
        required=True,
    ),
)


class PartnerPages(ObjectPages[Partner, PartnerCreate, PartnerUpdate]):
    path = "/partners"
    kind = "partner"
    model = Partner
    template = "admin/partner.html"
    new_schema = PartnerCreate
    edit_schema = PartnerUpdate
    edit_fields = EDIT_FIELDS

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Partner), Partner.id, after, PAGE_SIZE, partner_out)
        return Template("admin/partners.html", context={"viewer": viewer, "page": page})

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        return NEW_FIELDS

    async def create_object(
        self, writer: AsyncSession, state: State, data: PartnerCreate
    ) -> Partner:
        return await catalogue.create_partner(writer, state.catalog, data)

    async def update_object(
        self, writer: AsyncSession, state: State, obj: Partner, data: PartnerUpdate
    ) -> None:
        await catalogue.update_partner(writer, state.catalog, obj, data)

    async def object_page(self, session: AsyncSession, state: State, obj: Partner) -> ObjectPage:
        overrides = await session.scalars(
            select(CommissionOverride)
            .where(CommissionOverride.partner_id == obj.id)
            .order_by(CommissionOverride.id)
        )
        return ObjectPage(
            heading=obj.name,
            facts=[
                ("Public key", obj.key),
                ("Status", obj.status),
                ("Created", f"{obj.created_at:%Y-%m-%d %H:%M}"),
            ],
            current=partner_out(obj),
            extra={
                "install": partner_install(obj, state.settings, state.snippet),
                "overrides": [override_out(override) for override in overrides],
                "campaigns": await campaign_names(session, ADMIN),
            },
        )
