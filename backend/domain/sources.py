"""Conversion sources: affiliate networks (or any server) that report a merchant's sales to
``/pb/{token}`` with a plain GET or POST in their own field names.

A source has a secret token (shown once, kept as its SHA-256, rotatable), an optional IP
allow-list, a field mapping (which request field holds the click id, the transaction id, the
sale amount, the commission, the currency, the status) and a status map (the network's values to
ours). ``parse_postback`` turns a request's fields into a ``NetworkEvent`` for the stream or
raises ``Rejection``; the worker stores it (``backend.worker.steps``): a new transaction is a
verified conversion, a repeat changes nothing, another status moves it through the status rules.

Presets hold documented parameter names, as a starting point the mapping can be edited from:

- ``generic``: the tracker convention (Voluum and most trackers' S2S postbacks): ``cid``,
  ``payout``, ``txid``, ``status``.
- ``binom``: Binom's postback (docs.binom.org/postback-url.php): ``cnv_id`` (click id),
  ``payout``, ``cnv_status``, ``cnv_currency``; the transaction id in ``txid``.
- ``keitaro``: Keitaro's postback: ``subid`` (click id), ``payout``, ``status`` (``lead``,
  ``sale``, ``rejected``), ``tid`` (transaction id), ``currency``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import MoneyError, parse_amount
from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import ONE_LINE, Name, ObjectId, whole
from backend.domain.edge import MAX_AMOUNT, Rejection, build_conversion
from backend.domain.events import NetworkEvent, RejectReason, Source
from backend.storage.catalog import Catalog
from backend.storage.db.models import ConversionSource, ConversionStatus, Merchant

TOKEN_PREFIX = "src_"  # noqa: S105 - a prefix, no secret
MAX_TOKEN = 100
MAX_STATUSES = 50
MAX_ALLOW_IPS = 50
MAX_FIELD_VALUE = 255  # of any mapped value but the amounts (their own bound) and order ids
FIELD_NAMES = ("click_id", "order_id", "amount", "commission", "currency", "status")

FieldName = Annotated[str, Meta(min_length=1, max_length=64, pattern=whole(r"[^\x00-\x20\x7f]+"))]
StatusValue = Annotated[str, Meta(min_length=1, max_length=64, pattern=ONE_LINE)]
OurStatus = Literal["pending", "approved", "rejected", "reversed"]
Network = Annotated[
    str,
    Meta(
        min_length=2,
        max_length=49,
        pattern=whole(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?"),
        description="An IPv4 or IPv6 address or network (CIDR)",
    ),
]
PresetName = Literal["generic", "binom", "keitaro"]
Kind = Literal["network", "stripe", "shopify"]
# A store's webhook signing secret: Stripe's ``whsec_…``, Shopify's app shared secret.
SigningSecret = Annotated[str, Meta(min_length=8, max_length=200, pattern=whole(r"[!-~]+"))]
ShopDomain = Annotated[
    str,
    Meta(
        min_length=4,
        max_length=255,
        pattern=whole(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"),
        description="The shop's domain, e.g. example.myshopify.com",
    ),
]


class SourceFields(msgspec.Struct, forbid_unknown_fields=True):
    """Which request field (query, form or JSON) holds what; ``order_id`` (the network's
    transaction id) is required, the rest optional."""

    order_id: FieldName = "txid"
    click_id: FieldName | None = None
    amount: FieldName | None = None
    commission: FieldName | None = None
    currency: FieldName | None = None
    status: FieldName | None = None


PRESETS: dict[str, tuple[SourceFields, dict[str, str]]] = {
    "generic": (
        SourceFields(
            click_id="cid", order_id="txid", amount="amount", commission="payout",
            currency="currency", status="status",
        ),
        {"pending": "pending", "approved": "approved", "rejected": "rejected",
         "reversed": "reversed", "0": "pending", "1": "approved", "2": "rejected"},
    ),
    "binom": (
        SourceFields(
            click_id="cnv_id", order_id="txid", commission="payout", currency="cnv_currency",
            status="cnv_status",
        ),
        {"hold": "pending", "pending": "pending", "approve": "approved",
         "approved": "approved", "reject": "rejected", "rejected": "rejected"},
    ),
    "keitaro": (
        SourceFields(
            click_id="subid", order_id="tid", commission="payout", currency="currency",
            status="status",
        ),
        {"lead": "pending", "sale": "approved", "rejected": "rejected"},
    ),
}  # fmt: skip


class SourceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A source: ``preset`` fills in ``fields`` and ``statuses``; what is given replaces it.
    A store (``kind`` ``stripe`` or ``shopify``) needs its ``signing_secret`` (and Shopify its
    ``shop_domain``) instead; ``name`` defaults to the kind."""

    merchant_id: ObjectId
    name: Name | None = None
    kind: Kind = "network"
    signing_secret: SigningSecret | None = None
    shop_domain: ShopDomain | None = None
    preset: PresetName | None = None
    fields: SourceFields | None = None
    statuses: Annotated[dict[StatusValue, OurStatus], Meta(max_length=MAX_STATUSES)] | None = None
    allow_ips: Annotated[list[Network], Meta(max_length=MAX_ALLOW_IPS)] = msgspec.field(
        default_factory=list
    )


class SourceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    signing_secret: SigningSecret | UnsetType = UNSET  # a store's: the new one
    shop_domain: ShopDomain | UnsetType = UNSET
    fields: SourceFields | UnsetType = UNSET
    statuses: Annotated[dict[StatusValue, OurStatus], Meta(max_length=MAX_STATUSES)] | UnsetType = (
        UNSET
    )
    allow_ips: Annotated[list[Network], Meta(max_length=MAX_ALLOW_IPS)] | UnsetType = UNSET


class SourceOut(msgspec.Struct):
    id: int
    merchant_id: int
    name: str
    kind: str
    preset: str
    fields: SourceFields
    statuses: dict[str, str]
    allow_ips: list[str]
    token_hint: str  # the token's first characters, to tell tokens apart
    postback_path: str  # where the network sends its postbacks: /pb/<token>
    created_at: datetime
    shop_domain: str | None = None
    # Whether a store's signing secret is set (the secret is never shown back).
    has_signing_secret: bool = False
    # The token itself: only in the answer that created or rotated it, never again.
    token: str | None = None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def source_out(source: ConversionSource, token: str | None = None) -> SourceOut:
    return SourceOut(
        id=source.id,
        merchant_id=source.merchant_id,
        name=source.name,
        kind=source.kind,
        preset=source.preset,
        fields=msgspec.convert(source.fields, SourceFields),
        statuses=dict(source.statuses),
        allow_ips=list(source.allow_ips),
        token_hint=source.token_hint,
        postback_path=f"/pb/{token}" if token else f"/pb/{source.token_hint}…",
        created_at=source.created_at,
        shop_domain=source.shop_domain,
        has_signing_secret=bool(source.signing_secret),
        token=token,
    )


def _networks(raw: list[str]) -> list[str]:
    networks = []
    for value in raw:
        try:
            networks.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise FieldError("allow_ips", f"{value!r} is not an IP address or network") from None
    return networks


def _check_store(kind: str, secret: str | None, shop_domain: str | None) -> None:
    """A store's source needs its signing secret (Stripe's starts ``whsec_``) and Shopify its
    shop's domain; a network's takes neither."""
    if kind == "network":
        if secret is not None or shop_domain is not None:
            field = "signing_secret" if secret is not None else "shop_domain"
            raise FieldError(field, "only a store's source (stripe, shopify) takes this")
        return
    if not secret:
        raise FieldError("signing_secret", f"a {kind} source needs the store's signing secret")
    if kind == "stripe" and not secret.startswith("whsec_"):
        raise FieldError("signing_secret", "Stripe's signing secrets start with whsec_")
    if kind == "shopify" and not shop_domain:
        raise FieldError("shop_domain", "a shopify source needs the shop's domain")


def _new_token(source: ConversionSource) -> str:
    token = new_token()
    source.token_hash = token_hash(token)
    source.token_hint = token[: len(TOKEN_PREFIX) + 6]
    return token


async def create_source(session: AsyncSession, data: SourceCreate) -> tuple[ConversionSource, str]:
    """The new source and its token (to be shown once)."""
    if await session.get(Merchant, data.merchant_id) is None:
        raise FieldError("merchant_id", f"no merchant with id {data.merchant_id}")
    _check_store(data.kind, data.signing_secret, data.shop_domain)
    fields, statuses = PRESETS[data.preset or "generic"]
    source = ConversionSource(
        merchant_id=data.merchant_id,
        name=data.name or data.kind,
        kind=data.kind,
        signing_secret=data.signing_secret if data.kind != "network" else None,
        shop_domain=data.shop_domain if data.kind == "shopify" else None,
        preset=data.preset or "",
        fields=msgspec.to_builtins(data.fields or fields),
        statuses=dict(data.statuses if data.statuses is not None else statuses),
        allow_ips=_networks(data.allow_ips),
    )
    token = _new_token(source)
    session.add(source)
    await session.commit()
    await session.refresh(source)
    return source, token


