"""Time: the wall clock in epoch milliseconds (the unit of every event time) and the spans
rollups, windows and schedules count in."""

from __future__ import annotations

import time

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
HOUR_S = HOUR_MS // 1000
DAY_S = DAY_MS // 1000


def now_ms() -> int:
    """The wall clock in epoch milliseconds, the unit of every event time."""
    return time.time_ns() // 1_000_000
