"""``clicktrail bench --reports``: report pages over a large database, against 150 ms.

Generates clicks and conversions over the last 30 days through the worker's bulk write
(``report_data.generate``; by COPY on PostgreSQL, ``copy_generate``), folds the dimension
rollup as the cron job would, then renders each page through the ASGI app (signed in as an
admin, the full middleware stack) and prints the median of N renders. The database can be
kept and reused (``--data``, or a PostgreSQL database that already holds clicks), as
generating ten million clicks takes a while; a kept one is migrated to the head first.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from litestar.testing import AsyncTestClient
from sqlalchemy import func, inspect, select, text

from backend.core.clock import DAY_MS, now_ms
from backend.core.settings import Settings
from backend.domain.auth import hash_password
from backend.storage.db.engine import Database, is_sqlite
from backend.storage.db.migrate import upgrade
from backend.storage.db.models import Click, Conversion, User
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.rollups.by_dimension import fold_closed_hours
from backend.tooling.bench.programme import create_programme, sqlite_url
from backend.tooling.bench.report_data import copy_generate, generate
from backend.web.app import create_app

TARGET_MS = 150.0
BENCH_USER = "bench@example.com"
PASSWORD = "bench-only-password"  # noqa: S105 - fixed so a kept database can be reused
PAGES: tuple[tuple[str, str], ...] = (
    ("overview, last 30 days", "/?range=30d"),
    ("overview, last 7 days", "/?range=7d"),
    ("overview, today by hour", "/?range=today"),
    ("overview, 30 days, one sub-id", "/?range=30d&sub1=post-1"),
    *(
        (f"by {name}, 30 days", f"/breakdown/{name}?range=30d")
        for name in (
            "partner",
            "campaign",
            "link",
            "referrer",
            "landing",
            "device",
            "browser",
            "sub1",
            "utm_source",
            "utm_medium",
            "flags",
        )
    ),
    ("by referrer, partner filter, 30 d", "/breakdown/referrer?range=30d&partner=1"),
    ("live", "/live"),
    ("quality, last 30 days", "/quality?range=30d"),
)
# Reported, not held to the target: they read raw rows on purpose (see the README).
SLOW_ON_PURPOSE: tuple[tuple[str, str], ...] = (
    ("by browser, sub1 + device, 7 days", "/breakdown/browser?range=7d&sub1=post-1&device=mobile"),
)


@dataclass(frozen=True, slots=True)
class PageTiming:
    name: str
    path: str
    median_ms: float
    slowest_ms: float
    held_to_target: bool


@dataclass(frozen=True, slots=True)
class ReportsBench:
    database: str
    clicks: int
    conversions: int
    generate_s: float
    fold_s: float
    renders: int
    pages: list[PageTiming]


async def _generate(url: str, clicks: int, conversions: int) -> float:
    database = Database.connect(url)
    try:
        end = now_ms()
        started = time.perf_counter()
        if is_sqlite(url):
            await generate(database, clicks, conversions, end - 30 * DAY_MS, end)
        else:
            await copy_generate(database, clicks, conversions, end - 30 * DAY_MS, end)
        async with database.session(write=True) as session:
            session.add(User(email=BENCH_USER, password_hash=hash_password(PASSWORD), role="admin"))
            await session.commit()
        if not is_sqlite(url):  # what autovacuum would do after a bulk load, done at once
            async with database.writing() as connection:
                await connection.execute(text("ANALYZE"))
        return time.perf_counter() - started
    finally:
        await database.dispose()


async def _holds_clicks(url: str) -> bool:
    """Whether the database at ``url`` already holds clicks (kept data)."""
    database = Database.connect(url)
    try:
        async with database.writing() as connection:
            if not await connection.run_sync(lambda sync: inspect(sync).has_table("clicks")):
                return False
            return await connection.scalar(select(Click.click_id).limit(1)) is not None
    finally:
        await database.dispose()


async def _upgrade(url: str) -> None:
    database = Database.connect(url)
    try:
        await upgrade(database, url)
    finally:
        await database.dispose()


async def _fold(url: str) -> float:
    """What the cron job does: all of it for a new database, the hours since for a kept one."""
    database = Database.connect(url)
    try:
        started = time.perf_counter()
        await fold_closed_hours(database)
        return time.perf_counter() - started
    finally:
        await database.dispose()


async def _counts(url: str) -> tuple[int, int]:
    database = Database.connect(url)
    try:
        async with database.session() as session:
            clicks = await session.scalar(select(func.count()).select_from(Click))
            conversions = await session.scalar(select(func.count()).select_from(Conversion))
        return int(clicks or 0), int(conversions or 0)
    finally:
        await database.dispose()


async def _time_pages(settings: Settings, renders: int) -> list[PageTiming]:
    timings: list[PageTiming] = []
    async with AsyncTestClient(create_app(settings)) as client:
        await client.get("/login")
        token = client.cookies.get("csrftoken")
        signed_in = await client.post(
            "/login",
            data={"email": BENCH_USER, "password": PASSWORD, "_csrf_token": token},
            follow_redirects=False,
        )
        if signed_in.status_code != 302:
            raise SystemExit(f"the bench could not sign in: {signed_in.status_code}")
        for pages, held in ((PAGES, True), (SLOW_ON_PURPOSE, False)):
            for name, path in pages:
                samples: list[float] = []
                for _ in range(renders + 1):  # the first render warms caches: not counted
                    started = time.perf_counter()
                    response = await client.get(path)
                    samples.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{path} answered {response.status_code}")
                counted = samples[1:]
                timings.append(
                    PageTiming(name, path, statistics.median(counted), max(counted), held)
                )
    return timings


def run_reports_bench(
    workdir: Path,
    clicks: int,
    conversions: int,
    renders: int,
    data: Path | None,
    database_url: str | None = None,
) -> ReportsBench:
    """Generate (unless the database already holds clicks), fold, then time every page.
    ``database_url``: PostgreSQL (default: the SQLite file ``data``, or a new one)."""
    url = database_url or sqlite_url(data or workdir / "reports.db")
    generate_s = 0.0
    if asyncio.run(_holds_clicks(url)):
        asyncio.run(_upgrade(url))
    else:
        asyncio.run(create_programme(url))
        generate_s = asyncio.run(_generate(url, clicks, conversions))
    fold_s = asyncio.run(_fold(url))
    redis_server = EmbeddedRedis(workdir / "redis").start()
    try:
        settings = Settings(
            var_dir=workdir / "var",
            database_url=url,
            redis_url=redis_server.url,
            secret_key=secrets.token_urlsafe(48),
        )
        pages = asyncio.run(_time_pages(settings, renders))
    finally:
        redis_server.stop()
    stored_clicks, stored_conversions = asyncio.run(_counts(url))
    database = "SQLite" if is_sqlite(url) else "PostgreSQL"
    return ReportsBench(
        database, stored_clicks, stored_conversions, generate_s, fold_s, renders, pages
    )


def format_reports(report: ReportsBench) -> str:
    lines = [
        "",
        f"Reports: {report.clicks:,} clicks + {report.conversions:,} conversions over 30 days, "
        f"{report.database}; median of {report.renders} renders through the ASGI app (signed in)",
    ]
    if report.generate_s:
        how = "worker bulk write" if report.database == "SQLite" else "COPY"
        lines.append(f"  generated in {report.generate_s:.1f} s ({how})")
    lines.append(f"  rollup folded in {report.fold_s:.1f} s (the cron job's work until now)")
    lines.append(f"  {'page':<36} {'median ms':>10} {'max ms':>8}  target {TARGET_MS:.0f} ms")
    for page in report.pages:
        if page.held_to_target:
            verdict = "meets" if page.median_ms <= TARGET_MS else "OVER"
        else:
            verdict = "(raw rows, not held to the target)"
        lines.append(
            f"  {page.name:<36} {page.median_ms:>10.1f} {page.slowest_ms:>8.1f}  {verdict}"
        )
    return "\n".join(lines)
