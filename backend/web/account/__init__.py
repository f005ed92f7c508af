"""Public account pages, open without signing in: password reset, invitations, programme
applications. They sit on the signed-in site's router, so they carry its CSRF protection."""

from litestar.types import ControllerRouterHandler

from backend.web.account.join import JOIN_HANDLERS
from backend.web.account.reset import RESET_HANDLERS

ACCOUNT_HANDLERS: list[ControllerRouterHandler] = [*RESET_HANDLERS, *JOIN_HANDLERS]

__all__ = ["ACCOUNT_HANDLERS"]
