"""Per-partner commission overrides: a partner's own rule for one campaign.

The worker reads the rule that applies with each link (``backend.storage.catalog``), so a conversion
credited to a link of that partner and campaign earns by the override instead of the campaign.
"""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from sqlalchemy import select

from backend.domain.affiliate import catalogue
from backend.domain.affiliate.schemas import OverrideCreate, OverrideOut, OverrideUpdate, Page
from backend.storage.db.models import CommissionOverride
from backend.web.api.deps import ADMIN_KEY, ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import (
    After,
    Limit,
    PathId,
    QueryId,
    get_or_404,
    page_of,
    percent_text,
)


def override_out(override: CommissionOverride) -> OverrideOut:
    return OverrideOut(
        id=override.id,
        partner_id=override.partner_id,
        campaign_id=override.campaign_id,
        commission_percent=percent_text(override.commission_bps),
        commission_flat_minor=override.commission_flat_minor,
        created_at=override.created_at,
    )


class OverrideController(Controller):
    path = "/commission-overrides"
    tags = ["commission overrides"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self,
        data: JSONBody[OverrideCreate],
        writer: Writer,
        state: State,
    ) -> OverrideOut:
        override = await catalogue.create_override(writer, state.catalog, data)
        return override_out(override)

    @get("/", raises=ANY_KEY, opt=PARTNER_KEYS)
    async def list_overrides(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        partner_id: QueryId = None,
        campaign_id: QueryId = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[OverrideOut]:
        statement = viewer.restrict(select(CommissionOverride), CommissionOverride.partner_id)
        if partner_id is not None:
            statement = statement.where(CommissionOverride.partner_id == partner_id)
        if campaign_id is not None:
            statement = statement.where(CommissionOverride.campaign_id == campaign_id)
        return await page_of(reader, statement, CommissionOverride.id, after, limit, override_out)

    @patch("/{override_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def update(
        self,
        override_id: PathId,
        data: JSONBody[OverrideUpdate],
        writer: Writer,
        state: State,
    ) -> OverrideOut:
        override = await get_or_404(writer, CommissionOverride, override_id)
        await catalogue.update_override(writer, state.catalog, override, data)
        return override_out(override)

    @delete("/{override_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def remove(
        self,
        override_id: PathId,
        writer: Writer,
        state: State,
    ) -> None:
        override = await get_or_404(writer, CommissionOverride, override_id)
        await catalogue.delete_override(writer, state.catalog, override)
