"""The partner's money pages, beside the reports: the balance per currency, the next payout
day, the statements (a printable page, CSV) and the payout details form. Admins read any
partner's statement here too; a partner reads only their own (another's answers 404).

The details form writes through the same checks as the API (``checked_details``,
``require_details``); the IBAN and the PayPal address are shown masked, never put back into
the form.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from backend.core.clock import now_ms
from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate.payout_details import (
    checked_details,
    mask,
    mask_email,
    require_details,
)
from backend.domain.affiliate.schemas import PayoutDetails
from backend.domain.reports.statements import money_summary, statement_months
from backend.storage.db.models import Partner
from backend.web.admin.forms import Field, FormInvalid, read_form, typed_form
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.payouts import partner_statement, statement_csv
from backend.web.api.resources import get_or_404

PAGE = "/money"
DETAIL_FIELDS = (
    Field(
        "payout_method",
        "Paid by",
        "bank transfer (SEPA), PayPal or another way",
        kind="select",
        options=(("sepa", "bank transfer (SEPA)"), ("paypal", "PayPal"), ("other", "other")),
        required=True,
    ),
    Field("account_holder", "Account holder", "the name on the account, 1 to 70 characters"),
    Field("iban", "IBAN", "an IBAN with a valid checksum, such as DE89 3704 0044 0532 0130 00"),
    Field("bic", "BIC (optional)", "a BIC of 8 or 11 characters, or empty"),
    Field("paypal_email", "PayPal e-mail", "the e-mail address of your PayPal account", "email"),
    Field("payout_note", "Other: how to pay you", "up to 500 characters"),
)


def _partner_only(viewer: Viewer) -> int:
    if viewer.partner_id is None:
        raise PermissionDeniedException("payout details are the partner's to give")
    return viewer.partner_id


async def _page(
    viewer: Viewer, reader: Any, error: str = "", values: dict[str, str] | None = None
) -> Template:
    if viewer.partner_id is None:
        return Template("money.html", context={"viewer": viewer, "partner": None})
    partner = await get_or_404(reader, Partner, viewer.partner_id)
    context = {
        "viewer": viewer,
        "partner": partner,
        "summary": await money_summary(reader, partner.id, now_ms()),
        "months": await statement_months(reader, partner.id),
        "iban": mask(partner.iban),
        "paypal": mask_email(partner.paypal_email),
        "fields": DETAIL_FIELDS,
        "values": values or {"payout_method": partner.payout_method or "sepa"},
        "error": error,
    }
    return Template("money.html", context=context, status_code=400 if error else 200)


@get(PAGE)
async def money_page(viewer: CurrentViewer, reader: Reader) -> Template | Redirect:
    """A partner's balance, statements and payout details; admins go to the payout runs."""
    if viewer.is_admin:
        return Redirect("/admin/payouts")
    return await _page(viewer, reader)


@post(f"{PAGE}/details")
async def save_details(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
) -> Template | Redirect:
    partner = await get_or_404(writer, Partner, _partner_only(viewer))
    form = await typed_form(request)
    try:
        data = checked_details(read_form(form, DETAIL_FIELDS, PayoutDetails))
        for name in data.__struct_fields__:
            if (value := getattr(data, name)) is not msgspec.UNSET:
                setattr(partner, name, value)
        require_details(partner)
    except (FormInvalid, FieldError) as error:
        await writer.rollback()
        said = (
            "; ".join(f"{k}: {v}" for k, v in error.errors.items())
            if isinstance(error, FormInvalid)
            else f"{error.field}: {error.message}"
        )
        kept = {key: value for key, value in form.items() if key in ("payout_method", "bic")}
        return await _page(viewer, writer, said, kept)
    await writer.commit()
    return Redirect(PAGE, status_code=303)


@get(f"{PAGE}/statements/{{partner_id:int}}/{{month:str}}")
async def statement_page(
    partner_id: FromPath[int],
    month: FromPath[str],
    viewer: CurrentViewer,
    reader: Reader,
    currency: FromQuery[str | None] = None,
    format: FromQuery[str] = "html",
) -> Template | Response[str]:
    """A month's statement, printable on A4 (``static/print.css``), or as CSV."""
    if viewer.partner_id not in (None, partner_id):
        raise NotFoundException(f"no partner with id {partner_id}")
    partner = await get_or_404(reader, Partner, partner_id)
    found, currencies = await partner_statement(reader, partner_id, month, currency)
    if format == "csv":
        return statement_csv(found)
    context = {
        "viewer": viewer,
        "partner": partner,
        "statement": found,
        "currencies": currencies,
    }
    return Template("statement.html", context=context)


MONEY_HANDLERS = [money_page, save_details, statement_page]
