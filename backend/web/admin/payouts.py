"""Payout pages for admins: the runs (draft, confirm, export, each line paid, failed or
voided), every partner's balance, manual adjustments, and the merchant's payout settings
(``PAYOUT_FIELDS``, on the merchant's edit form). Every change goes through the same domain
functions as the API (``backend.web.api.payouts``); partners' details show masked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.payout_details import mask, mask_email
from backend.domain.affiliate.payout_schemas import AdjustmentCreate, LinePaid, LineReturned
from backend.domain.affiliate.payouts import (
    PayoutRefused,
    confirm_run,
    create_run,
    give_back,
    mark_paid,
    paying_merchant,
    run_lines,
)
from backend.domain.reports.payout_exports import ExportRefused
from backend.storage.db.models import (
    LedgerEntry,
    Partner,
    PayoutLineStatus,
    PayoutRun,
)
from backend.web.admin.forms import Field, FormInvalid, read_form, typed_currency, typed_form
from backend.web.admin.lookups import merchants_by_id, partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.payouts import (
    currency_of,
    export_response,
    new_adjustment,
    partner_balances,
    run_line,
)
from backend.web.api.resources import get_or_404

PAYOUT_FIELDS = (
    Field(
        "hold_days",
        "Hold commission for (days after the sale)",
        "a whole number of days from 0 to 365 before approved commission can be paid",
        kind="number",
    ),
    Field(
        "payout_minimum_minor",
        "Minimum payout",
        "an amount such as 50.00 in the merchant's currency; smaller balances roll over",
        kind="money",
    ),
    Field(
        "payout_schedule",
        "Draft payout runs",
        "by hand, monthly or every two weeks",
        kind="select",
        options=(("", "by hand"), ("monthly", "monthly"), ("biweekly", "every two weeks")),
    ),
    Field("legal_name", "Payer's legal name (SEPA)", "1 to 70 characters, or empty"),
    Field("iban", "Payer's IBAN (SEPA)", "an IBAN with a valid checksum, or empty"),
    Field("bic", "Payer's BIC (SEPA)", "a BIC of 8 or 11 characters, or empty"),
)
ADJUSTMENT_FIELDS = (
    Field("amount_minor", "Amount", "an amount such as 25.00, negative to deduct", "money"),
    Field("currency", "Currency", "a three-letter ISO 4217 code such as EUR"),
    Field("reason", "Reason", "why, in 1 to 500 characters"),
    Field("merchant_id", "Paid by merchant", "one of the merchants", kind="number"),
)
PAID_FIELDS = (
    Field(
        "reference", "Payment reference", "the bank's or PayPal's reference, 1 to 140 characters"
    ),
    Field("paid_on", "Paid on", "a date such as 2026-12-07, or empty for today", kind="date"),
)
RETURN_FIELDS = (Field("reason", "Reason", "why, in 1 to 500 characters"),)


class PayoutPages(Controller):
    path = "/payouts"

    @get("/")
    async def index(self, viewer: CurrentViewer, reader: Reader) -> Template:
        return await _index(viewer, reader)

    @post("/runs")
    async def create(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            merchant = await paying_merchant(writer, _number(form, "merchant_id"))
            raw = form.get("currency", "").strip()
            currency = currency_of(raw) if raw else None
            view = await create_run(writer, merchant, currency=currency, actor=viewer.actor)
        except FieldError as error:
            await writer.rollback()
            return await _index(viewer, writer, f"{error.field}: {error.message}")
        await writer.commit()
        return Redirect(f"/admin/payouts/runs/{view.run.id}", status_code=303)

    @post("/adjustments")
    async def adjust(
        self, request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
    ) -> Template | Redirect:
        form = await typed_form(request)
        try:
            partner_id = _number(form, "partner_id") or 0
            data = read_form(form, ADJUSTMENT_FIELDS, AdjustmentCreate, typed_currency(form))
            await new_adjustment(writer, partner_id, data, viewer.actor)
        except (FieldError, FormInvalid, NotFoundException) as error:
            await writer.rollback()
            return await _index(viewer, writer, _said(error))
        return Redirect("/admin/payouts", status_code=303)

    @get("/runs/{run_id:int}")
    async def run_page(
        self, run_id: FromPath[int], viewer: CurrentViewer, reader: Reader
    ) -> Template:
        return await _run_page(viewer, reader, run_id)

    @post("/runs/{run_id:int}/confirm")
    async def confirm(
        self, run_id: FromPath[int], viewer: CurrentViewer, writer: Writer
    ) -> Redirect:
        run = await get_or_404(writer, PayoutRun, run_id)
        await confirm_run(writer, run, actor=viewer.actor)
        await writer.commit()
        return Redirect(f"/admin/payouts/runs/{run_id}", status_code=303)

    @get("/runs/{run_id:int}/export")
    async def export(
        self, run_id: FromPath[int], reader: Reader, format: FromQuery[str] = "csv"
    ) -> Response[bytes | str]:
        run = await get_or_404(reader, PayoutRun, run_id)
        try:
            return await export_response(reader, run, format)
        except ExportRefused as refused:
            raise ClientException(detail=str(refused), status_code=409) from refused

    @post("/runs/{run_id:int}/lines/{line_id:int}/{action:str}")
    async def line_action(
        self,
        request: Request[Any, Any, Any],
        run_id: FromPath[int],
        line_id: FromPath[int],
        action: FromPath[str],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> Template | Redirect:
        """``paid`` (with the payment's reference), ``failed`` or ``void`` (with a reason)."""
        line = await run_line(writer, run_id, line_id)
        form = await typed_form(request)
        try:
            if action == "paid":
                paid = read_form(form, PAID_FIELDS, LinePaid)
                day = paid.paid_on or datetime.now(UTC).date()
                await mark_paid(writer, line, reference=paid.reference, paid_on=day)
            elif action in ("failed", "void"):
                returned = read_form(form, RETURN_FIELDS, LineReturned)
                wanted = PayoutLineStatus.FAILED if action == "failed" else PayoutLineStatus.VOIDED
                await give_back(writer, line, wanted, actor=viewer.actor, reason=returned.reason)
            else:
                raise NotFoundException(f"no action {action!r}")
        except (FormInvalid, PayoutRefused) as error:
            await writer.rollback()
            return await _run_page(viewer, writer, run_id, _said(error), status_code=400)
        await writer.commit()
        return Redirect(f"/admin/payouts/runs/{run_id}", status_code=303)


def _number(form: dict[str, str], name: str) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise FieldError(name, "a whole number")
    return int(raw)


def _said(error: Exception) -> str:
    if isinstance(error, FormInvalid):
        return "; ".join(f"{name}: {message}" for name, message in error.errors.items())
    if isinstance(error, FieldError):
        return f"{error.field}: {error.message}"
    return str(error)


async def _index(
    viewer: Viewer, session: AsyncSession, error: str = "", status_code: int | None = None
) -> Template:
    runs = (await session.scalars(select(PayoutRun).order_by(PayoutRun.id.desc()).limit(50))).all()
    partners = await partner_names(session)
    with_money = (await session.scalars(select(LedgerEntry.partner_id).distinct())).all()
    context = {
        "viewer": viewer,
        "runs": runs,
        "merchants": {key: m.name for key, m in (await merchants_by_id(session)).items()},
        "partners": partners,
        "balances": [
            await partner_balances(session, partner_id) for partner_id in sorted(with_money)
        ],
        "error": error,
        "adjustment_fields": ADJUSTMENT_FIELDS,
        "now_month": datetime.now(UTC).strftime("%Y-%m"),
    }
    code = status_code if status_code is not None else (400 if error else 200)
    return Template("admin/payouts.html", context=context, status_code=code)


async def _run_page(
    viewer: Viewer, session: AsyncSession, run_id: int, error: str = "", status_code: int = 200
) -> Template:
    run = await get_or_404(session, PayoutRun, run_id)
    lines = await run_lines(session, run.id)
    partners = {
        partner.id: partner
        for partner in (
            await session.scalars(
                select(Partner).where(Partner.id.in_([line.partner_id for line in lines]))
            )
        ).all()
    }
    details = {partner_id: _masked(partner) for partner_id, partner in partners.items()}
    context = {
        "viewer": viewer,
        "run": run,
        "lines": lines,
        "partners": {key: partner.name for key, partner in partners.items()},
        "details": details,
        "error": error,
        "created": datetime.fromtimestamp(run.created_ms / 1000, UTC),
    }
    return Template("admin/payout_run.html", context=context, status_code=status_code)


def _masked(partner: Partner) -> str:
    """How the partner is paid, with the account masked."""
    if partner.payout_method == "sepa":
        return f"bank transfer to {mask(partner.iban)} ({partner.account_holder})"
    if partner.payout_method == "paypal":
        return f"PayPal {mask_email(partner.paypal_email)}"
    if partner.payout_method == "other":
        return "other (see the partner's note in the export)"
    return "no payout details yet"
