"""Server-rendered report pages: the overview, breakdowns, live, quality, install.

They are mounted by ``backend.web.site`` behind sign-in, sessions and CSRF. Every page gets the
app's strict Content-Security-Policy (``backend.web.security_headers``): no script, no inline
style at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template

from backend.core.clock import now_ms
from backend.core.scope import Viewer
from backend.core.settings import Settings
from backend.domain.reports.breakdown import SHOWN_ROWS, SORTS, BreakdownRow, breakdown_report
from backend.domain.reports.dimensions import FilterError, Filters, parse_filters
from backend.domain.reports.live import UNREAD_CAP, live_minutes, queue_state
from backend.domain.reports.metrics import names, visible
from backend.domain.reports.overview import overview_report
from backend.domain.reports.quality import quality_report
from backend.domain.reports.ranges import (
    PRESETS,
    DateRange,
    RangeError,
    resolve_range,
    zone,
    zone_choices,
)
from backend.domain.reports.sources import average_order_minor, source_report
from backend.domain.reports.statements import money_summary
from backend.storage.rollups.dimensions import DIMENSIONS, Dimension
from backend.web.api.deps import CurrentViewer, Reader
from backend.web.pages.chart import NARROW, WIDE, lay_out
from backend.web.pages.export import breakdown_csv, overview_csv, quality_csv, sources_csv
from backend.web.pages.install import install_tags


def _report_params(request: Request[Any, Any, Any]) -> tuple[DateRange, Filters]:
    """The range and filters of a report URL; the zone chosen last is kept in the session."""
    query = request.query_params
    try:
        tz_name = query.get("tz") or request.session.get("tz")
        period = resolve_range(
            query.get("range"),
            _date(query.get("from"), "from"),
            _date(query.get("to"), "to"),
            tz_name,
            query.get("bucket"),
        )
        filters = parse_filters(query)
    except (RangeError, FilterError) as error:
        raise HTTPException(status_code=400, detail=str(error)) from error
    if query.get("tz"):
        request.session["tz"] = period.tz.key
    return period, filters


def _date(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise RangeError(f"'{name}' must be a date like 2026-11-24") from error


@dataclass(frozen=True, slots=True)
class Chip:
    """A filter as the page shows it: ``Partner: Anna's Cycling Blog``, not ``Partner: 1``."""

    name: str
    label: str
    value: str


async def _chips(reader: Reader, viewer: Viewer, filters: Filters) -> list[Chip]:
    """The filters, named; another partner's objects do not exist, as far as a partner can
    tell (404)."""
    if not await visible(reader, viewer, filters):
        raise NotFoundException()
    chips = []
    for name, label, value in filters.described():
        if name in filters.ids:
            shown = await names(reader, DIMENSIONS[name], [filters.ids[name]])
            value = shown.get(filters.ids[name], value)
        chips.append(Chip(name, label, value))
    return chips


def _wants_csv(request: Request[Any, Any, Any]) -> bool:
    return request.query_params.get("format") == "csv"


def _page_context(
    period: DateRange, filters: Filters, viewer: Viewer, path: str, chips: list[Chip] | None = None
) -> dict[str, Any]:
    def href(target: str, **changes: str | int | None) -> str:
        """``target`` with this page's range and filters, changed as given (None drops one)."""
        params: dict[str, Any] = {**period.query(), **filters.query()}
        for name, value in changes.items():
            params.pop(name, None)
            if value is not None:
                params[name] = value
        return f"{target}?{urlencode(params)}"

    return {
        "period": period,
        "filters": filters,
        "viewer": viewer,
        "presets": PRESETS,
        "zones": zone_choices(),
        "chips": chips or [],
        "dimensions": DIMENSIONS,
        "href": href,
        "path": path,
    }


@get("/", name="overview")
async def overview(
    request: Request[Any, Any, Any], viewer: CurrentViewer, reader: Reader, state: State
) -> Template | Stream:
    period, filters = _report_params(request)
    chips = await _chips(reader, viewer, filters)
    report = await overview_report(reader, viewer, period, filters)
    if _wants_csv(request):
        return overview_csv(report)
    settings: Settings = state.settings
    context = _page_context(period, filters, viewer, request.url.path, chips)
    series = [(row.label, row.metrics.clicks, row.metrics.conversions) for row in report.rows]
    before = [row.metrics.clicks for row in report.previous_rows]
    charts = {
        "wide": lay_out(series, before, WIDE),
        "narrow": lay_out(series, before, NARROW),
    }
    panels = [
        await _panel(reader, viewer, period, filters, DIMENSIONS[name])
        for name in (ADMIN_PANELS if viewer.is_admin else PARTNER_PANELS)
        if name not in filters.ids and name not in filters.texts
    ]
    money = (
        None
        if viewer.partner_id is None
        else await money_summary(reader, viewer.partner_id, now_ms())
    )
    return Template(
        "overview.html",
        context={
            **context,
            "report": report,
            "charts": charts,
            "panels": panels,
            "public_url": settings.public_url,
            "money": money,
        },
    )


