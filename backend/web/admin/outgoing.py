"""Outgoing pages: partners' postbacks and webhook endpoints with their delivery logs, a "send
test" button and a resend per message.

Open to admins (every postback and webhook endpoint) and to partner users (their own postbacks
and webhook endpoints only: another partner's, a merchant's or an admin's answer 404). Every
form carries the CSRF token of the signed-in site; every change goes through
``backend.domain.affiliate.hooks`` as the API's.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate import hooks
from backend.domain.affiliate.delivery import resend
from backend.domain.affiliate.outbox import EVENTS
from backend.storage.db.models import OutboxMessage, PartnerPostback, WebhookEndpoint
from backend.web.admin.lookups import partner_names
from backend.web.api.deps import CurrentViewer, Reader, Writer
from backend.web.api.hooks import visible_postback, visible_webhook

PAGE = "/outgoing"


async def _index(
    viewer: Viewer, reader: AsyncSession, error: str = "", status_code: int = 200
) -> Template:
    postbacks = (
        await reader.scalars(
            viewer.restrict(select(PartnerPostback), PartnerPostback.partner_id).order_by(
                PartnerPostback.id
            )
        )
    ).all()
    webhooks = (
        await reader.scalars(
            viewer.restrict(select(WebhookEndpoint), WebhookEndpoint.partner_id).order_by(
                WebhookEndpoint.id
            )
        )
    ).all()
    context = {
        "viewer": viewer,
        "postbacks": postbacks,
        "webhooks": webhooks,
        "partners": await partner_names(reader) if viewer.is_admin else {},
        "events": EVENTS,
        "macros": hooks.MACRO_LIST,
        "error": error,
    }
    return Template("outgoing.html", context=context, status_code=status_code)


@get(PAGE)
async def outgoing_page(viewer: CurrentViewer, reader: Reader) -> Template:
    return await _index(viewer, reader)


async def _form(request: Request[Any, Any, Any]) -> tuple[dict[str, str], list[str]]:
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    events = [value for value in form.getall("events") if isinstance(value, str)]
    return fields, events


def _refused(error: Exception) -> str:
    if isinstance(error, FieldError):
        return f"{error.field}: {error.message}"
    return str(error)


@post(f"{PAGE}/postbacks")
async def create_postback(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
) -> Template | Redirect:
    fields, events = await _form(request)
    partner_id = viewer.partner_id
    try:
        if partner_id is None:
            partner_id = int(fields.get("partner_id") or 0)
        campaign = fields.get("campaign_id") or None
        data = msgspec.convert(
            {
                "url": fields.get("url", ""),
                "method": fields.get("method", "GET"),
                "events": events,
                "campaign_id": int(campaign) if campaign else None,
            },
            hooks.PostbackCreate,
        )
        await hooks.create_postback(writer, partner_id, data)
    except (FieldError, msgspec.ValidationError, ValueError) as error:
        await writer.rollback()
        return await _index(viewer, writer, _refused(error), status_code=400)
    return Redirect(PAGE, status_code=303)


@post(f"{PAGE}/webhooks")
async def create_webhook(
    request: Request[Any, Any, Any], viewer: CurrentViewer, writer: Writer
) -> Template | Redirect:
    fields, events = await _form(request)
    try:
        merchant = (fields.get("merchant_id") or None) if viewer.is_admin else None
        data = msgspec.convert(
            {
                "url": fields.get("url", ""),
                "events": events,
                "merchant_id": int(merchant) if merchant else None,
                "partner_id": viewer.partner_id,  # a partner's endpoint is its own
            },
            hooks.WebhookCreate,
        )
        endpoint = await hooks.create_webhook(writer, data)
    except (FieldError, msgspec.ValidationError, ValueError) as error:
        await writer.rollback()
        return await _index(viewer, writer, _refused(error), status_code=400)
    return _secret(viewer, endpoint, "created")


def _secret(viewer: Viewer, endpoint: WebhookEndpoint, done: str) -> Template:
    return Template(
        "admin/secret.html",
        context={
            "viewer": viewer,
            "heading": f"Webhook endpoint #{endpoint.id} {done}",
            "label": "Signing secret (Standard Webhooks)",
            "secret": endpoint.secret,
            "back": f"{PAGE}/webhooks/{endpoint.id}",
        },
        headers={"Cache-Control": "no-store"},
    )


async def _log(
    viewer: Viewer,
    reader: AsyncSession,
    *,
    postback: PartnerPostback | None = None,
    endpoint: WebhookEndpoint | None = None,
) -> Template:
    items, _ = await hooks.deliveries(
        reader,
        postback_id=postback.id if postback else None,
        webhook_id=endpoint.id if endpoint else None,
        limit=100,
    )
    if postback is not None:
        base = f"{PAGE}/postbacks/{postback.id}"
    else:
        base = f"{PAGE}/webhooks/{endpoint.id if endpoint else 0}"
    context = {
        "viewer": viewer,
        "postback": postback,
        "endpoint": endpoint,
        "deliveries": items,
        "base": base,
    }
    return Template("outgoing_log.html", context=context)


@get(f"{PAGE}/postbacks/{{postback_id:int}}")
async def postback_log(
    postback_id: FromPath[int], viewer: CurrentViewer, reader: Reader
) -> Template:
    return await _log(viewer, reader, postback=await visible_postback(reader, viewer, postback_id))


@get(f"{PAGE}/webhooks/{{webhook_id:int}}")
async def webhook_log(webhook_id: FromPath[int], viewer: CurrentViewer, reader: Reader) -> Template:
    return await _log(viewer, reader, endpoint=await visible_webhook(reader, viewer, webhook_id))


@post(f"{PAGE}/postbacks/{{postback_id:int}}/test")
async def test_postback(
    postback_id: FromPath[int], viewer: CurrentViewer, writer: Writer
) -> Redirect:
    postback = await visible_postback(writer, viewer, postback_id)
    await hooks.send_test(writer, postback=postback)
    return Redirect(f"{PAGE}/postbacks/{postback_id}", status_code=303)


@post(f"{PAGE}/webhooks/{{webhook_id:int}}/test")
async def test_webhook(
    webhook_id: FromPath[int], viewer: CurrentViewer, writer: Writer
) -> Redirect:
    endpoint = await visible_webhook(writer, viewer, webhook_id)
    await hooks.send_test(writer, endpoint=endpoint)
    return Redirect(f"{PAGE}/webhooks/{webhook_id}", status_code=303)


@post(f"{PAGE}/webhooks/{{webhook_id:int}}/rotate")
async def rotate_webhook(
    webhook_id: FromPath[int], viewer: CurrentViewer, writer: Writer
) -> Template:
    endpoint = await visible_webhook(writer, viewer, webhook_id)
    await hooks.rotate_secret(writer, endpoint)
    return _secret(viewer, endpoint, "has a new secret")


@post(f"{PAGE}/deliveries/{{delivery_id:int}}/resend")
async def resend_delivery(
    delivery_id: FromPath[int], viewer: CurrentViewer, writer: Writer
) -> Redirect:
    message = await writer.get(OutboxMessage, delivery_id) if delivery_id > 0 else None
    if message is None:
        raise NotFoundException(f"no delivery with id {delivery_id}")
    if message.postback_id is not None:
        await visible_postback(writer, viewer, message.postback_id)
        back = f"{PAGE}/postbacks/{message.postback_id}"
    else:
        await visible_webhook(writer, viewer, message.webhook_id or 0)
        back = f"{PAGE}/webhooks/{message.webhook_id}"
    await resend(writer, message)
    await writer.commit()
    return Redirect(back, status_code=303)


OUTGOING_HANDLERS = [
    outgoing_page,
    create_postback,
    create_webhook,
    postback_log,
    webhook_log,
    test_postback,
    test_webhook,
    rotate_webhook,
    resend_delivery,
]
