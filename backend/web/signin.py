"""Signing in and out of the pages, and who the signed-in viewer is.

A session names its user (``backend.web.sessions``); ``provide_viewer`` turns it into the
``Viewer`` every page and admin form scopes its queries with, or sends the browser to the
sign-in page. ``admins_only`` guards the admin pages: to a partner user they do not exist.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from sqlalchemy import select

from backend.core.scope import Viewer
from backend.core.settings import Settings
from backend.domain.auth import verify_password
from backend.domain.login_throttle import WINDOW_S, LoginThrottle
from backend.domain.visitor import client_address
from backend.storage.db.engine import Database
from backend.storage.db.models import Role, User
from backend.web.api.deps import Reader
from backend.web.sessions import sign_in, signed_in_user


class LoginRequired(HTTPException):
    status_code = 401


class LoginForm(msgspec.Struct):
    email: str = ""
    password: str = ""


def to_login(request: Request[Any, Any, Any], _: LoginRequired) -> Response[Any]:
    return Redirect("/login")


async def provide_viewer(request: ASGIConnection[Any, Any, Any, Any], reader: Reader) -> Viewer:
    user = await signed_in_user(request, reader)
    if user is None:
        raise LoginRequired()
    partner_id = user.partner_id if user.role == "partner" else None
    return Viewer(partner_id=partner_id, actor=f"user:{user.email}")


@get("/login", name="login")
async def login_page() -> Template:
    return Template("login.html", context={"error": None, "email": ""})


def client_of(
    request: Request[Any, Any, Any], settings: Settings
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address as the app believes it (through trusted proxies); for throttles."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxies,
    )


@post("/login", status_code=200)
async def login(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[LoginForm],
    reader: Reader,
    state: State,
) -> Template | Redirect:
    email = data.email.strip().lower()[:320]
    settings: Settings = state.settings
    address = client_of(request, settings)
    throttle = LoginThrottle(state.redis, settings.secret_key, address, email)
    if not await throttle.admit():
        error = f"Too many attempts. Wait {WINDOW_S // 60} minutes and try again."
        return Template("login.html", context={"error": error, "email": email}, status_code=429)
    user = await reader.scalar(select(User).where(User.email == email))
    if not verify_password(user.password_hash if user else None, data.password) or user is None:
        error = "Wrong email or password."
        return Template("login.html", context={"error": error, "email": email}, status_code=400)
    await throttle.succeeded()
    sign_in(request, user)
    return Redirect(home_of(user))


def home_of(user: User) -> str:
    """Where a person lands once signed in: a partner on its links (the addresses it
    shares), an admin on the overview."""
    return "/portal/links" if user.role == Role.PARTNER.value else "/"


@post("/logout")
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/login")


async def admins_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guards every admin page and form: to a partner user they do not exist."""
    database: Database = connection.app.state.database
    async with database.session() as reader:
        viewer = await provide_viewer(connection, reader)
    if not viewer.is_admin:
        raise NotFoundException()
