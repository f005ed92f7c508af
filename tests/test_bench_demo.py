"""The benchmark and the demo on real parts (Redis, SQLite, uvicorn, wrk) at small sizes.

Only counts and audits are asserted, never timings: how fast is for people reading the figures.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from backend.cli import build_parser
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion, RejectedEventRow
from backend.tooling.bench.backlog_bench import run_backlog_bench
from backend.tooling.bench.http_bench import run_http_bench
from backend.tooling.bench.processes import TrackerProcess, WorkerProcess, free_port, settings_env
from backend.tooling.bench.runner import run_bench, run_reports
from backend.tooling.bench.worker_bench import run_worker_bench
from backend.tooling.demo import demo
from tests.conftest import POSTGRES_URL
from tests.migration_support import fresh_url

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_bench_writes_every_event_once(tmp_path: Path, workers: int) -> None:
    """Two worker processes share the stream through the consumer group: still once each."""
    report = run_worker_bench(tmp_path, clicks=2000, workers=workers)

    assert report.ok
    assert len(report.worker_cpus) == workers
    if len(os.sched_getaffinity(0)) >= workers > 1:
        assert len(set(report.worker_cpus)) == workers  # a core each
    assert (report.clicks_sent, report.conversions_sent) == (2000, 40)
    assert report.written.clicks == report.clicks_in_db == 2000
    assert report.written.conversions == report.conversions_in_db == 40
    assert report.raw_rows_in_db == report.events == 2040
    assert report.backlog == 0
    assert report.ratio > 0
    assert min(report.cpu.per_event_us(report.events)) > 0


def test_worker_bench_on_postgresql_writes_every_event_once_against_copy(tmp_path: Path) -> None:
    if not POSTGRES_URL:
        pytest.skip("needs CLICKTRAIL_TEST_POSTGRES_URL")
    url = asyncio.run(fresh_url("postgresql", tmp_path, "worker_bench"))
    report = run_worker_bench(tmp_path, clicks=2000, database_url=url)

    assert report.ok
    assert report.database == "postgresql"
    assert report.written.clicks == report.clicks_in_db == 2000
    assert report.raw_rows_in_db == report.events == 2040
    assert report.ratio > 0


def test_backlog_bench_drains_every_event_once_and_reports_the_workers_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_backlog_bench(tmp_path, clicks=3000, small_clicks=500)

    assert report.ok
    assert report.events == report.rows_in_db == 3060
    assert report.small_events == 510
    assert report.backlog == 0
    assert report.stream_bytes > 0
    assert report.drain.peak_rss_bytes > 2**20
    assert report.small_drain.peak_rss_bytes > 2**20
    assert report.rate > 0
    deep = report.deep_drain.written  # the small stream again, into the backlog's tables
    assert (deep.clicks, deep.conversions) == (500, report.small_events - 500)


def test_bench_command_prints_the_worker_table(capsys: pytest.CaptureFixture[str]) -> None:
    run_bench(build_parser().parse_args(["bench", "--rows", "300", "--only", "worker"]))

    out = capsys.readouterr().out
    cpus = len(os.sched_getaffinity(0))
    counts = [1, cpus] if cpus > 1 else [1]
    for workers in counts:  # one block each, as ``clicktrail run`` and as a worker per CPU
        assert f"Worker benchmark, {workers} worker{'s' if workers > 1 else ''}:" in out
        assert f"{workers} worker process{'es' if workers > 1 else ''} (" in out
    assert out.count("round 3/3") == len(counts)
    assert out.count("the round of the median ratio of 3") == len(counts)
    assert out.count("row check OK (all 3 rounds)") == len(counts)
    assert out.count("ratio worker/raw") == len(counts)
    assert "HTTP:" not in out


def test_reports_bench_times_every_page_over_a_kept_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "reports.db"
    arguments = ["bench", "--reports", "--clicks", "3000", "--conversions", "60", "--renders", "1"]
    run_reports(build_parser().parse_args([*arguments, "--data", str(data)]))

    out = capsys.readouterr().out
    assert "3,000 clicks + 60 conversions over 30 days" in out
    assert "generated in" in out
    for page in ("overview, last 30 days", "by referrer, 30 days", "by sub1, 30 days", "live"):
        assert page in out
    assert data.is_file()
    run_reports(build_parser().parse_args([*arguments, "--data", str(data)]))  # reused, not redone
    again = capsys.readouterr().out
    assert "3,000 clicks" in again
    assert "generated in" not in again


@needs_wrk
def test_http_bench_finds_every_answered_event_in_redis(tmp_path: Path) -> None:
    report = run_http_bench(tmp_path, seconds=1, rounds=1, connections=8)

    for target in (report.bare, report.pixel, report.click):
        (run,) = target.runs
        assert run.requests > 0
        assert run.status_errors == 0
    assert report.audit.ok
    assert report.audit.in_stream >= report.audit.answered > 0


@pytest.fixture
def clicktrail_url(tmp_path: Path, settings: Settings, redis: Redis) -> Iterator[str]:
    """A real ``clicktrail web`` and ``clicktrail worker`` on the test database and Redis."""
    web_port = free_port()
    url = f"http://127.0.0.1:{web_port}"
    env = settings_env(settings.with_overrides(var_dir=tmp_path / "var", public_url=url))
    with (
        WorkerProcess(env, tmp_path / "worker.log"),
        TrackerProcess(web_port, env, tmp_path / "web.log"),
    ):
        yield url


async def _count(database: Database, model: type[Click | Conversion | RejectedEventRow]) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _count_when_written(
    database: Database, model: type[Click | Conversion | RejectedEventRow], expected: int
) -> int:
    """The row count once it reaches ``expected`` or after a few seconds: the worker is async."""
    deadline = time.monotonic() + 15
    while True:
        count = await _count(database, model)
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.1)


async def test_demo_traffic_arrives_through_http_and_the_worker(
    clicktrail_url: str, settings: Settings, database: Database
) -> None:
    summary = await demo(settings, clicktrail_url, clicks=40, seed=3)

    assert (len(summary.merchants), len(summary.partners), len(summary.links)) == (2, 4, 8)
    assert {merchant["currency"] for merchant in summary.merchants} == {"EUR", "JPY"}
    assert summary.totals is not None, "the worker did not write the clicks in time"
    assert summary.conversions >= 1
    assert await _count(database, Click) == summary.clicks == 40
    assert await _count(database, Conversion) == summary.conversions
    assert await _count_when_written(database, RejectedEventRow, 5) == summary.rejected == 5
    async with database.session() as session:
        attributed = await session.scalar(
            select(func.count()).select_from(Conversion).where(Conversion.link_id.is_not(None))
        )
    assert attributed == summary.conversions
    assert summary.totals["conversions"] == summary.conversions
    # Every click sent is accounted for, and the sales came late enough to look like people's.
    assert sum(summary.stored.values()) == summary.clicks
    assert summary.stored.get("bots", 0) == summary.bot_clicks
    assert summary.too_fast == 0
    async with database.session() as session:
        flags = (await session.scalars(select(Conversion.flags))).all()
    assert not any("too_fast" in flag for flag in flags)
