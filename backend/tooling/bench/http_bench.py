"""The HTTP benchmark: the pixel and the redirect against a bare Litestar handler, same run.

Every server is a subprocess under identical uvicorn settings (one process, uvloop, httptools,
no access log, no proxy headers, no server header) pinned to one CPU; ``wrk`` and the embedded
Redis share another, so the server's CPU does server work only. Rounds are interleaved (bare,
pixel, click, bare, ...) so drift on the machine hits every target alike; medians are reported.

The worker is not running, so every event stays in the Redis stream, and the audit checks that
each answered request's event is there: group commit, not fire-and-forget. wrk stops on a timer
and drops the responses still in flight, which the server completes all the same, so the stream
may hold up to one more event per connection and run (and per socket error) than wrk counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from backend.core.settings import Settings
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.streams.entries import entry_size
from backend.tooling.bench.processes import (
    ChildProcess,
    TrackerProcess,
    accepting,
    free_ports,
    on_cpu,
    run_settings,
    settings_env,
)
from backend.tooling.bench.programme import create_programme_database, sqlite_url
from backend.tooling.bench.traffic import BROWSERS, LANGUAGES

STREAM = Settings().stream
# wrk's own summary is text; its Lua hook gives the same figures exactly, in microseconds.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
LOAD_HEADERS = ("User-Agent: " + BROWSERS[0], "Accept-Language: " + LANGUAGES[0])
UVICORN_FLAGS = (
    "--workers", "1",
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--no-proxy-headers",
    "--no-server-header",
)  # fmt: skip  # what ``clicktrail web`` passes to uvicorn.run


class BenchError(RuntimeError):
    """A part of the benchmark could not run (a server did not start, wrk failed)."""


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int
    seconds: float
    status_errors: int  # answers other than 2xx/3xx
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def answered(self) -> int:
        return self.requests - self.status_errors

    @classmethod
    def from_figures(cls, figures: dict[str, int]) -> WrkRun:
        """From the JSON line a script's ``done()`` prints (as ``WRK_REPORT`` does)."""
        return cls(
            requests=figures["requests"],
            seconds=figures["duration_us"] / 1e6,
            status_errors=figures["status_errors"],
            socket_errors=figures["socket_errors"],
            p50_ms=figures["p50_us"] / 1000,
            p99_ms=figures["p99_us"] / 1000,
        )


@dataclass(frozen=True, slots=True)
class TargetResult:
    name: str
    path: str
    runs: tuple[WrkRun, ...]

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(run.p50_ms for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.status_errors + run.socket_errors for run in self.runs)


@dataclass(frozen=True, slots=True)
class Audit:
    """Events answered by our servers (per wrk) against events found in the Redis stream."""

    requests: int
    answered: int
    in_stream: int
    entries: int  # stream entries holding them: one per group commit
    in_flight_bound: int

    @property
    def extra(self) -> int:
        return self.in_stream - self.answered

    @property
    def ok(self) -> bool:
        return self.requests == self.answered and 0 <= self.extra <= self.in_flight_bound


@dataclass(frozen=True, slots=True)
class HttpReport:
    bare: TargetResult
    pixel: TargetResult
    click: TargetResult
    audit: Audit
    seconds: int
    connections: int
    cpus: tuple[int, int] | None  # (server, wrk and Redis) when pinned


def cpu_pair() -> tuple[int, int] | None:
    """A CPU for the servers and another for the load, when there are two and taskset."""
    if not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return None  # not Linux: run unpinned
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return cpus[0], cpus[1]


def wrk_figures(
    url: str, seconds: int, connections: int, script: Path, cpu: int | None = None
) -> dict[str, int]:
    """One wrk run with ``script``, whose ``done()`` prints its figures as a JSON line."""
    command = [
        *on_cpu(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
        "-s", str(script), *(arg for header in LOAD_HEADERS for arg in ("-H", header)), url,
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - fixed arguments
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    figures: dict[str, int] = json.loads(lines[-1])
    return figures


def run_http_bench(
    workdir: Path, seconds: int, rounds: int = 3, connections: int = 64
) -> HttpReport:
    """Load the bare baseline, the pixel and the redirect in turn; audit the stream after."""
    database = workdir / "clicktrail.db"
    link = asyncio.run(create_programme_database(database)).eur_link
    cpus = cpu_pair()
    server_cpu, load_cpu = cpus or (None, None)
    script = workdir / "report.lua"
    script.write_text(WRK_REPORT)
    bare_port, our_port = free_ports(2)
    paths = {
        "bare": "/p.gif",
        "pixel": f"/p.gif?m={link.merchant_key}&oid=bench-order&amt=12.50&cur=EUR",
        "click": f"/c/{link.code}?sub1=sidebar&utm_source=bench",
    }
    ports = {"bare": bare_port, "pixel": our_port, "click": our_port}
    runs: dict[str, list[WrkRun]] = {name: [] for name in paths}
    redis_server = EmbeddedRedis(workdir / "redis").start()
    try:
        with Redis.from_url(redis_server.url) as redis:
            if load_cpu is not None:
                os.sched_setaffinity(int(redis.info("server")["process_id"]), {load_cpu})
            env = settings_env(run_settings(workdir, sqlite_url(database), redis_server.url))
            uvicorn = [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.tooling.bench.bare:app",
                *UVICORN_FLAGS,
            ]
            listen = ["--host", "127.0.0.1", "--port", str(bare_port)]
            bare_log = workdir / "bare.log"
            bare = ChildProcess(
                "bare uvicorn", [*uvicorn, *listen], bare_log, accepting(bare_port), env, server_cpu
            )
            ours = TrackerProcess(our_port, env, workdir / "web.log", server_cpu)
            with bare, ours:
                for round_number in range(1, rounds + 1):
                    for name, path in paths.items():
                        url = f"http://127.0.0.1:{ports[name]}{path}"
                        figures = wrk_figures(url, seconds, connections, script, load_cpu)
                        run = WrkRun.from_figures(figures)
                        runs[name].append(run)
                        print(
                            f"  round {round_number}/{rounds}  {name:<5}  {run.rate:>9,.0f} req/s",
                            flush=True,
                        )
            # Our server has drained its writer on SIGTERM: the stream is complete now.
            entries = redis.xrange(STREAM)
    finally:
        redis_server.stop()
    ours_runs = runs["pixel"] + runs["click"]
    return HttpReport(
        bare=TargetResult("bare Litestar handler", paths["bare"], tuple(runs["bare"])),
        pixel=TargetResult("pixel", "/p.gif?m=…", tuple(runs["pixel"])),
        click=TargetResult("redirect", "/c/{code}", tuple(runs["click"])),
        audit=Audit(
            requests=sum(run.requests for run in ours_runs),
            answered=sum(run.answered for run in ours_runs),
            in_stream=sum(entry_size(fields[b"e"]) for _, fields in entries),
            entries=len(entries),
            # one request per connection and run, plus one per reconnect after a socket error
            in_flight_bound=sum(connections + run.socket_errors for run in ours_runs),
        ),
        seconds=seconds,
        connections=connections,
        cpus=cpus,
    )
