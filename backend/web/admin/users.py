"""User pages: list, create (admin, or a partner's user), delete; passwords are argon2."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain import accounts
from backend.domain.affiliate.schemas import Email
from backend.domain.auth import generate_password
from backend.storage.db.models import Role, User
from backend.web.admin.forms import Field, FormInvalid
from backend.web.admin.lookups import choices, partner_names
from backend.web.admin.object_pages import NewObjectPages
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404


class UserForm(msgspec.Struct):
    email: Email
    role: Role
    partner_id: int | None = None
    password: str = ""
    password_again: str = ""


class UserPages(NewObjectPages[UserForm, tuple[User, str]]):
    path = "/users"
    kind = "user"
    new_schema = UserForm
    new_values = MappingProxyType({"role": "admin"})

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        users = (await reader.scalars(select(User).order_by(User.email))).all()
        partners = await partner_names(reader)
        context = {"viewer": viewer, "users": users, "partners": partners}
        return Template("admin/users.html", context=context)

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        partners = await partner_names(session)
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
                options=choices(partners),
            ),
            Field(
                "password",
                "Password",
                f"at least {accounts.MIN_PASSWORD_LENGTH} characters; leave both empty to"
                " generate one",
                kind="password",
            ),
            Field("password_again", "Password again", "the same password again", kind="password"),
        )

    async def create_object(
        self, writer: AsyncSession, state: State, data: UserForm
    ) -> tuple[User, str]:
        """The user and the password generated for it ("" when one was typed)."""
        password = generated = ""
        if not data.password and not data.password_again:
            password = generated = generate_password()
        elif data.password != data.password_again:
            raise FormInvalid({"password_again": "the two passwords differ"})
        else:
            password = data.password
        user = await accounts.create_user(writer, data.email, data.role, data.partner_id, password)
        return user, generated

    def created(self, viewer: Viewer, made: tuple[User, str]) -> Template | Redirect:
        user, generated = made
        if not generated:
            return Redirect(self.page_url(), status_code=303)
        return Template(
            "admin/secret.html",
            context={
                "viewer": viewer,
                "heading": f"User {user.email} created",
                "label": "Password",
                "secret": generated,
                "back": self.page_url(),
            },
            headers={"Cache-Control": "no-store"},
        )

    @post("/{object_id:int}/delete")
    async def delete(
        self, object_id: FromPath[int], viewer: CurrentViewer, writer: Writer
    ) -> Redirect:
        user = await get_or_404(writer, User, object_id)
        if viewer.actor == f"user:{user.email}":
            raise ClientException("you cannot delete your own account while signed in with it")
        try:
            await accounts.delete_user(writer, user)
        except FieldError as error:
            raise ClientException(error.message) from None
        return Redirect(self.page_url(), status_code=303)
