"""Money out, end to end through the real stack (tracking link, pixel, worker, management API):
approval books the commission, the hold period keeps it pending, a run pays what is payable in
a SEPA file that validates against the pain.001 schema, a later reversal is clawed back in the
next month's statement, and every partner's ledger adds up to the conversions' commissions
less what was paid. Time passes by moving the clock the money modules read."""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sepaxml
import xmlschema
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.core import clock
from backend.core.clock import DAY_MS
from backend.domain.affiliate.payouts import draft_scheduled, next_payout, period_of
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, ConversionStatus, LedgerEntry, LedgerKind
from backend.worker.consumer import StreamConsumer
from tests.support import BROWSER_HEADERS, Programme, add_partner_with_link, click_id_in

PAYER_IBAN = "DE89370400440532013000"
PARTNER_IBAN = "FR1420041010050500013M02606"
SCHEMA = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"
MONEY_CLOCKS = (
    "backend.domain.affiliate.ledger.now_ms",
    "backend.domain.affiliate.payouts.now_ms",
    "backend.web.api.payouts.now_ms",
)


@pytest.fixture
def days_later(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], int]:
    """Move the clock of the ledger, the runs and the money routes ``days`` ahead."""

    def move(days: int) -> int:
        moved = clock.now_ms() + days * DAY_MS
        for target in MONEY_CLOCKS:
            monkeypatch.setattr(target, lambda: moved)
        return moved

    return move


async def sell(
    client: AsyncTestClient[Any], programme: Programme, order_id: str, link: dict[str, Any]
) -> None:
    """A visitor follows ``link`` and buys for 49.90 EUR (10 % + 0.50: 5.49 commission)."""
    response = await client.get(f"/c/{link['code']}", headers=BROWSER_HEADERS)
    assert response.status_code == 302
    pixel = await client.get(
        "/p.gif",
        params={
            "m": programme.merchant["key"],
            "oid": order_id,
            "amt": "49.90",
            "cur": "EUR",
            "clk": click_id_in(response.headers["location"]),
        },
    )
    assert pixel.status_code == 200


async def conversion_ids(database: Database) -> dict[str, int]:
    async with database.session() as session:
        rows = await session.execute(select(Conversion.order_id, Conversion.id))
        return {order: conversion_id for order, conversion_id in rows if order}


async def set_status(
    client: AsyncTestClient[Any], programme: Programme, conversion_id: int, status: str
) -> None:
    response = await client.patch(
        f"/api/v1/conversions/{conversion_id}", json={"status": status}, headers=programme.headers
    )
    assert response.status_code == 200, response.text


