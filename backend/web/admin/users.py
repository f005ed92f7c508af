"""User pages: list, create (admin, or a partner's user), delete; passwords are argon2."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import ClientException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain import accounts
from backend.domain.affiliate.schemas import Email
from backend.domain.auth import generate_password
from backend.storage.db.models import Role, User
from backend.web.admin.forms import Field, FormInvalid, new_page, submit, typed_form
from backend.web.admin.lookups import partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404


class UserForm(msgspec.Struct):
    email: Email
    role: Role
    partner_id: int | None = None
    password: str = ""
    password_again: str = ""


def _fields(partners: dict[int, str]) -> tuple[Field, ...]:
    return (
        Field("email", "Email", "an email address", kind="email", required=True),
        Field(
            "role",
            "Role",
            "admin (everything) or partner (one partner's own data)",
            kind="select",
            options=[(role.value, role.value) for role in Role],
            required=True,
        ),
        Field(
            "partner_id",
            "Partner (for a partner user)",
            "the partner whose data this user sees",
            kind="select",
            options=[(str(key), name) for key, name in partners.items()],
        ),
        Field(
            "password",
            "Password",
            f"at least {accounts.MIN_PASSWORD_LENGTH} characters; leave both empty to generate one",
            kind="password",
        ),
        Field("password_again", "Password again", "the same password again", kind="password"),
    )


async def _new(
    viewer: Viewer,
    session: AsyncSession,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Template:
    partners = await partner_names(session)
    shown = {name: value for name, value in values.items() if not name.startswith("password")}
    return new_page(
        viewer, "New user", "/admin/users/new", _fields(partners), shown, errors, status=status
    )


class UserPages(Controller):
    path = "/users"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        users = (await reader.scalars(select(User).order_by(User.email))).all()
        partners = await partner_names(reader)
        context = {"viewer": viewer, "users": users, "partners": partners}
        return Template("admin/users.html", context=context)

    @get("/new")
    async def new(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await _new(viewer, reader, {"role": "admin"}, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
    ) -> Template | Redirect:
        form = await typed_form(request)
        partners = await partner_names(writer)
        generated = ""

        async def save(data: UserForm) -> User:
            nonlocal generated
            password = data.password
            if not password and not data.password_again:
                password = generated = generate_password()
            elif password != data.password_again:
                raise FormInvalid({"password_again": "the two passwords differ"})
            return await accounts.create_user(
                writer, data.email, data.role, data.partner_id, password
            )

        try:
            user = await submit(form, _fields(partners), UserForm, save)
        except FormInvalid as invalid:
            return await _new(viewer, writer, form, invalid.errors, 400)
        if not generated:
            return Redirect("/admin/users", status_code=303)
        return Template(
            "admin/secret.html",
            context={
                "viewer": viewer,
                "heading": f"User {user.email} created",
                "label": "Password",
                "secret": generated,
                "back": "/admin/users",
            },
            headers={"Cache-Control": "no-store"},
        )

    @post("/{user_id:int}/delete")
    async def delete(
        self, user_id: FromPath[int], viewer: CurrentViewer, writer: Writer
    ) -> Redirect:
        user = await get_or_404(writer, User, user_id)
        if viewer.actor == f"user:{user.email}":
            raise ClientException("you cannot delete your own account while signed in with it")
        await writer.delete(user)
        await writer.commit()
        return Redirect("/admin/users", status_code=303)
