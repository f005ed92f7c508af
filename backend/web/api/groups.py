"""Partner groups (tiers) and their rates per campaign; a partner joins one with
``PATCH /api/v1/partners/{id} {"group_id"}``. An admin's."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.domain.affiliate.groups import create_group, members_of, rates_of, set_rate
from backend.domain.affiliate.payout_schemas import (
    GroupCreate,
    GroupOut,
    GroupRateOut,
    GroupRateSet,
)
from backend.storage.db.models import PartnerGroup
from backend.web.api.deps import ADMIN_KEY, Reader, Writer
from backend.web.api.resources import After, Limit, PathId, get_or_404, percent_text


async def group_out(session: AsyncSession, group: PartnerGroup) -> GroupOut:
    return GroupOut(
        id=group.id,
        name=group.name,
        created_at=group.created_at,
        partner_ids=await members_of(session, group.id),
        rates=[
            GroupRateOut(
                campaign_id=rate.campaign_id,
                commission_percent=percent_text(rate.commission_bps),
                commission_flat_minor=rate.commission_flat_minor,
            )
            for rate in await rates_of(session, group.id)
        ],
    )


class GroupController(Controller):
    path = "/partner-groups"
    tags = ["partner groups"]

    @post("/", raises=ADMIN_KEY)
    async def create(self, data: JSONBody[GroupCreate], writer: Writer) -> GroupOut:
        return await group_out(writer, await create_group(writer, data))

    @get("/", raises=ADMIN_KEY)
    async def list_groups(
        self, reader: Reader, after: After = 0, limit: Limit = 50
    ) -> list[GroupOut]:
        """The groups after ``after``, oldest first, with their partners and rates."""
        groups = (
            await reader.scalars(
                select(PartnerGroup)
                .where(PartnerGroup.id > after)
                .order_by(PartnerGroup.id)
                .limit(limit)
            )
        ).all()
        return [await group_out(reader, group) for group in groups]

    @get("/{group_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def read(self, group_id: PathId, reader: Reader) -> GroupOut:
        return await group_out(reader, await get_or_404(reader, PartnerGroup, group_id))

    @post("/{group_id:int}/rates", status_code=200, raises=[*ADMIN_KEY, NotFoundException])
    async def rate(
        self, group_id: PathId, data: JSONBody[GroupRateSet], writer: Writer, state: State
    ) -> GroupOut:
        """The group's rule for a campaign, made or replaced."""
        group = await get_or_404(writer, PartnerGroup, group_id)
        await set_rate(writer, state.catalog, group, data)
        return await group_out(writer, group)
