"""Conversions: list within the viewer's scope, and status changes by admins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, patch
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select

from backend.affiliate.status import TransitionRefused, change_status
from backend.api.deps import CurrentViewer, Reader, Writer, require_admin
from backend.api.resources import After, Limit, get_or_404, page_of
from backend.api.schemas import ConversionOut, ConversionUpdate, Page
from backend.db.models import Conversion, ConversionStatus

STATUS_PATTERN = "^(pending|approved|rejected|reversed)$"


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
        try:
            await change_status(
                writer, conversion, ConversionStatus(data.status), actor=viewer.actor
            )
        except TransitionRefused as refused:
            raise ClientException(
                detail=str(refused),
                status_code=409,
                extra=[
                    {
                        "key": "status",
                        "message": f"allowed from {refused.current}: "
                        + (", ".join(refused.allowed) or "none"),
                    }
                ],
            ) from refused
        await writer.commit()
        await writer.refresh(conversion)
        return conversion_out(conversion)
