"""What every admin object's pages share: the form that creates one, the object's page with its
edit form, and the two POSTs behind them.

A controller subclasses ``NewObjectPages`` (a create form only: users, API keys) or
``ObjectPages`` (create and edit), says what its objects are (kind, schemas, fields, template)
and how to save one, and keeps only what is its own. A refused form comes back 400 with every
error by its field and what was typed (never a password); a saved one is a 303 to the object's
page.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.storage.db.models import Base
from backend.web.admin.forms import Field, FormInvalid, form_values, submit, typed_form
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404

PREFIX = "/admin"
"""Where ``backend.web.site`` mounts the admin pages."""


New = TypeVar("New", bound=msgspec.Struct)
Edit = TypeVar("Edit", bound=msgspec.Struct)
Made = TypeVar("Made")
M = TypeVar("M", bound=Base)


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """What an object's page shows besides its edit form."""

    heading: str
    facts: Sequence[tuple[str, object]]
    current: object  # the API's view of the object: what the edit form starts with
    extra: Mapping[str, object] = field(default_factory=dict)  # for the page's own template


class NewObjectPages(Controller, ABC, Generic[New, Made]):
    """``GET new`` and ``POST new``: a form that makes a ``Made`` from a ``New``."""

    # What a subclass sets (those typed by a type variable cannot be ClassVars).
    kind: ClassVar[str]  # in the heading: "New partner"
    new_schema: type[New]
    new_values: ClassVar[Mapping[str, str]] = MappingProxyType({})  # what the form starts with
    intro: ClassVar[str] = ""

    @abstractmethod
    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        """The create form's fields (a select's choices may come from the database)."""

    @abstractmethod
    async def create_object(self, writer: AsyncSession, state: State, data: New) -> Made:
        """Save what the form says; ``FieldError`` or ``FormInvalid`` when it is refused."""

    @abstractmethod
    def created(self, viewer: Viewer, made: Made) -> Template | Redirect:
        """The answer once saved."""

    async def form_currency(
        self, session: AsyncSession, form: Mapping[str, str], obj: object | None
    ) -> str | None:
        """The currency the form's money fields are in (the merchant's: chosen in ``form``, or
        ``obj``'s); None where a form has no money or the merchant is not chosen yet."""
        return None

    async def shown_currency(
        self, session: AsyncSession, values: Mapping[str, str], obj: object | None
    ) -> str | None:
        """``form_currency`` for a form being shown: a merchant that does not exist is that
        form's error already, so it shows no currency."""
        try:
            return await self.form_currency(session, values, obj)
        except FormInvalid:
            return None

    def page_url(self, object_id: int | None = None) -> str:
        return f"{PREFIX}{self.path}" + ("" if object_id is None else f"/{object_id}")

    async def new_form(
        self,
        viewer: Viewer,
        session: AsyncSession,
        values: Mapping[str, str],
        errors: Mapping[str, str],
        status: int = 200,
    ) -> Template:
        fields = await self.new_fields(session)
        secret = {f.name for f in fields if f.kind == "password"}
        context = {
            "viewer": viewer,
            "heading": f"New {self.kind}",
            "action": f"{self.page_url()}/new",
            "fields": fields,
            "values": {name: value for name, value in values.items() if name not in secret},
            "errors": errors,
            "intro": self.intro,
            "submit": "Create",
            "currency": await self.shown_currency(session, values, None),
        }
        return Template("admin/new.html", context=context, status_code=status)

    @get("/new")
    async def new(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await self.new_form(viewer, reader, self.new_values, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        fields = await self.new_fields(writer)
        try:
            made = await submit(
                form,
                fields,
                self.new_schema,
                lambda data: self.create_object(writer, state, data),
                await self.form_currency(writer, form, None),
            )
        except FormInvalid as invalid:
            await writer.rollback()  # a refused insert leaves the session to be reset
            return await self.new_form(viewer, writer, form, invalid.errors, 400)
        return self.created(viewer, made)


class ObjectPages(NewObjectPages[New, M], Generic[M, New, Edit]):
    """Adds the object's page (``GET {id}``) and its edit form (``POST {id}``)."""

    model: type[M]
    template: ClassVar[str]  # extends admin/edit.html
    edit_schema: type[Edit]
    edit_fields: ClassVar[Sequence[Field]]

    @abstractmethod
    async def update_object(self, writer: AsyncSession, state: State, obj: M, data: Edit) -> None:
        """Save the edit form; ``FieldError`` when it is refused."""

    @abstractmethod
    async def object_page(self, session: AsyncSession, state: State, obj: M) -> ObjectPage:
        """What the object's page shows about it."""

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        return self.edit_fields

    def created(self, viewer: Viewer, made: M) -> Redirect:
        return Redirect(self.page_url(_id(made)), status_code=303)

    async def load(self, session: AsyncSession, object_id: int) -> M:
        return await get_or_404(session, self.model, object_id)

    async def object_form(
        self,
        viewer: Viewer,
        session: AsyncSession,
        state: State,
        obj: M,
        values: Mapping[str, str] | None = None,
        errors: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        page = await self.object_page(session, state, obj)
        currency = await self.shown_currency(session, values or {}, obj)
        context = {
            "viewer": viewer,
            "heading": page.heading,
            "kind": self.kind,
            "object_id": _id(obj),
            "action": self.page_url(_id(obj)),
            "fields": self.edit_fields,
            "values": values
            if values is not None
            else form_values(page.current, self.edit_fields, currency),
            "currency": currency,
            "errors": errors or {},
            "facts": page.facts,
            **page.extra,
        }
        return Template(
            self.template,
            context=context,
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )

    @get("/{object_id:int}")
    async def show(
        self, object_id: FromPath[int], viewer: CurrentViewer, reader: Reader, state: State
    ) -> Template:
        return await self.object_form(viewer, reader, state, await self.load(reader, object_id))

    @post("/{object_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        object_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        obj = await self.load(writer, object_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                self.edit_fields,
                self.edit_schema,
                lambda data: self.update_object(writer, state, obj, data),
                await self.form_currency(writer, form, obj),
            )
        except FormInvalid as invalid:
            return await self.object_form(viewer, writer, state, obj, form, invalid.errors, 400)
        return Redirect(self.page_url(object_id), status_code=303)


def _id(obj: Base) -> int:
    """Every object with pages has an integer ``id`` (``Base`` does not say so)."""
    return int(getattr(obj, "id"))  # noqa: B009
