"""Report pages against independent SQL over the raw rows: overview, breakdowns (hourly stats,
the dimension rollup with its raw tail, and raw rows), time zones, partner isolation, CSV."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text

from backend.core.clock import HOUR_MS, now_ms
from backend.core.settings import Settings
from backend.domain.events import QueuedEvent, Visitor
from backend.domain.reports.overview import comparable_end
from backend.domain.reports.ranges import RangeError, resolve_range
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion
from backend.storage.rollups.by_dimension import CLICKS, fold_closed_hours
from backend.storage.rollups.dimensions import DIMENSIONS
from backend.storage.rollups.measures import CLICK_COUNTERS, click_counters
from backend.tooling.bench.report_data import generate
from backend.web.pages.export import neutralise
from backend.worker.consumer import StreamConsumer
from backend.worker.main import worker_options
from backend.worker.steps.write import write_batch
from tests.support import (
    BROWSER,
    BROWSER_HEADERS,
    Programme,
    add_partner_with_link,
    add_user,
    click_at,
    follow_link,
    impression_at,
    post_json,
    sign_in,
)

CLICKS_IN_SPAN = "SELECT count(*) FROM clicks WHERE at_ms >= :start AND at_ms < :end"
CONVERSIONS_IN_SPAN = (
    "SELECT count(*) FROM conversions WHERE at_ms >= :start AND at_ms < :end"
    " AND status IN ('pending', 'approved') AND currency = 'EUR'"
)
# Independent counts by click dimension: billable clicks, and counted conversions under the
# dimension value of their click.
BY_VALUE = {
    column: (
        f"SELECT {column}, count(*) FROM clicks WHERE flags = '' GROUP BY {column}",  # noqa: S608
        f"SELECT coalesce(c.{column}, ''), count(*) FROM conversions v"  # noqa: S608
        " LEFT JOIN clicks c ON c.click_id = v.click_id"
        " WHERE v.status IN ('pending', 'approved') GROUP BY 1",
    )
    for column in ("referrer_host", "sub1", "device_class")
}


async def scalar(database: Database, sql: str, **params: Any) -> int:
    async with database.session() as session:
        return int((await session.execute(text(sql), params)).scalar_one() or 0)


async def grouped(database: Database, sql: str, **params: Any) -> dict[str, int]:
    async with database.session() as session:
        return {str(k): int(v) for k, v in (await session.execute(text(sql), params)).all()}


def kpi(page: str, key: str) -> str:
    match = re.search(rf'<strong id="kpi-{key}">([^<]*)</strong>', page)
    assert match, f"no tile {key}"
    return match.group(1)


def csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def utc_day_range(days: int) -> tuple[int, int]:
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)
    return int(start.timestamp() * 1000), int(start.timestamp() * 1000) + days * 24 * HOUR_MS


@pytest.fixture
async def traffic(client: AsyncTestClient[Any], database: Database, programme: Programme) -> int:
    """Two partners' clicks and conversions over the last three days, folded up to an hour
    ago (the rest is the raw tail). Returns the second partner's id."""
    other, _ = await add_partner_with_link(client, programme, "Other blog")
    end = now_ms()
    await generate(database, 4_000, 400, end - 3 * 24 * HOUR_MS, end, seed=7)
    assert await fold_closed_hours(database) > 0
    return int(other["id"])


