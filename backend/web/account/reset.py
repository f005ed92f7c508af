"""Password reset (``/reset``) and invitations (``/invite/{token}``): asking for a link, and
choosing a password with one. Asking answers the same whether the address has an account; it
is rate-limited per client and per address. A password set with a link signs its account in
and opens a locked account again (``login_throttle.unlock``)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template

from backend.core.settings import Settings
from backend.core.validation import FieldError
from backend.domain import account_tokens, form_limits
from backend.domain.applications import MAX_PASSWORD
from backend.domain.login_throttle import unlock
from backend.domain.password_reset import request_reset, set_password
from backend.storage.db.models import TokenPurpose
from backend.web.api.deps import Reader, Writer
from backend.web.sessions import sign_in
from backend.web.signin import client_of, home_of


class ResetRequest(msgspec.Struct):
    email: str = ""


class NewPassword(msgspec.Struct):
    password: str = ""


@get("/reset")
async def reset_page() -> Template:
    return Template("reset.html", context={"sent": False, "error": None, "email": ""})


@post("/reset", status_code=200)
async def ask_for_reset(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[ResetRequest],
    writer: Writer,
    state: State,
) -> Template:
    settings: Settings = state.settings
    email = data.email.strip().lower()
    if not 3 <= len(email) <= 320 or "@" not in email:
        context = {"sent": False, "error": "Give the e-mail address you sign in with.", "email": ""}
        return Template("reset.html", context=context, status_code=400)
    address = client_of(request, settings)
    if not await form_limits.admit(
        state.redis, settings.secret_key, form_limits.RESET, address, email
    ):
        error = "Too many requests. Wait an hour and try again."
        context = {"sent": False, "error": error, "email": email}
        return Template("reset.html", context=context, status_code=429)
    await request_reset(writer, email, settings.public_url)
    return Template("reset.html", context={"sent": True, "error": None, "email": email})


def _purpose(kind: str) -> TokenPurpose:
    return TokenPurpose.INVITE if kind == "invite" else TokenPurpose.RESET


def _password_page(kind: str, token: str, error: str | None, status_code: int) -> Template:
    context = {"kind": kind, "token": token, "error": error, "valid": True}
    return Template("new_password.html", context=context, status_code=status_code)


async def _show(kind: str, token: str, reader: Reader) -> Template:
    if await account_tokens.find(reader, token, _purpose(kind)) is None:
        context = {"kind": kind, "token": "", "error": None, "valid": False}
        return Template("new_password.html", context=context, status_code=404)
    return _password_page(kind, token, None, 200)


async def _choose(
    kind: str, request: Request[Any, Any, Any], token: str, password: str, writer: Writer
) -> Template | Redirect:
    if len(password) > MAX_PASSWORD:
        error = f"The password must have at most {MAX_PASSWORD:,} characters."
        return _password_page(kind, token, error, 400)
    try:
        user = await set_password(writer, token, _purpose(kind), password)
    except FieldError as error:
        return _password_page(kind, token, error.message[0].upper() + error.message[1:] + ".", 400)
    if user is None:
        context = {"kind": kind, "token": "", "error": None, "valid": False}
        return Template("new_password.html", context=context, status_code=404)
    settings: Settings = request.app.state.settings
    await unlock(request.app.state.redis, settings.secret_key, user.email)
    sign_in(request, user)
    return Redirect(home_of(user))


@get("/reset/{token:str}")
async def reset_form(token: FromPath[str], reader: Reader) -> Template:
    return await _show("reset", token, reader)


@post("/reset/{token:str}", status_code=200)
async def reset_password(
    request: Request[Any, Any, Any],
    token: FromPath[str],
    data: URLEncodedBody[NewPassword],
    writer: Writer,
) -> Template | Redirect:
    return await _choose("reset", request, token, data.password, writer)


@get("/invite/{token:str}")
async def invitation_form(token: FromPath[str], reader: Reader) -> Template:
    return await _show("invite", token, reader)


@post("/invite/{token:str}", status_code=200)
async def accept_invitation(
    request: Request[Any, Any, Any],
    token: FromPath[str],
    data: URLEncodedBody[NewPassword],
    writer: Writer,
) -> Template | Redirect:
    return await _choose("invite", request, token, data.password, writer)


RESET_HANDLERS = [
    reset_page,
    ask_for_reset,
    reset_form,
    reset_password,
    invitation_form,
    accept_invitation,
]
