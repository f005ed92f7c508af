"""The ledger follows the worker's status changes too: a network's postback that approves an
order books its commission (the network's figure) in the batch's transaction, the same report
again books nothing, a decline after approval books the reversal, and a signed postback that
replaces an approved order's figures moves the booked commission with them."""

from __future__ import annotations

from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from backend.domain.affiliate.status import AUTO_APPROVAL, change_status
from backend.storage.db.engine import Database
from backend.storage.db.models import Conversion, ConversionStatus, LedgerEntry
from backend.worker.consumer import StreamConsumer
from tests.postback_support import sale, send
from tests.support import Programme
from tests.test_payouts import assert_ledger_adds_up, sell
from tests.test_sources import (  # noqa: F401 (the fixtures)
    click_through_network,
    create_source,
    network_programme,
    served,
    web,
)


async def entries(database: Database) -> list[tuple[str, int, str]]:
    async with database.session() as session:
        rows = await session.execute(
            select(Conversion.order_id, LedgerEntry.amount_minor, LedgerEntry.kind)
            .join(Conversion, Conversion.id == LedgerEntry.conversion_id)
            .order_by(LedgerEntry.id)
        )
        return [(order or "", amount, kind) for order, amount, kind in rows]


async def test_a_networks_statuses_move_the_ledger_once_each(
    web: httpx.AsyncClient,  # noqa: F811
    consumer: StreamConsumer,
    database: Database,
) -> None:
    programme = await network_programme(web, database)
    token = (await create_source(web, programme))["token"]
    click_id = await click_through_network(web, programme)
    params = {"clickref": click_id, "txid": "N-1", "sale": "49.90", "payout": "3.50", "cur": "EUR"}
    async with httpx.AsyncClient(base_url=str(web.base_url)) as network:
        assert (await network.get(f"/pb/{token}", params={**params, "status": "0"})).is_success
        await consumer.drain()
        assert await entries(database) == []  # pending earns nothing yet
        for _ in range(2):  # the approval, reported twice
            approved = await network.get(f"/pb/{token}", params={**params, "status": "1"})
            assert approved.is_success
            await consumer.drain()
        assert await entries(database) == [("N-1", 350, "earned")]
        declined = await network.get(f"/pb/{token}", params={"txid": "N-1", "status": "2"})
        assert declined.is_success
        await consumer.drain()
    assert await entries(database) == [("N-1", 350, "earned"), ("N-1", -350, "reversed")]
    await assert_ledger_adds_up(database)


async def test_a_signed_postback_that_replaces_an_approved_orders_figures_moves_its_commission(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    await sell(client, programme, "R-1", programme.link)  # a pixel: 49.90, 5.49 commission
    await consumer.drain()
    async with database.session(write=True) as session:
        pixel = await session.scalar(select(Conversion).where(Conversion.order_id == "R-1"))
        assert pixel is not None
        # approved by time, as auto-approval does: still unverified
        await change_status(
            session, pixel, ConversionStatus.APPROVED, actor=AUTO_APPROVAL, confirms=False
        )
        await session.commit()
        click_id = pixel.click_id
    assert await entries(database) == [("R-1", 549, "earned")]
    # the shop's server says the order was 100.00: its signed word replaces the pixel's
    body = sale("R-1", "100.00", currency="EUR", click_id=click_id)
    replaced = await send(client, programme, body)
    assert replaced.status_code in (200, 202), replaced.text
    await consumer.drain()
    async with database.session() as session:
        stored = await session.scalar(select(Conversion).where(Conversion.order_id == "R-1"))
    assert stored is not None
    assert (stored.status, stored.verified) == ("approved", True)
    assert (stored.amount_minor, stored.commission_minor) == (10000, 1050)
    assert await entries(database) == [("R-1", 549, "earned"), ("R-1", 501, "earned")]
    await assert_ledger_adds_up(database)
