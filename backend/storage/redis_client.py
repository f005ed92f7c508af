"""Redis connections from a URL, for redis-py and for arq."""

from __future__ import annotations

from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# arq's poll loop has no retry of its own: one failed command would end it. Its commands are
# retried (redis-py applies the policy twice, nested: to each connection attempt and to each
# command, so 5 retries with backoff up to 1 s come to about 20 s, measured); a longer outage
# fails one poll of the loop, which the worker outlasts (``backend.worker.main``). A Redis that
# is not there at start fails the worker in 3 s, for its supervisor to restart.
ARQ_RETRY_ATTEMPTS = 5

# The longest a request (a click, pixel, beacon, postback or /readyz) waits for Redis: a
# Redis that stops answering without closing its connections (a hung host, a partition) would
# otherwise hold every request for as long as it lasts. Redis answers within a millisecond or
# two; past this, events go to the spool and postbacks are told to retry.
REQUEST_TIMEOUT_S = 0.5

HEALTH_CHECK_INTERVAL_S = 30


class PromptConnectionPool(ConnectionPool):
    """Hands out a connection without first reading it for a reply left unread.

    redis-py makes that read with a zero timeout, which returns only once the event loop has
    come round: a command then leaves after whatever its caller computes next. The worker sends
    a batch's quality questions and goes on to build the rows of the batch before, so Redis got
    them milliseconds late and the worker then waited for the answers (worker benchmark: a
    tenth more events per second without the read); the web's group commits left a turn late
    too (HTTP benchmark, two runs in turns: pixel/bare 0.94-0.98 against 0.85-0.92, click/bare
    0.86-0.94 against 0.74-0.82). A reply is never left unread: redis-py disconnects a
    connection whose command fails or is cancelled, and nothing here subscribes. What the read
    also caught, a connection the server closed (a restarted Redis), now fails its command,
    which is sent once more on a new connection (``connect``).
    """

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await connection.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py


def connect(url: str) -> Redis:
    """A client whose commands leave at once (``PromptConnectionPool``) and are sent once more,
    on a new connection, when theirs was lost. Sending again is safe for what we send: events
    carry their ids (a repeated XADD is written once), the quality script finds a replayed batch
    in its windows, acknowledgements and reads repeat harmlessly; only a ``/metrics`` counter
    may count a command twice, if Redis lost the connection after running it."""
    pool = PromptConnectionPool.from_url(
        url,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )
    return Redis(connection_pool=pool)


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
