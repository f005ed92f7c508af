"""``clicktrail bench --load`` for two seconds: the real stack (nginx, two web processes, a
worker, Redis) on each database, and its audit: every answered event stored exactly once."""

from __future__ import annotations

import shutil
from pathlib import Path

from backend.tooling.bench.load import format_load, run_load_bench
from backend.tooling.bench.nginx import NGINX
from tests.support import require_binary


def test_two_seconds_of_load_are_all_stored_once(tmp_path: Path, database_url: str) -> None:
    require_binary(NGINX, "nginx")
    require_binary(Path(shutil.which("wrk") or "/usr/bin/wrk"), "wrk")

    report = run_load_bench(tmp_path, seconds=2, connections=8, database_url=database_url)

    assert report.ok, format_load(report)
    assert report.wrk.answered > 100
    assert report.wrk.answered <= report.stored <= report.sent
    assert report.duplicates == report.rejected == report.wrk.status_errors == 0
    # The mix: six clicks in ten requests, the rest conversions.
    assert 0.5 < report.clicks / report.stored < 0.7
    assert report.drain_s < 30
    assert "audit OK" in format_load(report)


def test_two_workers_share_the_stream_and_store_each_event_once(
    tmp_path: Path, database_url: str
) -> None:
    """The layout of several machines on one: nginx, two web processes and two workers on one
    stream; each worker writes a share and every answered event is stored once."""
    require_binary(NGINX, "nginx")
    require_binary(Path(shutil.which("wrk") or "/usr/bin/wrk"), "wrk")

    report = run_load_bench(tmp_path, 2, 8, database_url, web_processes=2, workers=2)

    assert report.ok, format_load(report)
    assert report.wrk.answered > 100
    assert report.duplicates == report.rejected == report.wrk.status_errors == 0
    assert len(report.events_per_worker) == 2
    assert all(events > 0 for events in report.events_per_worker), format_load(report)
    # Every stored event went through one of the two workers (at least once: a batch retried
    # after a transient error counts again, and its rows are not stored twice).
    assert sum(report.events_per_worker) >= report.stored
    assert "2 workers" in format_load(report)
