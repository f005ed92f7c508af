"""fold counted conversions: ``dimension_hourly`` holds only the conversions whose status is
counted (pending, approved), as ``stats_hourly`` always has, so reports stop subtracting the
rejected and reversed ones by joining them to their clicks on every read.

The rows folded so far hold every conversion: the rejected and reversed ones of the folded
hours are taken out of their hour rows, and out of the day rows of the whole days folded, under
the values of their click ('' where there is none any more), which is what the reports
subtracted at read time: every figure reads as before. The downgrade puts them back, and marks
their hours for the fold job to fold again (rows that a fold since dropped come back that way).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR, DAY = 3_600_000, 86_400_000
UNCOUNTED = "('rejected', 'reversed')"
DIMENSIONS = {  # the rollup's text dimensions and their click columns, as of this revision
    "referrer": "referrer_host",
    "landing": "landing_url",
    "device": "device_class",
    "browser": "browser",
    "os": "os",
    "country": "country",
    **{f"sub{n}": f"sub{n}" for n in range(1, 6)},
    **{
        f"utm_{part}": f"utm_{part}" for part in ("source", "medium", "campaign", "term", "content")
    },
    "flags": "flags",
}


def _move_uncounted(sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) the uncounted conversions of the folded hours and
    days to or from the rows they were folded into."""
    bind = op.get_bind()
    watermark = bind.scalar(
        sa.text("SELECT hour_ms FROM rollup_watermarks WHERE name = 'dimension_hourly'")
    )
    if watermark is None:
        return  # nothing folded yet
    for name, column in DIMENSIONS.items():
        for span, size, until in ((1, HOUR, watermark), (24, DAY, watermark // DAY * DAY)):
            bind.execute(
                sa.text(
                    "UPDATE dimension_hourly SET"  # noqa: S608 (names and numbers are ours)
                    f" conversions = dimension_hourly.conversions + {sign} * u.conversions,"
                    f" revenue_minor = dimension_hourly.revenue_minor + {sign} * u.revenue,"
                    " commission_minor = dimension_hourly.commission_minor"
                    f" + {sign} * u.commission"
                    f" FROM (SELECT (v.at_ms / {size}) * {size} AS start_ms,"
                    f" COALESCE(c.{column}, '') AS value, COALESCE(v.partner_id, 0) AS partner,"
                    " v.currency AS currency, COUNT(*) AS conversions,"
                    " SUM(v.amount_minor) AS revenue, SUM(v.commission_minor) AS commission"
                    " FROM conversions v LEFT JOIN clicks c ON c.click_id = v.click_id"
                    f" WHERE v.status IN {UNCOUNTED} AND v.at_ms < :until"
                    f" GROUP BY (v.at_ms / {size}) * {size}, COALESCE(c.{column}, ''),"
                    " COALESCE(v.partner_id, 0), v.currency) AS u"
                    " WHERE dimension_hourly.span_hours = :span"
                    " AND dimension_hourly.dimension = :name"
                    " AND dimension_hourly.hour_ms = u.start_ms"
                    " AND dimension_hourly.value = u.value"
                    " AND dimension_hourly.partner_id = u.partner"
                    " AND dimension_hourly.currency = u.currency"
                ),
                {"until": until, "span": span, "name": name},
            )


def upgrade() -> None:
    _move_uncounted(-1)


def downgrade() -> None:
    _move_uncounted(1)
    op.execute(
        "INSERT INTO rollup_repairs (hour_ms)"  # noqa: S608 (the constants are ours)
        f" SELECT DISTINCT (at_ms / {HOUR}) * {HOUR} FROM conversions"
        f" WHERE status IN {UNCOUNTED}"
        f" AND (at_ms / {HOUR}) * {HOUR} NOT IN (SELECT hour_ms FROM rollup_repairs)"
    )
