"""Conversion source pages: list, create (the token is shown once, only its hash is kept), edit
the field mapping, the status map and the allow-list, rotate the token, delete. A store's source
(Stripe, Shopify) takes its signing secret (never shown back) and Shopify's shop domain instead
of a mapping.

The form is flat (one input per mapped field, the status map as ``value=status`` pairs); it is
read into the API's ``SourceCreate`` / ``SourceUpdate``, so the rules are the API's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from weakref import WeakKeyDictionary

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template
from msgspec import Meta
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import Name, ObjectId
from backend.domain.sources import (
    MAX_ALLOW_IPS,
    MAX_STATUSES,
    PRESETS,
    FieldName,
    Kind,
    Network,
    PresetName,
    ShopDomain,
    SigningSecret,
    SourceCreate,
    SourceFields,
    SourceUpdate,
    create_source,
    rotate_token,
    update_source,
)
from backend.storage.db.models import ConversionSource
from backend.web.admin.forms import PAGE_SIZE, Field
from backend.web.admin.lookups import merchants_by_id
from backend.web.admin.object_pages import ObjectPage, ObjectPages
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.resources import After, get_or_404, page_of

Pair = Annotated[str, Meta(max_length=130, pattern=r"^[^=\s]{1,64}=[a-z]{1,16}$")]


class SourceEdit(msgspec.Struct):
    """The form: ``SourceFields`` flat, the status map as ``value=status`` pairs."""

    name: Name
    field_click_id: FieldName | None = None
    field_order_id: FieldName = "txid"
    field_amount: FieldName | None = None
    field_commission: FieldName | None = None
    field_currency: FieldName | None = None
    field_status: FieldName | None = None
    statuses: Annotated[list[Pair], Meta(max_length=MAX_STATUSES)] = msgspec.field(
        default_factory=list
    )
    allow_ips: Annotated[list[Network], Meta(max_length=MAX_ALLOW_IPS)] = msgspec.field(
        default_factory=list
    )
    signing_secret: SigningSecret | None = None  # a store's; empty on an edit: kept
    shop_domain: ShopDomain | None = None


class SourceNew(SourceEdit):
    merchant_id: ObjectId = 0
    preset: PresetName | None = None
    kind: Kind = "network"


MAPPING_FIELDS = (
    Field("field_order_id", "Transaction id field", "a field name such as txid", required=True),
    Field("field_click_id", "Click id field", "a field name such as clickref, or empty"),
    Field("field_amount", "Sale amount field", "a field name such as sale, or empty"),
    Field("field_commission", "Commission field", "a field name such as payout, or empty"),
    Field("field_currency", "Currency field", "a field name such as cur, or empty"),
    Field("field_status", "Status field", "a field name such as status, or empty"),
    Field(
        "statuses",
        "Status map",
        "pairs of the network's value and ours (pending, approved, rejected, reversed) such as"
        " 1=approved 0=pending 2=rejected, one per line",
        kind="list",
    ),
    Field(
        "allow_ips",
        "Allowed addresses",
        "IP addresses or networks (CIDR) the network posts from, one per line; empty: any",
        kind="list",
    ),
)
NAME = Field("name", "Name", "a name of 1 to 200 characters", required=True)
STORE_FIELDS = (
    Field(
        "signing_secret",
        "Signing secret (stores)",
        "Stripe: the endpoint's signing secret (whsec_…); Shopify: the app's shared secret;"
        " on an edit, empty keeps the secret there is",
        kind="password",
    ),
    Field("shop_domain", "Shop domain (Shopify)", "such as example.myshopify.com, or empty"),
)
EDIT_FIELDS = (NAME, *MAPPING_FIELDS, *STORE_FIELDS)


def _mapping(form: SourceEdit) -> SourceFields:
    return SourceFields(
        order_id=form.field_order_id,
        click_id=form.field_click_id,
        amount=form.field_amount,
        commission=form.field_commission,
        currency=form.field_currency,
        status=form.field_status,
    )


def _statuses(pairs: list[str]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for pair in pairs:
        value, _, ours = pair.partition("=")
        if ours not in ("pending", "approved", "rejected", "reversed"):
            raise FieldError("statuses", f"{ours!r} is not pending, approved, rejected or reversed")
        statuses[value] = ours
    return statuses


def form_of(source: ConversionSource) -> SourceEdit:
    """What the edit form starts with."""
    fields = msgspec.convert(source.fields, SourceFields)
    return SourceEdit(
        name=source.name,
        field_click_id=fields.click_id,
        field_order_id=fields.order_id,
        field_amount=fields.amount,
        field_commission=fields.commission,
        field_currency=fields.currency,
        field_status=fields.status,
        statuses=[f"{value}={ours}" for value, ours in source.statuses.items()],
        allow_ips=list(source.allow_ips),
        shop_domain=source.shop_domain,
    )


# A new source's postback URL, from the request that made it to the page that shows it once:
# keyed by the request's own row object, and gone with it.
_NEW_URLS: WeakKeyDictionary[ConversionSource, str] = WeakKeyDictionary()


def _url_page(viewer: Viewer, source: ConversionSource, url: str) -> Template:
    return Template(
        "admin/secret.html",
        context={
            "viewer": viewer,
            "heading": f"Postback URL of {source.name}",
            "label": "The network's postback URL (its token is shown only now)",
            "secret": url,
            "back": f"/admin/sources/{source.id}",
        },
        headers={"Cache-Control": "no-store"},
    )


class SourcePages(ObjectPages[ConversionSource, SourceNew, SourceEdit]):
    path = "/sources"
    kind = "conversion source"
    model = ConversionSource
    template = "admin/source.html"
    new_schema = SourceNew
    edit_schema = SourceEdit
    edit_fields = EDIT_FIELDS
    intro = (
        "A network (or any server) that reports this merchant's sales to its own postback URL"
        " in its own field names. Pick a preset to start from its documented names, or leave"
        " the preset empty and fill in the mapping; a preset fills in only what is left empty."
    )

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader, after: After = 0) -> Template:
        page = await page_of(
            reader, select(ConversionSource), ConversionSource.id, after, PAGE_SIZE, lambda s: s
        )
        merchants = {m_id: m.name for m_id, m in (await merchants_by_id(reader)).items()}
        context = {"viewer": viewer, "page": page, "merchants": merchants}
        return Template("admin/sources.html", context=context)

    async def new_fields(self, session: AsyncSession) -> Sequence[Field]:
        merchants = await merchants_by_id(session)
        return (
            NAME,
            Field(
                "merchant_id",
                "Merchant",
                "one of the merchants",
                kind="select",
                options=[(str(m_id), m.name) for m_id, m in merchants.items()],
                required=True,
            ),
            Field(
                "kind",
                "Kind",
                "a network (fields mapped from its postbacks), Stripe or Shopify",
                kind="select",
                options=[("network", "network"), ("stripe", "Stripe"), ("shopify", "Shopify")],
                required=True,
            ),
            Field(
                "preset",
                "Preset",
                "empty, or one of the presets",
                kind="select",
                options=[(name, name) for name in PRESETS],
            ),
            *MAPPING_FIELDS,
            *STORE_FIELDS,
        )

    async def create_object(
        self, writer: AsyncSession, state: State, data: SourceNew
    ) -> ConversionSource:
        if data.merchant_id == 0:
            raise FieldError("merchant_id", "Expected one of the merchants")
        if data.kind != "network":
            store = SourceCreate(
                merchant_id=data.merchant_id,
                name=data.name,
                kind=data.kind,
                signing_secret=data.signing_secret,
                shop_domain=data.shop_domain,
            )
            source, token = await create_source(writer, store)
            _NEW_URLS[source] = f"{state.settings.public_url}/pb/{token}"
            return source
        preset_fields, preset_statuses = PRESETS[data.preset or "generic"]
        fields = _mapping(data)
        if data.preset:  # what the form leaves empty comes from the preset
            fields = SourceFields(
                **{
                    name: getattr(fields, name) or getattr(preset_fields, name)
                    for name in SourceFields.__struct_fields__
                }
            )
        statuses = _statuses(data.statuses) or dict(preset_statuses)
        create = SourceCreate(
            merchant_id=data.merchant_id,
            name=data.name,
            preset=data.preset,
            fields=fields,
            statuses=statuses,  # type: ignore[arg-type]  # checked by _statuses
            allow_ips=data.allow_ips,
        )
        source, token = await create_source(writer, create)
        _NEW_URLS[source] = f"{state.settings.public_url}/pb/{token}"
        return source

    def created(self, viewer: Viewer, made: ConversionSource) -> Template:  # type: ignore[override]
        """The postback URL with its token, shown this once."""
        return _url_page(viewer, made, _NEW_URLS.pop(made))

    async def update_object(
        self, writer: AsyncSession, state: State, obj: ConversionSource, data: SourceEdit
    ) -> None:
        update = SourceUpdate(
            name=data.name,
            fields=_mapping(data),
            statuses=_statuses(data.statuses),  # type: ignore[arg-type]  # checked
            allow_ips=data.allow_ips,
            signing_secret=data.signing_secret or msgspec.UNSET,
            shop_domain=data.shop_domain or msgspec.UNSET,
        )
        await update_source(writer, obj, update)

    async def object_page(
        self, session: AsyncSession, state: State, obj: ConversionSource
    ) -> ObjectPage:
        merchants = await merchants_by_id(session)
        merchant = merchants.get(obj.merchant_id)
        return ObjectPage(
            heading=obj.name,
            facts=[
                ("Merchant", merchant.name if merchant else f"#{obj.merchant_id}"),
                ("Kind", obj.kind),
                ("Preset", obj.preset or "none"),
                ("Shop domain", obj.shop_domain or "none"),
                ("Signing secret", "set" if obj.signing_secret else "none"),
                ("Postback URL", f"{state.settings.public_url}/pb/{obj.token_hint}…"),
                ("Created", f"{obj.created_at:%Y-%m-%d %H:%M}"),
            ],
            current=form_of(obj),
            extra={"source_id": obj.id},
        )

    @post("/{object_id:int}/rotate-token", status_code=200)
    async def rotate(
        self, object_id: FromPath[int], viewer: CurrentViewer, writer: Writer, state: State
    ) -> Template:
        """A new token, shown on this page only; the old one stops working at once."""
        source = await get_or_404(writer, ConversionSource, object_id)
        token = await rotate_token(writer, source)
        return _url_page(viewer, source, f"{state.settings.public_url}/pb/{token}")

    @post("/{object_id:int}/delete")
    async def remove(self, object_id: FromPath[int], writer: Writer) -> Redirect:
        await writer.delete(await get_or_404(writer, ConversionSource, object_id))
        await writer.commit()
        return Redirect(self.page_url(), status_code=303)
