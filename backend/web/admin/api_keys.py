"""API key pages: list, create (the key is shown once, only its hash is kept), revoke."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain import accounts
from backend.domain.affiliate.schemas import Name
from backend.storage.db.models import ApiKey
from backend.web.admin.forms import Field, FormInvalid, new_page, submit, typed_form
from backend.web.admin.lookups import partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404


class ApiKeyForm(msgspec.Struct):
    name: Name
    partner_id: int | None = None


def _fields(partners: dict[int, str]) -> tuple[Field, ...]:
    return (
        Field("name", "Name", "a name of 1 to 200 characters saying who uses it", required=True),
        Field(
            "partner_id",
            "Partner",
            "empty for an admin key, or the one partner whose data the key may read",
            kind="select",
            options=[(str(key), name) for key, name in partners.items()],
        ),
    )


async def _new(
    viewer: Viewer,
    session: AsyncSession,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Template:
    partners = await partner_names(session)
    return new_page(
        viewer,
        "New API key",
        "/admin/api-keys/new",
        _fields(partners),
        values,
        errors,
        status=status,
    )


class ApiKeyPages(Controller):
    path = "/api-keys"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        keys = (await reader.scalars(select(ApiKey).order_by(ApiKey.id))).all()
        partners = await partner_names(reader)
        context = {"viewer": viewer, "keys": keys, "partners": partners}
        return Template("admin/api_keys.html", context=context)

    @get("/new")
    async def new(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await _new(viewer, reader, {}, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
    ) -> Template:
        form = await typed_form(request)
        partners = await partner_names(writer)
        try:
            row, key = await submit(
                form,
                _fields(partners),
                ApiKeyForm,
                lambda data: accounts.create_api_key(writer, data.name, data.partner_id),
            )
        except FormInvalid as invalid:
            return await _new(viewer, writer, form, invalid.errors, 400)
        return Template(
            "admin/secret.html",
            context={
                "viewer": viewer,
                "heading": f"API key {row.name} created",
                "label": "Key (send it as Authorization: Bearer <key>)",
                "secret": key,
                "back": "/admin/api-keys",
            },
            headers={"Cache-Control": "no-store"},
        )

    @post("/{key_id:int}/revoke")
    async def revoke(self, key_id: FromPath[int], writer: Writer) -> Redirect:
        await writer.delete(await get_or_404(writer, ApiKey, key_id))
        await writer.commit()
        return Redirect("/admin/api-keys", status_code=303)
