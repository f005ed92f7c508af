"""A partner user's profile: who they are, the mails they asked for (a new conversion, a
status change, a payout sent), their password, and their own API keys (scoped to their
partner, shown once, revocable). Another partner's key is a 404."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.accounts import change_password, create_api_key
from backend.domain.affiliate.schemas import MAX_ID
from backend.domain.applications import MAX_PASSWORD
from backend.domain.auth import verify_password
from backend.storage.db.models import ApiKey, NotificationSetting, Partner, User
from backend.web.admin.forms import typed_form
from backend.web.api.deps import Reader, Writer
from backend.web.sessions import sign_in, signed_in_user

NOTIFICATIONS = (
    ("new_conversion", "A new conversion is credited to me"),
    ("status_change", "One of my conversions changes status"),
    ("payout_sent", "A payout is sent to me"),
)
MAX_KEY_NAME = 200


async def _partner_user(request: Request[Any, Any, Any], session: AsyncSession) -> User:
    """The signed-in partner user; to an admin the portal does not exist."""
    user = await signed_in_user(request, session)
    if user is None or user.role != "partner" or user.partner_id is None:
        raise NotFoundException("the portal is a partner's")
    return user


async def _page(
    session: AsyncSession,
    user: User,
    errors: dict[str, str] | None = None,
    saved: str = "",
    status_code: int = 200,
) -> Template:
    settings = await session.get(NotificationSetting, user.id)
    keys = (
        await session.scalars(
            select(ApiKey).where(ApiKey.partner_id == user.partner_id).order_by(ApiKey.id)
        )
    ).all()
    context = {
        "viewer": Viewer(partner_id=user.partner_id),
        "user": user,
        "partner": await session.get(Partner, user.partner_id),
        "notifications": [
            (name, label, bool(settings and getattr(settings, name)))
            for name, label in NOTIFICATIONS
        ],
        "keys": keys,
        "errors": errors or {},
        "saved": saved,
    }
    return Template("portal/profile.html", context=context, status_code=status_code)


@get("/portal/profile")
async def profile_page(request: Request[Any, Any, Any], reader: Reader) -> Template:
    return await _page(reader, await _partner_user(request, reader))


@post("/portal/profile/notifications", status_code=200)
async def save_notifications(request: Request[Any, Any, Any], writer: Writer) -> Template:
    user = await _partner_user(request, writer)
    form = await typed_form(request)
    settings = await writer.get(NotificationSetting, user.id) or NotificationSetting(
        user_id=user.id
    )
    for name, _ in NOTIFICATIONS:
        setattr(settings, name, form.get(name) == "true")
    writer.add(settings)
    await writer.commit()
    return await _page(writer, user, saved="Your mail settings are saved.")


@post("/portal/profile/password", status_code=200)
async def save_password(request: Request[Any, Any, Any], writer: Writer) -> Template:
    user = await _partner_user(request, writer)
    form = await typed_form(request)
    current, new = form.get("current", ""), form.get("password", "")
    if len(current) > MAX_PASSWORD or not verify_password(user.password_hash, current):
        return await _page(writer, user, {"current": "That is not your password."}, status_code=400)
    if len(new) > MAX_PASSWORD:
        error = f"The password must have at most {MAX_PASSWORD:,} characters."
        return await _page(writer, user, {"password": error}, status_code=400)
    try:
        await change_password(writer, user, new)
    except FieldError as error:
        message = error.message[0].upper() + error.message[1:] + "."
        return await _page(writer, user, {"password": message}, status_code=400)
    sign_in(request, user)  # every other session ends; this one goes on
    return await _page(writer, user, saved="Your password is changed.")


@post("/portal/keys")
async def create_key(request: Request[Any, Any, Any], writer: Writer) -> Template:
    user = await _partner_user(request, writer)
    name = (await typed_form(request)).get("name", "").strip()
    if not 1 <= len(name) <= MAX_KEY_NAME:
        error = f"Give the key a name, up to {MAX_KEY_NAME} characters."
        return await _page(writer, user, {"key": error}, status_code=400)
    _, key = await create_api_key(writer, name, user.partner_id)
    context = {"viewer": Viewer(partner_id=user.partner_id), "key": key, "name": name}
    return Template("portal/key.html", context=context, status_code=201)


@post("/portal/keys/{key_id:int}/revoke")
async def revoke_key(
    request: Request[Any, Any, Any], key_id: FromPath[int], writer: Writer
) -> Redirect:
    user = await _partner_user(request, writer)
    key = await writer.get(ApiKey, key_id) if 1 <= key_id <= MAX_ID else None
    if key is None or key.partner_id != user.partner_id:
        raise NotFoundException(f"no API key with id {key_id}")
    await writer.delete(key)
    await writer.commit()
    return Redirect("/portal/profile")


PROFILE_HANDLERS = [profile_page, save_notifications, save_password, create_key, revoke_key]
