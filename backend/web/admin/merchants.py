"""Merchant pages: list, create, edit, with the install code, key and postback secret (and its
rotation, the old secret still signing for a day so the shop's server can switch), and what
auto-approval does and puts at risk."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.core.scope import Viewer
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.auto_approval import commission_at_risk
from backend.domain.affiliate.postback import GRACE_MS, rotate_secret
from backend.domain.affiliate.schemas import MerchantCreate, MerchantUpdate
from backend.storage.db.models import Merchant
from backend.web.admin.conversions import utc_time
from backend.web.admin.forms import (
    PAGE_SIZE,
    Field,
    FormInvalid,
    edit_page,
    form_values,
    new_page,
    submit,
    typed_form,
)
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, get_or_404, merchant_out, page_of
from backend.web.pages.install import merchant_install

FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field("currency", "Currency", "a three-letter ISO 4217 code such as EUR", required=True),
    Field(
        "domains",
        "Allowed domains",
        "bare host names such as shop.example, one per line",
        kind="list",
    ),
    Field(
        "attribution_window_days",
        "Attribution window (days)",
        "a whole number of days from 1 to 365, or empty for the default",
        kind="number",
    ),
    Field(
        "auto_approve_days",
        "Auto-approve after (days)",
        "a whole number of days from 0 to 365 after which pending verified conversions are"
        " approved, or empty to decide each one",
        kind="number",
    ),
    Field(
        "auto_approve_unverified_max_minor",
        "Also auto-approve unverified (pixel, snippet) conversions up to (minor units, e.g. cents)",
        "a whole number of minor units such as 5000 for 50.00, or empty to approve only verified"
        " conversions automatically (anyone can fire a pixel, with any amount)",
        kind="number",
    ),
    Field(
        "max_order_minor",
        "Maximum order value (minor units)",
        "a whole number of minor units of the merchant's currency (4990 for 49.90 EUR), or"
        " empty: sales over it are refused",
        kind="number",
    ),
)


def _new(
    viewer: Viewer, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Template:
    return new_page(
        viewer, "New merchant", "/admin/merchants/new", FIELDS, values, errors, status=status
    )


async def _show(
    session: AsyncSession,
    merchant: Merchant,
    viewer: Viewer,
    state: State,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    out = merchant_out(merchant)
    at_risk = await commission_at_risk(session, merchant)
    until_ms = merchant.previous_secret_until_ms
    previous_until = utc_time(until_ms) if until_ms is not None and until_ms > now_ms() else None
    return edit_page(
        "admin/merchant.html",
        viewer,
        heading=merchant.name,
        kind="merchant",
        object_id=merchant.id,
        action=f"/admin/merchants/{merchant.id}",
        fields=FIELDS,
        values=values if values is not None else form_values(out, FIELDS),
        errors=errors or {},
        facts=[("Public key", merchant.key), ("Created", f"{merchant.created_at:%Y-%m-%d %H:%M}")],
        status=status,
        secret=merchant.postback_secret,
        previous_until=previous_until,
        grace_hours=GRACE_MS // 3_600_000,
        install=merchant_install(merchant, state.settings, state.snippet),
        auto_approval=out.auto_approval,
        at_risk=at_risk,
        limit=out.auto_approve_unverified_max_minor,
        currency=merchant.currency,
    )


class MerchantPages(Controller):
    path = "/merchants"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Merchant), Merchant.id, after, PAGE_SIZE, merchant_out)
        return Template("admin/merchants.html", context={"viewer": viewer, "page": page})

    @get("/new")
    async def new(self, viewer: CurrentViewer) -> Template:
        return _new(viewer, {"currency": "EUR"}, {})

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            merchant = await submit(
                form,
                FIELDS,
                MerchantCreate,
                lambda data: catalogue.create_merchant(writer, state.catalog, data),
            )
        except FormInvalid as invalid:
            return _new(viewer, form, invalid.errors, 400)
        return Redirect(f"/admin/merchants/{merchant.id}", status_code=303)

    @get("/{merchant_id:int}")
    async def show(
        self, merchant_id: FromPath[int], viewer: CurrentViewer, reader: Reader, state: State
    ) -> Template:
        return await _show(reader, await get_or_404(reader, Merchant, merchant_id), viewer, state)

    @post("/{merchant_id:int}", status_code=200)
    async def update(
        self,
        request: Request[Any, Any, Any],
        merchant_id: FromPath[int],
        viewer: CurrentViewer,
        writer: Writer,
        state: State,
    ) -> Template | Redirect:
        merchant = await get_or_404(writer, Merchant, merchant_id)
        form = await typed_form(request)
        try:
            await submit(
                form,
                FIELDS,
                MerchantUpdate,
                lambda data: catalogue.update_merchant(writer, state.catalog, merchant, data),
            )
        except FormInvalid as invalid:
            return await _show(writer, merchant, viewer, state, form, invalid.errors, 400)
        return Redirect(f"/admin/merchants/{merchant_id}", status_code=303)

    @post("/{merchant_id:int}/rotate-secret")
    async def rotate_postback_secret(self, merchant_id: FromPath[int], writer: Writer) -> Redirect:
        """A new postback secret; the page says until when the old one still signs."""
        merchant = await get_or_404(writer, Merchant, merchant_id)
        rotate_secret(merchant, now_ms())
        await writer.commit()
        return Redirect(f"/admin/merchants/{merchant_id}", status_code=303)
