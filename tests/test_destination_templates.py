"""Destination templates: the click id in a network's own parameter, checked when saved."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.domain.destinations import expand, template_problem
from backend.storage.db.engine import Database
from backend.storage.db.models import Click, Conversion
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, post_json

NETWORK = (
    "https://www.awin1.example/cread.php?awinmid=1001&awinaffid=77"
    "&clickref={click_id}&clickref2={partner}&clickref3={sub1}&p={link}-{campaign}#{utm_source}"
)


async def templated_link(
    client: AsyncTestClient[Any], programme: Programme, destination: str
) -> dict[str, Any]:
    campaign = await post_json(
        client,
        "/api/v1/campaigns",
        {
            "merchant_id": programme.merchant["id"],
            "name": "Via network",
            "destination_url": destination,
        },
        programme.headers,
    )
    return await post_json(
        client,
        "/api/v1/links",
        {"partner_id": programme.partner["id"], "campaign_id": campaign["id"]},
        programme.headers,
    )


def test_values_are_encoded_into_place_so_none_adds_a_parameter_or_a_line() -> None:
    url = expand("https://n.example/c?id={click_id}&s={sub1}", {"sub1": "a&b=c\r\nX: /?#"})
    assert url == "https://n.example/c?id=&s=a%26b%3Dc%0D%0AX%3A%20%2F%3F%23"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("https://n.example/?id={clickid}", "unknown macro {clickid}"),
        ("https://n.example/?id={click_id}&x={Sub1}", "unknown macro {Sub1}"),
        ("https://{partner}.n.example/?id={click_id}", "the host stays fixed"),
        ("https://n.example/?id={click_id", "a brace that is not part of a macro"),
        ("https://n.example/?id=click_id}", "a brace that is not part of a macro"),
    ],
)
def test_a_template_that_cannot_be_filled_safely_is_refused(template: str, problem: str) -> None:
    assert problem in (template_problem(template) or "")


async def test_a_click_through_a_network_template_puts_its_values_in_the_networks_parameters(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    link = await templated_link(client, programme, NETWORK)
    response = await client.get(
        f"/c/{link['code']}?sub1=spring%20sale%26more&utm_source=news",
        headers=BROWSER_HEADERS,
    )
    assert response.status_code == 302
    location = response.headers["location"]
    click_id = response.headers["set-cookie"].split(";")[0].removeprefix("ct_click=")
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert (parts.netloc, parts.fragment) == ("www.awin1.example", "news")
    assert query["clickref"] == [click_id]
    assert query["clickref2"] == [programme.partner["key"]]
    assert query["clickref3"] == ["spring sale&more"]
    assert query["p"] == [f"{link['code']}-{link['campaign_id']}"]
    assert "ct_click" not in query
    await consumer.drain()
    response = await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": "A-1",
            "amt": "20.00",
            "cur": "EUR",
            "clk": click_id,
        },
    )
    assert response.status_code == 200
    await consumer.drain()
    async with database.session() as session:
        click = await session.scalar(select(Click).where(Click.click_id == click_id))
        conversion = await session.scalar(select(Conversion))
    assert click is not None
    assert (click.link_id, click.sub1) == (link["id"], "spring sale&more")
    assert conversion is not None
    assert (conversion.click_id, conversion.partner_id) == (click_id, programme.partner["id"])


async def test_a_destination_without_macros_still_gets_ct_click(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    response = await client.get(f"/c/{programme.link['code']}", headers=BROWSER_HEADERS)
    assert "&ct_click=" in response.headers["location"]


async def test_an_uncounted_visit_gets_the_template_with_its_macros_empty(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    link = await templated_link(client, programme, "https://n.example/c?id={click_id}&s={sub1}")
    response = await client.head(f"/c/{link['code']}?sub1=x", headers=BROWSER_HEADERS)
    assert response.status_code == 302
    assert response.headers["location"] == "https://n.example/c?id=&s="
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("destination", "named"),
    [
        ("https://n.example/?id={clickid}", "unknown macro {clickid}"),
        ("https://{partner}.n.example/?id={click_id}", "the host stays fixed"),
    ],
)
async def test_an_unfillable_template_is_refused_when_saved_naming_the_macro(
    client: AsyncTestClient[Any], programme: Programme, destination: str, named: str
) -> None:
    created = await client.post(
        "/api/v1/campaigns",
        json={"merchant_id": programme.merchant["id"], "name": "x", "destination_url": destination},
        headers=programme.headers,
    )
    edited = await client.patch(
        f"/api/v1/campaigns/{programme.campaign['id']}",
        json={"destination_url": destination},
        headers=programme.headers,
    )
    for response in (created, edited):
        assert response.status_code == 400, response.text
        (error,) = response.json()["extra"]
        assert error["key"] == "destination_url"
        assert named in error["message"]
