"""``clicktrail bench --load``: the whole stack on loopback under wrk, then an audit.

nginx (the repository's nginx.conf, ``backend.tooling.bench.nginx``) in front of
``clicktrail web`` processes (two by default) and ``clicktrail worker`` processes (one by default,
sharing the stream through its consumer group) and an embedded Redis, on SQLite or a PostgreSQL
database given by URL. wrk sends a fixed mix for a bounded time: of every ten requests
six tracking links (``/c/``), three conversion pixels and one beacon (``/e``) with one conversion.
nginx's per-address rate limits are taken out for the run (every request comes from 127.0.0.1, the
single address they exist to stop); nothing else in the file changes.

Every request carries a tag ``<run>-<thread>-<n>`` (the click's ``sub1``, the conversion's
order id), numbered by wrk's Lua ``request()``, so the audit counts exactly this run's rows:
wrk's answered requests (2xx/3xx) <= events stored <= requests sent, each tag stored once, and
no rejected event. Requests still in flight when wrk stops are sent, maybe stored, not
answered. Reported: requests per second and latency through nginx, the peak backlog in the
stream, the time for the queue to drain once the load stops, and the events each worker wrote
(its own metrics: with several, the audit also wants every worker to have written some, which
shows the consumer group spreading the stream).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError
from sqlalchemy import text

from backend.core.settings import Settings
from backend.storage.db.engine import Database
from backend.storage.metrics import worker_key
from backend.storage.redis_server import EmbeddedRedis
from backend.tooling.bench.http_bench import BenchError, WrkRun, wrk_figures
from backend.tooling.bench.nginx import NginxProcess, make_prefix
from backend.tooling.bench.processes import (
    TrackerProcess,
    WorkerProcess,
    free_ports,
    run_settings,
    settings_env,
)
from backend.tooling.bench.programme import create_programme, sqlite_url

WEB_PROCESSES = 2  # the defaults: what one 2-core machine runs
WORKER_PROCESSES = 1
DRAIN_TIMEOUT_S = 120.0
WORKER_STOP_TIMEOUT_S = 70.0
SAMPLE_EVERY_S = 0.2
STREAM, GROUP = Settings().stream, Settings().consumer_group
CLICKS_PER_TEN, PIXELS_PER_TEN = 6, 3  # the rest of ten is one beacon

# wrk's Lua: numbered, tagged requests in a fixed mix; done() prints the figures as JSON.
WRK_SCRIPT = """
local run, merchant = "%(run)s", "%(merchant)s"
local codes = {%(codes)s}
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  tag_prefix = run .. "-" .. id .. "-"
  beacon_headers = {["Content-Type"] = "text/plain"}
  for name, value in pairs(wrk.headers) do beacon_headers[name] = value end
end

