"""The ``money`` filter of the pages: an amount in its currency's symbol, written the way the
merchant that takes that currency writes money (its ``locale``: "€1,234.50" or "1.234,50 €").

Every page request reads the merchants' locales once before its handler runs (one small query;
a Jinja filter cannot wait for the database), so a merchant's new locale shows on the next page
in every web process. A currency no merchant takes, and a page rendered without that read (an
error page), is written in English."""

from __future__ import annotations

from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar import Request
from sqlalchemy import select

from backend.core.money_display import DEFAULT_LOCALE, format_money
from backend.storage.db.engine import Database
from backend.storage.db.models import Merchant

_STATE_KEY = "money_locales"


async def read_money_locales(request: Request[Any, Any, Any]) -> None:
    """Before a page: which locale writes each currency (its first merchant's)."""
    database: Database = request.app.state.database
    async with database.read_engine.connect() as connection:
        rows = await connection.execute(
            select(Merchant.currency, Merchant.locale).order_by(Merchant.id.desc())
        )
        # Read from the highest id down, so the lowest id's locale is the one kept.
        request.state[_STATE_KEY] = {currency: locale for currency, locale in rows}


@pass_context
def money(context: Context, amount_minor: int, currency: str) -> str:
    request = context.get("request")
    locales: dict[str, str] = request.state.get(_STATE_KEY, {}) if request is not None else {}
    return format_money(amount_minor, currency, locales.get(currency, DEFAULT_LOCALE))
