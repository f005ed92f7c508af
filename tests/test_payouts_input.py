"""The money routes' bad input and edges: IBANs checked, payout details complete for their
method and masked to admins, adjustments with a reason, runs of a known merchant, lines in
their run and state, exports of a confirmed run only, formula-safe CSV. Clear 4xx answers,
never a 500, nothing deleted."""

from __future__ import annotations

import csv
import io
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.storage.db.engine import Database
from backend.storage.db.models import MailMessage, NotificationSetting, User
from backend.worker.consumer import StreamConsumer
from tests.support import Programme, add_user
from tests.test_payouts import conversion_ids, sell, set_status

HOSTILE = '=HYPERLINK("http://evil.example","x")'


def field_error(response: Any, key: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    (error,) = response.json()["extra"]
    assert error["key"] == key, error
    return str(error["message"])


async def test_payout_details_are_checked_and_masked(
    client: AsyncTestClient[Any], programme: Programme
) -> None:
    url = f"/api/v1/partners/{programme.partner['id']}"
    admin = programme.headers
    checksum = await client.patch(
        url, json={"payout_method": "sepa", "iban": "DE89370400440532013001"}, headers=admin
    )
    assert "IBAN" in field_error(checksum, "iban")
    incomplete = await client.patch(url, json={"payout_method": "sepa"}, headers=admin)
    field_error(incomplete, "iban")
    bic = await client.patch(url, json={"bic": "ABCDXXFF"}, headers=admin)
    field_error(bic, "bic")
    paypal = await client.patch(
        url,
        json={"payout_method": "paypal", "paypal_email": "money@blog.example"},
        headers=admin,
    )
    assert paypal.status_code == 200, paypal.text
    assert paypal.json()["paypal_email"] == "m•••@blog.example"
    other = await client.patch(url, json={"payout_method": "other"}, headers=admin)
    field_error(other, "payout_note")
    merchant = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}", json={"iban": "XX00"}, headers=admin
    )
    assert merchant.status_code == 400
    negative = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}", json={"hold_days": -1}, headers=admin
    )
    assert negative.status_code == 400


