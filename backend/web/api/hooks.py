"""Outgoing postbacks and webhooks: a partner's postbacks and webhook endpoints (its own key
manages them too), the admins' webhook endpoints, each with its delivery log, a test message
and a resend."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.scope import Viewer
from backend.core.validation import FieldError
from backend.domain.affiliate import hooks
from backend.domain.affiliate.delivery import resend
from backend.domain.affiliate.hooks import (
    DeliveryOut,
    PostbackCreate,
    PostbackOut,
    PostbackUpdate,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
)
from backend.domain.affiliate.schemas import Page
from backend.storage.db.models import OutboxMessage, Partner, PartnerPostback, WebhookEndpoint
from backend.web.api.deps import ANY_KEY, CurrentViewer, Reader, Writer
from backend.web.api.keys import PARTNER_KEYS
from backend.web.api.resources import After, Limit, PathId, get_or_404, page_of

PARTNER_404 = [*ANY_KEY, NotFoundException]


def _own(viewer: Viewer, partner_id: int) -> None:
    """A partner's key sees its own postbacks only; another partner's are not there."""
    if viewer.partner_id is not None and viewer.partner_id != partner_id:
        raise NotFoundException(f"no partner with id {partner_id}")


async def _postback(
    session: Reader, viewer: Viewer, partner_id: int, postback_id: int
) -> PartnerPostback:
    _own(viewer, partner_id)
    postback = await get_or_404(session, PartnerPostback, postback_id)
    if postback.partner_id != partner_id:
        raise NotFoundException(f"no partner_postback with id {postback_id}")
    return postback


class PostbackController(Controller):
    path = "/partners/{partner_id:int}/postbacks"
    tags = ["partner postbacks"]
    opt = PARTNER_KEYS

    @post("/", raises=PARTNER_404)
    async def create(
        self,
        partner_id: PathId,
        data: JSONBody[PostbackCreate],
        writer: Writer,
        viewer: CurrentViewer,
    ) -> PostbackOut:
        _own(viewer, partner_id)
        await get_or_404(writer, Partner, partner_id)
        return hooks.postback_out(await hooks.create_postback(writer, partner_id, data))

    @get("/", raises=PARTNER_404)
    async def list_postbacks(
        self,
        partner_id: PathId,
        reader: Reader,
        viewer: CurrentViewer,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[PostbackOut]:
        _own(viewer, partner_id)
        statement = select(PartnerPostback).where(PartnerPostback.partner_id == partner_id)
        return await page_of(
            reader, statement, PartnerPostback.id, after, limit, hooks.postback_out
        )

    @get("/{postback_id:int}", raises=PARTNER_404)
    async def read(
        self, partner_id: PathId, postback_id: PathId, reader: Reader, viewer: CurrentViewer
    ) -> PostbackOut:
        return hooks.postback_out(await _postback(reader, viewer, partner_id, postback_id))

    @patch("/{postback_id:int}", raises=PARTNER_404)
    async def update(
        self,
        partner_id: PathId,
        postback_id: PathId,
        data: JSONBody[PostbackUpdate],
        writer: Writer,
        viewer: CurrentViewer,
    ) -> PostbackOut:
        postback = await _postback(writer, viewer, partner_id, postback_id)
        await hooks.update_postback(writer, postback, data)
        return hooks.postback_out(postback)

    @get("/{postback_id:int}/deliveries", raises=PARTNER_404)
    async def deliveries(
        self,
        partner_id: PathId,
        postback_id: PathId,
        reader: Reader,
        viewer: CurrentViewer,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[DeliveryOut]:
        """The messages to this postback, newest first, each with its latest attempts; pass
        ``next_after`` back as ``after`` for older ones."""
        await _postback(reader, viewer, partner_id, postback_id)
        items, next_after = await hooks.deliveries(
            reader, postback_id=postback_id, after=after, limit=limit
        )
        return Page(items=items, next_after=next_after)

    @post("/{postback_id:int}/test", raises=PARTNER_404, status_code=202)
    async def send_test(
        self, partner_id: PathId, postback_id: PathId, writer: Writer, viewer: CurrentViewer
    ) -> DeliveryOut:
        """Queue a test postback (sample values, event ``webhook.test``); its delivery log
        shows what the tracker answered."""
        postback = await _postback(writer, viewer, partner_id, postback_id)
        message = await hooks.send_test(writer, postback=postback)
        return hooks.delivery_out(message, [])

    @post(
        "/{postback_id:int}/deliveries/{delivery_id:int}/resend",
        raises=PARTNER_404,
        status_code=202,
    )
    async def resend(
        self,
        partner_id: PathId,
        postback_id: PathId,
        delivery_id: PathId,
        writer: Writer,
        viewer: CurrentViewer,
    ) -> DeliveryOut:
        """Send a message again now, with the same message id and a fresh round of retries."""
        await _postback(writer, viewer, partner_id, postback_id)
        message = await get_or_404(writer, OutboxMessage, delivery_id)
        if message.postback_id != postback_id:
            raise NotFoundException(f"no delivery with id {delivery_id}")
        await resend(writer, message)
        await writer.commit()
        return hooks.delivery_out(message, [])


async def visible_postback(
    session: AsyncSession, viewer: Viewer, postback_id: int
) -> PartnerPostback:
    """The postback, if the viewer may see it (an admin any, a partner its own; the API and
    the Outgoing pages alike); else 404."""
    postback = await get_or_404(session, PartnerPostback, postback_id)
    if viewer.partner_id not in (None, postback.partner_id):
        raise NotFoundException(f"no partner_postback with id {postback_id}")
    return postback


async def visible_webhook(
    session: AsyncSession, viewer: Viewer, webhook_id: int
) -> WebhookEndpoint:
    """The endpoint, if the viewer may see it (an admin any, a partner its own); else 404."""
    endpoint = await get_or_404(session, WebhookEndpoint, webhook_id)
    if viewer.partner_id not in (None, endpoint.partner_id):
        raise NotFoundException(f"no webhook_endpoint with id {webhook_id}")
    return endpoint


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    opt = PARTNER_KEYS

    @post("/", raises=PARTNER_404)
    async def create(
        self, data: JSONBody[WebhookCreate], writer: Writer, viewer: CurrentViewer
    ) -> WebhookOut:
        """An endpoint for signed JSON events (Standard Webhooks); its ``secret`` is shown now
        and at each rotation only. A partner's key makes the partner's own endpoint, which
        hears its conversions only."""
        if viewer.partner_id is not None:
            if data.partner_id not in (None, viewer.partner_id):
                raise NotFoundException(f"no partner with id {data.partner_id}")
            if data.merchant_id is not None:
                raise FieldError("merchant_id", "a partner's endpoint hears every merchant")
            data = msgspec.structs.replace(data, partner_id=viewer.partner_id)
        endpoint = await hooks.create_webhook(writer, data)
        return hooks.webhook_out(endpoint, with_secret=True)

    @get("/", raises=ANY_KEY)
    async def list_webhooks(
        self, reader: Reader, viewer: CurrentViewer, after: After = 0, limit: Limit = 50
    ) -> Page[WebhookOut]:
        """Every endpoint for an admin's key; a partner's own for a partner's."""
        statement = viewer.restrict(select(WebhookEndpoint), WebhookEndpoint.partner_id)
        return await page_of(reader, statement, WebhookEndpoint.id, after, limit, hooks.webhook_out)

    @get("/{webhook_id:int}", raises=PARTNER_404)
    async def read(self, webhook_id: PathId, reader: Reader, viewer: CurrentViewer) -> WebhookOut:
        return hooks.webhook_out(await visible_webhook(reader, viewer, webhook_id))

    @patch("/{webhook_id:int}", raises=PARTNER_404)
    async def update(
        self,
        webhook_id: PathId,
        data: JSONBody[WebhookUpdate],
        writer: Writer,
        viewer: CurrentViewer,
    ) -> WebhookOut:
        endpoint = await visible_webhook(writer, viewer, webhook_id)
        await hooks.update_webhook(writer, endpoint, data)
        return hooks.webhook_out(endpoint)

    @post("/{webhook_id:int}/rotate-secret", raises=PARTNER_404)
    async def rotate(self, webhook_id: PathId, writer: Writer, viewer: CurrentViewer) -> WebhookOut:
        """A new secret; it signs every attempt from now on."""
        endpoint = await visible_webhook(writer, viewer, webhook_id)
        await hooks.rotate_secret(writer, endpoint)
        return hooks.webhook_out(endpoint, with_secret=True)

    @get("/{webhook_id:int}/deliveries", raises=PARTNER_404)
    async def deliveries(
        self,
        webhook_id: PathId,
        reader: Reader,
        viewer: CurrentViewer,
        after: After = 0,
        limit: Limit = 50,
    ) -> Page[DeliveryOut]:
        """The messages to this endpoint, newest first, each with its latest attempts."""
        await visible_webhook(reader, viewer, webhook_id)
        items, next_after = await hooks.deliveries(
            reader, webhook_id=webhook_id, after=after, limit=limit
        )
        return Page(items=items, next_after=next_after)

    @post("/{webhook_id:int}/test", raises=PARTNER_404, status_code=202)
    async def send_test(
        self, webhook_id: PathId, writer: Writer, viewer: CurrentViewer
    ) -> DeliveryOut:
        """Queue a signed ``webhook.test`` event with sample data."""
        endpoint = await visible_webhook(writer, viewer, webhook_id)
        message = await hooks.send_test(writer, endpoint=endpoint)
        return hooks.delivery_out(message, [])

    @post(
        "/{webhook_id:int}/deliveries/{delivery_id:int}/resend",
        raises=PARTNER_404,
        status_code=202,
    )
    async def resend(
        self, webhook_id: PathId, delivery_id: PathId, writer: Writer, viewer: CurrentViewer
    ) -> DeliveryOut:
        """Send a message again now, with the same ``webhook-id`` and a fresh round of retries."""
        await visible_webhook(writer, viewer, webhook_id)
        message = await get_or_404(writer, OutboxMessage, delivery_id)
        if message.webhook_id != webhook_id:
            raise NotFoundException(f"no delivery with id {delivery_id}")
        await resend(writer, message)
        await writer.commit()
        return hooks.delivery_out(message, [])


HOOK_CONTROLLERS = [PostbackController, WebhookController]
