"""The signed-in site: the report pages, the conversions pages and the admin pages, with the
sign-in pages, on one router that carries sessions and CSRF (the ingest routes and the API
carry none of it)."""

from __future__ import annotations

from litestar import Router
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware

from backend.core.clock import HOUR_S
from backend.core.settings import Settings
from backend.web.account import ACCOUNT_HANDLERS
from backend.web.admin import ADMIN_HANDLERS, conversion_page, conversions_page
from backend.web.admin.money import MONEY_HANDLERS
from backend.web.admin.outgoing import OUTGOING_HANDLERS
from backend.web.api.deps import SESSIONS
from backend.web.money_style import read_money_locales
from backend.web.pages.errors import error_page
from backend.web.pages.views import PAGE_HANDLERS
from backend.web.portal import PORTAL_HANDLERS
from backend.web.sessions import SessionConfig
from backend.web.signin import (
    LoginRequired,
    admins_only,
    login,
    login_page,
    logout,
    provide_viewer,
    to_login,
)

SESSION_STORE = "sessions"


def web_router(settings: Settings) -> Router:
    """Sessions are kept server-side in Redis, so signing out really ends them."""
    sessions = SessionConfig(
        store=SESSION_STORE,
        key="ct_session",
        max_age=8 * HOUR_S,
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
            *PAGE_HANDLERS,
            conversions_page,
            conversion_page,
            *OUTGOING_HANDLERS,
            *ACCOUNT_HANDLERS,
            *PORTAL_HANDLERS,
            *MONEY_HANDLERS,
            Router(path="/admin", route_handlers=ADMIN_HANDLERS, guards=[admins_only]),
        ],
        middleware=[sessions.middleware, DefineMiddleware(CSRFMiddleware, config=csrf)],
        before_request=read_money_locales,
        dependencies={**SESSIONS, "viewer": Provide(provide_viewer)},
        exception_handlers={HTTPException: error_page, LoginRequired: to_login},
        include_in_schema=False,
    )
