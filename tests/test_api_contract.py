"""The management API's contract: bounded ids and cursors, exact patterns, timestamps with
their offset, and an OpenAPI schema that states every bound and every error it answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from backend.domain.affiliate.schemas import MAX_ID
from backend.storage.db.engine import Database
from backend.storage.db.models import Link
from backend.worker.consumer import StreamConsumer
from tests.support import Programme, post_json

HUGE = 2**63  # past every database integer; 2**31 is already past PostgreSQL's ids
SIGNED = {"/api/v1/postback"}
"""The operation signed with a merchant's secret instead of an API key."""
IDS = {
    f"{kind}_id"
    for kind in ("merchant", "partner", "campaign", "link", "conversion", "override", "coupon")
}
IDS.add("after")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", f"/api/v1/merchants/{HUGE}", None, "merchant_id"),
        ("PATCH", f"/api/v1/merchants/{MAX_ID + 1}", {"name": "x"}, "merchant_id"),
        ("GET", f"/api/v1/partners/{HUGE}", None, "partner_id"),
        ("PATCH", f"/api/v1/partners/{HUGE}", {"name": "x"}, "partner_id"),
        ("GET", f"/api/v1/campaigns/{HUGE}", None, "campaign_id"),
        ("PATCH", f"/api/v1/campaigns/{HUGE}", {"name": "x"}, "campaign_id"),
        ("GET", f"/api/v1/links/{HUGE}", None, "link_id"),
        ("PATCH", f"/api/v1/links/{HUGE}", {"status": "paused"}, "link_id"),
        ("GET", f"/api/v1/conversions/{HUGE}", None, "conversion_id"),
        ("PATCH", f"/api/v1/conversions/{HUGE}", {"status": "approved"}, "conversion_id"),
        ("PATCH", f"/api/v1/commission-overrides/{HUGE}", {}, "override_id"),
        ("DELETE", f"/api/v1/commission-overrides/{HUGE}", None, "override_id"),
        ("GET", f"/api/v1/merchants/{-1}", None, "merchant_id"),
        ("GET", f"/api/v1/merchants?after={HUGE}", None, "after"),
        ("GET", f"/api/v1/partners?after={MAX_ID + 1}", None, "after"),
        ("GET", f"/api/v1/campaigns?merchant_id={HUGE}", None, "merchant_id"),
        ("GET", f"/api/v1/links?partner_id={HUGE}&campaign_id=1", None, "partner_id"),
        ("GET", f"/api/v1/links?after={HUGE}", None, "after"),
        ("GET", f"/api/v1/conversions?after={HUGE}", None, "after"),
        ("GET", f"/api/v1/commission-overrides?campaign_id={HUGE}", None, "campaign_id"),
        ("POST", "/api/v1/links", {"partner_id": HUGE, "campaign_id": 1}, "partner_id"),
        (
            "POST",
            "/api/v1/commission-overrides",
            {"partner_id": 1, "campaign_id": HUGE},
            "campaign_id",
        ),
        (
            "POST",
            "/api/v1/campaigns",
            {"merchant_id": HUGE, "name": "x", "destination_url": "https://shop.example/"},
            "merchant_id",
        ),
        ("POST", "/api/v1/conversions/status", {"ids": [1, HUGE], "status": "approved"}, "ids"),
    ],
)
async def test_ids_and_cursors_past_the_database_range_are_400_naming_the_field(
    client: AsyncTestClient[Any],
    programme: Programme,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    response = await client.request(method, path, json=body, headers=programme.headers)
    assert response.status_code == 400, response.text
    assert field in response.text


async def test_an_id_in_range_that_names_nothing_is_404(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    for path in (f"/api/v1/merchants/{MAX_ID}", "/api/v1/links/999999"):
        response = await client.get(path, headers=programme.headers)
        assert response.status_code == 404, response.text
    rotate = await client.post(
        f"/api/v1/merchants/{MAX_ID}/rotate-secret", headers=programme.headers
    )
    assert rotate.status_code == 404, rotate.text
    past = await client.post(f"/api/v1/merchants/{HUGE}/rotate-secret", headers=programme.headers)
    assert past.status_code == 400, past.text  # bounded by its type, as every id path is


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/merchants", {"name": "Shop\x00", "currency": "EUR"}),
        ("/api/v1/merchants", {"name": "Shop\n", "currency": "EUR"}),
        ("/api/v1/merchants", {"name": "Shop", "currency": "EUR\n"}),
        ("/api/v1/merchants", {"name": "Shop", "currency": "EUR", "domains": ["a.example\n"]}),
        ("/api/v1/partners", {"name": "Blog", "contact_email": "a@b.example\n"}),
        ("/api/v1/partners", {"name": "Blog", "contact_email": "a b@b.example"}),
        ("/api/v1/conversions/status", {"ids": [1], "status": "approved\n"}),
        ("/api/v1/conversions/status", {"ids": [1], "status": "approved", "reason": "a\x00"}),
    ],
)
async def test_control_characters_and_a_final_newline_are_refused(
    client: AsyncTestClient[Any], programme: Programme, path: str, body: dict[str, Any]
) -> None:
    """Python's ``$`` matches before a final newline, JSON Schema's does not; PostgreSQL
    refuses NUL. Either way the answer is a 400, as the schema says."""
    response = await client.post(path, json=body, headers=programme.headers)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"destination_url": "https://shop.example/a b"},
        {"destination_url": "https://shop.example/\r\nSet-Cookie: x=1"},
        {"commission_percent": "100.01"},
        {"commission_percent": 101},
        {"commission_percent": "7.555"},
        {"commission_percent": "\u0661\u0660"},  # Arabic-Indic digits: Decimal reads them
        {"commission_flat_minor": -1},
    ],
)
async def test_campaign_urls_and_percentages_are_bounded_by_type(
    client: AsyncTestClient[Any], programme: Programme, body: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/api/v1/campaigns/{programme.campaign['id']}", json=body, headers=programme.headers
    )
    assert response.status_code == 400, response.text
    (error,) = response.json()["extra"]
    assert (error["key"], error["source"]) == (next(iter(body)), "body")  # the type refused it