function request()
  n = n + 1
  local tag, kind = tag_prefix .. n, n %% 10
  if kind < %(clicks)d then
    return wrk.format("GET", "/c/" .. codes[n %% #codes + 1] .. "?sub1=" .. tag ..
                      "&utm_source=load")
  elseif kind < %(clicks_and_pixels)d then
    return wrk.format("GET", "/p.gif?m=" .. merchant .. "&oid=" .. tag .. "&amt=12.50&cur=EUR")
  end
  return wrk.format("POST", "/e", beacon_headers, '{"m":"' .. merchant ..
                    '","events":[{"oid":"' .. tag .. '","amt":"20.00","cur":"EUR"}]}')
end

function done(summary, latency, requests)
  local sent = 0
  for _, thread in ipairs(threads) do sent = sent + thread:get("n") end
  local e = summary.errors
  io.write(string.format(
    '{"sent": %%d, "requests": %%d, "duration_us": %%d, "status_errors": %%d, '
    .. '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    sent, summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class LoadReport:
    database: str  # "sqlite" or "postgresql"
    connections: int
    web_processes: int
    workers: int
    events_per_worker: list[int]  # events each worker wrote, from its own metrics
    wrk: WrkRun
    sent: int
    peak_backlog: int  # stream entries
    drain_s: float
    clicks: int
    conversions: int
    duplicates: int
    rejected: int

    @property
    def rate(self) -> float:
        """Answered (2xx and 3xx) requests per second."""
        return self.wrk.answered / self.wrk.seconds

    @property
    def stored(self) -> int:
        return self.clicks + self.conversions

    @property
    def ok(self) -> bool:
        return (
            self.wrk.answered <= self.stored <= self.sent
            and self.duplicates == 0
            and self.rejected == 0
            and self.wrk.status_errors == 0
            and all(self.events_per_worker)
        )


def format_load(report: LoadReport) -> str:
    wrk = report.wrk
    lines = [
        "",
        f"Load: wrk -t1 -c{report.connections} -d{wrk.seconds:.0f}s -> nginx (rate limits "
        f"off) -> {report.web_processes} web process{'es' if report.web_processes > 1 else ''} "
        f"-> Redis -> {report.workers} worker{'s' if report.workers > 1 else ''} -> "
        f"{report.database}",
        f"  mix of ten: {CLICKS_PER_TEN} /c/, {PIXELS_PER_TEN} /p.gif, "
        f"{10 - CLICKS_PER_TEN - PIXELS_PER_TEN} /e (one conversion each)",
        f"  {report.rate:,.0f} req/s answered   p50 {wrk.p50_ms:.2f} ms   "
        f"p99 {wrk.p99_ms:.2f} ms   errors: {wrk.status_errors} status, "
        f"{wrk.socket_errors} socket",
        f"  stream backlog peak {report.peak_backlog:,} entries (group commits); queue drained "
        f"{report.drain_s:.2f} s after the load stopped",
        f"  audit: sent {report.sent:,}, answered {wrk.answered:,}, stored "
        f"{report.stored:,} (clicks {report.clicks:,}, conversions {report.conversions:,}), "
        f"stored twice {report.duplicates}, rejected {report.rejected}",
        "  events written by each worker: "
        + ", ".join(f"{events:,}" for events in report.events_per_worker),
    ]
    if report.ok:
        lines.append(
            f"  audit OK: every answered event is stored once ({report.stored - wrk.answered}"
            f" more were in flight when wrk stopped; {report.sent - wrk.answered} can be)"
        )
    else:
        lines.append("  audit FAILED")
    return "\n".join(lines)


def _backlog(redis: Redis) -> tuple[int, int]:
    """(entries in the stream, entries delivered and not acknowledged)."""
    length = cast(int, redis.xlen(STREAM))
    try:
        pending = int(cast(dict[str, Any], redis.xpending(STREAM, GROUP))["pending"])
    except ResponseError:
        pending = 0
    return length, pending


def wait_for_drain(redis: Redis) -> float:
    """Seconds until the stream is empty with nothing pending (acknowledged entries are
    deleted, so an empty stream means every event is written)."""
    started = time.monotonic()
    while _backlog(redis) != (0, 0):
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            raise BenchError(f"the queue did not drain in {DRAIN_TIMEOUT_S:.0f}s")
        time.sleep(0.01)
    return time.monotonic() - started


class BacklogSampler(threading.Thread):
    """The stream's length every ``SAMPLE_EVERY_S`` while the load runs; keeps the peak."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self._redis = redis
        self._finished = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._finished.wait(SAMPLE_EVERY_S):
            self.peak = max(self.peak, cast(int, self._redis.xlen(STREAM)))

    def stop(self) -> int:
        self._finished.set()
        self.join()
        return self.peak


async def _audit(database_url: str, run: str) -> tuple[int, int, int, int]:
    """(clicks, conversions, tags stored more than once, rejected events) of this run."""
    database = Database.connect(database_url)
    tagged = {"tag": f"{run}-%"}
    try:
        async with database.session() as session:
            clicks, distinct_clicks = (
                await session.execute(
                    text("SELECT count(*), count(DISTINCT sub1) FROM clicks WHERE sub1 LIKE :tag"),
                    tagged,
                )
            ).one()
            conversions = await session.scalar(
                text("SELECT count(*) FROM conversions WHERE order_id LIKE :tag"), tagged
            )
            rejected = await session.scalar(
                text("SELECT count(*) FROM rejected_events WHERE payload LIKE :anywhere"),
                {"anywhere": f"%{run}-%"},
            )
    finally:
        await database.dispose()
    return int(clicks), int(conversions or 0), int(clicks - distinct_clicks), int(rejected or 0)


def events_written(redis: Redis, worker: WorkerProcess) -> int:
    """The events ``worker`` wrote, as its metrics count them."""
    total = redis.hget(worker_key(worker.consumer_name), "size_sum")
    return int(cast(bytes, total or b"0"))


def run_load_bench(
    workdir: Path,
    seconds: int,
    connections: int = 64,
    database_url: str | None = None,
    web_processes: int = WEB_PROCESSES,
    workers: int = WORKER_PROCESSES,
) -> LoadReport:
    """Start the stack, load it, drain, stop it, audit. ``database_url``: default a new
    SQLite file; a PostgreSQL URL is migrated and given a new programme."""
    url = database_url or sqlite_url(workdir / "clicktrail.db")
    programme = asyncio.run(create_programme(url))
    run = "L" + secrets.token_hex(4)
    eur = [link for link in programme.links if link.currency == "EUR"]
    script = workdir / "load.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "run": run,
            "merchant": eur[0].merchant_key,
            "codes": ", ".join(f'"{link.code}"' for link in eur),
            "clicks": CLICKS_PER_TEN,
            "clicks_and_pixels": CLICKS_PER_TEN + PIXELS_PER_TEN,
        }
    )
    nginx_port, *web_ports = free_ports(1 + web_processes)
    redis_server = EmbeddedRedis(workdir / "redis").start()
    try:
        settings = run_settings(workdir, url, redis_server.url)
        public = settings.with_overrides(public_url=f"http://127.0.0.1:{nginx_port}")
        env = settings_env(public)
        with Redis.from_url(redis_server.url) as redis, ExitStack() as stack:
            worker_processes = []
            for number in range(workers):
                worker = WorkerProcess(env, workdir / f"worker-{number}.log").start()
                stack.callback(worker.stop, WORKER_STOP_TIMEOUT_S)  # its batch in hand commits
                worker_processes.append(worker)
            webs = ExitStack()
            stack.enter_context(webs)
            for port in web_ports:
                webs.enter_context(TrackerProcess(port, env, workdir / f"web-{port}.log"))
            nginx = NginxProcess(
                make_prefix(workdir / "nginx"), nginx_port, web_ports, rate_limits=False
            ).start()
            webs.callback(nginx.stop)  # nginx stops first, then the web processes
            sampler = BacklogSampler(redis)
            sampler.start()
            try:
                figures = wrk_figures(nginx.origin + "/", seconds, connections, script)
            finally:
                peak = sampler.stop()
            drain_s = wait_for_drain(redis)
            webs.close()  # the web processes flush what they still hold, then exit
            wait_for_drain(redis)
            stack.close()  # the workers stop, their last figures recorded
            per_worker = [events_written(redis, worker) for worker in worker_processes]
    finally:
        redis_server.stop()
    clicks, conversions, duplicates, rejected = asyncio.run(_audit(url, run))
    return LoadReport(
        database="postgresql" if url.startswith("postgresql") else "sqlite",
        connections=connections,
        web_processes=web_processes,
        workers=workers,
        events_per_worker=per_worker,
        wrk=WrkRun.from_figures(figures),
        sent=figures["sent"],
        peak_backlog=peak,
        drain_s=drain_s,
        clicks=clicks,
        conversions=conversions,
        duplicates=duplicates,
        rejected=rejected,
    )
