"""Redis connections from a URL, for redis-py and for arq."""

from __future__ import annotations

from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# arq's poll loop has no retry of its own: one failed command ends the worker. Retrying rides
# out a Redis restart and keeps the worker, its cron and its consumer alive; a longer outage
# still ends it, for its supervisor to see. redis-py applies the policy twice, nested (to each
# connection attempt and to each command), so 5 retries with backoff up to 1 s come to about
# 20 s in all (measured); a Redis that is not there at start fails the worker in 3 s.
ARQ_RETRY_ATTEMPTS = 5


def connect(url: str) -> Redis:
    client: Redis = Redis.from_url(url, health_check_interval=30)
    return client


def arq_settings(url: str) -> RedisSettings:
    settings = (
        RedisSettings(unix_socket_path=urlsplit(url).path)
        if url.startswith("unix://")
        else RedisSettings.from_dsn(url)
    )
    settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.1), ARQ_RETRY_ATTEMPTS)
    # OSError: a refused or missing socket surfaces raw from the connect step.
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    settings.conn_retries = 0  # connecting is retried above; arq's own loop would multiply it
    return settings
