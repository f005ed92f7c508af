"""The live page: the last 30 minutes by minute from raw rows, and the queue in front of the
worker (stream length, entries not yet read, entries read but not acknowledged, and how old
the oldest of those is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import MINUTE_MS
from backend.core.ids import click_id_floor
from backend.core.scope import Viewer
from backend.storage.rollups.by_dimension import CLICKS, CONVERSIONS
from backend.storage.rollups.sql import bucket_of

WINDOW_MINUTES = 30
UNREAD_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Minute:
    start_ms: int
    clicks: int
    conversions: int


@dataclass(frozen=True, slots=True)
class Queue:
    length: int
    unread: int
    pending: int
    oldest_pending_age_ms: int | None


async def live_minutes(session: AsyncSession, viewer: Viewer, now_ms: int) -> list[Minute]:
    """Clicks (every stored click: bots and flagged too) and conversions per minute."""
    end = now_ms // MINUTE_MS * MINUTE_MS + MINUTE_MS
    start = end - WINDOW_MINUTES * MINUTE_MS
    clicks, conversions = CLICKS.c, CONVERSIONS.c
    click_minute = bucket_of(clicks.at_ms, MINUTE_MS)
    click_counts = viewer.restrict(
        select(click_minute, func.count())
        .where(clicks.click_id >= click_id_floor(start), clicks.click_id < click_id_floor(end))
        .group_by(click_minute),
        clicks.partner_id,
    )
    conversion_minute = bucket_of(conversions.at_ms, MINUTE_MS)
    conversion_counts = viewer.restrict(
        select(conversion_minute, func.count())
        .where(conversions.at_ms >= start, conversions.at_ms < end)
        .group_by(conversion_minute),
        conversions.partner_id,
    )
    by_clicks: dict[int, int] = {
        minute: count for minute, count in (await session.execute(click_counts)).all()
    }
    by_conversions: dict[int, int] = {
        minute: count for minute, count in (await session.execute(conversion_counts)).all()
    }
    return [
        Minute(at, int(by_clicks.get(at, 0)), int(by_conversions.get(at, 0)))
        for at in range(start, end, MINUTE_MS)
    ]


async def queue_state(redis: Redis, stream: str, group: str, now_ms: int) -> Queue:
    """What is waiting for the worker; zeros when the stream or group does not exist yet.

    Entries not yet read are counted from the group's last delivered id (up to
    ``UNREAD_CAP``): XINFO's ``lag`` is unknown once the stream has been trimmed.
    """
    try:
        length = int(await redis.xlen(stream))
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
        summary = await redis.xpending(stream, group)
        mine = next((g for g in groups if _text(g.get("name")) == group), None)
        last = _text(mine["last-delivered-id"]) if mine else "0-0"
        unread = len(await redis.xrange(stream, min=f"({last}", max="+", count=UNREAD_CAP))
    except RedisError:
        return Queue(0, 0, 0, None)
    oldest = summary.get("min") if summary else None
    age = now_ms - int(_text(oldest).split("-")[0]) if oldest else None
    return Queue(length, unread, int(summary.get("pending", 0)), age)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