async def test_adjustments_runs_and_lines_refuse_what_they_cannot_do(
    client: AsyncTestClient[Any], programme: Programme, consumer: StreamConsumer, database: Any
) -> None:
    admin, partner_id = programme.headers, programme.partner["id"]
    adjust = f"/api/v1/partners/{partner_id}/adjustments"
    zero = await client.post(
        adjust, json={"amount_minor": 0, "currency": "EUR", "reason": "x"}, headers=admin
    )
    field_error(zero, "amount_minor")
    no_reason = await client.post(
        adjust, json={"amount_minor": 5, "currency": "EUR"}, headers=admin
    )
    assert no_reason.status_code == 400
    huge = await client.post(
        adjust, json={"amount_minor": 10**13, "currency": "EUR", "reason": "x"}, headers=admin
    )
    assert huge.status_code == 400
    currency = await client.post(
        adjust, json={"amount_minor": 5, "currency": "QQQ", "reason": "x"}, headers=admin
    )
    field_error(currency, "currency")
    nobody = await client.post(
        "/api/v1/partners/999/adjustments",
        json={"amount_minor": 5, "currency": "EUR", "reason": "x"},
        headers=admin,
    )
    assert nobody.status_code == 404
    bonus = await client.post(
        adjust,
        json={"amount_minor": 1500, "currency": "eur", "reason": HOSTILE},
        headers=admin,
    )
    assert bonus.status_code == 201, bonus.text
    assert (bonus.json()["currency"], bonus.json()["actor"][:7]) == ("EUR", "apikey:")

    unknown = await client.post("/api/v1/payout-runs", json={"merchant_id": 999}, headers=admin)
    field_error(unknown, "merchant_id")
    await client.patch(
        f"/api/v1/partners/{partner_id}",
        json={"name": HOSTILE, "payout_method": "paypal", "paypal_email": "pay@blog.example"},
        headers=admin,
    )
    run = (await client.post("/api/v1/payout-runs", json={"currency": "EUR"}, headers=admin)).json()
    (line,) = run["lines"]
    assert line["amount_minor"] == 1500  # an adjustment is payable at once
    line_url = f"/api/v1/payout-runs/{run['id']}/lines/{line['id']}"
    early = await client.post(f"{line_url}/paid", json={"reference": "R"}, headers=admin)
    field_error(early, "status", 409)
    wrong_run = await client.post(
        f"/api/v1/payout-runs/{run['id'] + 1}/lines/{line['id']}/paid",
        json={"reference": "R"},
        headers=admin,
    )
    assert wrong_run.status_code == 404
    pdf = await client.get(f"/api/v1/payout-runs/{run['id']}/export?format=pdf", headers=admin)
    assert pdf.status_code == 400
    await client.post(f"/api/v1/payout-runs/{run['id']}/confirm", headers=admin)
    sepa = await client.get(f"/api/v1/payout-runs/{run['id']}/export?format=sepa", headers=admin)
    assert "legal_name" in field_error(sepa, "format", 409)
    paypal = await client.get(
        f"/api/v1/payout-runs/{run['id']}/export?format=paypal", headers=admin
    )
    assert paypal.status_code == 200
    assert list(csv.reader(io.StringIO(paypal.text))) == [
        [
            "pay@blog.example",
            "15.00",
            "EUR",
            f"ct-{run['id']}-{line['id']}",
            f"Commission, payout run {run['id']}",
        ]
    ]
    generic = await client.get(f"/api/v1/payout-runs/{run['id']}/export?format=csv", headers=admin)
    (row,) = csv.DictReader(io.StringIO(generic.text))
    assert row["partner"] == "'" + HOSTILE  # formula-safe
    void_paid = await client.post(f"{line_url}/void", json={"reason": "typo"}, headers=admin)
    assert void_paid.status_code == 200
    assert void_paid.json()["status"] == "voided"
    again = await client.post(f"{line_url}/paid", json={"reference": "R"}, headers=admin)
    field_error(again, "status", 409)
    balance = (await client.get(f"/api/v1/partners/{partner_id}/balance", headers=admin)).json()
    assert balance["balances"][0]["payable_minor"] == 1500  # the voided line gave it back

    statement = await client.get(f"/api/v1/partners/{partner_id}/statements/2026-13", headers=admin)
    assert statement.status_code == 400
    month = run["created_at"][:7]
    exported = await client.get(
        f"/api/v1/partners/{partner_id}/statements/{month}?format=csv", headers=admin
    )
    assert "'" + HOSTILE.replace('"', '""') in exported.text
    figures = (
        await client.get(f"/api/v1/partners/{partner_id}/statements/{month}", headers=admin)
    ).json()
    assert (figures["adjusted_minor"], figures["paid_minor"], figures["closing_minor"]) == (
        1500,
        0,  # paid out and given back within the month
        1500,
    )
    # a conversion's commission is not an adjustment: approving books it as earned
    await sell(client, programme, "C-1", programme.link)
    await consumer.drain()
    await set_status(client, programme, (await conversion_ids(database))["C-1"], "approved")
    figures = (
        await client.get(f"/api/v1/partners/{partner_id}/statements/{month}", headers=admin)
    ).json()
    assert (figures["earned_minor"], figures["closing_minor"]) == (549, 2049)


async def test_a_payout_marked_paid_mails_the_partners_users_who_asked_once(
    client: AsyncTestClient[Any], programme: Programme, database: Database
) -> None:
    admin, partner_id = programme.headers, programme.partner["id"]
    await add_user(database, "payee@blog.example", "partner", partner_id)
    await add_user(database, "quiet@blog.example", "partner", partner_id)
    async with database.session(write=True) as session:
        payee = await session.scalar(select(User).where(User.email == "payee@blog.example"))
        assert payee is not None
        session.add(NotificationSetting(user_id=payee.id, payout_sent=True))
        await session.commit()
    await client.post(
        f"/api/v1/partners/{partner_id}/adjustments",
        json={"amount_minor": 2500, "currency": "EUR", "reason": "bonus"},
        headers=admin,
    )
    run = (await client.post("/api/v1/payout-runs", json={"currency": "EUR"}, headers=admin)).json()
    (line,) = run["lines"]
    await client.post(f"/api/v1/payout-runs/{run['id']}/confirm", headers=admin)
    paid = f"/api/v1/payout-runs/{run['id']}/lines/{line['id']}/paid"
    for _ in range(2):  # the second is a retry: it changes nothing, and mails nobody again
        answer = await client.post(paid, json={"reference": "SEPA-42"}, headers=admin)
        assert answer.status_code == 200, answer.text
    async with database.session() as session:
        mails = (await session.execute(select(MailMessage.to_address, MailMessage.text_body))).all()
    assert [to for to, _ in mails] == ["payee@blog.example"]
    assert "25.00 EUR" in mails[0][1]
    assert "SEPA-42" in mails[0][1]