async def update_source(
    session: AsyncSession, source: ConversionSource, data: SourceUpdate
) -> None:
    if data.name is not UNSET:
        source.name = data.name
    if data.signing_secret is not UNSET or data.shop_domain is not UNSET:
        secret = source.signing_secret if data.signing_secret is UNSET else data.signing_secret
        domain = source.shop_domain if data.shop_domain is UNSET else data.shop_domain
        _check_store(source.kind, secret, domain)
        source.signing_secret, source.shop_domain = secret, domain
    if data.fields is not UNSET:
        source.fields = msgspec.to_builtins(data.fields)
    if data.statuses is not UNSET:
        source.statuses = dict(data.statuses)
    if data.allow_ips is not UNSET:
        source.allow_ips = _networks(data.allow_ips)
    await session.commit()
    await session.refresh(source)


async def rotate_token(session: AsyncSession, source: ConversionSource) -> str:
    """A new token; the old one stops working at once (the network is told the new URL)."""
    token = _new_token(source)
    await session.commit()
    await session.refresh(source)
    return token


async def source_by_token(session: AsyncSession, token: str) -> ConversionSource | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN:
        return None
    return await session.scalar(
        select(ConversionSource).where(ConversionSource.token_hash == token_hash(token))
    )


def ip_allowed(
    allow_ips: list[str], address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> bool:
    """Whether a request from ``address`` may report for a source with ``allow_ips`` (an empty
    list allows every address)."""
    if not allow_ips:
        return True
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in allow_ips)


def _value(fields: Mapping[str, str], name: str | None) -> str:
    return fields.get(name, "").strip() if name else ""


def mapped_status(source: ConversionSource, raw: str) -> str:
    """Our status for the network's value ``raw`` ("" when it sends none); raise
    ``Rejection`` for a value the source's map does not know."""
    if not raw:
        return ""
    statuses: dict[str, str] = source.statuses
    wanted = statuses.get(raw, statuses.get(raw.lower()))
    if wanted is None:
        known = ", ".join(sorted(statuses)[:10]) or "none"
        raise Rejection(
            RejectReason.UNKNOWN_STATUS, "status", f"unknown status {raw[:64]!r} (known: {known})"
        )
    return ConversionStatus(wanted).value


async def parse_postback(
    catalog: Catalog, source: ConversionSource, fields: Mapping[str, str], at_ms: int
) -> NetworkEvent:
    """The network's postback as a ``NetworkEvent``; raise ``Rejection`` naming the bad field."""
    mapping = msgspec.convert(source.fields, SourceFields)
    merchant = await catalog.merchant_by_id(source.merchant_id)
    if merchant is None:
        raise Rejection(RejectReason.UNKNOWN_MERCHANT, "merchant", "the source's merchant is gone")
    order_id = _value(fields, mapping.order_id)
    if not order_id:
        raise Rejection(
            RejectReason.MISSING_FIELD, mapping.order_id, "the transaction id is required"
        )
    for name in (mapping.click_id, mapping.status, mapping.currency):
        if len(_value(fields, name)) > MAX_FIELD_VALUE:
            raise Rejection(RejectReason.FIELD_TOO_LONG, name or "", f"over {MAX_FIELD_VALUE}")
    status = mapped_status(source, _value(fields, mapping.status))
    names = {"oid": mapping.order_id, "amt": mapping.amount, "cur": mapping.currency}
    names["clk"] = mapping.click_id
    pixel = {short: _value(fields, name) for short, name in names.items()}
    try:
        sale = await build_conversion(
            catalog, {**pixel, "ev": "sale"}, Source.NETWORK, None, at_ms, merchant
        )
    except Rejection as rejection:  # named by the network's field, not the pixel's
        field = names.get(rejection.field) or rejection.field
        raise Rejection(rejection.reason, field, rejection.detail) from None
    commission_text = _value(fields, mapping.commission)
    commission = -1
    if commission_text:
        name = mapping.commission or ""
        if len(commission_text) > MAX_AMOUNT:
            raise Rejection(RejectReason.FIELD_TOO_LONG, name, f"longer than {MAX_AMOUNT}")
        try:  # at most the shared bound (MAX_AMOUNT_MINOR), never negative
            commission = parse_amount(commission_text, sale.currency)
        except MoneyError as error:
            raise Rejection(RejectReason(error.reason), name, str(error)) from None
    return NetworkEvent(sale=sale, source_id=source.id, commission_minor=commission, status=status)
