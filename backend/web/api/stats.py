"""``GET /api/v1/stats``: totals and breakdowns from the hourly rollup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from litestar import get
from litestar.params import FromQuery, QueryParameter

from backend.core.validation import FieldError
from backend.domain.reports.dimensions import MAX_FILTER_LENGTH, Filters
from backend.domain.reports.stats import GroupBy, StatsReport, stats_report
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.web.api.deps import ANY_KEY, CurrentViewer, Reader
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import QueryId


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


Text = Annotated[str | None, QueryParameter(max_length=MAX_FILTER_LENGTH)]


@get("/stats", tags=["stats"], raises=ANY_KEY, opt=PARTNER_KEYS)
async def stats(
    viewer: CurrentViewer,
    reader: Reader,
    from_: Annotated[date | None, QueryParameter(name="from")] = None,
    to: FromQuery[date | None] = None,
    group_by: FromQuery[GroupBy | None] = None,
    partner: QueryId = None,
    campaign: QueryId = None,
    link: QueryId = None,
    referrer: Text = None,
    landing: Text = None,
    device: Text = None,
    browser: Text = None,
    os: Text = None,
    country: Text = None,
    sub1: Text = None,
    sub2: Text = None,
    sub3: Text = None,
    sub4: Text = None,
    sub5: Text = None,
    utm_source: Text = None,
    utm_medium: Text = None,
    utm_campaign: Text = None,
    utm_term: Text = None,
    utm_content: Text = None,
    flags: Text = None,
) -> StatsReport:
    """UTC days ``from`` to ``to``, both included (default: the last 7 days up to today),
    grouped and filtered by the report pages' dimensions under the same names (a filter naming
    what the key may not see finds nothing)."""
    given = {name: value for name, value in locals().items() if name in DIMENSIONS}
    filters = Filters(
        ids={name: value for name, value in given.items() if isinstance(value, int)},
        texts={name: value for name, value in given.items() if isinstance(value, str)},
    )
    if group_by == "source" and (filters.ids or filters.texts):
        raise FieldError("group_by", "a grouping by source takes no filter")
    today = datetime.now(UTC).date()
    last = to or today
    first = from_ or last - timedelta(days=6)
    if first > last:
        raise FieldError("from", "must not be after 'to'")
    if last == date.max:
        raise FieldError("to", f"must be before {date.max}")  # its end would overflow
    if (last - first).days > 3660:
        raise FieldError("from", "at most ten years at a time")
    return await stats_report(
        reader, viewer, _day_start(first), _day_start(last + timedelta(days=1)), group_by, filters
    )
