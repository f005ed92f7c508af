"""API key pages: list, create (the key is shown once, only its hash is kept), revoke."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.domain import accounts
from backend.domain.affiliate.schemas import Name
from backend.storage.db.models import ApiKey
from backend.web.admin.forms import Field
from backend.web.admin.lookups import choices, partner_names
from backend.web.admin.object_pages import NewObjectPages
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import get_or_404


class ApiKeyForm(msgspec.Struct):
    name: Name
    partner_id: int | None = None


class ApiKeyPages(NewObjectPages[ApiKeyForm, tuple[ApiKey, str]]):
    path = "/api-keys"
    kind = "API key"

    new_schema = ApiKeyForm

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        keys = (await reader.scalars(select(ApiKey).order_by(ApiKey.id))).all()
        partners = await partner_names(reader)
        context = {"viewer": viewer, "keys": keys, "partners": partners}
        return Template("admin/api_keys.html", context=context)

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        partners = await partner_names(session)
        return (
            Field(
                "name", "Name", "a name of 1 to 200 characters saying who uses it", required=True
            ),
            Field(
                "partner_id",
                "Partner",
                "empty for an admin key, or the one partner whose data the key may read",
                kind="select",
                options=choices(partners),
            ),
        )

    async def create_object(
        self, writer: AsyncSession, state: State, data: ApiKeyForm
    ) -> tuple[ApiKey, str]:
        return await accounts.create_api_key(writer, data.name, data.partner_id)

    def created(self, viewer: Viewer, made: tuple[ApiKey, str]) -> Template:
        row, key = made
        return Template(
            "admin/secret.html",
            context={
                "viewer": viewer,
                "heading": f"API key {row.name} created",
                "label": "Key (send it as Authorization: Bearer <key>)",
                "secret": key,
                "back": self.page_url(),
            },
            headers={"Cache-Control": "no-store"},
        )

    @post("/{object_id:int}/revoke")
    async def revoke(self, object_id: FromPath[int], writer: Writer) -> Redirect:
        await writer.delete(await get_or_404(writer, ApiKey, object_id))
        await writer.commit()
        return Redirect(self.page_url(), status_code=303)
