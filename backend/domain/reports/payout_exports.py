"""A confirmed payout run's files for the bank and PayPal: SEPA credit transfers (pain.001.001.03,
built and checked against its XML schema by ``sepaxml``), a PayPal Payouts CSV and a generic
CSV. Only the lines still to pay (confirmed) go into the bank's and PayPal's files; the
partners' full details appear here and nowhere else. CSV cells are formula-safe
(``csv_cells``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sepaxml import SepaTransfer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.money import format_minor
from backend.domain.affiliate.payout_details import PayoutMethod
from backend.domain.reports.csv_cells import CsvCell, csv_line
from backend.storage.db.models import Merchant, Partner, PayoutLine, PayoutLineStatus, PayoutRun

FORMATS = ("sepa", "paypal", "csv")


class ExportRefused(ValueError):
    """The run cannot be exported in the wanted format yet (say what is missing)."""


@dataclass(frozen=True, slots=True)
class ExportLine:
    line: PayoutLine
    partner: Partner


async def export_lines(session: AsyncSession, run: PayoutRun) -> list[ExportLine]:
    rows = await session.execute(
        select(PayoutLine, Partner)
        .join(Partner, Partner.id == PayoutLine.partner_id)
        .where(PayoutLine.run_id == run.id)
        .order_by(PayoutLine.id)
    )
    return [ExportLine(line, partner) for line, partner in rows]


def _to_pay(lines: Sequence[ExportLine], method: PayoutMethod) -> list[ExportLine]:
    return [
        item
        for item in lines
        if item.line.status == PayoutLineStatus.CONFIRMED and item.partner.payout_method == method
    ]


def sepa_xml(run: PayoutRun, merchant: Merchant, lines: Sequence[ExportLine], on: date) -> bytes:
    """The run's bank-transfer lines as one pain.001 file, paid on ``on``."""
    if not (merchant.legal_name and merchant.iban):
        raise ExportRefused("set the merchant's legal_name and iban (the payer) first")
    paying = _to_pay(lines, PayoutMethod.SEPA)
    if not paying:
        raise ExportRefused("the run has no confirmed line paid by bank transfer")
    if any(item.line.currency != "EUR" for item in paying):
        raise ExportRefused("SEPA transfers are in EUR only; draft a run of EUR")
    config = {
        "name": merchant.legal_name,
        "IBAN": merchant.iban,
        "batch": True,
        "currency": "EUR",
    }
    if merchant.bic:
        config["BIC"] = merchant.bic
    transfer = SepaTransfer(config, clean=True)
    for item in paying:
        payment: dict[str, object] = {
            "name": item.partner.account_holder or item.partner.name,
            "IBAN": item.partner.iban,
            "amount": item.line.amount_minor,
            "execution_date": on,
            "description": f"Commission, payout run {run.id}, line {item.line.id}",
            "endtoend_id": f"CT{run.id}L{item.line.id}",
        }
        if item.partner.bic:
            payment["BIC"] = item.partner.bic
        transfer.add_payment(payment)
    out: bytes = transfer.export(validate=True)
    return out


def paypal_csv(run: PayoutRun, lines: Sequence[ExportLine]) -> str:
    """PayPal Payouts' bulk file: recipient e-mail, amount, currency, reference id, note (no
    header row)."""
    paying = _to_pay(lines, PayoutMethod.PAYPAL)
    if not paying:
        raise ExportRefused("the run has no confirmed line paid by PayPal")
    return "".join(
        csv_line(
            [
                item.partner.paypal_email,
                format_minor(item.line.amount_minor, item.line.currency),
                item.line.currency,
                f"ct-{run.id}-{item.line.id}",
                f"Commission, payout run {run.id}",
            ]
        )
        for item in paying
    )


GENERIC_HEADER = (
    "run_id",
    "line_id",
    "partner_id",
    "partner",
    "method",
    "account_holder",
    "iban",
    "bic",
    "paypal_email",
    "note",
    "amount_minor",
    "amount",
    "currency",
    "status",
    "reference",
    "paid_on",
)


def generic_csv(run: PayoutRun, lines: Sequence[ExportLine]) -> str:
    """Every line of the run, whatever its method and state, with the partner's details."""
    rows: list[Sequence[CsvCell]] = [GENERIC_HEADER]
    for item in lines:
        line, partner = item.line, item.partner
        rows.append(
            [
                run.id,
                line.id,
                partner.id,
                partner.name,
                partner.payout_method,
                partner.account_holder,
                partner.iban,
                partner.bic,
                partner.paypal_email,
                partner.payout_note,
                line.amount_minor,
                format_minor(line.amount_minor, line.currency),
                line.currency,
                line.status,
                line.reference,
                line.paid_on,
            ]
        )
    return "".join(csv_line(row) for row in rows)