async def balance(
    client: AsyncTestClient[Any], headers: dict[str, str], partner_id: int
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/partners/{partner_id}/balance", headers=headers)
    assert response.status_code == 200, response.text
    (eur,) = response.json()["balances"]
    return dict(eur)


async def assert_ledger_adds_up(database: Database) -> None:
    """Per partner and currency: the ledger's sum is the approved conversions' commissions
    plus adjustments, less the payouts not given back."""
    async with database.session() as session:
        ledger = dict(
            (
                await session.execute(
                    select(LedgerEntry.partner_id, func.sum(LedgerEntry.amount_minor)).group_by(
                        LedgerEntry.partner_id
                    )
                )
            ).all()
        )
        earned = dict(
            (
                await session.execute(
                    select(Conversion.partner_id, func.sum(Conversion.commission_minor))
                    .where(
                        Conversion.status == ConversionStatus.APPROVED,
                        Conversion.partner_id.is_not(None),
                    )
                    .group_by(Conversion.partner_id)
                )
            ).all()
        )
        moved = dict(
            (
                await session.execute(
                    select(LedgerEntry.partner_id, func.sum(LedgerEntry.amount_minor))
                    .where(
                        LedgerEntry.kind.in_(
                            [LedgerKind.ADJUSTMENT, LedgerKind.PAYOUT, LedgerKind.RETURNED]
                        )
                    )
                    .group_by(LedgerEntry.partner_id)
                )
            ).all()
        )
    assert ledger  # there is money to check
    for partner_id in ledger.keys() | {key for key in earned if key is not None}:
        assert ledger.get(partner_id, 0) == earned.get(partner_id, 0) + moved.get(partner_id, 0)


def month_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m")


async def test_money_end_to_end(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
    days_later: Callable[[int], int],
) -> None:
    admin, partner_id = programme.headers, programme.partner["id"]
    merchant = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={
            "hold_days": 30,
            "payout_minimum_minor": 1000,
            "legal_name": "Shop GmbH",
            "iban": "DE89 3704 0044 0532 0130 00",
            "bic": "COBADEFFXXX",
        },
        headers=admin,
    )
    assert merchant.status_code == 200, merchant.text
    assert merchant.json()["iban"] == PAYER_IBAN
    details = await client.patch(
        f"/api/v1/partners/{partner_id}",
        json={"payout_method": "sepa", "iban": PARTNER_IBAN, "account_holder": "Blog SARL"},
        headers=admin,
    )
    assert details.status_code == 200, details.text
    assert details.json()["iban"].endswith("2606")
    assert PARTNER_IBAN not in details.text  # masked to admins
    other, other_link = await add_partner_with_link(client, programme, "Small blog")

    for order in ("A-1", "A-2"):
        await sell(client, programme, order, programme.link)
    await sell(client, programme, "B-1", other_link)
    await consumer.drain()
    ids = await conversion_ids(database)
    for order in ("A-1", "A-2", "B-1"):
        await set_status(client, programme, ids[order], "approved")
    assert await balance(client, admin, partner_id) == {
        "currency": "EUR",
        "pending_minor": 1098,
        "payable_minor": 0,
        "paid_minor": 0,
        "balance_minor": 1098,
    }
    early = await client.post("/api/v1/payout-runs", json={}, headers=admin)
    assert early.status_code == 201, early.text
    assert early.json()["lines"] == []  # still in the hold period

    paid_at = days_later(31)  # the hold period has passed
    assert (await balance(client, admin, partner_id))["payable_minor"] == 1098
    drafted = await client.post(
        "/api/v1/payout-runs", json={"merchant_id": programme.merchant["id"]}, headers=admin
    )
    assert drafted.status_code == 201, drafted.text
    run = drafted.json()
    # the other partner's 5.49 is below the 10.00 minimum: it rolls over
    assert [
        (line["partner_id"], line["amount_minor"], line["currency"]) for line in run["lines"]
    ] == [(partner_id, 1098, "EUR")]
    unconfirmed = await client.get(
        f"/api/v1/payout-runs/{run['id']}/export?format=sepa", headers=admin
    )
    assert unconfirmed.status_code == 409

    confirmed = await client.post(f"/api/v1/payout-runs/{run['id']}/confirm", headers=admin)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["lines"][0]["status"] == "confirmed"
    assert (await balance(client, admin, partner_id))["balance_minor"] == 0

    sepa = await client.get(f"/api/v1/payout-runs/{run['id']}/export?format=sepa", headers=admin)
    assert sepa.status_code == 200, sepa.text
    xmlschema.XMLSchema(str(SCHEMA)).validate(sepa.text)
    document = ET.fromstring(sepa.content)  # noqa: S314 (our own export)
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    assert document.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=ns) == "10.98"
    assert document.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=ns) == PAYER_IBAN
    assert document.findtext(".//p:CdtrAcct/p:Id/p:IBAN", namespaces=ns) == PARTNER_IBAN
    assert document.findtext(".//p:Cdtr/p:Nm", namespaces=ns) == "Blog SARL"
    generic = await client.get(f"/api/v1/payout-runs/{run['id']}/export?format=csv", headers=admin)
    rows = list(csv.DictReader(io.StringIO(generic.text)))
    assert [(row["iban"], row["amount"], row["status"]) for row in rows] == [
        (PARTNER_IBAN, "10.98", "confirmed")
    ]

    line_url = f"/api/v1/payout-runs/{run['id']}/lines/{run['lines'][0]['id']}"
    paid = await client.post(f"{line_url}/paid", json={"reference": "BANK-77"}, headers=admin)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    again = await client.post(f"{line_url}/paid", json={"reference": "BANK-77"}, headers=admin)
    assert again.status_code == 200  # a retry changes nothing
    other_ref = await client.post(f"{line_url}/paid", json={"reference": "BANK-78"}, headers=admin)
    assert other_ref.status_code == 409
    assert (await balance(client, admin, partner_id))["paid_minor"] == 1098

    clawed_at = days_later(62)  # next month: the customer returned A-2
    await set_status(client, programme, ids["A-2"], "reversed")
    assert await balance(client, admin, partner_id) == {
        "currency": "EUR",
        "pending_minor": 0,
        "payable_minor": -549,
        "paid_minor": 1098,
        "balance_minor": -549,
    }
    assert month_of(clawed_at) != month_of(paid_at)
    later = await client.get(
        f"/api/v1/partners/{partner_id}/statements/{month_of(clawed_at)}", headers=admin
    )
    assert later.status_code == 200, later.text
    figures = later.json()
    assert (
        figures["opening_minor"],
        figures["earned_minor"],
        figures["reversed_minor"],
        figures["adjusted_minor"],
        figures["paid_minor"],
        figures["closing_minor"],
    ) == (0, 0, -549, 0, 0, -549)
    (clawback,) = figures["lines"]
    assert (clawback["kind"], clawback["order_id"], clawback["status"]) == (
        "reversed",
        "A-2",
        "reversed",
    )
    paying = await client.get(
        f"/api/v1/partners/{partner_id}/statements/{month_of(paid_at)}?format=csv", headers=admin
    )
    assert paying.status_code == 200
    assert paying.headers["content-type"].startswith("text/csv")
    assert "paid_minor,-1098" in paying.text

    # the next run carries the clawback: nothing is paid until it is earned back
    next_run = await client.post("/api/v1/payout-runs", json={}, headers=admin)
    assert next_run.json()["lines"] == []
    assert (await balance(client, admin, other["id"]))["payable_minor"] == 549
    await assert_ledger_adds_up(database)


