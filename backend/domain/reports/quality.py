"""Traffic quality: what was not billed and why, within a viewer's scope.

Clicks are counted by their flags through the report queries (the dimension rollup below its
watermark, raw rows above), so the page stays fast over months of clicks; rejected events by
reason, for admins only (they belong to no partner).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.quality.flags import Flag
from backend.domain.reports.dimensions import Filters
from backend.domain.reports.metrics import collect
from backend.storage.db.models import Conversion, ConversionStatus, RejectedEventRow
from backend.storage.rollups.dimensions import DIMENSIONS


@dataclass(frozen=True, slots=True)
class QualityReport:
    clicks: int
    click_flags: list[tuple[str, int]]
    held_for_review: int
    rejected: list[tuple[str, int]]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def quality_report(
    session: AsyncSession, viewer: Viewer, start: datetime, end: datetime
) -> QualityReport:
    figures = await collect(session, viewer, _ms(start), _ms(end), Filters(), DIMENSIONS["flags"])
    stored = 0
    by_flag: Counter[str] = Counter()
    for (_, flags), metrics in figures.items():
        count = metrics.stored_clicks
        stored += count
        for flag in filter(None, str(flags).split(",")):
            by_flag[flag] += count
    review = viewer.restrict(
        select(func.count())
        .select_from(Conversion)
        .where(
            Conversion.at_ms >= _ms(start),
            Conversion.at_ms < _ms(end),
            Conversion.status == ConversionStatus.PENDING,
            Conversion.flags.contains(Flag.REVIEW.value),
        ),
        Conversion.partner_id,
    )
    rejected: list[tuple[str, int]] = []
    if viewer.is_admin:
        rejected_query = (
            select(RejectedEventRow.reason, func.count())
            .where(RejectedEventRow.at_ms >= _ms(start), RejectedEventRow.at_ms < _ms(end))
            .group_by(RejectedEventRow.reason)
            .order_by(func.count().desc(), RejectedEventRow.reason)
        )
        rejected = [
            (reason, count) for reason, count in (await session.execute(rejected_query)).all()
        ]
    return QualityReport(
        clicks=stored,
        click_flags=sorted(by_flag.items(), key=lambda item: (-item[1], item[0])),
        held_for_review=int(await session.scalar(review) or 0),
        rejected=rejected,
    )
