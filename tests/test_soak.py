"""The memory soak (``clicktrail bench --soak``) on real parts at a small size: it loads a real
``clicktrail web`` with its mix (unknown link codes among them) and samples that process's RSS.
Only counts are asserted, never memory figures: those are for people reading the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.tooling.bench.soak import run_soak


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_soak_samples_the_web_process_under_its_mixed_load(tmp_path: Path) -> None:
    report = run_soak(tmp_path, seconds=2, interval_s=0.5, connections=4)

    assert len(report.samples) >= 3
    assert all(rss > 0 for _, rss in report.samples)
    assert report.run.requests > 0
    assert report.run.socket_errors == 0
    assert 0 < report.run.status_errors < report.run.requests  # the unknown codes' 404s
    half_at, growth = report.second_half
    assert 1.0 <= half_at < report.samples[-1][0]
    assert growth == report.end - dict(report.samples)[half_at]
