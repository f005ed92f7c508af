"""``GET /api/v1/stats``: totals and breakdowns from the hourly rollup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from litestar import get
from litestar.params import FromQuery, QueryParameter

from backend.core.validation import FieldError
from backend.domain.reports.stats import GroupBy, StatsReport, stats_report
from backend.web.api.deps import ANY_KEY, CurrentViewer, Reader
from backend.web.api.keys import PARTNER_KEYS


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@get("/stats", tags=["stats"], raises=ANY_KEY, opt=PARTNER_KEYS)
async def stats(
    viewer: CurrentViewer,
    reader: Reader,
    from_: Annotated[date | None, QueryParameter(name="from")] = None,
    to: FromQuery[date | None] = None,
    group_by: FromQuery[GroupBy | None] = None,
) -> StatsReport:
    """UTC days ``from`` to ``to``, both included (default: the last 7 days up to today)."""
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
        reader, viewer, _day_start(first), _day_start(last + timedelta(days=1)), group_by
    )
