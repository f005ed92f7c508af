"""What the web process notes about every request, in one ASGI middleware around the app:

- a request id: a trusted proxy's ``X-Request-ID`` (nginx sends its ``$request_id``) or a new
  one, set in the log context (``backend.core.logs``) and echoed in the response's ``X-Request-ID``;
- a count per route and status, for ``/metrics`` (``backend.storage.metrics.WebCounters``);
- optionally (``ACCESS_LOG``) the access log: one line per request with the client's network
  prefix, never its address, and the path without its query string (which may carry order ids
  or sub-ids). uvicorn's own access log is off because it prints raw addresses.

The ingest routes pass through here too, so it stays a few dictionary operations per request.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from functools import lru_cache

from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.logs import request_id
from backend.core.settings import IpNetwork
from backend.domain.visitor import network_prefix, request_address
from backend.storage.metrics import WebCounters

log = logging.getLogger("clicktrail.access")

MAX_REQUEST_ID = 64
_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
UNMATCHED = "unmatched"  # the route label of a request no route took (bounded label values)


def new_request_id() -> str:
    """32 hex characters like nginx's ``$request_id``. Random rather than a cheaper sequence
    number, which would tell anyone reading the header how much traffic the tracker gets."""
    return f"{random.getrandbits(128):032x}"


class RequestTelemetry:
    """ASGI middleware around the whole application."""

    def __init__(
        self,
        app: ASGIApp,
        state: State,
        counters: WebCounters,
        trusted: tuple[IpNetwork, ...],
        access_log: bool,
    ) -> None:
        self.app = app
        self.state = state  # the wrapped app's
        self.counters = counters
        self._trusted = trusted
        self._access_log = access_log
        self._is_trusted = lru_cache(maxsize=1024)(self._peer_is_trusted)

    def _peer_is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return True  # a unix socket peer: a local proxy
        return any(address in network for network in self._trusted)

    def _request_id(self, scope: Scope) -> str:
        """The proxy's id when a trusted proxy sent a well-formed one, else a new one."""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                client = scope.get("client")
                if (
                    0 < len(value) <= MAX_REQUEST_ID
                    and self._is_trusted(client[0] if client else "")
                    and _REQUEST_ID_CHARS.issuperset(text := value.decode("latin-1"))
                ):
                    return text
                break
        return new_request_id()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter() if self._access_log else 0.0
        rid = self._request_id(scope)
        token = request_id.set(rid)
        echo = (b"x-request-id", rid.encode())
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # Nothing sent means the app failed, and the server answers 500.
            route = scope.get("path_template") or UNMATCHED
            self.counters.count_request(route, status or 500)
            if self._access_log and log.isEnabledFor(logging.INFO):
                self._log(scope, status, started)
            request_id.reset(token)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        path = _logged_path(scope["path"])
        forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
        prefix = network_prefix(request_address(scope, forwarded, self._trusted)) or "-"
        method = scope.get("method", "-")
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            '%s "%s %s" %d %.1fms',
            prefix,
            method,
            path,
            status,
            duration_ms,
            extra={
                "client_prefix": prefix,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
            },
        )


_POSTBACK_PATH = "/pb/"
_TOKEN_SHOWN = len(_POSTBACK_PATH) + 10  # a network's token: its first characters, as its hint


def _logged_path(path: str) -> str:
    """The path as the access log keeps it: a conversion source's token (which authenticates
    its postbacks) cut to the characters its admin page shows."""
    if path.startswith(_POSTBACK_PATH) and len(path) > _TOKEN_SHOWN:
        return path[:_TOKEN_SHOWN] + "…"
    return path
