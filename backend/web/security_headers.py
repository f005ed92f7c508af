"""The security headers of every answer of the Litestar app (pages, API, docs, static files,
errors) and of the unknown-link page, defined once.

A strict Content-Security-Policy (no script, no inline style, nothing from another origin; a
page with copy buttons runs this origin's own script file, ``OWN_SCRIPTS_CSP``), no
framing, no referrer to other sites and no MIME sniffing. ``add_security_headers`` adds each
header a response has not set itself, so the API docs keep their own, wider CSP. The pixel, the
redirect and the beacon are answered before Litestar and carry none of this: the headers mean
nothing to an image, a redirect or JSON, and those answers stay as small as they can be.
"""

from __future__ import annotations

from litestar.types import Message, Scope

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
OWN_SCRIPTS_CSP = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'self';")
"""For the few pages that run a script of this origin's own (the partner's copy buttons): still
no inline script and nothing from elsewhere."""
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Litestar's ``before_send`` hook: called for every message the app sends."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", ()))
    present = {name.lower() for name, _ in headers}
    message["headers"] = headers + [
        header for header in SECURITY_HEADERS if header[0] not in present
    ]
