"""Money out: partners' balances, statements and adjustments, payout runs (draft, confirm,
export, lines paid, failed or voided). docs/payouts.md.

A partner's key reads its own balance and statements; everything else is an admin's.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from litestar import Controller, Response, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.clock import now_ms
from backend.core.money import MoneyError, normalise_currency
from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.ledger import add_adjustment, balances
from backend.domain.affiliate.payout_schemas import (
    AdjustmentCreate,
    AdjustmentOut,
    BalanceOut,
    BalancesOut,
    LinePaid,
    LineReturned,
    PayoutLineOut,
    PayoutRunCreate,
    PayoutRunOut,
    StatementLineOut,
    StatementOut,
)
from backend.domain.affiliate.payouts import (
    PayoutRefused,
    confirm_run,
    create_run,
    give_back,
    mark_paid,
    next_payout_for,
    paying_merchant,
    run_lines,
)
from backend.domain.reports.csv_cells import csv_line
from backend.domain.reports.payout_exports import (
    ExportRefused,
    export_lines,
    generic_csv,
    paypal_csv,
    sepa_xml,
)
from backend.domain.reports.statements import (
    Statement,
    currencies_of,
    statement,
    statement_rows,
)
from backend.storage.db.models import (
    Merchant,
    Partner,
    PayoutLine,
    PayoutLineStatus,
    PayoutRun,
    PayoutRunStatus,
)
from backend.web.api.deps import ADMIN_KEY, ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import After, Limit, PathId, get_or_404

Month = Annotated[
    str, PathParameter(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM, UTC")
]
QueryCurrency = Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z]{3}$")]


def download_operation(*media_types: str, json: bool = False) -> type[Operation]:
    """An ``operation_class`` whose 200 answer is a file of ``media_types`` (text), beside its
    JSON body when ``json`` (the first of the handler's own answer types)."""

    @dataclasses.dataclass
    class DownloadOperation(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            if not isinstance(ok, OpenAPIResponse):
                return
            content: dict[str, OpenAPIMediaType] = {}
            found = (ok.content or {}).get("application/json")
            if json and found is not None and isinstance(found.schema, Schema):
                first = (found.schema.one_of or [found.schema])[0]
                content["application/json"] = OpenAPIMediaType(first)
            for media in media_types:
                content[media] = OpenAPIMediaType(Schema(type=OpenAPIType.STRING))
            ok.content = content

    return DownloadOperation


class PayoutConflict(ClientException):
    """409: the run or the line is not in a state that allows it."""

    status_code = 409


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def line_out(line: PayoutLine) -> PayoutLineOut:
    return PayoutLineOut(
        id=line.id,
        partner_id=line.partner_id,
        amount_minor=line.amount_minor,
        currency=line.currency,
        status=line.status,
        reference=line.reference,
        paid_on=None if line.paid_on is None else date.fromisoformat(line.paid_on),
        reason=line.reason,
    )


def run_out(run: PayoutRun, lines: list[PayoutLine]) -> PayoutRunOut:
    return PayoutRunOut(
        id=run.id,
        merchant_id=run.merchant_id,
        currency=run.currency,
        status=run.status,
        period=run.period,
        created_at=datetime.fromtimestamp(run.created_ms / 1000, UTC),
        confirmed_at=_time(run.confirmed_ms),
        lines=[line_out(line) for line in lines],
    )


def own_partner(viewer: Viewer, partner_id: int) -> None:
    """A partner's key sees its own partner only; another's is not there (404)."""
    if not viewer.is_admin and viewer.partner_id != partner_id:
        raise NotFoundException(f"no partner with id {partner_id}")


def currency_of(raw: str, field: str = "currency") -> str:
    try:
        return normalise_currency(raw)
    except MoneyError as error:
        raise FieldError(field, str(error)) from None


async def partner_balances(session: AsyncSession, partner_id: int) -> BalancesOut:
    now = now_ms()
    found = await balances(session, partner_id, now)
    return BalancesOut(
        partner_id=partner_id,
        balances=[
            BalanceOut(
                currency=item.currency,
                pending_minor=item.pending_minor,
                payable_minor=item.payable_minor,
                paid_minor=item.paid_minor,
                balance_minor=item.balance_minor,
            )
            for item in found
        ],
        next_payout=await next_payout_for(session, partner_id, now),
    )


async def partner_statement(
    session: AsyncSession, partner_id: int, month: str, currency: str | None
) -> tuple[Statement, list[str]]:
    """The statement of ``currency``, by default the first of the partner's currencies."""
    currencies = await currencies_of(session, partner_id)
    if currency is not None:
        chosen = currency_of(currency)
    elif currencies:
        chosen = currencies[0]
    else:
        first = await session.scalar(select(Merchant.currency).order_by(Merchant.id).limit(1))
        chosen = first or "EUR"
    return await statement(session, partner_id, month, chosen), currencies


def statement_out(found: Statement, currencies: list[str]) -> StatementOut:
    return StatementOut(
        partner_id=found.partner_id,
        month=found.month,
        currency=found.currency,
        opening_minor=found.opening_minor,
        earned_minor=found.earned_minor,
        reversed_minor=found.reversed_minor,
        adjusted_minor=found.adjusted_minor,
        paid_minor=found.paid_minor,
        closing_minor=found.closing_minor,
        lines=[
            StatementLineOut(
                at=line.at,
                kind=line.kind,
                amount_minor=line.amount_minor,
                reason=line.reason,
                conversion_id=line.conversion_id,
                order_id=line.order_id,
                sale_at=line.sale_at,
                sale_minor=line.sale_minor,
                commission_minor=line.commission_minor,
                status=line.status,
            )
            for line in found.lines
        ],
        currencies=currencies,
    )


def statement_csv(found: Statement) -> Response[str]:
    name = f"statement-{found.partner_id}-{found.month}-{found.currency}.csv"
    return Response(
        "".join(csv_line(row) for row in statement_rows(found)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def new_adjustment(
    session: AsyncSession, partner_id: int, data: AdjustmentCreate, actor: str
) -> AdjustmentOut:
    if data.amount_minor == 0:
        raise FieldError("amount_minor", "an adjustment moves money: not 0")
    await get_or_404(session, Partner, partner_id)
    merchant = await paying_merchant(session, data.merchant_id)
    entry = await add_adjustment(
        session,
        partner_id,
        merchant.id,
        data.amount_minor,
        currency_of(data.currency),
        actor=actor,
        reason=data.reason,
    )
    await session.commit()
    return AdjustmentOut(
        id=entry.id,
        partner_id=entry.partner_id,
        merchant_id=entry.merchant_id,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        reason=entry.reason,
        actor=entry.actor,
        at=datetime.fromtimestamp(entry.at_ms / 1000, UTC),
    )


async def export_response(
    session: AsyncSession, run: PayoutRun, format: str
) -> Response[bytes | str]:
    """The download of ``run`` in ``format`` (sepa, paypal, csv); ``ExportRefused`` when the
    run is not confirmed or lacks what the format needs."""
    if run.status != PayoutRunStatus.CONFIRMED:
        raise ExportRefused("confirm the run first")
    merchant = await get_or_404(session, Merchant, run.merchant_id)
    lines = await export_lines(session, run)
    body: bytes | str
    if format == "sepa":
        body = sepa_xml(run, merchant, lines, datetime.now(UTC).date())
        media, suffix = "application/xml", "xml"
    elif format == "paypal":
        body, media, suffix = paypal_csv(run, lines), "text/csv; charset=utf-8", "csv"
    elif format == "csv":
        body, media, suffix = generic_csv(run, lines), "text/csv; charset=utf-8", "csv"
    else:
        raise ExportRefused("the format is one of sepa, paypal, csv")
    name = f"payout-run-{run.id}-{format}.{suffix}"
    return Response(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def run_line(session: AsyncSession, run_id: int, line_id: int) -> PayoutLine:
    line = await get_or_404(session, PayoutLine, line_id)
    if line.run_id != run_id:
        raise NotFoundException(f"no line {line_id} in payout run {run_id}")
    return line


def conflict(refused: PayoutRefused | ExportRefused, key: str = "status") -> PayoutConflict:
    return PayoutConflict(detail=str(refused), extra=[{"key": key, "message": str(refused)}])


class PartnerMoneyController(Controller):
    path = "/partners"
    tags = ["payouts"]

    @get("/{partner_id:int}/balance", raises=[*ANY_KEY, NotFoundException], opt=PARTNER_KEYS)
    async def balance(
        self, partner_id: PathId, viewer: CurrentViewer, reader: Reader
    ) -> BalancesOut:
        """Per currency: pending (in the hold period), payable, paid and the balance."""
        own_partner(viewer, partner_id)
        await get_or_404(reader, Partner, partner_id)
        return await partner_balances(reader, partner_id)

    @get(
        "/{partner_id:int}/statements/{month:str}",
        raises=[*ANY_KEY, NotFoundException],
        opt=PARTNER_KEYS,
        operation_class=download_operation("text/csv", json=True),
    )
    async def read_statement(
        self,
        partner_id: PathId,
        month: Month,
        viewer: CurrentViewer,
        reader: Reader,
        currency: QueryCurrency = None,
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> StatementOut | Response[str]:
        """The month's statement in one currency (``currencies`` lists the others)."""
        own_partner(viewer, partner_id)
        await get_or_404(reader, Partner, partner_id)
        found, currencies = await partner_statement(reader, partner_id, month, currency)
        if format == "csv":
            return statement_csv(found)
        return statement_out(found, currencies)

    @post("/{partner_id:int}/adjustments", raises=[*ADMIN_KEY, NotFoundException])
    async def adjust(
        self,
        partner_id: PathId,
        data: JSONBody[AdjustmentCreate],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> AdjustmentOut:
        return await new_adjustment(writer, partner_id, data, viewer.actor)


class PayoutRunController(Controller):
    path = "/payout-runs"
    tags = ["payouts"]

    @post("/", raises=ADMIN_KEY)
    async def create(
        self, data: JSONBody[PayoutRunCreate], viewer: CurrentViewer, writer: Writer
    ) -> PayoutRunOut:
        """A draft run of the merchant's payable balances at or above its minimum."""
        merchant = await paying_merchant(writer, data.merchant_id)
        currency = None if data.currency is None else currency_of(data.currency)
        view = await create_run(writer, merchant, currency=currency, actor=viewer.actor)
        await writer.commit()
        return run_out(view.run, list(view.lines))

    @get("/", raises=ADMIN_KEY)
    async def list_runs(
        self, reader: Reader, after: After = 0, limit: Limit = 50
    ) -> list[PayoutRunOut]:
        """The runs after ``after``, oldest first, with their lines."""
        runs = (
            await reader.scalars(
                select(PayoutRun).where(PayoutRun.id > after).order_by(PayoutRun.id).limit(limit)
            )
        ).all()
        return [run_out(run, await run_lines(reader, run.id)) for run in runs]

    @get("/{run_id:int}", raises=[*ADMIN_KEY, NotFoundException])
    async def read(self, run_id: PathId, reader: Reader) -> PayoutRunOut:
        run = await get_or_404(reader, PayoutRun, run_id)
        return run_out(run, await run_lines(reader, run.id))

    @post("/{run_id:int}/confirm", status_code=200, raises=[*ADMIN_KEY, NotFoundException])
    async def confirm(self, run_id: PathId, viewer: CurrentViewer, writer: Writer) -> PayoutRunOut:
        """Lock the lines' entries; confirming a confirmed run changes nothing."""
        run = await get_or_404(writer, PayoutRun, run_id)
        await confirm_run(writer, run, actor=viewer.actor)
        await writer.commit()
        return run_out(run, await run_lines(writer, run.id))

    @get(
        "/{run_id:int}/export",
        raises=[*ADMIN_KEY, NotFoundException, PayoutConflict],
        operation_class=download_operation("application/xml", "text/csv"),
    )
    async def export(
        self, run_id: PathId, reader: Reader, format: FromQuery[Literal["sepa", "paypal", "csv"]]
    ) -> Response[bytes | str]:
        """The confirmed run as a SEPA pain.001 file, a PayPal Payouts CSV or a generic CSV."""
        run = await get_or_404(reader, PayoutRun, run_id)
        try:
            return await export_response(reader, run, format)
        except ExportRefused as refused:
            raise conflict(refused, "format") from refused

    @post(
        "/{run_id:int}/lines/{line_id:int}/paid",
        status_code=200,
        raises=[*ADMIN_KEY, NotFoundException, PayoutConflict],
    )
    async def paid(
        self, run_id: PathId, line_id: PathId, data: JSONBody[LinePaid], writer: Writer
    ) -> PayoutLineOut:
        """Paid, with the payment's reference; the same again changes nothing."""
        line = await run_line(writer, run_id, line_id)
        try:
            await mark_paid(
                writer,
                line,
                reference=data.reference,
                paid_on=data.paid_on or datetime.now(UTC).date(),
            )
        except PayoutRefused as refused:
            raise conflict(refused) from refused
        await writer.commit()
        return line_out(line)

    @post(
        "/{run_id:int}/lines/{line_id:int}/failed",
        status_code=200,
        raises=[*ADMIN_KEY, NotFoundException, PayoutConflict],
    )
    async def failed(
        self,
        run_id: PathId,
        line_id: PathId,
        data: JSONBody[LineReturned],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> PayoutLineOut:
        """The payment failed or came back: its amount returns to the balance."""
        return await _give_back(writer, run_id, line_id, PayoutLineStatus.FAILED, data, viewer)

    @post(
        "/{run_id:int}/lines/{line_id:int}/void",
        status_code=200,
        raises=[*ADMIN_KEY, NotFoundException, PayoutConflict],
    )
    async def void(
        self,
        run_id: PathId,
        line_id: PathId,
        data: JSONBody[LineReturned],
        viewer: CurrentViewer,
        writer: Writer,
    ) -> PayoutLineOut:
        """Withdraw an unpaid line, with a reason; a confirmed one's amount returns."""
        return await _give_back(writer, run_id, line_id, PayoutLineStatus.VOIDED, data, viewer)


async def _give_back(
    session: AsyncSession,
    run_id: int,
    line_id: int,
    wanted: PayoutLineStatus,
    data: LineReturned,
    viewer: Viewer,
) -> PayoutLineOut:
    line = await run_line(session, run_id, line_id)
    try:
        await give_back(session, line, wanted, actor=viewer.actor, reason=data.reason)
    except PayoutRefused as refused:
        raise conflict(refused) from refused
    await session.commit()
    return line_out(line)


PAYOUT_CONTROLLERS: list[type[Controller]] = [PartnerMoneyController, PayoutRunController]
