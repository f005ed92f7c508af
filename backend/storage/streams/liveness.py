"""Which consumers of the stream are alive: each live worker keeps a key of its own in Redis
(refreshed by its heartbeat task), which other workers check before dropping a consumer and
``/readyz`` counts to say how many workers run."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


def heartbeat_key(stream: str, group: str, consumer: str) -> str:
    """The key that says consumer ``consumer`` of ``group`` on ``stream`` is alive."""
    return f"{stream}:{group}:alive:{consumer}"


async def live_consumers(redis: Redis, stream: str, group: str) -> int:
    """How many of the group's consumers have a heartbeat key (0 with no group yet)."""
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except ResponseError:
        return 0
    keys = [heartbeat_key(stream, group, _text(consumer["name"])) for consumer in consumers]
    return int(await redis.exists(*keys)) if keys else 0


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name
