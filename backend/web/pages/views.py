"""Server-rendered report pages: the overview, breakdowns, live, quality, install.

They are mounted by ``backend.web.site`` behind sign-in, sessions and CSRF. Every page gets the
app's strict Content-Security-Policy (``backend.web.security_headers``): no script, no inline
style at all.
"""

from __future__ import annotations

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
from backend.domain.reports.breakdown import SHOWN_ROWS, SORTS, breakdown_report
from backend.domain.reports.dimensions import FilterError, Filters, parse_filters
from backend.domain.reports.live import UNREAD_CAP, live_minutes, queue_state
from backend.domain.reports.metrics import visible
from backend.domain.reports.overview import overview_report
from backend.domain.reports.quality import quality_report
from backend.domain.reports.ranges import PRESETS, DateRange, RangeError, resolve_range, zone
from backend.domain.reports.sources import average_order_minor, source_report
from backend.domain.reports.statements import money_summary
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.web.api.deps import CurrentViewer, Reader
from backend.web.pages.chart import lay_out
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


async def _scoped(reader: Reader, viewer: Viewer, filters: Filters) -> None:
    """Another partner's objects do not exist, as far as a partner can tell."""
    if not await visible(reader, viewer, filters):
        raise NotFoundException()


def _wants_csv(request: Request[Any, Any, Any]) -> bool:
    return request.query_params.get("format") == "csv"


def _page_context(period: DateRange, filters: Filters, viewer: Viewer, path: str) -> dict[str, Any]:
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
        "dimensions": DIMENSIONS,
        "href": href,
        "path": path,
    }


@get("/", name="overview")
async def overview(
    request: Request[Any, Any, Any], viewer: CurrentViewer, reader: Reader, state: State
) -> Template | Stream:
    period, filters = _report_params(request)
    await _scoped(reader, viewer, filters)
    report = await overview_report(reader, viewer, period, filters)
    if _wants_csv(request):
        return overview_csv(report)
    settings: Settings = state.settings
    context = _page_context(period, filters, viewer, request.url.path)
    chart = lay_out(
        [(row.label, row.metrics.clicks, row.metrics.conversions) for row in report.rows]
    )
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
            "chart": chart,
            "public_url": settings.public_url,
            "money": money,
        },
    )


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
    await _scoped(reader, viewer, filters)
    csv = _wants_csv(request)
    report = await breakdown_report(
        reader, viewer, period, filters, chosen, sort, order == "desc", None if csv else SHOWN_ROWS
    )
    if csv:
        return breakdown_csv(report)
    context = _page_context(period, filters, viewer, request.url.path)
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
    chart = lay_out([(_minute_label(m.start_ms, tz), m.clicks, m.conversions) for m in minutes])
    return Template(
        "live.html",
        context={
            "minutes": minutes,
            "queue": queue,
            "chart": chart,
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
