"""Sign-in sessions: ids only the server issues, stored under their hash, bound to their user.

Litestar's server-side sessions take the cookie's value as the session id and the store key: a
client could choose its id before signing in (fixation) and a copy of the store could be replayed
as cookies. Here a cookie is believed only when it names a stored session; an id is issued when
there is something to keep and anew at every sign-in (the browser's previous session ends); the
store keys sessions by the SHA-256 of their 256-bit id. A session names its user by id and by
the user's ``session_epoch``: ``accounts.end_sessions`` replaces it (a changed password, role or
partner), and a new user given a deleted user's id (a restored backup) never matches it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import Empty, Message, ScopeSession
from sqlalchemy.ext.asyncio import AsyncSession

from backend.storage.db.models import User

MAX_COOKIE_ID = 128  # issued ids are 64 hex digits; a longer cookie names nothing


def stored_key(session_id: str) -> str:
    """The store's key for a session: the id itself never reaches Redis."""
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionBackend(ServerSideSessionBackend):
    """Stores only sessions that hold something, each under the hash of an id it issued."""

    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if not session_id or len(session_id) > MAX_COOKIE_ID:
            return {}
        store = self.config.get_store_from_app(connection.scope["app"])
        data = await self.get(stored_key(session_id), store)
        return {} if data is None else self.deserialize_data(data)

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The cookie's id when it named a stored session (none is stored empty), else "": an
        id the client made up is never adopted."""
        if not connection.scope.get("session"):
            return ""
        return connection.cookies.get(self.config.key, "")

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        store = self.config.get_store_from_app(connection.scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        cookie_id = connection.cookies.get(self.config.key)
        # None once the handler cleared the session (sign-out, sign-in), "" when the cookie
        # named nothing stored.
        kept_id = connection.get_session_id()
        data = None if scope_session is Empty else scope_session
        if cookie_id and (not kept_id or not data):
            await self.delete(stored_key(cookie_id), store)
        if not data:
            if cookie_id:
                headers.add("Set-Cookie", self._cookie("", max_age=0))
            return
        session_id = kept_id or self.generate_session_id()
        serialised = self.serialize_data(data, connection.scope)
        await self.set(stored_key(session_id), serialised, store)
        headers.add("Set-Cookie", self._cookie(session_id))

    def _cookie(self, value: str, max_age: int | None = None) -> str:
        config = self.config
        return Cookie(
            key=config.key,
            value=value,
            max_age=config.max_age if max_age is None else max_age,
            path=config.path,
            domain=config.domain,
            secure=config.secure,
            httponly=config.httponly,
            samesite=config.samesite,
        ).to_header(header="")


class SessionConfig(ServerSideSessionConfig):
    """``ServerSideSessionConfig`` with ``SessionBackend``."""

    _backend_class = SessionBackend


def sign_in(connection: ASGIConnection[Any, Any, Any, Any], user: User) -> None:
    """A new session for ``user`` under a new id; the browser's previous session ends."""
    connection.clear_session()
    connection.set_session({"user_id": user.id, "epoch": user.session_epoch})


async def signed_in_user(
    connection: ASGIConnection[Any, Any, Any, Any], reader: AsyncSession
) -> User | None:
    """The session's user while it is the one that signed in (same id, same epoch); a session
    that outlived its user, password or role ends here."""
    session = connection.scope.get("session")
    if not isinstance(session, dict) or not session:
        return None
    user_id, epoch = session.get("user_id"), session.get("epoch")
    user = await reader.get(User, user_id) if isinstance(user_id, int) else None
    if (
        user is None
        or not isinstance(epoch, str)
        or not hmac.compare_digest(epoch.encode(), user.session_epoch.encode())
    ):
        connection.clear_session()
        return None
    return user
