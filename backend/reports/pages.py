"""Server-rendered pages: login, logout and the overview.

Sessions and CSRF live on this router only (the ingest routes carry none of it). Every page
gets a strict Content-Security-Policy: no inline script or style at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from redis.asyncio import Redis
from sqlalchemy import select

from backend.admin import ADMIN_HANDLERS, conversion_page, conversions_page
from backend.api.deps import CurrentViewer, Reader, provide_reader, provide_writer
from backend.auth import verify_password
from backend.db.engine import Database
from backend.db.models import User
from backend.reports.install import install_tags
from backend.reports.quality import quality_report
from backend.reports.stats import stats_report
from backend.scope import Viewer
from backend.settings import Settings

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_S = 900


class LoginRequired(HTTPException):
    status_code = 401


class LoginForm(msgspec.Struct):
    email: str = ""
    password: str = ""


def _to_login(request: Request[Any, Any, Any], _: LoginRequired) -> Response[Any]:
    return Redirect("/login")


async def provide_viewer(request: ASGIConnection[Any, Any, Any, Any], reader: Reader) -> Viewer:
    user_id = request.session.get("user_id") if request.scope.get("session") else None
    user = await reader.get(User, user_id) if isinstance(user_id, int) else None
    if user is None:
        raise LoginRequired()
    partner_id = user.partner_id if user.role == "partner" else None
    return Viewer(partner_id=partner_id, actor=f"user:{user.email}")


@get("/login", name="login")
async def login_page() -> Template:
    return Template("login.html", context={"error": None, "email": ""})


@post("/login", status_code=200)
async def login(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[LoginForm],
    reader: Reader,
    state: State,
) -> Template | Redirect:
    email = data.email.strip().lower()[:320]
    redis: Redis = state.redis
    attempts_key = f"ct:login:{email}"
    attempts = await redis.incr(attempts_key)
    if attempts == 1:
        await redis.expire(attempts_key, LOGIN_WINDOW_S)
    if attempts > LOGIN_ATTEMPTS:
        error = "Too many attempts. Wait 15 minutes and try again."
        return Template("login.html", context={"error": error, "email": email}, status_code=429)
    user = await reader.scalar(select(User).where(User.email == email))
    if user is None or not verify_password(user.password_hash, data.password):
        error = "Wrong email or password."
        return Template("login.html", context={"error": error, "email": email}, status_code=400)
    await redis.delete(attempts_key)
    request.set_session({"user_id": user.id})
    return Redirect("/")


@post("/logout")
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/login")


@get("/", name="overview")
async def overview(viewer: CurrentViewer, reader: Reader, state: State) -> Template:
    start, end = last_seven_days()
    report = await stats_report(reader, viewer, start, end, "day")
    settings: Settings = state.settings
    return Template(
        "overview.html",
        context={
            "report": report,
            "viewer": viewer,
            "public_url": settings.public_url,
            "last_day": end - DAY,
        },
    )


SESSION_STORE = "sessions"


DAY = timedelta(days=1)


def last_seven_days() -> tuple[datetime, datetime]:
    """Today and the six days before it, as ``[start, end)`` in UTC."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=6), today + timedelta(days=1)


@get("/quality", name="quality")
async def quality(viewer: CurrentViewer, reader: Reader) -> Template:
    """What was not billed, and why: flagged clicks, conversions held for review, rejects."""
    start, end = last_seven_days()
    report = await quality_report(reader, viewer, start, end)
    return Template(
        "quality.html",
        context={"report": report, "viewer": viewer, "start": start, "last_day": end - DAY},
    )


@get("/install", name="install")
async def install(viewer: CurrentViewer, reader: Reader, state: State) -> Template:
    """The tags to paste on merchant and publisher pages."""
    installs = await install_tags(reader, viewer, state.settings, state.snippet)
    return Template("install.html", context={"installs": installs, "viewer": viewer})


async def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guards every admin page and form: to a partner user they do not exist."""
    database: Database = connection.app.state.database
    async with database.session() as reader:
        viewer = await provide_viewer(connection, reader)
    if not viewer.is_admin:
        raise NotFoundException()


def web_router(settings: Settings) -> Router:
    """Sessions are kept server-side in Redis, so signing out really ends them."""
    sessions = ServerSideSessionConfig(
        store=SESSION_STORE,
        key="ct_session",
        max_age=8 * 3600,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    csrf = CSRFConfig(
        secret=settings.secret_key,
        cookie_secure=settings.secure_cookies,
        cookie_samesite="strict",
        cookie_httponly=True,
    )
    return Router(
        path="/",
        route_handlers=[
            login_page,
            login,
            logout,
            overview,
            quality,
            install,
            conversions_page,
            conversion_page,
            Router(path="/admin", route_handlers=ADMIN_HANDLERS, guards=[admins_only]),
        ],
        middleware=[sessions.middleware, DefineMiddleware(CSRFMiddleware, config=csrf)],
        dependencies={
            "reader": Provide(provide_reader),
            "writer": Provide(provide_writer),
            "viewer": Provide(provide_viewer),
        },
        exception_handlers={LoginRequired: _to_login},
        response_headers=[
            ResponseHeader(name="Content-Security-Policy", value=CSP),
            ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
            ResponseHeader(name="Referrer-Policy", value="same-origin"),
        ],
        include_in_schema=False,
    )
