"""Partner group pages: the groups (tiers) with their partners and rates per campaign, and the
forms that make a group, set a rate and move a partner into a group, through the same rules as
the API (``backend.domain.affiliate.groups``, ``catalogue.update_partner``)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import MoneyError, parse_amount
from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.groups import create_group, set_rate
from backend.domain.affiliate.payout_schemas import GroupCreate, GroupRateSet
from backend.domain.affiliate.schemas import PartnerUpdate
from backend.storage.db.models import Partner, PartnerGroup
from backend.web.admin.forms import FormInvalid, typed_form
from backend.web.admin.lookups import campaign_currency, campaign_names, partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.groups import group_out
from backend.web.api.resources import get_or_404

PAGE = "/admin/groups"


class GroupPages(Controller):
    path = "/groups"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await _index(viewer, reader)

    @post("/")
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            await create_group(writer, msgspec.convert({"name": form.get("name", "")}, GroupCreate))
        except (FieldError, msgspec.ValidationError) as error:
            await writer.rollback()
            return await _index(viewer, writer, _said(error))
        return Redirect(PAGE, status_code=303)

    @post("/rates")
    async def rate(
        self,
        request: Request[Any, Any, Any],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            group = await get_or_404(writer, PartnerGroup, _int(form, "group_id"))
            campaign_id = _int(form, "campaign_id")
            data = msgspec.convert(
                {
                    "campaign_id": campaign_id,
                    "commission_percent": form.get("commission_percent", "0") or "0",
                    "commission_flat_minor": await _flat(writer, form, campaign_id),
                },
                GroupRateSet,
            )
            await set_rate(writer, state.catalog, group, data)
        except (FieldError, msgspec.ValidationError) as error:
            await writer.rollback()
            return await _index(viewer, writer, _said(error))
        return Redirect(PAGE, status_code=303)

    @post("/members")
    async def join(
        self,
        request: Request[Any, Any, Any],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            partner = await get_or_404(writer, Partner, _int(form, "partner_id"))
            raw = form.get("group_id", "")
            data = PartnerUpdate(group_id=_int(form, "group_id") if raw else None)
            await catalogue.update_partner(writer, state.catalog, partner, data)
        except (FieldError, msgspec.ValidationError) as error:
            await writer.rollback()
            return await _index(viewer, writer, _said(error))
        return Redirect(PAGE, status_code=303)


def _int(form: dict[str, str], name: str, default: int | None = None) -> int:
    raw = form.get(name, "").strip()
    if not raw and default is not None:
        return default
    if not raw.isdigit() or len(raw) > 10:
        raise FieldError(name, "a whole number")
    return int(raw)


async def _flat(session: AsyncSession, form: dict[str, str], campaign_id: int) -> int:
    """The flat commission typed ("0.50") in minor units of the campaign's currency."""
    raw = form.get("commission_flat_minor", "").strip() or "0"
    try:
        currency = await campaign_currency(session, campaign_id) or ""
        return parse_amount(raw, currency)
    except FormInvalid as invalid:
        raise FieldError("campaign_id", invalid.errors["campaign_id"]) from None
    except MoneyError as error:
        raise FieldError("commission_flat_minor", f"an amount such as 0.50: {error}") from None


def _said(error: Exception) -> str:
    if isinstance(error, FieldError):
        return f"{error.field}: {error.message}"
    return str(error)


async def _index(viewer: Viewer, session: AsyncSession, error: str = "") -> Template:
    groups = (await session.scalars(select(PartnerGroup).order_by(PartnerGroup.id))).all()
    context = {
        "viewer": viewer,
        "groups": [await group_out(session, group) for group in groups],
        "partners": await partner_names(session),
        "campaigns": await campaign_names(session, viewer),
        "error": error,
    }
    return Template("admin/groups.html", context=context, status_code=400 if error else 200)
