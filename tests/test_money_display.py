"""Money on the pages reads as the merchant writes it: the currency's symbol in the merchant's
locale style, with the currency's ISO 4217 minor digits; machines keep plain decimals."""

from __future__ import annotations

import html
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from backend.core.money_display import LocaleError, format_money, known_locale
from backend.storage.db.engine import Database
from tests.support import Programme, follow_link, sign_in


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "written"),
    [
        (123450, "EUR", "en", "€1,234.50"),
        (123450, "EUR", "de_DE", "1.234,50\xa0€"),
        (-4990, "USD", "en_US", "-$49.90"),
        (4990, "JPY", "ja_JP", "￥4,990"),
        (1234, "BHD", "en", "BHD1.234"),  # three minor digits
        (12345, "HUF", "hu_HU", "123,45\xa0Ft"),  # ISO's two digits, where CLDR shows none
    ],
)
def test_money_is_written_in_the_locale_with_the_iso_minor_digits(
    amount: int, currency: str, locale: str, written: str
) -> None:
    assert format_money(amount, currency, locale) == written


def test_locales_are_named_as_cldr_names_them() -> None:
    assert known_locale("de-DE") == "de_DE"
    assert known_locale(" en ") == "en"
    with pytest.raises(LocaleError):
        known_locale("xx_QQ")


async def test_a_merchant_reads_its_money_in_its_own_locale(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    merchant = f"/api/v1/merchants/{programme.merchant['id']}"
    refused = await client.patch(merchant, json={"locale": "xx_QQ"}, headers=programme.headers)
    assert refused.status_code == 400
    assert "locale" in refused.text
    changed = await client.patch(merchant, json={"locale": "de-DE"}, headers=programme.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["locale"] == "de_DE"

    click_id = await follow_link(client, programme.link["code"])
    await client.get(
        "/p.gif",
        params={"m": programme.merchant["key"], "oid": "L-1", "amt": "1234.50", "clk": click_id},
    )
    await consumer.drain()
    await sign_in(client, database)
    listing = html.unescape((await client.get("/conversions")).text)
    assert "<td>1.234,50\xa0€</td>" in listing  # 10 % + 0.50 of it: 123.95
    assert "<td>123,95\xa0€</td>" in listing
    exported = await client.get("/conversions", params={"format": "csv"})
    assert ",123450,12395,EUR," in exported.text  # files for programs keep plain minor units
