"""The money pages in the browser's terms (forms with their CSRF token, real sessions): an admin
drafts, confirms, exports and pays a run and sees partners' accounts masked; a partner gives
payout details (the IBAN checked), reads the balance, the next payout day and the printable
statement on the overview and the money page, and never another partner's."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from litestar.testing import AsyncTestClient

from backend.storage.db.engine import Database
from backend.storage.db.models import LedgerEntry, Partner, PayoutLine
from backend.worker.consumer import StreamConsumer
from tests.support import Programme, add_partner_with_link, sign_in
from tests.test_admin import one, sign_in_partner, submit
from tests.test_payouts import conversion_ids, sell, set_status

IBAN = "DE89370400440532013000"


async def test_a_partner_gives_details_and_reads_money_pages(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    other, _ = await add_partner_with_link(client, programme, "Other blog")
    await sell(client, programme, "P-1", programme.link)
    await consumer.drain()
    await set_status(client, programme, (await conversion_ids(database))["P-1"], "approved")
    partner_id = programme.partner["id"]
    await sign_in_partner(client, database, partner_id)

    page = await client.get("/money")
    assert page.status_code == 200
    assert "5.49" in page.text  # the approved commission, still in the hold period or not
    details = {"payout_method": "sepa", "account_holder": "Blog Ltd", "bic": ""}
    bad = await submit(client, "/money/details", {**details, "iban": "DE89370400440532013001"})
    assert bad.status_code == 400
    assert "iban" in bad.text
    assert "checksum" in bad.text.lower()
    no_token = await client.post("/money/details", data={**details, "iban": IBAN})
    assert no_token.status_code == 403
    saved = await submit(
        client, "/money/details", {**details, "iban": "de89 3704 0044 0532 0130 00"}
    )
    assert saved.status_code == 303, saved.text
    partner = await one(database, Partner, id=partner_id)
    assert (partner.payout_method, partner.iban) == ("sepa", IBAN)
    page = await client.get("/money")
    assert IBAN not in page.text
    assert "3000" in page.text

    overview = await client.get("/")
    month = re.search(rf'href="/money/statements/{partner_id}/(\d{{4}}-\d{{2}})"', overview.text)
    assert month is not None, "the overview links the last statement"
    assert "Next payout" in overview.text
    # The partner's overview leads with its earnings: pending, payable, paid.
    assert overview.text.index('id="money-title"') < overview.text.index('id="kpi-clicks"')
    held = re.search(r'id="money-pending-EUR">([^<]+)<', overview.text)
    payable = re.search(r'id="money-payable-EUR">([^<]+)<', overview.text)
    assert held is not None
    assert payable is not None
    assert "€5.49" in (held[1], payable[1])
    assert re.search(r'id="money-paid-EUR">€0.00<', overview.text)
    statement = await client.get(f"/money/statements/{partner_id}/{month[1]}")
    assert statement.status_code == 200
    assert 'href="/static/print.css" media="print"' in statement.text
    assert "P-1" in statement.text
    assert "5.49" in statement.text
    exported = await client.get(f"/money/statements/{partner_id}/{month[1]}?format=csv")
    assert "earned_minor,549" in exported.text
    assert (await client.get(f"/money/statements/{other['id']}/{month[1]}")).status_code == 404
    print_css = await client.get("/static/print.css")
    assert print_css.status_code == 200
    assert "size: A4" in print_css.text


async def test_an_admin_runs_a_payout_from_the_pages(
    client: AsyncTestClient[Any],
    database: Database,
    programme: Programme,
    consumer: StreamConsumer,
) -> None:
    admin = programme.headers
    await client.patch(
        f"/api/v1/partners/{programme.partner['id']}",
        json={"payout_method": "sepa", "iban": IBAN, "account_holder": "Blog Ltd"},
        headers=admin,
    )
    await sign_in(client, database)
    edit = await submit(
        client,
        f"/admin/merchants/{programme.merchant['id']}",
        {
            "name": "Shop",
            "currency": "EUR",
            "domains": "shop.example",
            "coupon_over_click": "false",
            "hold_days": "0",
            "payout_minimum_minor": "1.00",
            "payout_schedule": "monthly",
            "legal_name": "Shop GmbH",
            "iban": "DE02 1203 0000 0000 2020 51",
            "bic": "",
        },
    )
    assert edit.status_code in (302, 303), edit.text
    await sell(client, programme, "Q-1", programme.link)
    await consumer.drain()
    await set_status(client, programme, (await conversion_ids(database))["Q-1"], "approved")
    adjust = await submit(
        client,
        "/admin/payouts/adjustments",
        {
            "partner_id": str(programme.partner["id"]),
            "amount_minor": "-0.49",
            "currency": "EUR",
            "reason": "bank fee",
            "merchant_id": "",
        },
    )
    assert adjust.status_code == 303, adjust.text
    entry = await one(database, LedgerEntry, kind="adjustment")
    assert (entry.amount_minor, entry.reason, entry.actor) == (
        -49,
        "bank fee",
        "user:admin@example.com",
    )

    drafted = await submit(
        client,
        "/admin/payouts/runs",
        {"merchant_id": str(programme.merchant["id"]), "currency": ""},
    )
    assert drafted.status_code == 303, drafted.text
    run_url = drafted.headers["location"]
    run_page = await client.get(run_url)
    assert run_page.status_code == 200
    assert "5.00" in run_page.text  # 5.49 earned, less the 0.49 fee
    assert IBAN not in run_page.text
    assert "3000" in run_page.text
    assert (await submit(client, f"{run_url}/confirm", {})).status_code == 303
    exported = await client.get(f"{run_url}/export?format=csv")
    (row,) = csv.DictReader(io.StringIO(exported.text))
    assert (row["iban"], row["amount_minor"]) == (IBAN, "500")  # in full in the export only
    sepa = await client.get(f"{run_url}/export?format=sepa")
    assert sepa.status_code == 200
    assert b"<IBAN>DE02120300000000202051</IBAN>" in sepa.content
    line = await one(database, PayoutLine)
    blank = await submit(client, f"{run_url}/lines/{line.id}/paid", {"reference": ""})
    assert blank.status_code == 400
    paid = await submit(
        client, f"{run_url}/lines/{line.id}/paid", {"reference": "SEPA-1", "paid_on": "2026-12-07"}
    )
    assert paid.status_code == 303, paid.text
    line = await one(database, PayoutLine, id=line.id)
    assert (line.status, line.reference, line.paid_on) == ("paid", "SEPA-1", "2026-12-07")
    index = await client.get("/admin/payouts")
    assert index.status_code == 200
    assert f"#{line.run_id}" in index.text
    money = await client.get("/money")
    assert (money.status_code, money.headers["location"]) == (302, "/admin/payouts")
