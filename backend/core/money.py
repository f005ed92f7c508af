"""Money: integer minor units with an ISO 4217 currency; never floats.

Amounts arrive as decimal strings ("49.90") and are parsed exactly. Commission is rounded
half-to-even (banker's rounding) to the currency's minor unit, so rounding errors do not pile up
in one direction over many conversions.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal

# Active ISO 4217 codes with their minor-unit exponent where it is not 2.
_EXPONENT_NOT_2 = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip
_EXPONENT_2 = [
    "AED",
    "AFN",
    "ALL",
    "AMD",
    "ANG",
    "AOA",
    "ARS",
    "AUD",
    "AWG",
    "AZN",
    "BAM",
    "BBD",
    "BDT",
    "BGN",
    "BMD",
    "BND",
    "BOB",
    "BOV",
    "BRL",
    "BSD",
    "BTN",
    "BWP",
    "BYN",
    "BZD",
    "CAD",
    "CDF",
    "CHE",
    "CHF",
    "CHW",
    "CNY",
    "COP",
    "COU",
    "CRC",
    "CUP",
    "CVE",
    "CZK",
    "DKK",
    "DOP",
    "DZD",
    "EGP",
    "ERN",
    "ETB",
    "EUR",
    "FJD",
    "FKP",
    "GBP",
    "GEL",
    "GHS",
    "GIP",
    "GMD",
    "GTQ",
    "GYD",
    "HKD",
    "HNL",
    "HTG",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "IRR",
    "JMD",
    "KES",
    "KGS",
    "KHR",
    "KPW",
    "KYD",
    "KZT",
    "LAK",
    "LBP",
    "LKR",
    "LRD",
    "LSL",
    "MAD",
    "MDL",
    "MGA",
    "MKD",
    "MMK",
    "MNT",
    "MOP",
    "MRU",
    "MUR",
    "MVR",
    "MWK",
    "MXN",
    "MXV",
    "MYR",
    "MZN",
    "NAD",
    "NGN",
    "NIO",
    "NOK",
    "NPR",
    "NZD",
    "PAB",
    "PEN",
    "PGK",
    "PHP",
    "PKR",
    "PLN",
    "QAR",
    "RON",
    "RSD",
    "RUB",
    "SAR",
    "SBD",
    "SCR",
    "SDG",
    "SEK",
    "SGD",
    "SHP",
    "SLE",
    "SOS",
    "SRD",
    "SSP",
    "STN",
    "SVC",
    "SYP",
    "SZL",
    "THB",
    "TJS",
    "TMT",
    "TOP",
    "TRY",
    "TTD",
    "TWD",
    "TZS",
    "UAH",
    "USD",
    "USN",
    "UYU",
    "UZS",
    "VED",
    "VES",
    "WST",
    "XCD",
    "XCG",
    "YER",
    "ZAR",
    "ZMW",
    "ZWG",
]
MINOR_DIGITS: dict[str, int] = {code: 2 for code in _EXPONENT_2} | _EXPONENT_NOT_2

_AMOUNT = re.compile(r"(\d{1,15})(?:\.(\d{1,8}))?")

MAX_AMOUNT_MINOR = 10**12
"""The largest amount (a sale, a commission, a merchant's maximum order) in minor units of any
currency: 10 billion EUR, 22 million EUR worth of Iranian rial. Ten million conversions of it
still fit a 64-bit sum, so no stored total can overflow from amounts that pass this bound."""


class MoneyError(ValueError):
    """An amount or currency that cannot be represented; ``reason`` is a RejectReason value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalise_currency(code: str) -> str:
    upper = code.strip().upper()
    if upper not in MINOR_DIGITS:
        raise MoneyError("unknown_currency", f"{code!r} is not an ISO 4217 currency code")
    return upper


def parse_amount(text: str, currency: str) -> int:
    """Parse a decimal string into minor units of ``currency`` exactly.

    More fractional digits than the currency has are accepted only when they are zeros:
    "10.50" JPY is refused rather than silently rounded.
    """
    text = text.strip()
    if text.startswith("-"):
        raise MoneyError("negative_amount", "amount must not be negative")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise MoneyError("invalid_amount", f"{text[:40]!r} is not a decimal amount")
    digits = MINOR_DIGITS[currency]
    whole, fraction = match.group(1), match.group(2) or ""
    kept, dropped = fraction[:digits], fraction[digits:]
    if dropped.strip("0"):
        raise MoneyError(
            "invalid_amount", f"{currency} has {digits} minor digits; {text!r} has more"
        )
    minor: int = int(whole) * 10**digits + int(kept.ljust(digits, "0") or "0")
    check_amount(minor, currency)
    return minor


def check_amount(amount_minor: int, currency: str, maximum: int = MAX_AMOUNT_MINOR) -> None:
    """Raise ``MoneyError`` for an amount over ``maximum`` minor units (the shared bound, or a
    merchant's lower maximum order value)."""
    if amount_minor > maximum:
        raise MoneyError(
            "amount_too_large",
            f"{format_minor(amount_minor, currency)} {currency} is over the maximum of "
            f"{format_minor(maximum, currency)}",
        )


def format_minor(amount_minor: int, currency: str) -> str:
    """Minor units back to a plain decimal string: 4990 EUR -> "49.90"."""
    digits = MINOR_DIGITS.get(currency, 2)
    if digits == 0:
        return str(amount_minor)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}"


def commission_minor(amount_minor: int, percent_bps: int, flat_minor: int) -> int:
    """Percent (basis points: 750 = 7.5 %) of the amount, rounded half-even, plus the flat fee."""
    share = (Decimal(amount_minor) * percent_bps / 10_000).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    return int(share) + flat_minor


def percent_to_bps(percent: str | int | float) -> int:
    """A commission percent with at most two decimals ("7.5") to basis points (750)."""
    value = Decimal(str(percent))
    bps = value * 100
    if bps != bps.to_integral_value() or not 0 <= bps <= 10_000:
        raise MoneyError("invalid_amount", "commission percent must be 0-100 with two decimals")
    return int(bps)
