"""Merchant pages: list, create, edit, with the install code, key and postback secret (and its
rotation, the old secret still signing for a day so the shop's server can switch), and what
auto-approval does and puts at risk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import HOUR_MS, now_ms
from backend.domain.affiliate import catalogue
from backend.domain.affiliate.auto_approval import commission_at_risk
from backend.domain.affiliate.postback import GRACE_MS, rotate_secret
from backend.domain.affiliate.schemas import MerchantCreate, MerchantUpdate
from backend.storage.db.models import Merchant
from backend.web.admin.conversions import utc_time
from backend.web.admin.forms import PAGE_SIZE, Field, typed_currency
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.admin.payouts import PAYOUT_FIELDS
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, merchant_out, page_of
from backend.web.pages.install import merchant_install

FIELDS = (
    Field("name", "Name", "a name of 1 to 200 characters", required=True),
    Field("currency", "Currency", "a three-letter ISO 4217 code such as EUR", required=True),
    Field(
        "locale",
        "Money written as in",
        "a locale such as en (€1,234.50), en_GB, de_DE (1.234,50 €) or fr_FR",
    ),
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
        "Also auto-approve unverified (pixel, snippet) conversions up to",
        "an amount such as 50.00 in the merchant's currency, or empty to approve only verified"
        " conversions automatically (anyone can fire a pixel, with any amount)",
        kind="money",
    ),
    Field(
        "max_order_minor",
        "Maximum order value",
        "an amount such as 5000.00 in the merchant's currency, or empty: sales over it are refused",
        kind="money",
    ),
    Field(
        "coupon_over_click",
        "When a sale names a click and another partner's coupon, credit",
        "the click's partner (the default) or the coupon's",
        kind="select",
        options=(("false", "the click's partner"), ("true", "the coupon's partner")),
        required=True,
    ),
)
EDIT_FIELDS = (*FIELDS, *PAYOUT_FIELDS)  # a new merchant starts without payouts set up


class MerchantPages(ObjectPages[Merchant, MerchantCreate, MerchantUpdate]):
    path = "/merchants"
    kind = "merchant"
    model = Merchant
    template = "admin/merchant.html"
    new_schema = MerchantCreate
    edit_schema = MerchantUpdate
    edit_fields = EDIT_FIELDS
    new_values = MappingProxyType({"currency": "EUR", "locale": "en", "coupon_over_click": "false"})

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        return FIELDS

    async def form_currency(
        self, session: AsyncSession, form: Mapping[str, str], obj: object | None
    ) -> str | None:
        """The currency typed in the form (a merchant's amounts are in its own, new, currency),
        else the merchant's."""
        typed = typed_currency(form)
        if typed is not None:
            return typed
        return obj.currency if isinstance(obj, Merchant) else None

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(reader, select(Merchant), Merchant.id, after, PAGE_SIZE, merchant_out)
        return Template("admin/merchants.html", context={"viewer": viewer, "page": page})

    async def create_object(
        self, writer: AsyncSession, state: State, data: MerchantCreate
    ) -> Merchant:
        return await catalogue.create_merchant(writer, state.catalog, data)

    async def update_object(
        self, writer: AsyncSession, state: State, obj: Merchant, data: MerchantUpdate
    ) -> None:
        await catalogue.update_merchant(writer, state.catalog, obj, data)

    async def object_page(self, session: AsyncSession, state: State, obj: Merchant) -> ObjectPage:
        out = merchant_out(obj)
        until_ms = obj.previous_secret_until_ms
        previous_until = (
            utc_time(until_ms) if until_ms is not None and until_ms > now_ms() else None
        )
        return ObjectPage(
            heading=obj.name,
            facts=[("Public key", obj.key), ("Created", f"{obj.created_at:%Y-%m-%d %H:%M}")],
            current=out,
            extra={
                "secret": obj.postback_secret,
                "previous_until": previous_until,
                "grace_hours": GRACE_MS // HOUR_MS,
                "install": merchant_install(obj, state.settings, state.snippet),
                "auto_approval": out.auto_approval,
                "at_risk": await commission_at_risk(session, obj),
                "limit": out.auto_approve_unverified_max_minor,
                "currency": obj.currency,
            },
        )

    @post("/{object_id:int}/rotate-secret")
    async def rotate_postback_secret(self, object_id: FromPath[int], writer: Writer) -> Redirect:
        """A new postback secret; the page says until when the old one still signs."""
        rotate_secret(await self.load(writer, object_id), now_ms())
        await writer.commit()
        return Redirect(self.page_url(object_id), status_code=303)