async def test_overview_tiles_equal_raw_counts(
    client: AsyncTestClient[Any], database: Database, traffic: int
) -> None:
    await sign_in(client, database)
    page = await client.get("/", params={"range": "7d"})
    assert page.status_code == 200
    start, end = utc_day_range(7)
    span = {"start": start, "end": end}
    clicks = await scalar(database, CLICKS_IN_SPAN + " AND flags = ''", **span)
    unique = await scalar(database, CLICKS_IN_SPAN + " AND is_unique", **span)
    from_partners = CONVERSIONS_IN_SPAN + " AND partner_id IS NOT NULL"
    conversions = await scalar(database, from_partners, **span)
    revenue = await scalar(database, from_partners.replace("count(*)", "sum(amount_minor)"), **span)
    converted = await scalar(
        database,
        "SELECT count(DISTINCT v.click_id) FROM conversions v JOIN clicks c"
        " ON c.click_id = v.click_id AND c.at_ms >= :start AND c.at_ms < :end AND c.flags = ''"
        " WHERE v.status IN ('pending', 'approved')",
        **span,
    )
    assert clicks > 3_000
    assert kpi(page.text, "clicks") == str(clicks)
    assert kpi(page.text, "unique") == str(unique)
    assert kpi(page.text, "conversions") == str(conversions)
    assert kpi(page.text, "revenue-EUR") == f"€{revenue // 100:,}.{revenue % 100:02d}"
    assert kpi(page.text, "conversion-rate") == f"{converted / clicks * 100:.1f}%"
    assert '<svg class="chart wide"' in page.text
    assert '<svg class="chart narrow"' in page.text
    assert '<title id="chart-title-wide">' in page.text
    assert " style=" not in page.text
    # The period before is drawn too: one point per bucket it has.
    previous = re.search(
        r'<svg class="chart wide".*?<polyline class="previous" points="([^"]+)"',
        page.text,
        re.DOTALL,
    )
    assert previous is not None
    assert len(previous[1].split()) == 7

    daily = csv_rows((await client.get("/", params={"range": "7d", "format": "csv"})).text)
    assert len(daily) == 7
    assert sum(int(row["clicks"]) for row in daily) == clicks


