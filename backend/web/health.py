"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from litestar import MediaType, Response, get
from litestar.datastructures import State
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.db.models import RejectedEventRow
from backend.storage.metrics import StreamFigures, WebCounters, render, target_counters
from backend.storage.redis_client import REQUEST_TIMEOUT_S
from backend.storage.streams.liveness import live_consumers
from backend.storage.streams.spool import Spool
from backend.storage.streams.writer import StreamWriter


async def stream_figures(redis: Redis, settings: Settings) -> StreamFigures:
    """The stream's length, pending count and lag (one round trip each)."""
    try:
        info = await redis.xinfo_stream(settings.stream)
    except ResponseError:
        return StreamFigures(0, 0, 0.0)  # no stream yet: nothing was ever queued
    first = info.get("first-entry")
    lag_s = 0.0
    if first:
        oldest_ms = int(first[0].split(b"-")[0])
        lag_s = max(0, now_ms() - oldest_ms) / 1000
    newest_ms = int(info["last-generated-id"].split(b"-")[0]) or None  # "0-0": none yet
    try:
        pending = int((await redis.xpending(settings.stream, settings.consumer_group))["pending"])
    except ResponseError:
        pending = 0  # no consumer group yet: no worker has started
    return StreamFigures(int(info["length"]), pending, lag_s, newest_ms)


@get("/healthz", include_in_schema=False, cache=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False, cache=False)
async def readyz(state: State) -> Response[dict[str, object]]:
    """200 when Redis (within ``REQUEST_TIMEOUT_S``) and the database answer and the stream
    lag is under ``READY_MAX_LAG_S``; else 503 with the reasons. It also says when the last
    event was queued and how many workers are alive (``clicktrail status`` prints them)."""
    settings: Settings = state.settings
    checks: dict[str, object] = {}
    reasons: list[str] = []
    writer: StreamWriter = state.writer
    stalled = writer.stalled_since is not None  # until its next ping answers (within 1 s)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            stream = await stream_figures(state.redis, settings)
            workers = await live_consumers(state.redis, settings.stream, settings.consumer_group)
        checks.update(redis="ok", backlog=stream.length, pending=stream.pending)
        checks["lag_s"] = round(stream.lag_s, 3)
        checks.update(last_event_ms=stream.last_event_ms, workers=workers)
        if stream.lag_s > settings.ready_max_lag_s:
            reasons.append(
                f"stream lag {stream.lag_s:.0f}s is over {settings.ready_max_lag_s}s: "
                "the workers are behind or stopped"
            )
    except TimeoutError:
        checks["redis"] = f"error: no answer within {REQUEST_TIMEOUT_S}s"
        stalled = True
    except (RedisError, OSError) as error:
        checks["redis"] = f"error: {error}"
        reasons.append("redis unreachable")
    if stalled:
        reasons.append(
            f"redis did not answer within {REQUEST_TIMEOUT_S}s (stalled or cut off): "
            "events go to the spool, postbacks are told to retry"
        )
    database: Database = state.database
    try:
        async with database.read_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except (SQLAlchemyError, OSError) as error:
        checks["database"] = f"error: {type(error).__name__}"
        reasons.append("database unreachable")
    body = {"ready": not reasons, **checks}
    if reasons:
        body["reasons"] = reasons
    return Response(body, status_code=503 if reasons else 200)


async def _rejected_by_reason(database: Database) -> dict[str, int] | None:
    query = select(RejectedEventRow.reason, func.count()).group_by(RejectedEventRow.reason)
    try:
        async with database.session() as session:
            return {reason: int(count) for reason, count in (await session.execute(query)).all()}
    except (SQLAlchemyError, OSError):
        return None


@get("/metrics", include_in_schema=False, cache=False, media_type=MediaType.TEXT)
async def metrics(state: State) -> str:
    """This process's (or, under ``--workers N``, this port's) counters and the deployment's
    gauges: Prometheus scrapes every web process and sums the counters."""
    redis: Redis = state.redis
    spool: Spool = state.spool
    counters: WebCounters = state.counters
    try:
        await counters.flush()  # this process's latest counts, so a scrape sees its own
        web, worker = await target_counters(redis, counters.target)
        stream: StreamFigures | None = await stream_figures(redis, state.settings)
    except (RedisError, OSError):
        web, worker, stream = {}, {}, None
    return render(
        web, worker, stream, spool.size_bytes(), await _rejected_by_reason(state.database)
    )
