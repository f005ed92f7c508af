"""``GEOIP_DATABASE``: a MaxMind database as the country source instead of geoip2fast's data,
read with MaxMind's public test database (tests/fixtures/maxmind/README.md)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.core.settings import Settings, SettingsError, load_settings
from backend.domain.geo import GEOIP2FAST, Countries
from backend.storage.db.engine import Database
from backend.storage.db.models import Click
from tests.support import BROWSER_HEADERS, Programme, follow_link

TEST_DATABASE = Path(__file__).parent / "fixtures" / "maxmind" / "GeoIP2-Country-Test.mmdb"
# Addresses whose country the test database gives otherwise than geoip2fast's data.
BHUTAN, PHILIPPINES = "67.43.156.1", "202.196.224.1"


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("81.2.69.142", "GB"),  # the country it is used in, not the US it is registered to
        (BHUTAN, "BT"),
        ("2001:218::1", "JP"),
        ("8.8.8.8", ""),  # not in the database
        ("10.1.2.3", ""),  # private
    ],
)
def test_a_maxmind_database_gives_the_country(text: str, country: str) -> None:
    assert Countries(TEST_DATABASE).of(ipaddress.ip_address(text)) == country


def test_the_setting_names_a_file_that_must_exist(tmp_path: Path) -> None:
    env = {"CLICKTRAIL_SECRET_KEY": "s" * 32}
    assert load_settings(env).geoip_database is None
    named = load_settings({**env, "CLICKTRAIL_GEOIP_DATABASE": str(TEST_DATABASE)})
    assert named.geoip_database == TEST_DATABASE
    with pytest.raises(SettingsError, match="CLICKTRAIL_GEOIP_DATABASE"):
        load_settings({**env, "CLICKTRAIL_GEOIP_DATABASE": str(tmp_path / "missing.mmdb")})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(geoip_database=TEST_DATABASE)


async def test_clicks_take_their_country_from_the_configured_database(
    client: AsyncTestClient[Any], database: Database, programme: Programme, consumer: Any
) -> None:
    for address in (BHUTAN, PHILIPPINES):
        assert GEOIP2FAST.of(ipaddress.ip_address(address)) not in ("", "BT", "PH")
        headers = {**BROWSER_HEADERS, "X-Forwarded-For": address}
        await follow_link(client, programme.link["code"], headers)
    await consumer.drain()
    async with database.session() as session:
        countries = (await session.execute(select(Click.country).order_by(Click.click_id))).all()
    assert [country for (country,) in countries] == ["BT", "PH"]
