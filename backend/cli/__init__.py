"""The ``clicktrail`` command."""

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
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

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
from backend.core.validation import FieldError
from backend.domain.accounts import change_password, create_api_key, create_user
from backend.domain.auth import generate_password
from backend.storage.db.engine import Database
from backend.storage.db.migrate import upgrade
from backend.storage.db.models import Role, User
from backend.storage.redis_client import connect
from backend.storage.redis_server import EmbeddedRedis

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


async def _create_user(
    settings: Settings, email: str, role: Role, partner_id: int | None, password: str
) -> None:
    database = Database.connect(settings.database_url)
    try:
        async with database.session(write=True) as session:
            await create_user(session, email, role, partner_id, password)
    except FieldError as error:
        raise SystemExit(error.message) from None
    finally:
        await database.dispose()


async def _first_admin(settings: Settings) -> str | None:
    """Create ``admin@localhost`` with a fresh password when there is no user yet."""
    database = Database.connect(settings.database_url)
    try:
        async with database.session() as session:
            users = await session.scalar(select(func.count()).select_from(User))
    finally:
        await database.dispose()
    if users:
        return None
    password = generate_password()
    await _create_user(settings, "admin@localhost", Role.ADMIN, None, password)
    return password


def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    """Everything on one machine under ``Supervisor``: embedded Redis (unless ``REDIS_URL``
    names one), the worker and the web process, each started again when it dies.

    The supervisor holds the web's listening socket and hands it to each web process, so
    connections made while a web process restarts wait in the kernel's queue, not refused.
    """
    from backend.worker.main import spare_cpu

    listener = socket.create_server((args.host, args.port), backlog=WEB_BACKLOG)
    redis_server = EmbeddedRedis(settings.var_dir).start() if settings.embedded_redis else None
    if redis_server is not None:
        settings = settings.with_overrides(redis_url=redis_server.url)
    try:
        _migrate(settings)
        password = asyncio.run(_first_admin(settings))
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
    print(f"Clicktrail is running at {url}  (Ctrl-C stops it)", flush=True)
    if password:
        print(f"First admin: admin@localhost  password: {password}", flush=True)
    # Web first (no new events; it writes what it holds), then the worker (its batches in
    # hand commit), then Redis.
    supervisor.run()
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


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> None:
    role = Role(args.role)
    if role is Role.PARTNER and args.partner is None:
        raise SystemExit("--role partner needs --partner ID")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_password()
    asyncio.run(_create_user(settings, args.email, role, args.partner, password))
    print(f"created {role.value} {args.email}")
    if not args.password_stdin:
        print(f"password: {password}")


def cmd_user_password(settings: Settings, args: argparse.Namespace) -> None:
    """A new password (typed on stdin or generated); the user's sessions end."""
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_password()
    email = args.email.strip().lower()

    async def store() -> None:
        database = Database.connect(settings.database_url)
        try:
            async with database.session(write=True) as session:
                user = await session.scalar(select(User).where(User.email == email))
                if user is None:
                    raise SystemExit(f"no user with the email {args.email}")
                await change_password(session, user, password)
        except FieldError as error:
            raise SystemExit(error.message) from None
        finally:
            await database.dispose()

    asyncio.run(store())
    print(f"changed the password of {args.email}; its sessions have ended")
    if not args.password_stdin:
        print(f"password: {password}")


def cmd_apikey_create(settings: Settings, args: argparse.Namespace) -> None:
    async def store() -> str:
        database = Database.connect(settings.database_url)
        try:
            async with database.session(write=True) as session:
                _, key = await create_api_key(session, args.name, args.partner)
        except FieldError as error:
            raise SystemExit(error.message) from None
        finally:
            await database.dispose()
        return key

    key = asyncio.run(store())
    scope = f"partner {args.partner}" if args.partner is not None else "admin"
    print(f"API key {args.name!r} ({scope}); it is shown only now:")
    print(key)


