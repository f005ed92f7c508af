"""``clicktrail bench``: run the parts in throwaway directories, print the tables and ratios.

The targets are printed beside the ratios, never enforced: how fast is a matter for people
reading the figures. Only correctness decides the exit status: every answered request's event
in Redis (the HTTP audit) and every event sent written once (the worker's row counts).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

from backend.tooling.bench.backlog_bench import BacklogReport, run_backlog_bench
from backend.tooling.bench.http_bench import (
    BenchError,
    HttpReport,
    TargetResult,
    cpu_pair,
    run_http_bench,
)
from backend.tooling.bench.load import (
    WORKER_PROCESSES,
    format_load,
    run_load_bench,
)
from backend.tooling.bench.nginx import NGINX, NginxError
from backend.tooling.bench.processes import StartError
from backend.tooling.bench.reports_bench import format_reports, run_reports_bench
from backend.tooling.bench.soak import SoakReport, run_soak
from backend.tooling.bench.worker_bench import WorkerReport, run_worker_bench

HTTP_ROUNDS = 3
WORKER_ROUNDS = 3
HTTP_CONNECTIONS = 64
HTTP_TARGET, HTTP_AIM = 0.6, 1.0
WORKER_AIM_RATE = 100_000


def _verdict(ratio: float, target: float) -> str:
    return "meets the target" if ratio >= target else "BELOW the target"


def _target_line(target: TargetResult) -> str:
    return (
        f"  {target.name:<24} {target.path:<18} {target.rate:>10,.0f} {target.p50_ms:>8.2f} "
        f"{target.p99_ms:>8.2f} {target.errors:>7}"
    )


def format_http(report: HttpReport) -> str:
    pinning = (
        f"servers on CPU {report.cpus[0]}, wrk and Redis on CPU {report.cpus[1]}"
        if report.cpus
        else "not pinned (needs two CPUs and taskset)"
    )
    pixel = report.pixel.rate / report.bare.rate
    click = report.click.rate / report.bare.rate
    audit = report.audit
    lines = [
        "",
        f"HTTP: uvicorn, 1 process, uvloop, httptools; wrk -t1 -c{report.connections} "
        f"-d{report.seconds}s, median of {len(report.bare.runs)} interleaved rounds; {pinning}",
        f"  {'target':<24} {'path':<18} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
        *(_target_line(target) for target in (report.bare, report.pixel, report.click)),
        f"  ratio pixel/bare  {pixel:5.2f}   {_verdict(pixel, HTTP_TARGET)} "
        f"(>= {HTTP_TARGET}; aim >= {HTTP_AIM})",
        f"  ratio click/bare  {click:5.2f}   {_verdict(click, HTTP_TARGET)} "
        f"(>= {HTTP_TARGET}; aim >= {HTTP_AIM})",
        f"  audit: wrk counted {audit.answered:,} answered pixel and redirect requests; "
        f"the stream holds {audit.in_stream:,} events in {audit.entries:,} group commits",
    ]
    if audit.ok:
        lines.append(
            f"  audit OK: every answered event is in Redis ({audit.extra} more were in flight "
            f"when wrk stopped; at most {audit.in_flight_bound} can be)"
        )
    elif audit.requests != audit.answered:
        lines.append(f"  audit FAILED: {audit.requests - audit.answered} answers were not 2xx/3xx")
    elif audit.extra < 0:
        lines.append(f"  audit FAILED: {-audit.extra} answered events are missing from Redis")
    else:
        lines.append(
            f"  audit FAILED: {audit.extra} events more than answered, over the "
            f"{audit.in_flight_bound} requests that can be in flight when wrk stops"
        )
    return "\n".join(lines)


def _workers_named(count: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''}"


def _workers(cpus: list[int | None]) -> str:
    where = ", ".join("any CPU" if cpu is None else f"CPU {cpu}" for cpu in cpus)
    return f"{len(cpus)} worker process{'es' if len(cpus) > 1 else ''} ({where})"


def worker_counts(requested: int | None) -> list[int]:
    """The worker counts measured: the one asked for; by default one worker, as ``clicktrail
    run`` starts it, and, given more CPUs, a worker per CPU, as a deployment scales the tier
    (DESIGN §6). The writes stay one at a time either way (SQLite's one writer)."""
    if requested is not None:
        return [requested]
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    return [1] if cpus == 1 else [1, cpus]


def median_round(rounds: list[WorkerReport]) -> WorkerReport:
    """The round of the median ratio: its figures, all from one round, stand for the run."""
    return sorted(rounds, key=lambda report: report.ratio)[(len(rounds) - 1) // 2]


def _round_line(number: int, rounds: int, report: WorkerReport) -> str:
    return (
        f"  round {number}/{rounds}  worker {report.worker_rate:>9,.0f} events/s  "
        f"raw {report.raw_rate:>9,.0f} rows/s  ratio {report.ratio:.2f}"
    )


_DATABASES = {"sqlite": "SQLite (WAL, synchronous=NORMAL)", "postgresql": "PostgreSQL"}
_BASELINES = {
    "sqlite": "raw sqlite3.executemany, same rows",
    "postgresql": "raw asyncpg COPY, same rows",
}
WORKER_TARGETS = {"sqlite": 0.75, "postgresql": 0.5}


def format_worker(rounds: list[WorkerReport]) -> str:
    report = median_round(rounds)
    rows = report.clicks_in_db + report.conversions_in_db
    event_loop, threads, redis = report.cpu.per_event_us(report.events)
    ratios = ", ".join(f"{each.ratio:.2f}" for each in rounds)
    target = WORKER_TARGETS[report.database]
    lines = [
        "",
        f"Worker: {report.clicks_sent:,} clicks + {report.conversions_sent:,} conversions, "
        f"{report.events_per_entry} events per stream entry, {report.batch_size} per "
        f"transaction, {_DATABASES[report.database]}, {_workers(report.worker_cpus)}; "
        f"the round of the median ratio of {len(rounds)} (ratios {ratios})",
        f"  {'':<34} {'seconds':>8} {'events/s':>10} {'rows/s':>10}",
        f"  {'XADD to the stream (pipelined)':<34} {report.enqueue_s:>8.2f} "
        f"{report.events / report.enqueue_s:>10,.0f} {'':>10}",
        f"  {'worker: stream to committed rows':<34} {report.worker_s:>8.2f} "
        f"{report.worker_rate:>10,.0f} {rows / report.worker_s:>10,.0f}",
        f"  {_BASELINES[report.database]:<34} {report.raw_s:>8.2f} "
        f"{report.raw_rate:>10,.0f} {report.raw_rows / report.raw_s:>10,.0f}",
        f"  ratio worker/raw  {report.ratio:5.2f}   {_verdict(report.ratio, target)} "
        f"(>= {target}; aim {WORKER_AIM_RATE:,} events/s)",
        f"  CPU per event: worker event loop {event_loop:.1f} µs, its other threads "
        f"{threads:.1f} µs (the write, on SQLite), Redis {redis:.1f} µs; raw write "
        f"{1e6 * report.raw_s / report.events:.1f} µs",
        f"  rows: clicks {report.clicks_in_db:,} of {report.clicks_sent:,}, conversions "
        f"{report.conversions_in_db:,} of {report.conversions_sent:,}, baseline "
        f"{report.raw_rows_in_db:,} of {report.events:,}, left in the stream {report.backlog}",
        f"  row check {'OK' if all(each.ok for each in rounds) else 'FAILED'}"
        f"{f' (all {len(rounds)} rounds)' if len(rounds) > 1 else ''}",
    ]
    return "\n".join(lines)


def run_load(args: argparse.Namespace) -> None:
    """``--load``: the whole stack under wrk; exit 1 when the audit fails."""
    seconds = max(1, round(args.seconds))  # wrk takes whole seconds
    for binary, package in (("wrk", "wrk"), (str(NGINX), "nginx")):
        if shutil.which(binary) is None:
            raise SystemExit(f"the load benchmark needs {binary}: apt-get install {package}")
    if args.connections < 1:
        raise SystemExit("--connections must be at least 1")
    if args.web_processes < 1 or (args.workers is not None and args.workers < 1):
        raise SystemExit("--web-processes and --workers must be at least 1")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # waiting for nginx to answer
    print(f"Load benchmark: {seconds}s of wrk through nginx ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="clicktrail-load-") as tmp:
        try:
            report = run_load_bench(
                Path(tmp),
                seconds,
                args.connections,
                args.database_url,
                args.web_processes,
                args.workers or WORKER_PROCESSES,
            )
        except (BenchError, NginxError, StartError) as error:
            raise SystemExit(f"the load benchmark could not run: {error}") from None
    print(format_load(report), flush=True)
    if not report.ok:
        raise SystemExit("bench failed: the load audit")


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def format_backlog(report: BacklogReport) -> str:
    drained, small = report.drain, report.small_drain
    return "\n".join(
        [
            "",
            f"Backlog: {report.events:,} events waiting in the stream "
            f"({_mib(report.stream_bytes)} in Redis, XADDed in {report.enqueue_s:.0f} s), "
            f"drained by one worker into {_DATABASES[report.database]}",
            f"  drained in {drained.seconds:.1f} s: {report.rate:,.0f} events/s",
            f"  worker peak RSS {_mib(drained.peak_rss_bytes)}; draining "
            f"{report.small_events:,} events: {_mib(small.peak_rss_bytes)}, "
            f"{report.small_events / small.seconds:,.0f} events/s into new tables, "
            f"{report.small_events / report.deep_drain.seconds:,.0f} events/s into the tables "
            "the backlog filled",
            f"  rows: {report.rows_in_db:,} of {report.events:,}, left in the stream "
            f"{report.backlog}; row check {'OK' if report.ok else 'FAILED'}",
        ]
    )


def run_backlog(args: argparse.Namespace) -> None:
    """``--backlog N``: one worker catching up with N clicks (and their conversions) queued."""
    if args.backlog < 1:
        raise SystemExit("--backlog must be at least 1")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    print(f"Backlog benchmark: {args.backlog:,} clicks queued, then one worker ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="clicktrail-backlog-") as tmp:
        report = run_backlog_bench(Path(tmp), args.backlog, args.database_url)
    print(format_backlog(report), flush=True)
    if not report.ok:
        raise SystemExit("bench failed: the backlog's row check")


def run_reports(args: argparse.Namespace) -> None:
    """``--reports``: every report page timed over a generated (or kept) database."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    httpx_log = logging.getLogger("httpx")  # a line per rendered page otherwise
    level = httpx_log.level
    httpx_log.setLevel(logging.WARNING)
    print(
        f"Reports benchmark: {args.clicks:,} clicks, {args.conversions:,} conversions ...",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="clicktrail-bench-") as tmp:
            report = run_reports_bench(
                Path(tmp), args.clicks, args.conversions, args.renders, args.data, args.database_url
            )
    finally:
        httpx_log.setLevel(level)
    print(format_reports(report), flush=True)


def run_bench(args: argparse.Namespace) -> None:
    """Run the parts ``args.only`` selects (both by default); exit 1 when a check fails."""
    seconds = max(1, round(args.seconds))  # wrk takes whole seconds
    if args.rows < 1:
        raise SystemExit("--rows must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    http = args.only in (None, "http")
    worker = args.only in (None, "worker")
    if http and shutil.which("wrk") is None:
        raise SystemExit(
            "the HTTP benchmark needs wrk: install it with 'apt-get install wrk' (Debian, "
            "Ubuntu) or 'brew install wrk' (macOS), or run 'clicktrail bench --only worker'"
        )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # each throwaway database migrates
    failed: list[str] = []
    ratios: list[str] = []
    with tempfile.TemporaryDirectory(prefix="clicktrail-bench-") as tmp:
        if http:
            runs = HTTP_ROUNDS * 3  # three targets per round
            print(
                f"HTTP benchmark: {runs} wrk runs of {seconds}s "
                f"({'pinned' if cpu_pair() else 'not pinned'}) ...",
                flush=True,
            )
            directory = Path(tmp, "http")
            directory.mkdir()
            try:
                http_report = run_http_bench(directory, seconds, HTTP_ROUNDS, HTTP_CONNECTIONS)
            except (BenchError, StartError) as error:
                raise SystemExit(f"the HTTP benchmark could not run: {error}") from None
            print(format_http(http_report), flush=True)
            bare = http_report.bare.rate
            ratios += [
                f"pixel/bare {http_report.pixel.rate / bare:.2f}",
                f"click/bare {http_report.click.rate / bare:.2f}",
                f"audit {'OK' if http_report.audit.ok else 'FAILED'}",
            ]
            if not http_report.audit.ok:
                failed.append("the HTTP audit")
        if worker:
            for workers in worker_counts(args.workers):
                print(
                    f"\nWorker benchmark, {_workers_named(workers)}: {WORKER_ROUNDS} rounds of "
                    f"{args.rows:,} clicks, each on new databases and a new Redis: the "
                    "workers, then the raw baseline ...",
                    flush=True,
                )
                rounds: list[WorkerReport] = []
                for number in range(1, WORKER_ROUNDS + 1):
                    directory = Path(tmp, f"worker-{workers}-{number}")
                    directory.mkdir()
                    rounds.append(
                        run_worker_bench(
                            directory, args.rows, workers, database_url=args.database_url
                        )
                    )
                    print(_round_line(number, WORKER_ROUNDS, rounds[-1]), flush=True)
                print(format_worker(rounds), flush=True)
                median = median_round(rounds)
                rows_ok = all(each.ok for each in rounds)
                ratios += [
                    f"worker/raw {median.ratio:.2f} ({_workers_named(workers)}, "
                    f"{median.worker_rate:,.0f} events/s)",
                    f"rows {'OK' if rows_ok else 'FAILED'}",
                ]
                if not rows_ok:
                    failed.append(f"the worker's row check ({_workers_named(workers)})")
    print("\nRatios: " + "   ".join(ratios), flush=True)
    if failed:
        raise SystemExit(f"bench failed: {' and '.join(failed)}")


def format_soak(report: SoakReport) -> str:
    mib = 1024 * 1024
    run = report.run
    half_at, growth = report.second_half
    lines = [
        "",
        f"Memory soak: wrk -t1 -c{report.connections} -d{run.seconds:.0f}s, "
        f"{run.requests:,} requests ({run.rate:,.0f}/s, {run.socket_errors} socket errors); "
        "web process RSS:",
        *(f"  {at:>6.0f} s  {rss / mib:>7.1f} MiB" for at, rss in report.samples),
        f"  start {report.start / mib:.1f} MiB, peak {report.peak / mib:.1f} MiB, "
        f"end {report.end / mib:.1f} MiB",
        f"  second half (from {half_at:.0f} s): {growth / mib:+.1f} MiB, "
        f"{growth / mib / max(report.samples[-1][0] - half_at, 1) * 60:+.2f} MiB a minute",
    ]
    return "\n".join(lines)


def run_soak_bench(args: argparse.Namespace) -> None:
    """``--soak``: one web process for ``--seconds`` under wrk, its RSS sampled."""
    seconds = max(1, round(args.seconds))
    if shutil.which("wrk") is None:
        raise SystemExit("the memory soak needs wrk (apt-get install wrk)")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    print(f"Memory soak: one web process under wrk for {seconds}s ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="clicktrail-soak-") as tmp:
        try:
            report = run_soak(Path(tmp), seconds, connections=args.connections)
        except (BenchError, StartError) as error:
            raise SystemExit(f"the memory soak could not run: {error}") from None
    print(format_soak(report), flush=True)
