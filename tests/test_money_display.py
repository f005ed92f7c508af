"""Money on the pages reads as the merchant writes it: the currency's symbol in the merchant's
locale style, with the currency's ISO 4217 minor digits; machines keep plain decimals."""

from __future__ import annotations

import html
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.money_display import LocaleError, format_money, known_locale
from backend.storage.db.engine import Database
from backend.storage.db.models import Campaign
from tests.support import Programme, follow_link, sign_in
from tests.test_admin import error_of, submit, value_of


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


async def test_forms_take_and_show_money_as_people_write_it(
    client: AsyncTestClient[Any], database: Database, programme: Programme
) -> None:
    """A campaign's flat commission is typed "0.75" (EUR) and kept as 75 cents; a yen
    merchant's campaign takes whole yen and refuses a fraction of one."""
    await sign_in(client, database)
    path = f"/admin/campaigns/{programme.campaign['id']}"
    form = {
        "name": "Winter sale",
        "destination_url": "https://shop.example/winter",
        "commission_percent": "10",
        "commission_flat_minor": "0.75",
        "status": "active",
    }
    assert (await submit(client, path, form)).status_code == 303
    async with database.session() as session:
        campaign = await session.get(Campaign, programme.campaign["id"])
        assert campaign is not None
        assert campaign.commission_flat_minor == 75
    page = (await client.get(path)).text
    assert "Flat commission per conversion (EUR)" in page
    assert value_of(page, "commission_flat_minor") == "0.75"

    yen = await client.post(
        "/api/v1/merchants", json={"name": "Tokyo", "currency": "JPY"}, headers=programme.headers
    )
    made = await submit(
        client,
        "/admin/campaigns/new",
        {**form, "merchant_id": str(yen.json()["id"]), "commission_flat_minor": "0.5"},
    )
    assert made.status_code == 400
    assert error_of(made.text, "commission_flat_minor").startswith("Expected an amount")
    made = await submit(
        client,
        "/admin/campaigns/new",
        {**form, "merchant_id": str(yen.json()["id"]), "commission_flat_minor": "50"},
    )
    assert made.status_code == 303
    async with database.session() as session:
        flats = await session.scalars(
            select(Campaign.commission_flat_minor).where(Campaign.merchant_id == yen.json()["id"])
        )
        assert list(flats) == [50]
