"""How a partner is paid, and who pays: IBANs and BICs checked (``schwifty``: the ISO 7064
checksum, the country's length and format), stored compact, shown masked to admins.

A partner's details are theirs: admins see only the last characters of an IBAN or a PayPal
address (docs/payouts.md); the full values leave only in a confirmed run's export.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

import msgspec
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from backend.core.validation import FieldError
from backend.domain.affiliate.schemas import PayoutDetails
from backend.storage.db.models import Partner


class PayoutMethod(StrEnum):
    SEPA = "sepa"
    PAYPAL = "paypal"
    OTHER = "other"


def checked_iban(raw: str, field: str = "iban") -> str:
    """``raw`` as a compact IBAN, or a ``FieldError`` saying what is wrong with it."""
    try:
        return str(IBAN(raw).compact)
    except SchwiftyException as error:
        raise FieldError(field, f"not a valid IBAN: {error}") from None


def checked_bic(raw: str, field: str = "bic") -> str:
    try:
        return str(BIC(raw).compact)
    except SchwiftyException as error:
        raise FieldError(field, f"not a valid BIC: {error}") from None


def mask(value: str | None, shown: int = 4) -> str | None:
    """``value`` with all but its last ``shown`` characters hidden."""
    if value is None:
        return None
    if len(value) <= shown:
        return "•" * len(value)
    return "•" * (len(value) - shown) + value[-shown:]


def mask_email(value: str | None) -> str | None:
    """An e-mail address with its local part hidden but its first character."""
    if value is None:
        return None
    local, _, domain = value.partition("@")
    return f"{local[:1]}•••@{domain}"


def missing_for(
    method: str | None,
    iban: str | None,
    account_holder: str | None,
    paypal_email: str | None,
    note: str | None,
) -> str | None:
    """The field a payout method still needs, or None when it has what it needs."""
    if method == PayoutMethod.SEPA:
        if not iban:
            return "iban"
        if not account_holder:
            return "account_holder"
    if method == PayoutMethod.PAYPAL and not paypal_email:
        return "paypal_email"
    if method == PayoutMethod.OTHER and not note:
        return "payout_note"
    return None


D = TypeVar("D", bound=PayoutDetails)


def checked_details(data: D) -> D:
    """``data`` with its IBAN and BIC checked and made compact."""
    changes = msgspec.structs.replace(data)
    if isinstance(changes.iban, str):
        changes.iban = checked_iban(changes.iban)
    if isinstance(changes.bic, str):
        changes.bic = checked_bic(changes.bic)
    return changes


def require_details(partner: Partner) -> None:
    """A ``FieldError`` when ``partner``'s payout method lacks what it needs."""
    missing = missing_for(
        partner.payout_method,
        partner.iban,
        partner.account_holder,
        partner.paypal_email,
        partner.payout_note,
    )
    if missing is not None:
        raise FieldError(missing, f"needed to pay by {partner.payout_method}")
