"""Prometheus metrics, counted per scrape target so that scraping every process adds up.

Every process counts into a Redis hash of its own target: a web process adds its request counts
once a second (and when scraped), a worker its figures after each committed batch. A target is
a process (``<host>-<pid>``), except that the processes of ``clicktrail web --workers N`` share
one port, so one scrape reaches any of them: they share the target their parent names
(``METRICS_TARGET``). A web process's ``/metrics`` and a worker's metrics listener show their
own target's counters only, so Prometheus scrapes every web and worker process and sums
(``sum(rate(...))``); each event is counted once. Per target rather than one aggregated endpoint:
an aggregate would have to be scraped through exactly one address and would vanish with it,
while per-target series are what Prometheus expects (``up`` per process, counter resets on a
restart handled by ``rate``) and keep working when processes move to other machines. Gauges of
the deployment (stream length, lag, pending entries, rejected events by reason) are read at
scrape time and are the same on every web process: aggregate them with ``max``, not ``sum``.
Hashes of processes that are gone expire after ``KEEP_S``. Text exposition format 0.0.4 by
hand: a few dozen lines do not need ``prometheus_client``'s registry or its multiprocess mode.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.storage.redis_client import REQUEST_TIMEOUT_S

log = logging.getLogger(__name__)

KEEP_S = 7 * 86_400  # a target's counters outlive its last count by a week, then expire
FLUSH_INTERVAL_S = 1.0
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REQUEST = "requests"  # hash fields: requests|<route>|<status>


def process_target() -> str:
    """This process as a scrape target: its host and process id (a consumer's default name)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def web_key(target: str) -> str:
    """The Redis hash of a target's web counters."""
    return f"ct:metrics:web:{target}"


def worker_key(target: str) -> str:
    """The Redis hash of a target's worker counters."""
    return f"ct:metrics:worker:{target}"


def _bucket(bounds: tuple[float, ...], value: float) -> str:
    """The hash field of the histogram bucket ``value`` falls in (buckets kept uncumulated)."""
    index = bisect.bisect_left(bounds, value)
    return "+Inf" if index == len(bounds) else repr(bounds[index])


class WebCounters:
    """One web process's counts, added to its target's ``web_key`` every second (and at
    shutdown); ``target`` defaults to the process itself.

    ``sources`` are read at each flush: counters kept elsewhere (the stream writer's), by name.
    """

    def __init__(self, redis: Redis, target: str | None = None) -> None:
        self._redis = redis
        self.target = target or process_target()
        self._requests: dict[tuple[str, int], int] = {}
        self._flushed: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()  # the timer and a scrape must not add the same counts
        self.sources: dict[str, Callable[[], int]] = {}

    def count_request(self, route: str, status: int) -> None:
        key = (route, status)
        self._requests[key] = self._requests.get(key, 0) + 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="metrics-flush")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):  # TimeoutError: a stalled Redis
            async with asyncio.timeout(REQUEST_TIMEOUT_S):  # must not hold up the shutdown
                await self.flush()

    def _current(self) -> dict[str, int]:
        counts = {f"{_REQUEST}|{r}|{s}": n for (r, s), n in list(self._requests.items())}
        for name, source in self.sources.items():
            counts[name] = source()
        return counts

    async def flush(self) -> None:
        """Add what was counted since the last successful flush (all of it or nothing)."""
        async with self._flushing:
            current = self._current()
            deltas = {k: v - self._flushed.get(k, 0) for k, v in current.items()}
            deltas = {k: v for k, v in deltas.items() if v}
            if not deltas:
                return
            key = web_key(self.target)
            async with self._redis.pipeline(transaction=True) as pipe:
                for field, delta in deltas.items():
                    pipe.hincrby(key, field, delta)
                pipe.expire(key, KEEP_S)
                await pipe.execute()
            self._flushed = current

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except (RedisError, OSError) as error:
                log.debug("metrics flush postponed: %s", error)  # kept and sent next time


async def record_batch(redis: Redis, size: int, seconds: float) -> None:
    """The worker's figures of one written and acknowledged batch of ``size`` events, counted
    for this process (a worker is its own scrape target).

    Never raises: the batch is committed already, and a lost figure is no reason to stop.
    """
    key = worker_key(process_target())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "batches", 1)
            pipe.hincrby(key, "size_sum", size)
            pipe.hincrby(key, f"size|{_bucket(BATCH_SIZE_BUCKETS, size)}", 1)
            pipe.hincrbyfloat(key, "seconds_sum", seconds)
            pipe.hincrby(key, f"seconds|{_bucket(BATCH_SECONDS_BUCKETS, seconds)}", 1)
            pipe.expire(key, KEEP_S)
            await pipe.execute()
    except (RedisError, OSError) as error:
        log.debug("batch metrics not recorded: %s", error)


