"""The conversions table: filters, newest first by keyset, and status decisions for many at once.

Admins and partner users share the page (a partner sees only its own conversions, through
``Viewer.restrict``); only admins get the checkboxes and the form, whose POST lives under
``/admin`` behind the admins-only guard. Every change goes through ``change_status``.
``ConversionFilter.statement`` is the one query behind the table, ready for an export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.params import QueryParameter
from litestar.response import Template
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.admin.forms import PAGE_SIZE
from backend.admin.lookups import campaign_names, partner_names
from backend.affiliate.status import TransitionRefused, change_status
from backend.api.conversions import STATUS_PATTERN
from backend.api.deps import CurrentViewer, Reader, Writer
from backend.db.models import Conversion, ConversionStatus
from backend.scope import Viewer

Status = Annotated[str | None, QueryParameter(pattern=STATUS_PATTERN)]
OrderSearch = Annotated[str | None, QueryParameter(max_length=128)]
Before = Annotated[int | None, QueryParameter(ge=1)]
ACTIONS = {
    "approved": "Approve",
    "rejected": "Reject",
    "reversed": "Reverse (refund)",
}
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class ConversionFilter:
    status: str | None = None
    partner_id: int | None = None
    campaign_id: int | None = None
    order_id: str | None = None

    def statement(self, viewer: Viewer) -> Select[Conversion]:
        """The viewer's conversions that match; an order id matches by its beginning."""
        statement = viewer.restrict(select(Conversion), Conversion.partner_id)
        if self.status:
            statement = statement.where(Conversion.status == self.status)
        if self.partner_id is not None:
            statement = statement.where(Conversion.partner_id == self.partner_id)
        if self.campaign_id is not None:
            statement = statement.where(Conversion.campaign_id == self.campaign_id)
        if self.order_id:
            statement = statement.where(
                Conversion.order_id.startswith(self.order_id, autoescape=True)
            )
        return statement

    def query_string(self) -> str:
        """The filters as a URL query, for the next page and the form's action."""
        pairs = [(field.name, getattr(self, field.name)) for field in fields(self)]
        return urlencode([(name, value) for name, value in pairs if value not in (None, "")])


@dataclass(frozen=True, slots=True)
class Outcome:
    conversion_id: int
    order_id: str | None
    changed: bool
    message: str


def utc_time(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


async def _table(
    session: AsyncSession,
    viewer: Viewer,
    filters: ConversionFilter,
    before: int | None,
    *,
    outcomes: Sequence[Outcome] = (),
    error: str = "",
    status: int = 200,
) -> Template:
    statement = filters.statement(viewer)
    if before is not None:
        statement = statement.where(Conversion.id < before)
    rows = (
        await session.scalars(statement.order_by(Conversion.id.desc()).limit(PAGE_SIZE + 1))
    ).all()
    query = filters.query_string()
    context = {
        "viewer": viewer,
        "conversions": rows[:PAGE_SIZE],
        "next_before": rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None,
        "filters": filters,
        "query": query,
        "statuses": [status.value for status in ConversionStatus],
        "partners": await partner_names(session) if viewer.is_admin else {},
        "campaigns": await campaign_names(session, viewer),
        "actions": ACTIONS,
        "outcomes": outcomes,
        "error": error,
        "utc_time": utc_time,
    }
    return Template("conversions.html", context=context, status_code=status)


@get("/conversions", name="conversions")
async def conversions_page(
    viewer: CurrentViewer,
    reader: Reader,
    status: Status = None,
    partner_id: Annotated[int | None, QueryParameter()] = None,
    campaign_id: Annotated[int | None, QueryParameter()] = None,
    order_id: OrderSearch = None,
    before: Before = None,
) -> Template:
    filters = ConversionFilter(status, partner_id, campaign_id, (order_id or "").strip() or None)
    return await _table(reader, viewer, filters, before)


@post("/conversions/status", status_code=200)
async def change_statuses(
    request: Request[Any, Any, Any],
    viewer: CurrentViewer,
    writer: Writer,
    status: Status = None,
    partner_id: Annotated[int | None, QueryParameter()] = None,
    campaign_id: Annotated[int | None, QueryParameter()] = None,
    order_id: OrderSearch = None,
) -> Template:
    """Approve, reject or reverse the ticked conversions; say per conversion what happened."""
    filters = ConversionFilter(status, partner_id, campaign_id, order_id)
    form = await request.form()
    action = form.get("action", "")
    reason = str(form.get("reason", "")).strip()[:MAX_REASON]
    ids = sorted({int(raw) for raw in form.getall("ids", []) if str(raw).isdigit()})
    if action not in ACTIONS or not ids:
        error = "Tick at least one conversion." if action in ACTIONS else "Choose what to do."
        return await _table(writer, viewer, filters, None, error=error, status=400)
    wanted = ConversionStatus(action)
    outcomes: list[Outcome] = []
    for conversion_id in ids:
        conversion = await writer.get(Conversion, conversion_id)
        if conversion is None:
            outcomes.append(Outcome(conversion_id, None, False, "no such conversion"))
            continue
        previous = conversion.status
        try:
            await change_status(writer, conversion, wanted, actor=viewer.actor, reason=reason)
        except TransitionRefused as refused:
            outcomes.append(
                Outcome(conversion_id, conversion.order_id, False, f"refused: {refused}")
            )
            continue
        outcomes.append(Outcome(conversion_id, conversion.order_id, True, f"{previous} → {wanted}"))
    await writer.commit()
    return await _table(writer, viewer, filters, None, outcomes=outcomes)
