"""Money as people read it on a page: the currency's symbol in a locale's style ("€1,234.50" in
English, "1.234,50 €" in German), by the CLDR data Babel ships. Machines (the API, CSV files,
form inputs) keep plain decimals (``backend.core.money.format_minor``)."""

from __future__ import annotations

import copy
from decimal import Decimal
from functools import cache

from babel import Locale, UnknownLocaleError
from babel.numbers import NumberPattern

from backend.core.money import MINOR_DIGITS

DEFAULT_LOCALE = "en"


class LocaleError(ValueError):
    """Not a locale CLDR knows."""


def known_locale(name: str) -> str:
    """``name`` ("de-DE", "de_DE") in Babel's spelling ("de_DE"), or ``LocaleError``."""
    try:
        return str(Locale.parse(name.strip().replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError) as error:
        raise LocaleError(f"{name[:40]!r} is not a known locale such as en, en_GB or de_DE") from (
            error
        )


@cache
def _pattern(locale: str, digits: int) -> tuple[Locale, NumberPattern]:
    """The locale's currency pattern with the ISO 4217 minor digits: CLDR's own currency digits
    differ for some currencies (it shows Hungarian forint without its fillér), and a page must
    show what the ledger holds."""
    parsed = Locale.parse(locale)
    pattern = copy.copy(parsed.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return parsed, pattern


def format_money(amount_minor: int, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """4990 EUR in "en" -> "€49.90"; in "de_DE" -> "49,90 €"."""
    digits = MINOR_DIGITS.get(currency, 2)
    parsed, pattern = _pattern(locale, digits)
    value = Decimal(amount_minor).scaleb(-digits)
    written: str = pattern.apply(value, parsed, currency=currency, currency_digits=False)
    return written
