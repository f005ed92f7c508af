"""fold counted conversions, count converted clicks: ``dimension_hourly`` holds only the
conversions whose status is counted (pending, approved), as ``stats_hourly`` always has, so
reports stop subtracting the rejected and reversed ones by joining them to their clicks on every
read; and ``stats_hourly.converted_clicks`` counts the clicks of each hour that converted, so the
overview stops counting the conversions of every click in its range.

The rows folded so far hold every conversion: the rejected and reversed ones of the folded
hours are taken out of their hour rows, and out of the day rows of the whole days folded, under
the values of their click ('' where there is none any more), which is what the reports
subtracted at read time: every figure reads as before. Converted clicks are counted from the
conversions stored, each click once, in its hour, under its first counted conversion that is
not a bot's or a flagged click's (``backend.domain.affiliate.converted``). The downgrade puts
the uncounted conversions back, and marks their hours for the fold job to fold again (rows that
a fold since dropped come back that way), and drops the column.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

from backend.core.ids import clicked_ms

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR, DAY = 3_600_000, 86_400_000
UNCOUNTED = "('rejected', 'reversed')"
KEY = ("hour_ms", "merchant_id", "link_id", "currency", "partner_id", "campaign_id")
COUNTERS = (
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "impressions",
    "conversions",
    "revenue_minor",
    "commission_minor",
    "converted_clicks",
)
CONVERTS = (  # a counted conversion that is not a bot's or a flagged click's (SQL, of ``{t}``)
    "{t}.status IN ('pending', 'approved') AND {t}.flags NOT LIKE '%bot_click%'"
    " AND {t}.flags NOT LIKE '%flagged_click%'"
)
HOLDERS = (  # each converted click's first such conversion
    "SELECT"  # noqa: S608 (the conditions are ours)
    " v.click_id, v.merchant_id, v.link_id, v.currency, v.partner_id, v.campaign_id"
    " FROM conversions v WHERE v.click_id IS NOT NULL AND "
    + CONVERTS.format(t="v")
    + " AND NOT EXISTS (SELECT 1 FROM conversions w WHERE w.click_id = v.click_id"
    " AND w.id < v.id AND " + CONVERTS.format(t="w") + ")"
)
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


def _count_converted_clicks() -> None:
    bind = op.get_bind()
    totals: dict[tuple[int, int, int, str, int, int], int] = {}
    for click_id, merchant, link, currency, partner, campaign in bind.execute(sa.text(HOLDERS)):
        clicked = clicked_ms(click_id)
        if clicked is not None:
            key = (
                clicked // HOUR * HOUR,
                merchant,
                link or 0,
                currency,
                partner or 0,
                campaign or 0,
            )
            totals[key] = totals.get(key, 0) + 1
    if not totals:
        return
    stats = sa.table("stats_hourly", *(sa.column(name) for name in (*KEY, *COUNTERS)))
    statement = (postgresql if bind.dialect.name == "postgresql" else sqlite).insert(stats)
    statement = statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={"converted_clicks": stats.c.converted_clicks + statement.excluded.converted_clicks},
    )
    zeros = dict.fromkeys(COUNTERS, 0)
    rows = [
        {**dict(zip(KEY, key, strict=True)), **zeros, "converted_clicks": count}
        for key, count in totals.items()
    ]
    for start in range(0, len(rows), 5_000):
        bind.execute(statement, rows[start : start + 5_000])


def upgrade() -> None:
    _move_uncounted(-1)
    op.add_column(
        "stats_hourly",
        sa.Column("converted_clicks", sa.BigInteger(), nullable=False, server_default="0"),
    )
    _count_converted_clicks()


def downgrade() -> None:
    op.drop_column("stats_hourly", "converted_clicks")
    _move_uncounted(1)
    op.execute(
        "INSERT INTO rollup_repairs (hour_ms)"  # noqa: S608 (the constants are ours)
        f" SELECT DISTINCT (at_ms / {HOUR}) * {HOUR} FROM conversions"
        f" WHERE status IN {UNCOUNTED}"
        f" AND (at_ms / {HOUR}) * {HOUR} NOT IN (SELECT hour_ms FROM rollup_repairs)"
    )
