"""Who calls the management API and what they may call, decided once for every keyed route.

``ApiKeyAuth`` turns the bearer key into the request's ``Viewer`` (401 without a known key) and
``admin_keys_only`` refuses a partner's key (403) wherever the route is not marked
``PARTNER_KEYS``. Both sit on the router of the keyed routes, so a new route is an admin's
unless it says otherwise; the routes open to partners scope their answers by the viewer.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Receive, Scope, Send
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.auth import hash_api_key
from backend.storage.db.engine import Database
from backend.storage.db.models import ApiKey

PARTNER_KEYS: dict[str, Any] = {"partner_keys": True}
"""The ``opt`` of a route a partner's key may call too."""
READER = "reader"


def request_reader(scope: Scope) -> AsyncSession:
    """The read session ``ApiKeyAuth`` opened for this request (the keyed routes' ``reader``)."""
    reader: AsyncSession = scope["state"][READER]
    return reader


class ApiKeyAuth(AbstractAuthenticationMiddleware):
    """``Authorization: Bearer <key>`` as the ``Viewer`` the key stands for, looked up in the
    request's one read session, which the handler then reads with (``request_reader``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        database: Database = scope["app"].state.database
        async with database.session() as reader:
            scope["state"][READER] = reader
            await super().__call__(scope, receive, send)

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
        reader = request_reader(connection.scope)
        key = await reader.scalar(
            select(ApiKey).where(ApiKey.key_hash == hash_api_key(token.strip()))
        )
        if key is None:
            raise NotAuthorizedException("unknown API key")
        viewer = Viewer(partner_id=key.partner_id, actor=f"apikey:{key.id}")
        return AuthenticationResult(user=viewer, auth=None)


def admin_keys_only(
    connection: ASGIConnection[Viewer, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Runs before the route reads its input: from an admin's route a partner's key learns
    nothing but 403. The automatic OPTIONS answer (a path's methods) needs no key, as
    ``ApiKeyAuth`` lets it through unnamed."""
    if connection.scope.get("method") == HttpMethod.OPTIONS:
        return
    if not connection.user.is_admin and not handler.opt.get("partner_keys"):
        raise PermissionDeniedException("this needs an admin API key")
