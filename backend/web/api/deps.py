"""Dependencies of the API handlers: database sessions and the viewer behind the API key, and
the errors they answer, for the handlers to declare in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain.auth import hash_api_key
from backend.storage.db.engine import Database
from backend.storage.db.models import ApiKey

ANY_KEY: list[type[HTTPException]] = [NotAuthorizedException]
"""What any API call can answer besides 400: no key, or an unknown one (401)."""
ADMIN_KEY: list[type[HTTPException]] = [NotAuthorizedException, PermissionDeniedException]
"""What an admin's call can answer besides 400: 401, or 403 for a partner's key."""

Reader: TypeAlias = NamedDependency[AsyncSession]
Writer: TypeAlias = NamedDependency[AsyncSession]
CurrentViewer: TypeAlias = NamedDependency[Viewer]


async def provide_reader(state: State) -> AsyncIterator[AsyncSession]:
    database: Database = state.database
    async with database.session() as session:
        yield session


async def provide_writer(state: State) -> AsyncIterator[AsyncSession]:
    """A session on the writer engine; the handler commits, an exception rolls back."""
    database: Database = state.database
    async with database.session(write=True) as session:
        yield session


async def provide_viewer(request: Request[Any, Any, Any], reader: Reader) -> Viewer:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("send an API key as 'Authorization: Bearer <key>'")
    key = await reader.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(token.strip())))
    if key is None:
        raise NotAuthorizedException("unknown API key")
    return Viewer(partner_id=key.partner_id, actor=f"apikey:{key.id}")


def too_deep(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    """A JSON body nested deeper than the decoder's recursion limit: the client's mistake."""
    return Response(
        {"status_code": 400, "detail": "the JSON body is nested too deeply"}, status_code=400
    )


def require_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise PermissionDeniedException("this needs an admin API key")


API_DEPENDENCIES = {
    "reader": Provide(provide_reader),
    "writer": Provide(provide_writer),
    "viewer": Provide(provide_viewer),
}
