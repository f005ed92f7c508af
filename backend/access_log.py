"""The app's access log: one line per request, with the client's network prefix, never its
address, and the path without its query string (which may carry order ids or sub-ids).

uvicorn's own access log is off because it prints raw addresses; this replaces it.
"""

from __future__ import annotations

import logging
import time

from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from backend.ingest.visitor import network_prefix, request_address
from backend.settings import IpNetwork

log = logging.getLogger("clicktrail.access")


class AccessLog:
    """ASGI middleware around the whole application; ``state`` is the wrapped app's."""

    def __init__(self, app: ASGIApp, state: State, trusted: tuple[IpNetwork, ...]) -> None:
        self.app = app
        self.state = state
        self._trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
            address = request_address(scope, forwarded, self._trusted)
            log.info(
                '%s "%s %s" %d %.1fms',
                network_prefix(address) or "-",
                scope.get("method", "-"),
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
