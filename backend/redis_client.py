"""Redis connections from a URL, for redis-py and for arq."""

from __future__ import annotations

from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis


def connect(url: str) -> Redis:
    client: Redis = Redis.from_url(url, health_check_interval=30)
    return client


def arq_settings(url: str) -> RedisSettings:
    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=urlsplit(url).path)
    return RedisSettings.from_dsn(url)