def cmd_purge(settings: Settings, args: argparse.Namespace) -> None:
    """Erasure on request: raw events of a partner and/or before a day; prints what went."""
    from datetime import UTC, datetime

    from backend.worker.retention import purge

    if args.partner is None and args.before is None:
        raise SystemExit("name --partner ID, --before YYYY-MM-DD, or both")
    before_ms = None
    if args.before is not None:
        day = datetime.strptime(args.before, "%Y-%m-%d").replace(tzinfo=UTC)
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

    run_demo(settings, args.url or settings.public_url, args.clicks)


def cmd_bench(args: argparse.Namespace) -> None:
    """Works in throwaway directories; needs no settings (and so writes nothing to ./var)."""
    with tooling("bench"):
        from backend.tooling.bench.runner import run_bench, run_load, run_reports

    if args.load:
        run_load(args)
    elif args.reports:
        run_reports(args)
    else:
        run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicktrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[..., None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        return sub

    run = add("run", cmd_run, "everything on one machine: embedded Redis, web and worker")
    run.add_argument("--host", default=DEFAULT_HOST)
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    web = add("web", cmd_web, "one web server (uvicorn)")
    web.add_argument("--host", default=DEFAULT_HOST)
    web.add_argument("--port", type=int, default=DEFAULT_PORT)
    web.add_argument("--workers", type=int, default=1)
    web.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket (clicktrail run)"
    )
    add("worker", cmd_worker, "one worker (stream consumer and cron jobs)")
    db = add("db", cmd_db, "database migrations")
    db.add_argument("action", choices=["upgrade"])
    user = commands.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user")
    user_add.set_defaults(handler=cmd_user_add)
    user_add.add_argument("email")
    user_add.add_argument("--role", choices=[r.value for r in Role], required=True)
    user_add.add_argument("--partner", type=int)
    user_add.add_argument("--password-stdin", action="store_true")
    user_password = user.add_parser("password", help="set a new password, ending its sessions")
    user_password.set_defaults(handler=cmd_user_password)
    user_password.add_argument("email")
    user_password.add_argument("--password-stdin", action="store_true")
    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="action", required=True
    )
    apikey_create = apikey.add_parser("create", help="create an API key (printed once)")
    apikey_create.set_defaults(handler=cmd_apikey_create)
    apikey_create.add_argument("--name", required=True)
    apikey_create.add_argument("--partner", type=int, help="limit the key to one partner's data")
    erase = add("purge", cmd_purge, "delete raw events of a partner and/or before a day")
    erase.add_argument("--partner", type=int)
    erase.add_argument("--before", metavar="YYYY-MM-DD")
    demo = add("demo", cmd_demo, "send realistic demo traffic through the HTTP ingestion path")
    demo.add_argument("--url", help="where Clicktrail runs (default: PUBLIC_URL)")
    demo.add_argument("--clicks", type=int, default=300)
    bench = add("bench", cmd_bench, "benchmarks, reported as ratios against same-run baselines")
    bench.add_argument("--seconds", type=float, default=8.0, help="load duration per server")
    bench.add_argument("--rows", type=int, default=100_000, help="events for the worker bench")
    bench.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the stream (worker bench; default: 1, then one per CPU)",
    )
    bench.add_argument("--only", choices=["http", "worker"], help="run one part only")
    bench.add_argument(
        "--load",
        action="store_true",
        help="the whole stack (nginx, 2 web processes, a worker) under wrk, then an audit",
    )
    bench.add_argument("--connections", type=int, default=64, help="wrk connections (--load)")
    bench.add_argument(
        "--database-url",
        help="--load on this database (PostgreSQL: it is migrated and given a programme); "
        "default a new SQLite file",
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
        settings = load_settings()
    except SettingsError as error:
        raise SystemExit(str(error)) from None
    configure_logging(settings.log_format)
    args.handler(settings, args)


if __name__ == "__main__":
    main()
