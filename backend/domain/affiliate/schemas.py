"""Request and response bodies of the management API. Money is integer minor units.

Every bound lives in a type here, so the API, the admin forms (which read into these structs) and
the OpenAPI schema (msgspec's own JSON Schema of each request body, ``backend.web.api.openapi``)
agree on it. Patterns match alike under Python's ``re`` and JSON Schema's ECMA-262 regexes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from backend.core.money import MAX_AMOUNT_MINOR, MINOR_DIGITS
from backend.domain.destinations import MACRO_LIST

MAX_ID = 2**31 - 1
"""The largest id a row can have: ids are integer columns, 32 bits on PostgreSQL."""


def whole(chars: str) -> str:
    """A pattern for a value made only of ``chars``: Python's ``$`` also matches before a final
    newline, which JSON Schema's does not, so ``(?!\\n)`` refuses that newline too."""
    return f"^{chars}$(?!\\n)"


ONE_LINE = whole(r"[^\x00-\x1f\x7f]*")  # no control characters (PostgreSQL refuses NUL)
VISIBLE = r"[^\x00-\x20\x7f]"  # nor spaces: host names

ObjectId = Annotated[int, Meta(ge=1, le=MAX_ID)]
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=ONE_LINE)]
# No white space, control character or backslash anywhere: a destination goes into a Location
# header as it is stored.
Url = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=2048,
        pattern=whole(r"https?://[^\x00-\x20\x7f\\]+"),
        description=(
            "An absolute http(s) URL. It may hold macros in its path, query or fragment, filled"
            f" at each click with URL-encoded values: {MACRO_LIST}. Without a macro,"
            " ct_click=<click id> is appended."
        ),
    ),
]
Currency = Annotated[
    str,
    Meta(
        pattern=whole("[A-Za-z]{3}"),
        description="An ISO 4217 code, in any case: " + ", ".join(sorted(MINOR_DIGITS)),
    ),
]
Domain = Annotated[str, Meta(min_length=1, max_length=253, pattern=whole(f"{VISIBLE}+"))]
WindowDays = Annotated[int, Meta(ge=1, le=365)]
ApproveDays = Annotated[int, Meta(ge=0, le=365)]
Minor = Annotated[int, Meta(ge=0, le=MAX_AMOUNT_MINOR)]
LocaleName = Annotated[
    str,
    Meta(
        min_length=2,
        max_length=35,
        pattern=whole("[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*"),
        description="How the pages write this merchant's money: a CLDR locale such as en or de_DE",
    ),
]
Percent = (
    Annotated[str, Meta(pattern=whole(r"(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)"))]
    | Annotated[int, Meta(ge=0, le=100)]
)
"""A commission percent from 0 to 100 with at most two decimals, as a string or a whole number."""
Email = Annotated[
    str, Meta(max_length=320, pattern=whole(r"[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+"))
]
ActiveOrPaused = Literal["active", "paused"]
RenewalMode = Literal["none", "months", "lifetime"]
RenewalMonths = Annotated[int, Meta(ge=1, le=600)]
T = TypeVar("T")


class Page(msgspec.Struct, Generic[T]):
    """One page of a list; pass ``next_after`` back as ``after`` for the next page."""

    items: list[T]
    next_after: int | None


class MerchantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    currency: Currency
    locale: LocaleName = "en"
    domains: list[Domain] = msgspec.field(default_factory=list)
    attribution_window_days: WindowDays | None = None
    auto_approve_days: ApproveDays | None = None
    max_order_minor: Minor | None = None
    auto_approve_unverified_max_minor: Minor | None = None
    coupon_over_click: bool = False


AccountName = Annotated[str, Meta(min_length=1, max_length=70, pattern=ONE_LINE)]
Iban = Annotated[
    str,
    Meta(
        min_length=5,
        max_length=42,
        pattern=whole("[A-Za-z0-9 ]+"),
        description="An IBAN, spaces allowed; its checksum is checked",
    ),
]
Bic = Annotated[str, Meta(min_length=8, max_length=11, pattern=whole("[A-Za-z0-9]+"))]
PayoutSchedule = Literal["", "monthly", "biweekly"]
PayoutMethodName = Literal["sepa", "paypal", "other"]
HoldDays = Annotated[int, Meta(ge=0, le=365)]
Note = Annotated[str, Meta(min_length=1, max_length=500, pattern=r"^[^\x00]*$")]


class MerchantUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``payout_minimum_minor``, ``hold_days``, ``payout_schedule`` and the payer of SEPA
    transfers (``legal_name``, ``iban``, ``bic``): docs/payouts.md."""

    name: Name | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    locale: LocaleName | UnsetType = UNSET
    domains: list[Domain] | UnsetType = UNSET
    attribution_window_days: WindowDays | UnsetType | None = UNSET
    auto_approve_days: ApproveDays | UnsetType | None = UNSET
    max_order_minor: Minor | UnsetType | None = UNSET
    auto_approve_unverified_max_minor: Minor | UnsetType | None = UNSET
    coupon_over_click: bool | UnsetType = UNSET
    payout_minimum_minor: Minor | UnsetType = UNSET
    hold_days: HoldDays | UnsetType = UNSET
    payout_schedule: PayoutSchedule | UnsetType = UNSET
    legal_name: AccountName | UnsetType | None = UNSET
    iban: Iban | UnsetType | None = UNSET
    bic: Bic | UnsetType | None = UNSET


class MerchantOut(msgspec.Struct):
    id: int
    name: str
    key: str
    postback_secret: str
    currency: str
    locale: str
    domains: list[str]
    attribution_window_days: int | None
    auto_approve_days: int | None
    max_order_minor: int | None
    # Unverified (pixel, snippet) conversions auto-approved up to this amount; None: never.
    auto_approve_unverified_max_minor: int | None
    auto_approval: str  # what auto-approval does and puts at risk, in plain words
    # A sale naming both a click and another partner's coupon goes to the coupon's partner.
    coupon_over_click: bool
    payout_minimum_minor: int
    hold_days: int
    payout_schedule: str
    legal_name: str | None
    iban: str | None  # the payer's own account, in full
    bic: str | None
    created_at: datetime


class SecretRotated(msgspec.Struct):
    """The new postback secret; the previous one signs postbacks until ``previous_valid_until``."""

    postback_secret: str
    previous_valid_until: datetime


class PartnerCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    contact_email: Email | None = None


class PayoutDetails(msgspec.Struct, forbid_unknown_fields=True):
    """How the partner is paid: ``sepa`` needs ``iban`` and ``account_holder`` (``bic``
    optional), ``paypal`` a ``paypal_email``, ``other`` a ``payout_note``."""

    payout_method: PayoutMethodName | UnsetType | None = UNSET
    iban: Iban | UnsetType | None = UNSET
    bic: Bic | UnsetType | None = UNSET
    account_holder: AccountName | UnsetType | None = UNSET
    paypal_email: Email | UnsetType | None = UNSET
    payout_note: Note | UnsetType | None = UNSET


class PartnerUpdate(PayoutDetails, forbid_unknown_fields=True):
    """``group_id``: the partner's group (tier), or null for none."""

    group_id: ObjectId | UnsetType | None = UNSET
    name: Name | UnsetType = UNSET
    contact_email: Email | UnsetType | None = UNSET
    status: Literal["active", "paused", "banned"] | UnsetType = UNSET


class PartnerOut(msgspec.Struct):
    """The payout details are masked (the last characters of the IBAN, the e-mail's domain)."""

    id: int
    name: str
    key: str
    status: str
    contact_email: str | None
    created_at: datetime
    payout_method: str | None = None
    iban: str | None = None
    bic: str | None = None
    account_holder: str | None = None
    paypal_email: str | None = None
    payout_note: str | None = None
    group_id: int | None = None


class CampaignCreate(msgspec.Struct, forbid_unknown_fields=True):
    merchant_id: ObjectId
    name: Name
    destination_url: Url
    commission_percent: Percent = 0
    commission_flat_minor: Minor = 0
    cookie_window_days: WindowDays | None = None
    status: ActiveOrPaused = "active"
    # Renewals of a bound customer: not paid, for ``renewal_months``, or for their lifetime; at
    # the renewal rate when ``renewal_percent`` is given, else at the campaign's rate.
    renewal_mode: RenewalMode = "none"
    renewal_months: RenewalMonths | None = None
    renewal_percent: Percent | None = None
    renewal_flat_minor: Minor | None = None


class CampaignUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    destination_url: Url | UnsetType = UNSET
    commission_percent: Percent | UnsetType = UNSET
    commission_flat_minor: Minor | UnsetType = UNSET
    cookie_window_days: WindowDays | UnsetType | None = UNSET
    status: ActiveOrPaused | UnsetType = UNSET
    renewal_mode: RenewalMode | UnsetType = UNSET
    renewal_months: RenewalMonths | UnsetType | None = UNSET
    renewal_percent: Percent | UnsetType | None = UNSET
    renewal_flat_minor: Minor | UnsetType | None = UNSET


class CampaignOut(msgspec.Struct):
    id: int
    merchant_id: int
    name: str
    destination_url: str
    commission_percent: str
    commission_flat_minor: int
    cookie_window_days: int | None
    status: str
    created_at: datetime
    renewal_mode: str = "none"
    renewal_months: int | None = None
    renewal_percent: str | None = None  # None: renewals at the campaign's rate
    renewal_flat_minor: int | None = None