async def target_counters(
    redis: Redis, target: str
) -> tuple[dict[bytes | str, bytes | str], dict[bytes | str, bytes | str]]:
    """The web and worker counters of ``target`` (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(web_key(target))
        pipe.hgetall(worker_key(target))
        web, worker = await pipe.execute()
    return web, worker


async def worker_exposition(redis: Redis) -> str:
    """What a worker's metrics listener shows: this process's batch figures; the deployment's
    gauges are the web processes' to show."""
    try:
        web, worker = await target_counters(redis, process_target())
    except (RedisError, OSError):
        web, worker = {}, {}
    return render(web, worker, None, None, None)


@dataclass(frozen=True, slots=True)
class StreamFigures:
    length: int
    pending: int
    lag_s: float  # age of the oldest entry not yet written (entries are deleted once acked)
    last_event_ms: int | None = None  # when the newest entry was queued; None: never


class Exposition:
    """Prometheus text, metric by metric."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]

    def histogram(
        self,
        name: str,
        help_text: str,
        bounds: tuple[float, ...],
        counts: Mapping[str, float],
        total: float,
    ) -> None:
        samples: list[tuple[str, float]] = []
        cumulative = 0.0
        for bound in [*map(repr, bounds), "+Inf"]:
            cumulative += counts.get(bound, 0)
            samples.append((f'_bucket{{le="{bound}"}}', cumulative))
        samples += [("_sum", total), ("_count", cumulative)]
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        self.lines += [f"{name}{suffix} {_number(value)}" for suffix, value in samples]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fields(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): float(text(v)) for k, v in raw.items()}


def render(
    web: Mapping[bytes | str, bytes | str],
    worker: Mapping[bytes | str, bytes | str],
    stream: StreamFigures | None,
    spool_bytes: int | None,
    rejected: Mapping[str, int] | None,
) -> str:
    """The exposition of one target's counters and the gauges gathered with them (None: that
    source was down, or is not this process's to show)."""
    web_fields, worker_fields = _fields(web), _fields(worker)
    out = Exposition()
    requests = []
    for field, value in sorted(web_fields.items()):
        if field.startswith(_REQUEST + "|"):
            _, route, status = field.split("|", 2)
            requests.append((f'{{route="{_label(route)}",status="{status}"}}', value))
    out.metric(
        "clicktrail_http_requests_total",
        "counter",
        "Requests answered by the web processes, by route template and status.",
        requests,
    )
    out.metric(
        "clicktrail_events_queued_total",
        "counter",
        "Events the web processes queued (to the stream, or the spool while Redis was down).",
        [("", web_fields.get("queued", 0))],
    )
    out.metric(
        "clicktrail_events_spooled_total",
        "counter",
        "Events written to a local spool file because Redis could not take them.",
        [("", web_fields.get("spooled", 0))],
    )
    out.metric(
        "clicktrail_stream_writes_total",
        "counter",
        "Group-commit writes to the stream by the web processes (one entry each).",
        [("", web_fields.get("batches", 0))],
    )
    if spool_bytes is not None:
        out.metric(
            "clicktrail_spool_bytes",
            "gauge",
            "Bytes of events in this host's spool files, waiting to be replayed to Redis.",
            [("", spool_bytes)],
        )
    if stream is not None:
        out.metric(
            "clicktrail_stream_length",
            "gauge",
            "Stream entries (each a group of events) not yet written to the database.",
            [("", stream.length)],
        )
        out.metric(
            "clicktrail_stream_pending",
            "gauge",
            "Stream entries delivered to a worker and not yet acknowledged.",
            [("", stream.pending)],
        )
        out.metric(
            "clicktrail_stream_lag_seconds",
            "gauge",
            "Age of the oldest event not yet written to the database.",
            [("", round(stream.lag_s, 3))],
        )
    out.metric(
        "clicktrail_batches_written_total",
        "counter",
        "Batches the workers wrote to the database and acknowledged.",
        [("", worker_fields.get("batches", 0))],
    )
    for name, help_text, bounds, total in (
        ("size", "Events per written batch.", BATCH_SIZE_BUCKETS, "size_sum"),
        ("seconds", "Seconds to write and acknowledge a batch.", BATCH_SECONDS_BUCKETS,
         "seconds_sum"),
    ):  # fmt: skip
        counts = {
            k.split("|", 1)[1]: v for k, v in worker_fields.items() if k.startswith(name + "|")
        }
        out.histogram(
            f"clicktrail_batch_{name}", help_text, bounds, counts, worker_fields.get(total, 0)
        )
    if rejected is not None:
        out.metric(
            "clicktrail_rejected_events",
            "gauge",
            "Rejected events kept in rejected_events (within RETENTION_DAYS), by reason.",
            [
                (f'{{reason="{_label(reason)}"}}', count)
                for reason, count in sorted(rejected.items())
            ],
        )
    return out.text()
