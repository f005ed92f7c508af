"""Conversions: list within the viewer's scope, read with their audit trail, and status
changes by admins, one at a time or in batches: an admin's approval decides the commission
(``change_status`` with ``reviewed``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromQuery, JSONBody, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.affiliate.schemas import (
    ONE_LINE,
    ConversionChangeOut,
    ConversionDetail,
    ConversionOut,
    ConversionUpdate,
    Page,
    StatusBatch,
    StatusBatchOut,
    StatusOutcome,
    StoreEventOut,
)
from backend.domain.affiliate.status import (
    AUTO_APPROVAL,
    POSTBACK,
    CommissionRefused,
    TransitionRefused,
    change_status,
)
from backend.domain.stores.changes import events_of
from backend.storage.db.models import Conversion, ConversionChange, ConversionStatus
from backend.web.api.deps import ADMIN_KEY, ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import After, Limit, PathId, get_or_404, page_of

STATUS_PATTERN = "^(pending|approved|rejected|reversed)$"


def _time(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def conversion_out(conversion: Conversion) -> ConversionOut:
    return ConversionOut(
        id=conversion.id,
        event_id=conversion.event_id,
        at=_time(conversion.at_ms),
        merchant_id=conversion.merchant_id,
        order_id=conversion.order_id,
        click_id=conversion.click_id,
        link_id=conversion.link_id,
        partner_id=conversion.partner_id,
        campaign_id=conversion.campaign_id,
        amount_minor=conversion.amount_minor,
        commission_minor=conversion.commission_minor,
        currency=conversion.currency,
        status=conversion.status,
        source=conversion.source,
        event_name=conversion.event_name,
        flags=[flag for flag in conversion.flags.split(",") if flag],
        verified=conversion.verified,
        coupon=conversion.coupon,
        attribution=conversion.attribution,
        source_id=conversion.source_id,
        commission_reported=conversion.commission_reported,
        renewal_rule=conversion.renewal_rule,
        commission_rule=conversion.commission_rule,
    )


def change_out(change: ConversionChange, viewer: Viewer) -> ConversionChangeOut:
    """A partner sees that an admin acted, not which one (actors name users and keys)."""
    actor = change.actor
    if not viewer.is_admin and actor not in (POSTBACK, AUTO_APPROVAL):
        actor = "network" if actor.startswith("source:") else "admin"
    return ConversionChangeOut(
        at=_time(change.at_ms),
        from_status=change.from_status,
        to_status=change.to_status,
        verified=change.verified,
        actor=actor,
        reason=change.reason,
        commission_from_minor=change.commission_from_minor,
        commission_to_minor=change.commission_to_minor,
    )


async def history(
    session: AsyncSession, conversion_id: int, viewer: Viewer
) -> list[ConversionChangeOut]:
    """A conversion's audit trail, oldest change first, as ``viewer`` may see it."""
    changes = await session.scalars(
        select(ConversionChange)
        .where(ConversionChange.conversion_id == conversion_id)
        .order_by(ConversionChange.id)
    )
    return [change_out(change, viewer) for change in changes]


class TransitionConflict(ClientException):
    """409: the conversion's status does not allow the change asked for."""

    status_code = 409


def refused_error(refused: TransitionRefused) -> TransitionConflict:
    return TransitionConflict(
        detail=str(refused),
        extra=[
            {
                "key": "status",
                "message": f"allowed from {refused.current}: "
                + (", ".join(refused.allowed) or "none"),
            }
        ],
    )


class ConversionController(Controller):
    path = "/conversions"
    tags = ["conversions"]

    @get("/", raises=ANY_KEY, opt=PARTNER_KEYS)
    async def list_conversions(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        status: FromQuery[ConversionStatus | None] = None,
        order_id: Annotated[str | None, QueryParameter(max_length=128, pattern=ONE_LINE)] = None,
        verified: FromQuery[bool | None] = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[ConversionOut]:
        statement = viewer.restrict(select(Conversion), Conversion.partner_id)
        if status is not None:
            statement = statement.where(Conversion.status == status)
        if order_id is not None:
            statement = statement.where(Conversion.order_id == order_id)
        if verified is not None:
            statement = statement.where(Conversion.verified.is_(verified))
        return await page_of(reader, statement, Conversion.id, after, limit, conversion_out)

    @get("/{conversion_id:int}", raises=[*ANY_KEY, NotFoundException], opt=PARTNER_KEYS)
    async def read(
        self,
        conversion_id: PathId,
        viewer: CurrentViewer,
        reader: Reader,
    ) -> ConversionDetail:
        conversion = await get_or_404(reader, Conversion, conversion_id)
        if not viewer.is_admin and conversion.partner_id != viewer.partner_id:
            raise NotFoundException(f"no conversion with id {conversion_id}")
        out = conversion_out(conversion)
        return ConversionDetail(
            **{name: getattr(out, name) for name in out.__struct_fields__},
            history=await history(reader, conversion_id, viewer),
            store_events=[
                StoreEventOut(
                    at=_time(event.at_ms),
                    source_id=event.source_id,
                    event_type=event.event_type,
                    event_id=event.event_key,
                    detail=event.detail,
                )
                for event in await events_of(reader, conversion_id)
            ]
            if viewer.is_admin
            else [],
        )

    @patch("/{conversion_id:int}", raises=[*ADMIN_KEY, NotFoundException, TransitionConflict])
    async def change_status(
        self,
        conversion_id: PathId,
        data: JSONBody[ConversionUpdate],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> ConversionOut:
        conversion = await get_or_404(writer, Conversion, conversion_id)
        try:
            await change_status(
                writer,
                conversion,
                ConversionStatus(data.status),
                actor=viewer.actor,
                reason=data.reason,
                commission=data.commission_minor,
                reviewed=True,
            )
        except TransitionRefused as refused:
            raise refused_error(refused) from refused
        except CommissionRefused as refused:
            raise ClientException(
                detail=str(refused), extra=[{"key": "commission_minor", "message": str(refused)}]
            ) from refused
        await writer.commit()
        await writer.refresh(conversion)
        return conversion_out(conversion)

    @post("/status", status_code=200, raises=ADMIN_KEY)
    async def change_statuses(
        self,
        data: JSONBody[StatusBatch],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> StatusBatchOut:
        """Each id is changed or not on its own; the answer says what happened to each."""
        wanted = ConversionStatus(data.status)
        found = {
            conversion.id: conversion
            for conversion in await writer.scalars(
                select(Conversion).where(Conversion.id.in_(set(data.ids)))
            )
        }
        results: list[StatusOutcome] = []
        for conversion_id in dict.fromkeys(data.ids):
            conversion = found.get(conversion_id)
            if conversion is None:
                results.append(StatusOutcome(conversion_id, "not_found"))
                continue
            try:
                await change_status(
                    writer,
                    conversion,
                    wanted,
                    actor=viewer.actor,
                    reason=data.reason,
                    commission=data.commission_minor,
                    reviewed=True,
                )
            except (TransitionRefused, CommissionRefused) as refused:
                results.append(
                    StatusOutcome(conversion_id, "refused", conversion.status, str(refused))
                )
                continue
            results.append(StatusOutcome(conversion_id, "changed", conversion.status))
        await writer.commit()
        return StatusBatchOut(results)
