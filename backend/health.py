"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.datastructures import State
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backend.db.engine import Database
from backend.ingest.stream_writer import StreamWriter
from backend.settings import Settings

MAX_READY_BACKLOG = 100_000


async def _backlog(state: State) -> tuple[int, int]:
    """(entries waiting in the stream, entries delivered but not yet acknowledged)."""
    settings: Settings = state.settings
    length = int(await state.redis.xlen(settings.stream))
    try:
        info = await state.redis.xpending(settings.stream, settings.consumer_group)
        pending = int(info["pending"])
    except RedisError:
        pending = 0  # no consumer group yet: no worker has started
    return length, pending


@get("/healthz", include_in_schema=False, cache=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False, cache=False)
async def readyz(state: State) -> Response[dict[str, object]]:
    checks: dict[str, object] = {}
    ready = True
    try:
        length, pending = await _backlog(state)
        checks["redis"] = "ok"
        checks["backlog"] = length
        checks["pending"] = pending
        if length > MAX_READY_BACKLOG:
            ready = False
    except (RedisError, OSError) as error:
        checks["redis"] = f"error: {error}"
        ready = False
    database: Database = state.database
    try:
        async with database.read_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except (SQLAlchemyError, OSError) as error:
        checks["database"] = f"error: {type(error).__name__}"
        ready = False
    return Response({"ready": ready, **checks}, status_code=200 if ready else 503)


@get("/metrics", include_in_schema=False, cache=False, media_type=MediaType.TEXT)
async def metrics(state: State) -> str:
    writer: StreamWriter = state.writer
    lines = [
        "# HELP clicktrail_events_spooled_total Events written to the local spool (Redis down).",
        "# TYPE clicktrail_events_spooled_total counter",
        f"clicktrail_events_spooled_total {writer.spooled}",
        "# HELP clicktrail_stream_writes_total Pipelined writes of events to the stream.",
        "# TYPE clicktrail_stream_writes_total counter",
        f"clicktrail_stream_writes_total {writer.batches}",
    ]
    try:
        length, pending = await _backlog(state)
    except (RedisError, OSError):
        return "\n".join(lines) + "\n"
    lines += [
        "# HELP clicktrail_stream_length Events queued and not yet written.",
        "# TYPE clicktrail_stream_length gauge",
        f"clicktrail_stream_length {length}",
        "# HELP clicktrail_stream_pending Events delivered to a worker, not yet acknowledged.",
        "# TYPE clicktrail_stream_pending gauge",
        f"clicktrail_stream_pending {pending}",
    ]
    return "\n".join(lines) + "\n"