class LinkCreate(msgspec.Struct, forbid_unknown_fields=True):
    partner_id: ObjectId
    campaign_id: ObjectId
    destination_url: Url | None = None


class LinkUpdate(msgspec.Struct, forbid_unknown_fields=True):
    destination_url: Url | UnsetType | None = UNSET
    status: ActiveOrPaused | UnsetType = UNSET


class LinkOut(msgspec.Struct):
    id: int
    code: str
    url: str
    partner_id: int
    campaign_id: int
    destination_url: str | None
    status: str
    health: str | None
    health_detail: str
    last_checked_at: datetime | None
    created_at: datetime


class OverrideCreate(msgspec.Struct, forbid_unknown_fields=True):
    partner_id: ObjectId
    campaign_id: ObjectId
    commission_percent: Percent = 0
    commission_flat_minor: Minor = 0


class OverrideUpdate(msgspec.Struct, forbid_unknown_fields=True):
    commission_percent: Percent | UnsetType = UNSET
    commission_flat_minor: Minor | UnsetType = UNSET


class OverrideOut(msgspec.Struct):
    id: int
    partner_id: int
    campaign_id: int
    commission_percent: str
    commission_flat_minor: int
    created_at: datetime


CouponCode = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=whole("[A-Za-z0-9][A-Za-z0-9_.-]*"),
        description=(
            "Letters, digits, '-', '_' and '.'; matched regardless of case, unique per merchant."
        ),
    ),
]


class CouponCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``campaign_id``: whose commission rule (or the partner's override of it) the coupon's
    sales earn by; without it, the merchant's first active campaign."""

    merchant_id: ObjectId
    partner_id: ObjectId
    code: CouponCode
    campaign_id: ObjectId | None = None


class CouponOut(msgspec.Struct):
    id: int
    merchant_id: int
    partner_id: int
    campaign_id: int
    code: str
    created_at: datetime


class ConversionOut(msgspec.Struct):
    id: int
    event_id: str
    at: datetime
    merchant_id: int
    order_id: str | None
    click_id: str | None
    link_id: int | None
    partner_id: int | None
    campaign_id: int | None
    amount_minor: int
    commission_minor: int
    currency: str
    status: str
    source: str
    event_name: str
    flags: list[str]
    verified: bool
    coupon: str | None  # the coupon code the sale carried, upper-cased
    attribution: str  # why it is credited: "click", "cookie", "coupon"; "" when it is not
    source_id: int | None  # the conversion source (network) that reported it
    # True: the commission is the one the network reported, not the campaign's rule.
    commission_reported: bool
    # A renewal credited to the customer's bound partner: the rule that priced it; "" if none.
    renewal_rule: str
    # Which rule set the commission: campaign, group, partner, network, reviewer ("": none).
    commission_rule: str


class ConversionChangeOut(msgspec.Struct):
    at: datetime
    from_status: str
    to_status: str
    verified: bool
    actor: str
    reason: str
    commission_from_minor: int | None  # before and after, when the change decided it
    commission_to_minor: int | None


class StoreEventOut(msgspec.Struct):
    at: datetime
    source_id: int
    event_type: str  # e.g. checkout.session.completed, charge.refunded
    event_id: str  # the store's
    detail: str


class ConversionDetail(ConversionOut):
    """One conversion with its audit trail, oldest change first."""

    history: list[ConversionChangeOut]
    # The store events (Stripe, Shopify) that created or changed it, oldest first.
    store_events: list[StoreEventOut] = msgspec.field(default_factory=list)


WantedStatus = Literal["approved", "rejected", "reversed"]
Reason = Annotated[str, Meta(max_length=500, pattern=r"^[^\x00]*$")]  # PostgreSQL refuses NUL


class ConversionUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``commission_minor``, when approving: what the partner earns instead of what the worker
    computed (0 up to the amount, or the rule's commission when that is more). Without it, an
    approval of a conversion held for review pays by the rule that applies now."""

    status: WantedStatus
    reason: Reason = ""
    commission_minor: Minor | None = None


class StatusBatch(msgspec.Struct, forbid_unknown_fields=True):
    """As ``ConversionUpdate``, for each of ``ids``."""

    ids: Annotated[list[ObjectId], Meta(min_length=1, max_length=500)]
    status: WantedStatus
    reason: Reason = ""
    commission_minor: Minor | None = None


class StatusOutcome(msgspec.Struct, omit_defaults=True):
    """What happened to one id of a batch: ``changed``, ``not_found`` or ``refused``."""

    id: int
    outcome: str
    status: str | None = None
    detail: str = ""


class StatusBatchOut(msgspec.Struct):
    results: list[StatusOutcome]
