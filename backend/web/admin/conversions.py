"""The conversions table and one conversion's page: filters, newest first by keyset, the audit
trail, and decisions (status changes, verification) for one or many at once.

Admins and partner users share the pages (a partner sees only its own conversions, through
``Viewer.restrict``, and "admin" instead of who acted); only admins get the checkboxes and the
forms, whose POSTs live under ``/admin`` behind the admins-only guard. Every change goes through
``change_status`` (as a person's decision: approving a conversion held for review pays by the
rule, or the commission typed on its page) or ``verify``. ``ConversionFilter.statement`` is the
one query behind the table and its CSV export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Stream, Template
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import MoneyError, format_minor, parse_amount
from backend.core.scope import Viewer
from backend.domain.affiliate.commission import rule_commission
from backend.domain.affiliate.status import (
    CommissionRefused,
    TransitionRefused,
    change_status,
    held_for_review,
    verify,
)
from backend.domain.stores.changes import events_of
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Campaign,
    Conversion,
    ConversionStatus,
    Link,
    Merchant,
    Partner,
)
from backend.web.admin.forms import PAGE_SIZE, typed_form
from backend.web.admin.lookups import campaign_names, partner_names
from backend.web.api.conversions import STATUS_PATTERN, history
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.pages.export import CsvCell, csv_stream

Status = Annotated[str | None, QueryParameter(pattern=STATUS_PATTERN)]
OrderSearch = Annotated[str | None, QueryParameter(max_length=128)]
Verified = Annotated[str | None, QueryParameter(pattern="^(yes|no)$")]
Before = Annotated[int | None, QueryParameter(ge=1)]
VERIFY = "verify"
ACTIONS = {
    "approved": "Approve",
    "rejected": "Reject",
    "reversed": "Reverse (refund)",
    VERIFY: "Mark verified (the sale is confirmed)",
}
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class ConversionFilter:
    status: str | None = None
    partner_id: int | None = None
    campaign_id: int | None = None
    order_id: str | None = None
    verified: str | None = None  # "yes", "no", or None for either

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
        if self.verified:
            statement = statement.where(Conversion.verified.is_(self.verified == "yes"))
        return statement

    def page(self, viewer: Viewer, before: int | None, size: int) -> Select[Conversion]:
        """Up to ``size`` matches, newest first, older than the conversion ``before`` if given."""
        statement = self.statement(viewer)
        if before is not None:
            statement = statement.where(Conversion.id < before)
        return statement.order_by(Conversion.id.desc()).limit(size)

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
    rows = (await session.scalars(filters.page(viewer, before, PAGE_SIZE + 1))).all()
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


CSV_HEADER = (
    "id",
    "time_utc",
    "order_id",
    "status",
    "verified",
    "source",
    "merchant_id",
    "partner_id",
    "campaign_id",
    "link_id",
    "amount_minor",
    "commission_minor",
    "currency",
    "flags",
    "attribution",
    "coupon",
)
CSV_CHUNK = 1000


async def csv_rows(
    database: Database, viewer: Viewer, filters: ConversionFilter
) -> AsyncIterator[tuple[CsvCell, ...]]:
    """Every matching conversion, newest first, read in keyset chunks while the download runs
    (in a session of its own: the request's is closed once the response starts)."""
    before: int | None = None
    async with database.session() as session:
        while True:
            chunk = (await session.scalars(filters.page(viewer, before, CSV_CHUNK))).all()
            for conversion in chunk:
                yield (
                    conversion.id,
                    utc_time(conversion.at_ms),
                    conversion.order_id,
                    conversion.status,
                    "yes" if conversion.verified else "no",
                    conversion.source,
                    conversion.merchant_id,
                    conversion.partner_id,
                    conversion.campaign_id,
                    conversion.link_id,
                    conversion.amount_minor,
                    conversion.commission_minor,
                    conversion.currency,
                    conversion.flags,
                    conversion.attribution,
                    conversion.coupon,
                )
            if len(chunk) < CSV_CHUNK:
                return
            before = chunk[-1].id


@get("/conversions", name="conversions")
async def conversions_page(
    viewer: CurrentViewer,
    reader: Reader,
    state: State,
    status: Status = None,
    partner_id: Annotated[int | None, QueryParameter()] = None,
    campaign_id: Annotated[int | None, QueryParameter()] = None,
    order_id: OrderSearch = None,
    verified: Verified = None,
    before: Before = None,
    format: Annotated[str | None, QueryParameter(pattern="^csv$")] = None,
) -> Template | Stream:
    """The table, a page at a time; with ``format=csv`` every matching row, streamed."""
    order_id = (order_id or "").strip() or None
    filters = ConversionFilter(status, partner_id, campaign_id, order_id, verified)
    if format == "csv":
        rows = csv_rows(state.database, viewer, filters)
        return csv_stream("conversions.csv", CSV_HEADER, rows)
    return await _table(reader, viewer, filters, before)


async def decide(
    session: AsyncSession,
    conversion: Conversion,
    action: str,
    viewer: Viewer,
    reason: str,
    commission: int | None = None,
) -> Outcome:
    """Apply one of ``ACTIONS`` to ``conversion`` (the caller commits) and say what happened."""
    if action == VERIFY:
        changed = await verify(session, conversion, actor=viewer.actor, reason=reason)
        message = "verified" if changed else "already verified"
        return Outcome(conversion.id, conversion.order_id, changed, message)
    previous, wanted = conversion.status, ConversionStatus(action)
    earlier = conversion.commission_minor
    try:
        await change_status(
            session,
            conversion,
            wanted,
            actor=viewer.actor,
            reason=reason,
            commission=commission,
            reviewed=True,
        )
    except (TransitionRefused, CommissionRefused) as refused:
        return Outcome(conversion.id, conversion.order_id, False, f"refused: {refused}")
    message = f"{previous} → {wanted}"
    if conversion.commission_minor != earlier:
        currency = conversion.currency
        message += (
            f", commission {format_minor(earlier, currency)}"
            f" → {format_minor(conversion.commission_minor, currency)} {currency}"
        )
    return Outcome(conversion.id, conversion.order_id, True, message)


@post("/conversions/status", status_code=200)
async def change_statuses(
    request: Request[Any, Any, Any],
    viewer: CurrentViewer,
    writer: Writer,
    status: Status = None,
    partner_id: Annotated[int | None, QueryParameter()] = None,
    campaign_id: Annotated[int | None, QueryParameter()] = None,
    order_id: OrderSearch = None,
    verified: Verified = None,
) -> Template:
    """Apply one of ``ACTIONS`` to each ticked conversion; say per conversion what happened."""
    filters = ConversionFilter(status, partner_id, campaign_id, order_id, verified)
    form = await request.form()
    action = str(form.get("action", ""))
    reason = str(form.get("reason", "")).strip()[:MAX_REASON]
    ids = sorted({int(raw) for raw in form.getall("ids", []) if str(raw).isdigit()})
    if action not in ACTIONS or not ids:
        error = "Tick at least one conversion." if action in ACTIONS else "Choose what to do."
        return await _table(writer, viewer, filters, None, error=error, status=400)
    outcomes: list[Outcome] = []
    for conversion_id in ids:
        conversion = await writer.get(Conversion, conversion_id)
        if conversion is None:
            outcomes.append(Outcome(conversion_id, None, False, "no such conversion"))
            continue
        outcomes.append(await decide(writer, conversion, action, viewer, reason))
    await writer.commit()
    return await _table(writer, viewer, filters, None, outcomes=outcomes)


async def _visible(session: AsyncSession, viewer: Viewer, conversion_id: int) -> Conversion:
    """The conversion if ``viewer`` may see it; to a partner, another's does not exist."""
    statement = select(Conversion).where(Conversion.id == conversion_id)
    conversion = await session.scalar(viewer.restrict(statement, Conversion.partner_id))
    if conversion is None:
        raise NotFoundException(f"no conversion with id {conversion_id}")
    return conversion


async def _detail(
    session: AsyncSession,
    viewer: Viewer,
    conversion: Conversion,
    *,
    error: str = "",
    commission_error: str = "",
    typed: Mapping[str, str] | None = None,
    status: int = 200,
) -> Template:
    merchant = await session.get(Merchant, conversion.merchant_id)
    partner = await session.get(Partner, conversion.partner_id) if conversion.partner_id else None
    campaign = (
        await session.get(Campaign, conversion.campaign_id) if conversion.campaign_id else None
    )
    link = await session.get(Link, conversion.link_id) if conversion.link_id else None
    held = held_for_review(conversion)
    context = {
        "held": held,
        "rule_minor": (await rule_commission(session, conversion))[0] if held else 0,
        "viewer": viewer,
        "c": conversion,
        "merchant": merchant,
        "partner": partner,
        "campaign": campaign,
        "link": link,
        "history": await history(session, conversion.id, viewer),
        # The store events (Stripe, Shopify) that created or changed it: admins only.
        "store_events": await events_of(session, conversion.id) if viewer.is_admin else [],
        "actions": ACTIONS,
        "error": error,
        "commission_error": commission_error,
        "typed": typed or {},
        "utc_time": utc_time,
    }
    return Template(
        "conversion.html",
        context=context,
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@get("/conversions/{conversion_id:int}", name="conversion")
async def conversion_page(
    conversion_id: FromPath[int], viewer: CurrentViewer, reader: Reader
) -> Template:
    """One conversion: its fields and who changed it, when and why."""
    return await _detail(reader, viewer, await _visible(reader, viewer, conversion_id))


@post("/conversions/{conversion_id:int}/status", status_code=200)
async def change_one_status(
    request: Request[Any, Any, Any],
    conversion_id: FromPath[int],
    viewer: CurrentViewer,
    writer: Writer,
) -> Template | Redirect:
    """The same decisions as the table's, from the conversion's own page."""
    conversion = await _visible(writer, viewer, conversion_id)
    form = await typed_form(request)
    action = form.get("action", "")
    if action not in ACTIONS:
        return await _detail(
            writer, viewer, conversion, error="Choose what to do.", typed=form, status=400
        )
    reason = form.get("reason", "").strip()[:MAX_REASON]
    try:
        commission = _commission(form.get("commission", ""), conversion.currency)
    except MoneyError as error:
        return await _detail(
            writer, viewer, conversion, commission_error=str(error), typed=form, status=400
        )
    outcome = await decide(writer, conversion, action, viewer, reason, commission)
    if not outcome.changed:  # refused before anything was written
        return await _detail(
            writer, viewer, conversion, error=outcome.message, typed=form, status=409
        )
    await writer.commit()
    return Redirect(f"/conversions/{conversion_id}", status_code=303)


def _commission(typed: str, currency: str) -> int | None:
    """The commission a reviewer typed, as people write money ("3.50"), in minor units of the
    conversion's currency; None when left empty."""
    typed = typed.strip()
    return parse_amount(typed, currency) if typed else None
