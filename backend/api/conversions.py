"""Conversions: list within the viewer's scope, and status changes by admins.

A status change that takes a conversion out of the counted set (rejected, reversed) takes it
out of the hourly rollup in the same transaction, so totals never disagree with the rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, patch
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.api.deps import CurrentViewer, Reader, Writer, require_admin
from backend.api.resources import After, Limit, get_or_404, page_of
from backend.api.schemas import ConversionOut, ConversionUpdate, Page
from backend.db.models import Conversion, ConversionStatus, StatsHourly
from backend.worker.enrich import HOUR_MS

ALLOWED = {
    (ConversionStatus.PENDING, ConversionStatus.APPROVED),
    (ConversionStatus.PENDING, ConversionStatus.REJECTED),
    (ConversionStatus.APPROVED, ConversionStatus.REVERSED),
}
STATUS_PATTERN = "^(pending|approved|rejected|reversed)$"
COUNTED = {ConversionStatus.PENDING, ConversionStatus.APPROVED}


def conversion_out(conversion: Conversion) -> ConversionOut:
    return ConversionOut(
        id=conversion.id,
        event_id=conversion.event_id,
        at=datetime.fromtimestamp(conversion.at_ms / 1000, UTC),
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
    )


class ConversionController(Controller):
    path = "/conversions"
    tags = ["conversions"]

    @get("/")
    async def list_conversions(
        self,
        viewer: CurrentViewer,
        reader: Reader,
        status: Annotated[str | None, QueryParameter(pattern=STATUS_PATTERN)] = None,
        order_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[ConversionOut]:
        statement = viewer.restrict(select(Conversion), Conversion.partner_id)
        if status is not None:
            statement = statement.where(Conversion.status == status)
        if order_id is not None:
            statement = statement.where(Conversion.order_id == order_id)
        return await page_of(reader, statement, Conversion.id, after, limit, conversion_out)

    @get("/{conversion_id:int}")
    async def read(
        self,
        conversion_id: FromPath[int],
        viewer: CurrentViewer,
        reader: Reader,
    ) -> ConversionOut:
        conversion = await get_or_404(reader, Conversion, conversion_id)
        if not viewer.is_admin and conversion.partner_id != viewer.partner_id:
            raise NotFoundException(f"no conversion with id {conversion_id}")
        return conversion_out(conversion)

    @patch("/{conversion_id:int}")
    async def change_status(
        self,
        conversion_id: FromPath[int],
        data: JSONBody[ConversionUpdate],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> ConversionOut:
        require_admin(viewer)
        conversion = await get_or_404(writer, Conversion, conversion_id)
        current, wanted = ConversionStatus(conversion.status), ConversionStatus(data.status)
        if (current, wanted) not in ALLOWED:
            raise ClientException(
                detail=f"a {current} conversion cannot become {wanted}",
                status_code=409,
                extra=[
                    {
                        "key": "status",
                        "message": f"allowed from {current}: "
                        + ", ".join(sorted(w for c, w in ALLOWED if c == current))
                        or "none",
                    }
                ],
            )
        conversion.status = wanted
        if current in COUNTED and wanted not in COUNTED:
            await _uncount(writer, conversion)
        await writer.commit()
        await writer.refresh(conversion)
        return conversion_out(conversion)


async def _uncount(session: AsyncSession, conversion: Conversion) -> None:
    stats = StatsHourly.__table__.c
    await session.execute(
        update(StatsHourly)
        .where(
            stats.hour_ms == conversion.at_ms // HOUR_MS * HOUR_MS,
            stats.merchant_id == conversion.merchant_id,
            stats.link_id == (conversion.link_id or 0),
            stats.currency == conversion.currency,
        )
        .values(
            conversions=stats.conversions - 1,
            revenue_minor=stats.revenue_minor - conversion.amount_minor,
            commission_minor=stats.commission_minor - conversion.commission_minor,
        )
    )
