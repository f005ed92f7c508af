"""Public applications to a merchant's programme: ``/join/{slug}`` (the terms and the form) and
``/join/confirm/{token}`` (the link of the confirmation mail; a button, so a mail scanner that
opens links confirms nothing).

Spam is kept out without third parties: a field people never see (``HONEYPOT``: filled in, the
form pretends to succeed and keeps nothing), a time-to-submit check (the form carries the time
it was shown, signed with the app's key: a form sent back within ``MIN_FILL_S`` or after
``MAX_FILL_S`` is shown again) and a rate limit per client and per address
(``form_limits.APPLY``). A programme that is closed, or no programme, is a 404.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from backend.core.clock import now_ms
from backend.core.settings import Settings
from backend.domain import account_tokens, applications, form_limits
from backend.domain.applications import ApplicationForm
from backend.storage.db.models import Merchant, Programme, TokenPurpose
from backend.web.admin.forms import typed_form
from backend.web.api.deps import Reader, Writer
from backend.web.signin import client_of

HONEYPOT = "company_url"
MIN_FILL_S = 3
MAX_FILL_S = 24 * 3600
FIELDS = ("name", "email", "website", "promotion", "password", "terms")


def _stamp(secret_key: str, slug: str, at_ms: int) -> str:
    message = f"join\x00{slug}\x00{at_ms}".encode()
    signature = hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]
    return f"{at_ms}.{signature}"


def _filled_in_time(secret_key: str, slug: str, stamp: str) -> bool:
    """Whether the form came back between ``MIN_FILL_S`` and ``MAX_FILL_S`` after it was
    shown (by the signed time it carries)."""
    at, _, _ = stamp.partition(".")
    if not at.isdigit() or len(at) > 15:
        return False
    if not hmac.compare_digest(_stamp(secret_key, slug, int(at)), stamp):
        return False
    waited_ms = now_ms() - int(at)
    return MIN_FILL_S * 1000 <= waited_ms <= MAX_FILL_S * 1000


async def _programme(reader: Reader, slug: str) -> tuple[Programme, Merchant]:
    found = await applications.open_programme(reader, slug)
    if found is None:
        raise NotFoundException("no programme open to applications here")
    return found


def _page(
    settings: Settings,
    programme: Programme,
    merchant: Merchant,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Template:
    context = {
        "programme": programme,
        "merchant": merchant,
        "values": {k: v for k, v in values.items() if k != "password"},
        "errors": errors,
        "stamp": _stamp(settings.secret_key, programme.slug, now_ms()),
        "honeypot": HONEYPOT,
    }
    return Template("join.html", context=context, status_code=status_code)


@get("/join/{slug:str}")
async def join_page(slug: FromPath[str], reader: Reader, state: State) -> Template:
    programme, merchant = await _programme(reader, slug)
    return _page(state.settings, programme, merchant, {}, {})


@post("/join/{slug:str}", status_code=200)
async def apply(
    request: Request[Any, Any, Any], slug: FromPath[str], writer: Writer, state: State
) -> Template:
    settings: Settings = state.settings
    programme, merchant = await _programme(writer, slug)
    form = await typed_form(request)
    values = {name: form.get(name, "")[:4000] for name in FIELDS}
    sent = Template("join_sent.html", context={"merchant": merchant})
    if form.get(HONEYPOT):
        return sent  # a robot: it learns nothing
    if not _filled_in_time(settings.secret_key, slug, form.get("started", "")):
        errors = {"form": "This form was sent back too quickly or too late: please send it again."}
        return _page(settings, programme, merchant, values, errors, 400)
    application = ApplicationForm(**values)
    errors = applications.check_form(application)
    if errors:
        return _page(settings, programme, merchant, values, errors, 400)
    if not await form_limits.admit(
        state.redis,
        settings.secret_key,
        form_limits.APPLY,
        client_of(request, settings),
        application.email,
    ):
        errors = {"form": "Too many applications. Wait an hour and try again."}
        return _page(settings, programme, merchant, values, errors, 429)
    await applications.apply(writer, programme, merchant, application, settings.public_url)
    return sent


@get("/join/confirm/{token:str}")
async def confirm_page(token: FromPath[str], reader: Reader) -> Template:
    valid = await account_tokens.find(reader, token, TokenPurpose.CONFIRM) is not None
    context = {"token": token if valid else "", "valid": valid, "done": None}
    return Template("join_confirm.html", context=context, status_code=200 if valid else 404)


@post("/join/confirm/{token:str}", status_code=200)
async def confirm(token: FromPath[str], writer: Writer, state: State) -> Template:
    settings: Settings = state.settings
    application = await applications.confirm(writer, token, settings.public_url)
    if application is None:
        context = {"token": "", "valid": False, "done": None}
        return Template("join_confirm.html", context=context, status_code=404)
    context = {"token": "", "valid": True, "done": application}
    return Template("join_confirm.html", context=context)


JOIN_HANDLERS = [confirm_page, confirm, join_page, apply]