async def test_the_schedule_drafts_one_run_per_merchant_and_period(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    admin = programme.headers
    await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"payout_schedule": "monthly"},
        headers=admin,
    )
    await sell(client, programme, "S-1", programme.link)
    await consumer.drain()
    await set_status(client, programme, (await conversion_ids(database))["S-1"], "approved")
    eur = (
        await client.get(f"/api/v1/partners/{programme.partner['id']}/balance", headers=admin)
    ).json()
    today = datetime.now(UTC).date()
    expected = next_payout("monthly", clock.now_ms())
    assert expected is not None
    assert eur["next_payout"] == expected.isoformat()
    assert eur["next_payout"] > today.isoformat()
    assert eur["next_payout"].endswith("-01")

    now = clock.now_ms()
    first, second = await asyncio.gather(
        draft_scheduled(database, now), draft_scheduled(database, now)
    )
    assert len(first + second) == 1  # two workers at once: one run
    assert await draft_scheduled(database, now) == []  # the period has its run
    runs = (await client.get("/api/v1/payout-runs", headers=admin)).json()
    assert [(run["period"], run["status"], len(run["lines"])) for run in runs] == [
        (month_of(now), "draft", 1)
    ]
    (later,) = await draft_scheduled(database, now + 32 * DAY_MS)  # next month's
    assert later not in first + second
    fortnight = period_of("biweekly", now)
    assert fortnight is not None
    assert fortnight.startswith("f")
    assert period_of("", now) is None
