"""What deleting must also do on disk: Redis's append-only file keeps every write, deleted and
expired keys (and acknowledged stream entries) included, until Redis rewrites it from what it
holds now. (SQLite's write-ahead log is ``Database.truncate_wal``.)"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)

REWRITE_TIMEOUT_S = 600.0  # a rewrite writes the whole dataset: gigabytes take minutes
_POLL_S = 0.05


async def rewrite_append_only_file(redis: Redis, timeout_s: float = REWRITE_TIMEOUT_S) -> bool:
    """Have Redis rewrite its append-only file and wait until it has. A rewrite that began
    before (from data that may predate a delete) is waited out first, then one is asked for.
    False when Redis keeps no such file, refuses (a managed Redis may) or takes too long."""
    if not (await redis.info("persistence")).get("aof_enabled"):
        return False
    deadline = time.monotonic() + timeout_s
    while await _rewritten(redis, deadline):
        try:
            await redis.bgrewriteaof()  # type: ignore[no-untyped-call]  # untyped in redis-py
        except ResponseError as error:
            if "in progress" in str(error):
                continue  # Redis began one of its own in between: wait for it, ask again
            log.warning("Redis refused to rewrite its append-only file: %s", error)
            return False
        if await _rewritten(redis, deadline):
            status = (await redis.info("persistence")).get("aof_last_bgrewrite_status")
            return bool(status == "ok")
    log.warning("Redis's append-only file rewrite took over %.0f s", timeout_s)
    return False


async def _rewritten(redis: Redis, deadline: float) -> bool:
    """Wait until no rewrite runs or is scheduled; False once ``deadline`` has passed."""
    while True:
        persistence = await redis.info("persistence")
        if not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL_S)
