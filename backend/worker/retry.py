"""Retrying through outages: which errors are the environment's (retry the same batch), which
the data's (the same event fails every time), and the jittered backoff between tries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0

T = TypeVar("T")
R = TypeVar("R")

# PostgreSQL error classes of the environment: connection (08), transaction rollback (40),
# insufficient resources such as a full disk (53), operator intervention such as a restart
# (57), system errors (58). asyncpg's errors reach SQLAlchemy as plain DBAPIError.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# PostgreSQL error classes of the data: data exceptions such as a value out of range (22) and
# integrity constraint violations (23).
_DETERMINISTIC_SQLSTATE_CLASSES = ("22", "23")


def jittered(delay_s: float) -> float:
    """Half of ``delay_s`` plus a random part of the other half: workers that failed together
    (a Redis or database outage) do not all come back at the same instant."""
    return delay_s / 2 + random.uniform(0, delay_s / 2)


def is_transient(error: BaseException) -> bool:
    """Errors of the environment, not of the data: retrying the same batch can succeed."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES):
        return True
    return isinstance(
        error, OperationalError | InterfaceError | RedisError | OSError | TimeoutError
    )


def is_deterministic(error: BaseException) -> bool:
    """Errors of the data: the same event fails the same way however often it is written."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_DETERMINISTIC_SQLSTATE_CLASSES):
        return True
    return isinstance(error, DataError | IntegrityError | OverflowError)


async def retrying(work: Callable[[T], Awaitable[R]], batch: T) -> R:
    """``work(batch)``, repeated with backoff for as long as the failure is transient."""
    backoff = BACKOFF_START_S
    while True:
        try:
            return await work(batch)
        except Exception as error:
            if not is_transient(error):
                raise
            pause = jittered(backoff)
            log.warning("batch waiting %.1fs after: %s", pause, error)
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