async def test_a_conversion_status_with_a_final_newline_is_400_not_500(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer
) -> None:
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "N1", "amt": "5"})
    await consumer.drain()
    (conversion,) = (await client.get("/api/v1/conversions", headers=programme.headers)).json()[
        "items"
    ]
    response = await client.patch(
        f"/api/v1/conversions/{conversion['id']}",
        json={"status": "approved\n"},
        headers=programme.headers,
    )
    assert response.status_code == 400, response.text


def _offset(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed


async def test_every_timestamp_the_api_emits_carries_its_offset(
    client: AsyncTestClient[Any],
    programme: Programme,
    database: Database,
    consumer: StreamConsumer,
) -> None:
    checked = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    async with database.session(write=True) as session:
        await session.execute(update(Link).values(last_checked_at=checked, health="ok"))
        await session.commit()
    await post_json(
        client,
        "/api/v1/commission-overrides",
        {"partner_id": programme.partner["id"], "campaign_id": programme.campaign["id"]},
        programme.headers,
    )
    await client.get("/p.gif", params={"m": programme.merchant["key"], "oid": "T1", "amt": "5"})
    await consumer.drain()
    headers = programme.headers
    stamps: list[str] = []
    for kind in ("merchants", "partners", "campaigns", "links", "commission-overrides"):
        items = (await client.get(f"/api/v1/{kind}", headers=headers)).json()["items"]
        stamps += [item["created_at"] for item in items]
        if kind != "commission-overrides":
            one = (await client.get(f"/api/v1/{kind}/{items[0]['id']}", headers=headers)).json()
            stamps.append(one["created_at"])
    link = (await client.get(f"/api/v1/links/{programme.link['id']}", headers=headers)).json()
    assert _offset(link["last_checked_at"]) == checked
    (conversion,) = (await client.get("/api/v1/conversions", headers=headers)).json()["items"]
    stamps.append(conversion["at"])
    stats = (await client.get("/api/v1/stats", headers=headers)).json()
    stamps += [stats["start"], stats["end"]]
    assert len(stamps) == 12
    for stamp in stamps:
        assert abs((_offset(stamp) - datetime.now(UTC)).days) <= 7, stamp


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        found: dict[str, Any] = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        return found
    return node


async def test_the_schema_states_every_bound_and_every_error(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    bodies = schema["components"]["schemas"]
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/") and path not in SIGNED
    ]
    # 27, coupons' 4, sources' 6, postbacks' and webhooks' 15, payouts' 11, groups' 4
    assert len(operations) == 67
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        assert {"400", "401"} <= responses.keys(), where
        assert operation["security"] == [{"apiKey": []}], where
        for parameter in operation.get("parameters", []):
            if parameter["name"] in IDS:
                bounds = parameter["schema"]
                assert bounds["maximum"] == MAX_ID, (where, parameter)
                assert bounds["minimum"] in (0, 1), (where, parameter)
        if "{" in path:
            assert "404" in responses, where
        if "requestBody" in operation:
            body = _resolve(
                schema, operation["requestBody"]["content"]["application/json"]["schema"]
            )
            assert body["additionalProperties"] is False, where
    get_merchant = schema["paths"]["/api/v1/merchants/{merchant_id}"]["get"]["responses"]
    assert "403" in get_merchant
    read_link = schema["paths"]["/api/v1/links/{link_id}"]["get"]["responses"]
    assert "403" not in read_link  # a partner's key reads its own links
    change = schema["paths"]["/api/v1/conversions/{conversion_id}"]["patch"]["responses"]
    assert "409" in change
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"

    campaign = bodies["CampaignCreate"]["properties"]
    assert campaign["merchant_id"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    text, number = campaign["commission_percent"]["anyOf"]
    assert (number["minimum"], number["maximum"]) == (0, 100)
    assert text["pattern"].startswith("^(100(")
    merchant = bodies["MerchantCreate"]["properties"]
    assert "EUR" in merchant["currency"]["description"]
    assert "JPY" in merchant["currency"]["description"]
    approve_days = merchant["auto_approve_days"]["anyOf"][0]
    assert (approve_days["minimum"], approve_days["maximum"]) == (0, 365)
    batch_ids = bodies["StatusBatch"]["properties"]["ids"]
    assert batch_ids["items"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    assert bodies["ConversionUpdate"]["properties"]["status"]["enum"] == [
        "approved",
        "rejected",
        "reversed",
    ]