ADMIN_PANELS = ("partner", "campaign", "referrer", "country", "device")
PARTNER_PANELS = ("link", "campaign", "referrer", "country", "device")
PANEL_ROWS = 5


@dataclass(frozen=True, slots=True)
class Panel:
    """The overview's top few values of one dimension, each with its share of the clicks."""

    dimension: Dimension
    rows: list[BreakdownRow]
    clicks: int  # of every value, the shares' whole
    more: bool  # values beyond those shown


async def _panel(
    reader: Reader, viewer: Viewer, period: DateRange, filters: Filters, dimension: Dimension
) -> Panel:
    report = await breakdown_report(reader, viewer, period, filters, dimension, limit=None)
    # The shop's own sales are no partner's, campaign's or link's: not a row of these panels.
    rows = [row for row in report.rows if not (dimension.is_id and row.key == 0)]
    return Panel(dimension, rows[:PANEL_ROWS], report.totals.clicks, len(rows) > PANEL_ROWS)


@get("/breakdown/{dimension:str}", name="breakdown")
async def breakdown(
    request: Request[Any, Any, Any],
    viewer: CurrentViewer,
    reader: Reader,
    dimension: FromPath[str],
    sort: FromQuery[str] = "clicks",
    order: FromQuery[str] = "desc",
) -> Template | Stream:
    """One row per value; every row links to the overview filtered to it."""
    chosen = DIMENSIONS.get(dimension)
    if chosen is None:
        raise NotFoundException()
    if sort not in SORTS or order not in ("asc", "desc"):
        raise HTTPException(status_code=400, detail=f"sort by one of {', '.join(SORTS)}")
    period, filters = _report_params(request)
    chips = await _chips(reader, viewer, filters)
    csv = _wants_csv(request)
    report = await breakdown_report(
        reader, viewer, period, filters, chosen, sort, order == "desc", None if csv else SHOWN_ROWS
    )
    if csv:
        return breakdown_csv(report)
    context = _page_context(period, filters, viewer, request.url.path, chips)
    return Template("breakdown.html", context={**context, "report": report, "sorts": SORTS})


@get("/live", name="live")
async def live(
    request: Request[Any, Any, Any], viewer: CurrentViewer, reader: Reader, state: State
) -> Template:
    """The last 30 minutes, reloading itself every 15 s (a meta refresh: no script), in the
    time zone the viewer last chose."""
    settings: Settings = state.settings
    try:
        tz = zone(request.session.get("tz"))
    except RangeError:
        tz = zone(None)
    moment = now_ms()
    minutes = await live_minutes(reader, viewer, moment)
    queue = (
        await queue_state(state.redis, settings.stream, settings.consumer_group, moment)
        if viewer.is_admin
        else None
    )
    series = [(_minute_label(m.start_ms, tz), m.clicks, m.conversions) for m in minutes]
    charts = {"wide": lay_out(series, frame=WIDE), "narrow": lay_out(series, frame=NARROW)}
    return Template(
        "live.html",
        context={
            "minutes": minutes,
            "queue": queue,
            "charts": charts,
            "viewer": viewer,
            "unread_cap": UNREAD_CAP,
            "tz": tz.key,
            "quiet": not any(m.clicks or m.conversions for m in minutes),
        },
    )


def _minute_label(at_ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(tz).strftime("%H:%M")


@get("/quality", name="quality")
async def quality(
    request: Request[Any, Any, Any], viewer: CurrentViewer, reader: Reader
) -> Template | Stream:
    """What was not billed, and why: flagged clicks, conversions held for review, rejects."""
    period, _ = _report_params(request)
    start = datetime.fromtimestamp(period.start_ms / 1000, UTC)
    end = datetime.fromtimestamp(period.end_ms / 1000, UTC)
    report = await quality_report(reader, viewer, start, end)
    if _wants_csv(request):
        return quality_csv(report)
    context = _page_context(period, Filters(), viewer, request.url.path)
    return Template("quality.html", context={**context, "report": report})


@get("/sources", name="sources")
async def sources(
    request: Request[Any, Any, Any], viewer: CurrentViewer, reader: Reader
) -> Template | Stream:
    """Per network (conversion source): clicks, conversions, conversion rate, revenue,
    commission and average order value, with a daily breakdown (UTC days)."""
    period, _ = _report_params(request)
    report = await source_report(reader, viewer, period.start_ms, period.end_ms)
    if _wants_csv(request):
        return sources_csv(report)
    context = _page_context(period, Filters(), viewer, request.url.path)
    return Template(
        "sources.html", context={**context, "report": report, "aov": average_order_minor}
    )


@get("/install", name="install")
async def install(viewer: CurrentViewer, reader: Reader, state: State) -> Template:
    """The tags to paste on merchant and publisher pages."""
    installs = await install_tags(reader, viewer, state.settings, state.snippet)
    return Template("install.html", context={"installs": installs, "viewer": viewer})


PAGE_HANDLERS = [overview, breakdown, live, quality, sources, install]