async def test_ctr_compares_clicks_and_impressions_of_the_same_links(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    """Four impressions and one click of a link on a page with the snippet, three clicks of a
    link shared where nothing counts impressions (a newsletter): CTR 25%, not 100%."""
    _, newsletter = await add_partner_with_link(client, programme, "Newsletter")
    at_ms = now_ms() - 60_000

    def visitor(n: int) -> Visitor:
        return Visitor("198.51.100.0/24", f"{n:032d}", BROWSER, True)

    events: list[QueuedEvent] = [impression_at(programme, at_ms, visitor(n)) for n in range(4)]
    events.append(click_at(programme, at_ms, visitor(10)))
    events += [click_at(programme, at_ms, visitor(20 + n), newsletter) for n in range(3)]
    await write_batch(database, await consumer.pipeline.prepare(events))

    await sign_in(client, database)
    page = (await client.get("/", params={"range": "today"})).text
    assert kpi(page, "clicks") == "4"
    assert kpi(page, "impressions") == "4"
    assert kpi(page, "ctr") == "25.0%"


async def test_hourly_stats_count_clicks_as_the_raw_rows_do(
    database: Database, traffic: int
) -> None:
    """The rollup's rows (written click by click through ``measures.click_counts``) and the
    raw-row reports (``measures.click_counters`` in SQL) define each counter alike."""
    sums = ", ".join(f"sum({name})" for name in CLICK_COUNTERS)
    async with database.session() as session:
        hourly = (await session.execute(text(f"SELECT {sums} FROM stats_hourly"))).one()  # noqa: S608
        raw = (await session.execute(select(*click_counters(CLICKS.c)))).one()
    assert tuple(hourly) == tuple(raw)
    assert all(raw)


@pytest.mark.parametrize("group_by", ["day", "partner", "campaign", "link"])
async def test_stats_api_rows_add_up_to_its_totals_and_the_raw_rows(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    traffic: int,
    group_by: str,
) -> None:
    answer = await client.get(f"/api/v1/stats?group_by={group_by}", headers=programme.headers)
    assert answer.status_code == 200
    report = answer.json()
    start, end = utc_day_range(7)
    span = {"start": start, "end": end}
    totals = report["totals"]
    assert totals["clicks"] == await scalar(database, CLICKS_IN_SPAN + " AND flags = ''", **span)
    assert totals["conversions"] == await scalar(database, CONVERSIONS_IN_SPAN, **span)
    keys = [row["key"] for row in report["rows"]]
    assert keys == sorted(keys)
    assert len(keys) > 1
    for name in ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks", "conversions"):
        assert sum(row["totals"][name] for row in report["rows"]) == totals[name]


@pytest.mark.parametrize(
    ("dimension", "column"),
    [("referrer", "referrer_host"), ("sub1", "sub1"), ("device", "device_class")],
)
async def test_breakdowns_from_rollup_and_raw_tail_equal_raw_counts(
    client: AsyncTestClient[Any], database: Database, traffic: int, dimension: str, column: str
) -> None:
    await sign_in(client, database)
    start, end = utc_day_range(30)
    watermark = await scalar(database, "SELECT hour_ms FROM rollup_watermarks")
    assert start < watermark < end  # both the rollup and the raw tail are read
    response = await client.get(f"/breakdown/{dimension}", params={"range": "30d", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = {row[dimension].replace("(none)", ""): row for row in csv_rows(response.text)}
    click_sql, conversion_sql = BY_VALUE[column]
    clicks = await grouped(database, click_sql)
    conversions = await grouped(database, conversion_sql)
    assert {key: int(row["clicks"]) for key, row in rows.items() if int(row["clicks"])} == clicks
    assert {
        key: int(row["conversions"]) for key, row in rows.items() if int(row["conversions"])
    } == conversions


async def test_combined_filters_read_raw_rows_and_match(
    client: AsyncTestClient[Any], database: Database, programme: Programme, traffic: int
) -> None:
    await sign_in(client, database)
    partner = programme.partner["id"]
    params = {"range": "30d", "partner": str(partner), "sub1": "post-1", "device": "mobile"}
    rows = csv_rows(
        (await client.get("/breakdown/browser", params={**params, "format": "csv"})).text
    )
    expected = await grouped(
        database,
        "SELECT browser, count(*) FROM clicks WHERE flags = '' AND partner_id = :p"
        " AND sub1 = 'post-1' AND device_class = 'mobile' GROUP BY browser",
        p=partner,
    )
    assert expected
    assert {row["browser"]: int(row["clicks"]) for row in rows} == expected
    page = await client.get("/", params=params)
    assert kpi(page.text, "clicks") == str(sum(expected.values()))
    # a single text filter with a partner reads the rollup: the same figure either way
    single = await client.get(
        "/", params={"range": "30d", "partner": str(partner), "sub1": "post-1"}
    )
    assert kpi(single.text, "clicks") == str(
        await scalar(
            database,
            "SELECT count(*) FROM clicks WHERE flags = '' AND partner_id = :p AND sub1 = 'post-1'",
            p=partner,
        )
    )


async def test_a_partner_sees_only_their_own_figures(
    client: AsyncTestClient[Any], database: Database, programme: Programme, traffic: int
) -> None:
    own = programme.partner["id"]
    await add_user(database, "blog@example.com", role="partner", partner_id=own)
    await sign_in(client, database, "blog@example.com")
    own_clicks = await scalar(
        database, "SELECT count(*) FROM clicks WHERE flags = '' AND partner_id = :p", p=own
    )
    all_clicks = await scalar(database, "SELECT count(*) FROM clicks WHERE flags = ''")
    assert 0 < own_clicks < all_clicks

    page = await client.get("/", params={"range": "30d"})
    assert kpi(page.text, "clicks") == str(own_clicks)
    assert '<a href="/breakdown/link">Breakdowns</a>' in page.text  # their links, not partners
    by_partner = csv_rows(
        (await client.get("/breakdown/partner", params={"range": "30d", "format": "csv"})).text
    )
    assert [row["partner"] for row in by_partner] == ["Blog"]
    by_referrer = csv_rows(
        (await client.get("/breakdown/referrer", params={"range": "30d", "format": "csv"})).text
    )
    assert sum(int(row["clicks"]) for row in by_referrer) == own_clicks
    other_link = await scalar(database, "SELECT id FROM links WHERE partner_id = :p", p=traffic)
    for path, params in [
        ("/", {"partner": str(traffic)}),
        ("/breakdown/referrer", {"partner": str(traffic), "format": "csv"}),
        ("/", {"link": str(other_link)}),
        ("/breakdown/sub1", {"link": str(other_link), "format": "csv"}),
        ("/", {"partner": "999999"}),
    ]:
        assert (await client.get(path, params=params)).status_code == 404, (path, params)
    own_link = await client.get("/", params={"link": str(programme.link["id"]), "range": "30d"})
    assert own_link.status_code == 200
    assert (await client.get("/", params={"campaign": str(programme.campaign["id"])})).is_success
    unlinked = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": programme.merchant["id"],
            "name": "Not yours",
            "destination_url": "https://shop.example/other",
            "commission_percent": "5",
            "commission_flat_minor": 0,
        },
        programme.headers,
    )
    assert (await client.get("/", params={"campaign": str(unlinked["id"])})).status_code == 404


async def test_hostile_referrers_and_sub_ids_are_escaped_and_neutralised(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    hostile = '=HYPERLINK("http://evil.example","x")<script>alert(1)</script>'
    await client.get(
        f"/c/{programme.link['code']}",
        params={"sub1": hostile, "sub2": "@SUM(1+1)"},
        headers={**BROWSER_HEADERS, "Referer": "https://<img src=x onerror=alert(1)>.example/"},
    )
    await follow_link(client, programme.link["code"])
    await consumer.drain()
    await sign_in(client, database)

    page = await client.get("/breakdown/sub1", params={"range": "today"})
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    filtered = await client.get("/", params={"range": "today", "sub1": hostile})
    assert filtered.status_code == 200
    assert "<script>alert(1)</script>" not in filtered.text
    assert kpi(filtered.text, "clicks") == "1"
    referrers = await client.get("/breakdown/referrer", params={"range": "today"})
    assert "<img src=x" not in referrers.text

    exported = await client.get("/breakdown/sub1", params={"range": "today", "format": "csv"})
    values = [row["sub1"] for row in csv_rows(exported.text)]
    assert "'" + hostile in values
    sub2 = csv_rows(
        (await client.get("/breakdown/sub2", params={"range": "today", "format": "csv"})).text
    )
    assert "'@SUM(1+1)" in [row["sub2"] for row in sub2]


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised() -> None:
    for formula in ("=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise(formula) == "'" + formula
    assert neutralise("plain") == "plain"
    assert neutralise(-5) == "-5"  # numbers stay numbers
    assert neutralise(None) == ""


async def test_a_dst_day_in_the_viewers_zone_counts_its_23_hours(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    day = date(2026, 3, 29)  # clocks go forward at 02:00: 23 hours
    local_start = datetime(2026, 3, 29, tzinfo=berlin)
    local_end = datetime(2026, 3, 30, tzinfo=berlin)
    start_ms = int(local_start.timestamp() * 1000)
    end_ms = int(local_end.timestamp() * 1000)
    assert end_ms - start_ms == 23 * HOUR_MS
    await generate(database, 2_000, 200, start_ms - 3 * HOUR_MS, end_ms + 3 * HOUR_MS, seed=3)
    await fold_closed_hours(database)
    await sign_in(client, database)
    params = {
        "range": "custom",
        "from": day.isoformat(),
        "to": day.isoformat(),
        "tz": "Europe/Berlin",
        "bucket": "hour",
    }
    expected = await scalar(
        database,
        "SELECT count(*) FROM clicks WHERE flags = '' AND at_ms >= :s AND at_ms < :e",
        s=start_ms,
        e=end_ms,
    )
    page = await client.get("/", params=params)
    assert kpi(page.text, "clicks") == str(expected)
    hourly = csv_rows((await client.get("/", params={**params, "format": "csv"})).text)
    assert len(hourly) == 23
    assert [row["bucket"] for row in hourly[:4]] == ["00:00", "01:00", "03:00", "04:00"]
    by_device = csv_rows(
        (await client.get("/breakdown/device", params={**params, "format": "csv"})).text
    )
    assert sum(int(row["clicks"]) for row in by_device) == expected
    # the zone is remembered for the next page without a tz parameter
    again = await client.get(
        "/", params={"range": "custom", "from": "2026-03-29", "to": "2026-03-29"}
    )
    assert kpi(again.text, "clicks") == str(expected)


async def test_bad_ranges_and_filters_get_a_clear_400(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    for params in (
        {"tz": "../../etc/passwd"},
        {"tz": "Mars/Olympus"},
        {"range": "custom", "from": "2026-01-02"},
        {"range": "custom", "from": "2026-02-01", "to": "2026-01-01"},
        {"range": "fortnight"},
        {"partner": "abc"},
    ):
        response = await client.get("/", params=params)
        assert response.status_code == 400, params
    assert (await client.get("/breakdown/nothing")).status_code == 404
    assert (await client.get("/breakdown/sub1", params={"sort": "bogus"})).status_code == 400


async def test_empty_overview_tells_a_new_user_what_to_do(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    page = await client.get("/")
    assert "No traffic in this period" in page.text
    assert 'href="/install"' in page.text


async def test_live_page_counts_the_last_minutes_and_shows_the_queue(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: StreamConsumer
) -> None:
    for _ in range(3):
        await follow_link(client, programme.link["code"])
    await consumer.drain()
    await follow_link(client, programme.link["code"])  # still in the stream
    await sign_in(client, database)
    page = await client.get("/live")
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="15">' in page.text
    counts = [int(n) for n in re.findall(r"</th><td>(\d+)</td><td>\d+</td></tr>", page.text)]
    assert sum(counts) == 3
    # It leads with what happened; the queue's figures come after, under Health.
    assert '<strong id="live-clicks">3</strong>' in page.text
    assert '<strong id="live-recent-clicks">3</strong>' in page.text
    assert page.text.index('id="live-clicks"') < page.text.index("<h2>Health</h2>")
    assert '<strong id="queue-unread">1</strong>' in page.text


async def test_fold_is_incremental_and_exactly_once(
    database: Database, programme: Programme
) -> None:
    end = now_ms()
    await generate(database, 1_000, 0, end - 6 * HOUR_MS, end, seed=5)
    first = await fold_closed_hours(database, at_ms=end - 3 * HOUR_MS)
    second = await fold_closed_hours(database, at_ms=end)
    assert first > 0
    assert second > 0
    assert await fold_closed_hours(database, at_ms=end) == 0
    watermark = await scalar(database, "SELECT hour_ms FROM rollup_watermarks")
    folded = await scalar(
        database,
        "SELECT sum(clicks + bot_clicks + flagged_clicks) FROM dimension_hourly"
        " WHERE dimension = 'browser' AND span_hours = 1",
    )
    raw = await scalar(database, "SELECT count(*) FROM clicks WHERE at_ms < :w", w=watermark)
    assert folded == raw
    day = 24 * HOUR_MS
    whole_days = await scalar(
        database,
        "SELECT count(*) FROM clicks WHERE at_ms < :d",
        d=watermark // day * day,
    )
    day_rows = await scalar(
        database,
        "SELECT sum(clicks + bot_clicks + flagged_clicks) FROM dimension_hourly"
        " WHERE dimension = 'browser' AND span_hours = 24",
    )
    assert day_rows == whole_days


async def test_fold_writes_day_rows_that_ranges_read_with_hour_rows_at_the_edges(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    today = datetime.now(UTC).date()
    start = int(datetime.combine(today - timedelta(days=4), datetime.min.time(), UTC).timestamp())
    await generate(database, 3_000, 300, start * 1000, now_ms(), seed=11)
    await fold_closed_hours(database)
    assert await scalar(database, "SELECT count(*) FROM dimension_hourly WHERE span_hours = 24")
    await sign_in(client, database)
    # New York days start at 04:00 or 05:00 UTC: day rows in the middle, hour rows at the edges
    params = {"range": "7d", "tz": "America/New_York", "format": "csv"}
    rows = csv_rows((await client.get("/breakdown/referrer", params=params)).text)
    ny = ZoneInfo("America/New_York")
    local_today = datetime.now(ny).date()
    first = datetime.combine(local_today - timedelta(days=6), datetime.min.time(), ny)
    expected = await scalar(
        database,
        "SELECT count(*) FROM clicks WHERE flags = '' AND at_ms >= :s",
        s=int(first.timestamp() * 1000),
    )
    assert sum(int(row["clicks"]) for row in rows) == expected


def test_ranges_are_local_days_and_dst_days_have_23_or_25_hours() -> None:
    fall_back = resolve_range("custom", date(2026, 10, 25), date(2026, 10, 25), "Europe/Berlin", "")
    hours = [bucket.label for bucket in fall_back.buckets()]
    assert len(hours) == 25
    assert hours.count("02:00") == 2  # the hour that happens twice
    assert fall_back.end_ms - fall_back.start_ms == 25 * HOUR_MS
    assert fall_back.start_ms == int(datetime(2026, 10, 24, 22, tzinfo=UTC).timestamp() * 1000)
    spring = resolve_range("custom", date(2026, 3, 8), date(2026, 3, 8), "America/New_York", None)
    assert len(spring.buckets()) == 23
    week = resolve_range("custom", date(2026, 3, 25), date(2026, 3, 31), "Europe/Berlin", None)
    days = week.buckets()
    assert week.bucket == "day"
    assert [(d.end_ms - d.start_ms) // HOUR_MS for d in days] == [24, 24, 24, 24, 23, 24, 24]


def test_presets_follow_the_viewers_calendar() -> None:
    # 23:30 UTC on 31 January is already 1 February in Tokyo
    now = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    tokyo_today = resolve_range("today", None, None, "Asia/Tokyo", None, now=now)
    assert tokyo_today.first_day == date(2026, 2, 1)
    assert tokyo_today.bucket == "hour"
    month = resolve_range("month", None, None, "UTC", None, now=now)
    assert (month.first_day, month.last_day) == (date(2026, 1, 1), date(2026, 1, 31))
    yesterday = resolve_range("yesterday", None, None, None, None, now=now)
    assert yesterday.first_day == yesterday.last_day == date(2026, 1, 30)
    thirty = resolve_range("30d", None, None, None, None, now=now)
    assert thirty.days == 30
    previous = thirty.previous()
    assert previous.last_day == thirty.first_day - timedelta(days=1)
    assert previous.days == 30
    with pytest.raises(RangeError):
        resolve_range("custom", date(2020, 1, 1), date(2026, 1, 1), None, None)


def test_the_worker_runs_the_fold_as_a_unique_cron_job(settings: Settings) -> None:
    jobs = {job.name: job for job in worker_options(settings, settings.redis_url)["cron_jobs"]}
    fold = jobs["cron:fold_job"]
    assert fold.unique
    assert fold.minute == set(range(0, 60, 5))


async def test_quality_page_counts_flags_from_the_rollup_and_the_raw_tail(
    client: AsyncTestClient[Any], database: Database, traffic: int
) -> None:
    await sign_in(client, database)
    page = await client.get("/quality", params={"range": "30d"})
    stored = await scalar(database, "SELECT count(*) FROM clicks")
    duplicates = await scalar(database, "SELECT count(*) FROM clicks WHERE flags = 'duplicate'")
    assert f'<strong id="quality-clicks">{stored}</strong>' in page.text
    rows = csv_rows((await client.get("/quality", params={"range": "30d", "format": "csv"})).text)
    by_name = {row["name"]: int(row["count"]) for row in rows if row["kind"] == "click_flag"}
    assert by_name["duplicate"] == duplicates


async def test_breakdown_rows_link_to_the_overview_filtered_to_them(
    client: AsyncTestClient[Any], database: Database, traffic: int
) -> None:
    await sign_in(client, database)
    page = await client.get("/breakdown/referrer", params={"range": "30d", "sort": "name"})
    rows = re.findall(
        r'<th scope="row" class="shared"><a href="([^"]+)">([^<]+)</a>'
        r'<svg class="share"[^>]*><rect width="([\d.]+)"',
        page.text,
    )
    links = [(href, label) for href, label, _ in rows]
    assert len(links) > 10
    href = next(h for h, text in links if text == "t.co")
    # Each row's bar is its share of the clicks.
    all_clicks = await scalar(database, "SELECT count(*) FROM clicks WHERE flags = ''")
    t_co = await scalar(
        database, "SELECT count(*) FROM clicks WHERE flags = '' AND referrer_host = 't.co'"
    )
    bar = next(float(width) for _, label, width in rows if label == "t.co")
    assert bar == round(t_co / all_clicks * 100, 1)
    filtered = await client.get(html.unescape(href))
    expected = await scalar(
        database, "SELECT count(*) FROM clicks WHERE flags = '' AND referrer_host = 't.co'"
    )
    assert kpi(filtered.text, "clicks") == str(expected)
    assert "Referrer domain: <strong>t.co</strong>" in filtered.text
    labels = [text for _, text in links]
    assert labels == sorted(labels, key=str.lower, reverse=True)  # sorted by name, descending


def test_a_running_period_is_compared_with_as_much_of_the_one_before() -> None:
    now = datetime(2026, 6, 10, 9, 20, tzinfo=UTC)
    today = resolve_range("today", None, None, None, None, now=now)
    yesterday = today.previous()
    cut = comparable_end(today, yesterday, int(now.timestamp() * 1000))
    assert cut - yesterday.start_ms == 10 * HOUR_MS  # 00:00-09:59 of yesterday
    finished = resolve_range("yesterday", None, None, None, None, now=now)
    assert comparable_end(finished, finished.previous(), int(now.timestamp() * 1000)) == (
        finished.previous().end_ms
    )


async def test_the_headline_is_the_programmes_and_the_shops_own_sales_stand_apart(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    """One click, one sale it brought, two sales nobody brought: a conversion rate of 100%
    (not 300%), one conversion from partners, two sales without a partner beside it."""
    click_id = await follow_link(client, programme.link["code"])
    shop = programme.merchant["key"]
    await client.get("/p.gif", params={"m": shop, "oid": "A-1", "amt": "10.00", "clk": click_id})
    client.cookies.clear()  # other buyers: no click cookie of the tracker's
    for order in ("S-1", "S-2"):
        await client.get("/p.gif", params={"m": shop, "oid": order, "amt": "5.00"})
    await consumer.drain()

    await sign_in(client, database)
    page = (await client.get("/", params={"range": "today"})).text
    assert kpi(page, "clicks") == "1"
    assert kpi(page, "conversions") == "1"
    assert kpi(page, "conversion-rate") == "100.0%"
    assert kpi(page, "revenue-EUR") == "€10.00"
    assert kpi(page, "unattributed") == "2"
    assert kpi(page, "unattributed-revenue-EUR") == "€10.00"
    assert "Sales without a partner" in page
    # A partner's view and any filter are about partners' results only: no shop sales there.
    filtered = (
        await client.get("/", params={"range": "today", "partner": programme.partner["id"]})
    ).text
    assert kpi(filtered, "conversions") == "1"
    assert 'id="kpi-unattributed"' not in filtered


async def test_an_empty_overview_leads_to_the_pages_that_start_a_programme(
    client: AsyncTestClient[Any], database: Database
) -> None:
    await sign_in(client, database)
    page = (await client.get("/")).text
    empty = page[page.index('<section class="card empty">') :]
    steps = re.findall(r'href="(/admin/[^"]+)"', empty[: empty.index("</section>")])
    assert steps == [
        "/admin/merchants/new",
        "/admin/partners/new",
        "/admin/campaigns/new",
        "/admin/links/new",
    ]
    for step in steps:
        form = await client.get(step)
        assert form.status_code == 200, step
        assert "<form" in form.text


async def test_filter_chips_name_things_and_the_zone_is_picked_from_a_list(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    await sign_in(client, database)
    campaign = programme.link["campaign_id"]
    page = await client.get(
        "/", params={"partner": programme.partner["id"], "campaign": campaign, "tz": "Asia/Tokyo"}
    )
    chips = re.findall(r"<li>([^:<]+): <strong>([^<]*)</strong>", page.text)
    assert chips == [
        ("Partner", html.escape(programme.partner["name"])),
        ("Campaign", html.escape(programme.campaign["name"])),
    ]
    zones = re.search(r'<select name="tz">(.*?)</select>', page.text, re.DOTALL)
    assert zones is not None
    options = re.findall(r"<option( selected)?>([^<]+)</option>", zones[1])
    assert [name for selected, name in options if selected] == ["Asia/Tokyo"]
    names = [name for _, name in options]
    assert names[0] == "UTC"
    assert {"Europe/Berlin", "America/New_York", "Australia/Sydney"} <= set(names)
    assert "US/Pacific" not in names


async def test_the_overview_has_top_panels_each_leading_to_its_breakdown(
    client: AsyncTestClient[Any], database: Database, programme: Programme, traffic: int
) -> None:
    await sign_in(client, database)
    page = (await client.get("/", params={"range": "7d"})).text
    panels = re.findall(r'<h2 id="panel-(\w+)">', page)
    assert panels == ["partner", "campaign", "referrer", "country", "device"]
    devices = page[page.index('id="panel-device"') :]
    devices = devices[: devices.index("</section>")]
    shown = re.findall(r'<a href="[^"]*device=(\w+)[^"]*">(\w+)</a>', devices)
    counts = await grouped(
        database,
        "SELECT device_class, count(*) FROM clicks WHERE flags = '' GROUP BY device_class",
    )
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0].lower()))[:5]
    assert [label for _, label in shown] == [device for device, _ in top]
    assert 'href="/breakdown/device?' in devices

    # A filter's own dimension has no panel (it would be one row).
    filtered = (await client.get("/", params={"range": "7d", "partner": traffic})).text
    assert re.findall(r'<h2 id="panel-(\w+)">', filtered) == [
        "campaign",
        "referrer",
        "country",
        "device",
    ]

    await client.post("/logout", data={"_csrf_token": client.cookies.get("csrftoken", "")})
    await add_user(database, "p@example.com", "partner", traffic)
    await sign_in(client, database, "p@example.com")
    mine = (await client.get("/", params={"range": "7d"})).text
    assert re.findall(r'<h2 id="panel-(\w+)">', mine) == [
        "link",
        "campaign",
        "referrer",
        "country",
        "device",
    ]


@pytest.mark.parametrize("name", sorted(DIMENSIONS))
async def test_the_page_its_csv_and_the_stats_api_agree_for_every_dimension(
    client: AsyncTestClient[Any], database: Database, programme: Programme, traffic: int, name: str
) -> None:
    """Same names, same numbers: a breakdown's CSV, the API grouped by the dimension, and both
    filtered to one of its values."""
    await sign_in(client, database)
    week = {"range": "7d", "tz": "UTC"}
    page = await client.get(f"/breakdown/{name}", params={**week, "format": "csv"})
    assert page.status_code == 200
    from_page = csv_rows(page.text)
    api = await client.get("/api/v1/stats", params={"group_by": name}, headers=programme.headers)
    assert api.status_code == 200, api.text
    from_api = api.json()["rows"]

    def figures(clicks: Any, unique: Any, bots: Any, conversions: Any) -> tuple[int, ...]:
        return (int(clicks), int(unique), int(bots), int(conversions))

    assert sorted(
        figures(r["clicks"], r["unique_clicks"], r["bot_clicks"], r["conversions"])
        for r in from_page
    ) == sorted(
        figures(t["clicks"], t["unique_clicks"], t["bot_clicks"], t["conversions"])
        for t in (row["totals"] for row in from_api)
    )
    # Filtered to the busiest value, the overview and the API count the same.
    busiest = max(from_api, key=lambda row: (row["totals"]["clicks"], str(row["key"])))
    value = str(busiest["key"])
    if value in ("", "0"):
        return  # "none" is no filter value
    overview = await client.get("/", params={**week, name: value})
    filtered = await client.get("/api/v1/stats", params={name: value}, headers=programme.headers)
    totals = filtered.json()["totals"]
    assert kpi(overview.text, "clicks") == str(totals["clicks"]) == str(busiest["totals"]["clicks"])


async def test_sales_of_buyers_who_opted_out_are_counted_apart_without_an_identifier(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    shop = programme.merchant["key"]
    gpc = {**BROWSER_HEADERS, "Sec-GPC": "1"}
    await client.get("/p.gif", params={"m": shop, "oid": "G-1", "amt": "5.00"}, headers=gpc)
    await client.get("/p.gif", params={"m": shop, "oid": "N-1", "amt": "5.00"})
    await consumer.drain()
    async with database.session() as session:
        flags = dict((await session.execute(select(Conversion.order_id, Conversion.flags))).all())
    assert flags == {"G-1": "opted_out", "N-1": ""}  # a note: nothing held for review

    await sign_in(client, database)
    page = (await client.get("/", params={"range": "today"})).text
    assert kpi(page, "unattributed") == "2"
    assert kpi(page, "opted-out") == "1"
    assert "buyers who opted out of tracking" in page
