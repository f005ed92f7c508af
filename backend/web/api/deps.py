"""Dependencies of the API handlers: database sessions and the viewer behind the API key
(``backend.web.api.keys``), and the errors they answer, for the handlers to declare in the
OpenAPI schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.storage.db.engine import Database

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


async def provide_viewer(request: Request[Viewer, Any, Any]) -> Viewer:
    return request.user


def too_deep(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    """A JSON body nested deeper than the decoder's recursion limit: the client's mistake."""
    return Response(
        {"status_code": 400, "detail": "the JSON body is nested too deeply"}, status_code=400
    )


SESSIONS = {"reader": Provide(provide_reader), "writer": Provide(provide_writer)}
"""The ``reader`` and ``writer`` dependencies, of the API and of the signed-in site alike."""
