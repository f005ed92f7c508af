"""clicktrail: run Clicktrail, manage its accounts and API keys, export its reports.

Every command says what it does, and every option its default, with --help."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.cli.accounts import (
    add_first_admin,
    cmd_apikey_create,
    cmd_apikey_list,
    cmd_apikey_revoke,
    cmd_user_add,
    cmd_user_delete,
    cmd_user_list,
    cmd_user_password,
)
from backend.cli.database import require_database
from backend.cli.export import cmd_export
from backend.cli.instance import announce, running_url, withdraw
from backend.cli.status import cmd_status
from backend.cli.supervisor import Child, Process, Supervisor
from backend.core.logs import configure_logging
from backend.core.private_files import PRIVATE_UMASK
from backend.core.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Settings,
    SettingsError,
    load_settings,
)
from backend.domain.auth import generate_password
from backend.domain.reports.ranges import PRESETS
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from backend.storage.db.models import ConversionStatus, Role, User
from backend.storage.metrics import process_target
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis
from backend.storage.rollups.dimensions import DIMENSIONS

log = logging.getLogger("clicktrail")
WEB_BACKLOG = 2048  # uvicorn's own
WEB_STOP_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 70.0  # its shutdown waits up to 60 s for the batches in hand
REDIS_STOP_TIMEOUT_S = 10.0


def app_from_env() -> Any:
    """The uvicorn factory (``backend.cli:app_from_env``): settings from the environment."""
    from backend.web.app import create_app

    settings = load_settings()
    configure_logging(settings.log_format)  # a process uvicorn spawned has no logging yet
    return create_app(settings)


@contextmanager
def redis_for(settings: Settings) -> Any:
    """Settings whose ``redis_url`` is usable: the configured one or a started embedded server."""
    if not settings.embedded_redis:
        yield settings
        return
    server = EmbeddedRedis(settings.var_dir).start()
    # uvicorn re-raises the SIGTERM it handled once it has shut down; without a handler of ours
    # that would kill the process before the server below is stopped.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield settings.with_overrides(redis_url=server.url)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _migrate(settings: Settings) -> None:
    async def run() -> None:
        database = Database.connect(settings.database_url)
        try:
            await upgrade(database, settings.database_url)
        finally:
            await database.dispose()

    asyncio.run(run())


def _first_admin(settings: Settings) -> str | None:
    """Create ``admin@localhost`` with a fresh password when there is no user yet."""

    async def count_users() -> int:
        database = Database.connect(settings.database_url)
        try:
            async with database.session() as session:
                return await session.scalar(select(func.count()).select_from(User)) or 0
        finally:
            await database.dispose()

    if asyncio.run(count_users()):
        return None
    password = generate_password()
    add_first_admin(settings, "admin@localhost", password)
    return password


def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    """Everything on one machine under ``Supervisor``: embedded Redis (unless ``REDIS_URL``
    names one), the worker and the web process, each started again when it dies.

    The supervisor holds the web's listening socket and hands it to each web process, so
    connections made while a web process restarts wait in the kernel's queue, not refused.
    """
    from backend.worker.main import spare_cpu

    try:
        listener = socket.create_server((args.host, args.port), backlog=WEB_BACKLOG)
    except OSError as error:
        raise SystemExit(
            f"cannot listen on {args.host}:{args.port}: {error.strerror} (is Clicktrail already "
            "running? 'clicktrail status' says; --port chooses another port)"
        ) from None
    redis_server = EmbeddedRedis(settings.var_dir).start() if settings.embedded_redis else None
    if redis_server is not None:
        settings = settings.with_overrides(redis_url=redis_server.url)
    try:
        _migrate(settings)
        password = _first_admin(settings)
    except BaseException:
        if redis_server is not None:
            redis_server.stop()
        raise
    # One machine without nginx: the app keeps the (anonymised) access log itself.
    env = {"CLICKTRAIL_ACCESS_LOG": "true", **os.environ}
    env["CLICKTRAIL_REDIS_URL"] = settings.redis_url
    worker_env = dict(env)
    if settings.worker_cpu is None and (cpu := spare_cpu()) is not None:
        worker_env["CLICKTRAIL_WORKER_CPU"] = str(cpu)
    me = [sys.executable, "-m", "backend.cli"]
    web = [*me, "web", "--host", args.host, "--port", str(args.port)]
    web += ["--fd", str(listener.fileno())]

    def child(command: list[str], child_env: dict[str, str], **options: Any) -> Process:
        # In a process group of its own: a Ctrl-C reaches the supervisor, which stops the
        # children in order.
        return subprocess.Popen(command, env=child_env, process_group=0, **options)  # noqa: S603

    children = [
        Child("worker", lambda: child([*me, "worker"], worker_env), WORKER_STOP_TIMEOUT_S),
        Child(
            "web",
            lambda: child(web, env, pass_fds=[listener.fileno()]),
            WEB_STOP_TIMEOUT_S,
        ),
    ]
    if redis_server is not None and redis_server.process is not None:
        redis = Child("redis", redis_server.launch, REDIS_STOP_TIMEOUT_S, redis_server.process)
        children.insert(0, redis)
    supervisor = Supervisor(children)
    for stopping in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: terminal closed
        signal.signal(stopping, supervisor.stop)
    supervisor.start()
    url = f"http://{args.host}:{args.port}"
    announce(settings.var_dir, url)
    print(f"Clicktrail is running at {url}  (Ctrl-C stops it)", flush=True)
    if password:
        print(f"First admin: admin@localhost  password: {password}", flush=True)
    try:
        # Web first (no new events; it writes what it holds), then the worker (its batches in
        # hand commit), then Redis.
        supervisor.run()
    finally:
        withdraw(settings.var_dir)
        listener.close()


def cmd_web(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    with redis_for(settings) as settings:
        os.environ["CLICKTRAIL_REDIS_URL"] = settings.redis_url
        options: dict[str, Any] = {
            "factory": True,
            "host": args.host,
            "port": args.port,
            "loop": "uvloop",
            "http": "httptools",
            "proxy_headers": False,  # the app applies TRUSTED_PROXIES itself
            "access_log": False,  # uvicorn's access log would write raw client addresses
            "server_header": False,
            "log_level": "info",
            "log_config": None,  # uvicorn's records go to the root logger (backend.core.logs)
        }
        if args.fd is None:
            if args.workers > 1:  # one port, one scrape target: all N count for this process
                os.environ.setdefault("CLICKTRAIL_METRICS_TARGET", process_target())
            uvicorn.run("backend.cli:app_from_env", workers=args.workers, **options)
            return
        # The listening socket of ``clicktrail run``, which outlives this process.
        if args.workers != 1:
            raise SystemExit("--fd serves one process: leave out --workers")
        server = uvicorn.Server(uvicorn.Config("backend.cli:app_from_env", **options))
        server.run(sockets=[socket.socket(fileno=args.fd)])
        if not server.started:
            raise SystemExit("the web server did not start")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from backend.worker.main import run

    with redis_for(settings) as settings:
        run(settings, settings.redis_url)


def cmd_db(settings: Settings, args: argparse.Namespace) -> None:
    _migrate(settings)
    print("database is up to date")


def cmd_purge(settings: Settings, args: argparse.Namespace) -> None:
    """Erasure on request: raw events of a partner and/or before a day; prints what went."""
    from datetime import UTC, datetime

    from backend.worker.retention import purge

    if args.partner is None and args.before is None:
        raise SystemExit("name --partner ID, --before YYYY-MM-DD, or both")
    require_database(settings)
    before_ms = None
    if args.before is not None:
        day = datetime.combine(args.before, datetime.min.time(), tzinfo=UTC)
        before_ms = int(day.timestamp() * 1000)

    async def run(redis_url: str) -> dict[str, int]:
        database, redis = Database.connect(settings.database_url), connect(redis_url)
        try:
            return await purge(database, redis, partner_id=args.partner, before_ms=before_ms)
        finally:
            await redis.aclose()
            await database.dispose()

    with redis_for(settings) as running:
        deleted = asyncio.run(run(running.redis_url))
    for table, count in deleted.items():
        print(f"deleted {count} {table}")
    print("hourly totals and conversions are kept")


@contextmanager
def tooling(command: str) -> Iterator[None]:
    """Imports of ``backend.tooling``, which the wheel leaves out: without it, one line, no
    traceback."""
    try:
        yield
    except ModuleNotFoundError as error:
        if error.name != "backend.tooling":
            raise
        raise SystemExit(
            f"clicktrail {command} runs from a checkout (pip install -e .): "
            "the installed package leaves the benchmarks and the demo out"
        ) from None


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    with tooling("demo"):
        from backend.tooling.demo import run_demo

    require_database(settings)

    run_demo(
        settings, args.url or running_url(settings.var_dir) or settings.public_url, args.clicks
    )


def cmd_bench(args: argparse.Namespace) -> None:
    """Works in throwaway directories; needs no settings (and so writes nothing to ./var)."""
    with tooling("bench"):
        from backend.tooling.bench.runner import (
            run_backlog,
            run_bench,
            run_load,
            run_reports,
            run_soak_bench,
        )

    if args.load:
        run_load(args)
    elif args.backlog is not None:
        run_backlog(args)
    elif args.reports:
        run_reports(args)
    elif args.soak:
        run_soak_bench(args)
    else:
        run_bench(args)


def _version() -> str:
    try:
        return version("clicktrail")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that states each option's default (argparse's own, less its "(default: None)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicktrail", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[..., None], help_text: str, under: Any = commands
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = under.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Help
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help_text: str) -> Any:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Help
        )
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION")

    def where(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
        sub.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")

    where(add("run", cmd_run, "everything on one machine: embedded Redis, web and worker"))
    web = add("web", cmd_web, "one web server (uvicorn)")
    where(web)
    web.add_argument("--workers", type=int, default=1, help="web processes (uvicorn's workers)")
    web.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket (clicktrail run)"
    )
    add("worker", cmd_worker, "one worker (stream consumer and cron jobs)")
    db = add("db", cmd_db, "database migrations")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply every migration")
    status = add("status", cmd_status, "is Clicktrail up: Redis, database, stream, workers")
    status.add_argument(
        "--url", help="where it runs (default: the 'clicktrail run' here, else PUBLIC_URL)"
    )
    status.add_argument("--json", action="store_true", help="print /readyz's answer as JSON")

    user = group("user", "accounts that sign in to the pages")
    user_add = add("add", cmd_user_add, "add a user (the password is generated)", user)
    user_add.add_argument("email", help="the user's email, which signs in")
    user_add.add_argument(
        "--role",
        choices=[r.value for r in Role],
        required=True,
        help="admin sees everything, partner one partner's data",
    )
    user_add.add_argument("--partner", type=int, help="the partner's id (with --role partner)")
    user_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of generating one",
    )
    add("list", cmd_user_list, "list users", user)
    passwd = user.add_parser(
        "password",
        aliases=["passwd"],
        help="set a new password, ending the user's sessions",
        description="set a new password, ending the user's sessions",
        formatter_class=_Help,
    )
    passwd.set_defaults(handler=cmd_user_password)
    passwd.add_argument("email", help="the user's email")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of generating one",
    )
    user_delete = add("delete", cmd_user_delete, "delete a user, ending its sessions", user)
    user_delete.add_argument("email", help="the user's email")

    apikey = group("apikey", "keys of the management API")
    apikey_create = add("create", cmd_apikey_create, "create an API key (printed once)", apikey)
    apikey_create.add_argument("--name", required=True, help="who or what uses the key")
    apikey_create.add_argument("--partner", type=int, help="limit the key to one partner's data")
    add("list", cmd_apikey_list, "list API keys (never the keys themselves)", apikey)
    revoke = add("revoke", cmd_apikey_revoke, "revoke an API key at once", apikey)
    revoke.add_argument("id", type=int, help="the key's id ('clicktrail apikey list')")

    export = add("export", cmd_export, "the reports' CSV: stats or conversions, to stdout")
    export.add_argument(
        "what",
        choices=["stats", "conversions"],
        help="stats: the overview (or a breakdown with --by); conversions: the conversions list",
    )
    export.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    export.add_argument(
        "--range",
        default="30d",
        choices=[p for p, _ in PRESETS if p != "custom"],
        help="stats: the period",
    )
    export.add_argument(
        "--from",
        dest="since",
        type=_day,
        metavar="YYYY-MM-DD",
        help="stats: first day (instead of --range)",
    )
    export.add_argument(
        "--to",
        dest="until",
        type=_day,
        metavar="YYYY-MM-DD",
        help="stats: last day (default: today)",
    )
    export.add_argument("--tz", default="UTC", help="stats: the time zone days begin in")
    export.add_argument(
        "--bucket",
        choices=["hour", "day"],
        help="stats: rows per hour or per day (default: by the period's length)",
    )
    export.add_argument(
        "--by",
        choices=list(DIMENSIONS),
        help="stats: one row per value of this dimension instead of per period",
    )
    export.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="stats: only what matches, as the pages' filters (repeatable)",
    )
    export.add_argument(
        "--status",
        choices=[s.value for s in ConversionStatus],
        help="conversions: only this status",
    )
    export.add_argument("--partner", type=int, help="conversions: only this partner's")
    export.add_argument("--campaign", type=int, help="conversions: only this campaign's")

    erase = add("purge", cmd_purge, "delete raw events of a partner and/or before a day")
    erase.add_argument("--partner", type=int, help="the partner whose raw events go")
    erase.add_argument(
        "--before", type=_day, metavar="YYYY-MM-DD", help="raw events before this UTC day go"
    )
    demo = add("demo", cmd_demo, "send realistic demo traffic through the HTTP ingestion path")
    demo.add_argument(
        "--url", help="where Clicktrail runs (default: the 'clicktrail run' here, else PUBLIC_URL)"
    )
    demo.add_argument("--clicks", type=int, default=300, help="clicks to send")
    bench = add("bench", cmd_bench, "benchmarks, reported as ratios against same-run baselines")
    bench.add_argument("--seconds", type=float, default=8.0, help="load duration per server")
    bench.add_argument("--rows", type=int, default=100_000, help="events for the worker bench")
    bench.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the stream (worker bench: default 1, then one per CPU; "
        "--load: default 1)",
    )
    bench.add_argument("--only", choices=["http", "worker"], help="run one part only")
    bench.add_argument(
        "--load",
        action="store_true",
        help="the whole stack (nginx, web processes, workers) under wrk, then an audit",
    )
    bench.add_argument(
        "--soak",
        action="store_true",
        help="one web process under wrk for --seconds (say 300), its memory sampled",
    )
    bench.add_argument(
        "--connections", type=int, default=64, help="wrk connections (--load, --soak)"
    )
    bench.add_argument(
        "--web-processes", type=int, default=2, help="web processes behind nginx (--load)"
    )
    bench.add_argument(
        "--backlog",
        type=int,
        metavar="CLICKS",
        help="queue this many clicks (and their conversions), then time one worker catching "
        "up and report its peak memory",
    )
    bench.add_argument(
        "--database-url",
        help="--load, --reports, --backlog and the worker bench on this database (PostgreSQL:"
        " it is migrated and given a programme; the worker bench empties it first, --reports"
        " reuses one that holds clicks); default new SQLite files",
    )
    bench.add_argument(
        "--reports", action="store_true", help="time the report pages over a large database"
    )
    bench.add_argument("--clicks", type=int, default=10_000_000, help="clicks for --reports")
    bench.add_argument("--conversions", type=int, default=200_000, help="conversions for --reports")
    bench.add_argument("--renders", type=int, default=7, help="renders per page for --reports")
    bench.add_argument(
        "--data",
        type=Path,
        help="--reports: keep the generated database here, or reuse it if the file exists",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        configure_logging("text")
        cmd_bench(args)
        return
    if args.command in ("run", "web", "worker"):  # the processes that run for good
        os.umask(PRIVATE_UMASK)  # what they and their children create is the owner's only
    if args.command in ("run", "web") and "CLICKTRAIL_PUBLIC_URL" not in os.environ:
        os.environ["CLICKTRAIL_PUBLIC_URL"] = f"http://{args.host}:{args.port}"
    try:
        # Only the commands that start or set up a deployment may create its var/ files.
        settings = load_settings(create_secret=args.command in ("run", "web", "worker", "db"))
    except SettingsError as error:
        raise SystemExit(str(error)) from None
    configure_logging(settings.log_format)
    args.handler(settings, args)


if __name__ == "__main__":
    main()
