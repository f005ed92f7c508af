"""Date ranges in the viewer's time zone, and the buckets a chart draws them in.

A range is a run of whole local days, turned into ``[start, end)`` UTC instants. Buckets are
cut from UTC hours, so a day when the clocks change has 23 or 25 hourly buckets, as it should.
Rollups are hourly: in a zone whose offset is not a whole number of hours, boundaries fall to
the hour before (the README says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from backend.core.clock import HOUR_MS

Preset = Literal["today", "yesterday", "7d", "30d", "month", "custom"]
Bucket = Literal["hour", "day"]
PRESETS: tuple[tuple[Preset, str], ...] = (
    ("today", "Today"),
    ("yesterday", "Yesterday"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("month", "This month"),
    ("custom", "Custom"),
)
MAX_DAYS = 400


LEGACY = ("Etc/", "SystemV/", "US/", "Canada/", "Brazil/", "Chile/", "Mexico/", "posix/", "right/")


class RangeError(ValueError):
    """A range the viewer asked for that cannot be shown (the page answers 400 with it)."""


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@cache
def zone_choices() -> tuple[str, ...]:
    """The zones a viewer picks from: UTC, then every IANA area/city name, sorted (no legacy
    aliases such as ``EST5EDT`` or ``US/Pacific``, which the pages still accept)."""
    cities = sorted(name for name in _zone_names() if "/" in name and not name.startswith(LEGACY))
    return ("UTC", *cities)


def zone(name: str | None) -> ZoneInfo:
    """An IANA zone by name; only names the system database lists (never a path)."""
    if not name or name == "UTC":
        return ZoneInfo("UTC")
    if name not in _zone_names():
        raise RangeError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris")
    return ZoneInfo(name)


def _hour_floor_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000) // HOUR_MS * HOUR_MS


@dataclass(frozen=True, slots=True)
class TimeBucket:
    label: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class DateRange:
    preset: Preset
    tz: ZoneInfo
    first_day: date
    last_day: date
    bucket: Bucket

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def _local_midnight_ms(self, day: date) -> int:
        local = datetime.combine(day, time(), tzinfo=self.tz)
        return _hour_floor_ms(local.astimezone(UTC))

    @property
    def start_ms(self) -> int:
        return self._local_midnight_ms(self.first_day)

    @property
    def end_ms(self) -> int:
        return self._local_midnight_ms(self.last_day + timedelta(days=1))

    def previous(self) -> DateRange:
        """The same number of days just before, for the change shown on each tile."""
        span = timedelta(days=self.days)
        return DateRange(
            "custom", self.tz, self.first_day - span, self.last_day - span, self.bucket
        )

    def buckets(self) -> list[TimeBucket]:
        if self.bucket == "day":
            return [
                TimeBucket(
                    day.isoformat(),
                    self._local_midnight_ms(day),
                    self._local_midnight_ms(day + timedelta(days=1)),
                )
                for day in (self.first_day + timedelta(days=n) for n in range(self.days))
            ]
        return [
            TimeBucket(self.local_label(hour), hour, hour + HOUR_MS)
            for hour in range(self.start_ms, self.end_ms, HOUR_MS)
        ]

    def local_label(self, at_ms: int) -> str:
        local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(self.tz)
        label = local.strftime("%H:%M")
        return label if self.days == 1 else local.strftime("%d %b ") + label

    def query(self) -> dict[str, str]:
        """The query parameters that give this range back (kept on every link)."""
        params = {"range": self.preset, "tz": self.tz.key, "bucket": self.bucket}
        if self.preset == "custom":
            params |= {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()}
        return params


def resolve_range(
    preset: str | None,
    first: date | None,
    last: date | None,
    tz_name: str | None,
    bucket: str | None,
    now: datetime | None = None,
) -> DateRange:
    tz = zone(tz_name)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    match preset or "7d":
        case "today":
            first_day, last_day = today, today
        case "yesterday":
            first_day = last_day = today - timedelta(days=1)
        case "7d":
            first_day, last_day = today - timedelta(days=6), today
        case "30d":
            first_day, last_day = today - timedelta(days=29), today
        case "month":
            first_day, last_day = today.replace(day=1), today
        case "custom":
            if first is None or last is None:
                raise RangeError("a custom range needs both 'from' and 'to' dates")
            first_day, last_day = first, last
        case other:
            raise RangeError(f"unknown range {other!r}")
    if first_day > last_day:
        raise RangeError("'from' must not be after 'to'")
    if (last_day - first_day).days >= MAX_DAYS:
        raise RangeError(f"at most {MAX_DAYS} days at a time")
    if bucket not in (None, "", "hour", "day"):
        raise RangeError("bucket is 'hour' or 'day'")
    chosen: Bucket = (
        bucket  # type: ignore[assignment]
        if bucket
        else ("hour" if first_day == last_day else "day")
    )
    if chosen == "hour" and (last_day - first_day).days > 31:
        chosen = "day"
    return DateRange(preset or "7d", tz, first_day, last_day, chosen)  # type: ignore[arg-type]
