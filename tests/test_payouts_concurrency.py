"""Money under concurrency, each case run at once in two transactions of their own (on SQLite the
writer's lock orders them, on PostgreSQL the row locks and the unique keys do): two
confirmations of one run, a reversal landing while a run is confirmed, a line marked paid (or
failed) twice. The ledger stays right every time: nothing is paid twice, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, TypeVar

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from backend.core import clock
from backend.core.clock import DAY_MS
from backend.domain.affiliate.ledger import balances
from backend.domain.affiliate.payouts import (
    PayoutRefused,
    confirm_run,
    create_run,
    give_back,
    mark_paid,
)
from backend.domain.affiliate.status import change_status
from backend.storage.db.engine import Database
from backend.storage.db.models import (
    Conversion,
    ConversionStatus,
    LedgerEntry,
    LedgerKind,
    Merchant,
    PayoutItem,
    PayoutLine,
    PayoutLineStatus,
    PayoutRun,
)
from backend.worker.consumer import StreamConsumer
from tests.support import Programme
from tests.test_payouts import assert_ledger_adds_up, conversion_ids, sell, set_status

T = TypeVar("T")
LATER = 31 * DAY_MS  # past the hold period


async def approved_sales(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> dict[str, int]:
    """Two approved sales of 5.49 commission each, held for 30 days."""
    patched = await client.patch(
        f"/api/v1/merchants/{programme.merchant['id']}",
        json={"hold_days": 30},
        headers=programme.headers,
    )
    assert patched.status_code == 200
    for order in ("A-1", "A-2"):
        await sell(client, programme, order, programme.link)
    await consumer.drain()
    ids = await conversion_ids(database)
    for order in ("A-1", "A-2"):
        await set_status(client, programme, ids[order], "approved")
    return ids


async def draft(database: Database, merchant_id: int) -> int:
    async with database.session(write=True) as session:
        merchant = await session.get(Merchant, merchant_id)
        assert merchant is not None
        view = await create_run(
            session, merchant, currency=None, actor="test", now=clock.now_ms() + LATER
        )
        await session.commit()
        assert [line.amount_minor for line in view.lines] == [1098]
        return view.run.id


async def confirm(database: Database, run_id: int) -> bool:
    async with database.session(write=True) as session:
        run = await session.get(PayoutRun, run_id)
        assert run is not None
        done = await confirm_run(session, run, actor="test", now=clock.now_ms() + LATER)
        await session.commit()
        return done


async def on_line(
    database: Database, run_id: int, act: Callable[[Any, PayoutLine], Awaitable[T]]
) -> T:
    async with database.session(write=True) as session:
        line = await session.scalar(select(PayoutLine).where(PayoutLine.run_id == run_id))
        assert line is not None
        result = await act(session, line)
        await session.commit()
        return result


async def both(first: Awaitable[T], second: Awaitable[T]) -> list[T | BaseException]:
    return list(await asyncio.gather(first, second, return_exceptions=True))


async def count(database: Database, statement: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(statement) or 0)


async def test_two_confirmations_at_once_pay_once(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    await approved_sales(client, programme, consumer, database)
    run_id = await draft(database, programme.merchant["id"])
    outcomes = await both(confirm(database, run_id), confirm(database, run_id))
    assert sorted(outcomes, key=str) == [False, True]
    payouts = (
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == LedgerKind.PAYOUT)
    )
    assert await count(database, payouts) == 1
    assert await count(database, select(func.count()).select_from(PayoutItem)) == 3
    async with database.session() as session:
        (eur,) = await balances(session, programme.partner["id"], clock.now_ms() + LATER)
    assert (eur.balance_minor, eur.payable_minor) == (0, 0)
    # a second run finds nothing left to pay
    async with database.session(write=True) as session:
        merchant = await session.get(Merchant, programme.merchant["id"])
        assert merchant is not None
        again = await create_run(
            session, merchant, currency=None, actor="test", now=clock.now_ms() + LATER
        )
        assert list(again.lines) == []
    await assert_ledger_adds_up(database)


async def test_a_reversal_during_confirmation_is_paid_or_clawed_back(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    ids = await approved_sales(client, programme, consumer, database)
    run_id = await draft(database, programme.merchant["id"])

    async def reverse() -> bool:
        async with database.session(write=True) as session:
            conversion = await session.get(Conversion, ids["A-2"])
            assert conversion is not None
            await change_status(
                session, conversion, ConversionStatus.REVERSED, actor="test", reason="refund"
            )
            await session.commit()
            return True

    outcomes = await both(confirm(database, run_id), reverse())
    assert outcomes == [True, True]
    async with database.session() as session:
        line = await session.scalar(select(PayoutLine).where(PayoutLine.run_id == run_id))
        assert line is not None
        (eur,) = await balances(session, programme.partner["id"], clock.now_ms() + LATER)
    # before the confirmation: the line pays 5.49; after it: 10.98 paid and 5.49 clawed back
    assert (line.amount_minor, eur.balance_minor) in {(549, 0), (1098, -549)}
    await assert_ledger_adds_up(database)


async def test_a_line_marked_paid_twice_at_once_is_paid_once(
    client: AsyncTestClient[Any],
    programme: Programme,
    consumer: StreamConsumer,
    database: Database,
) -> None:
    await approved_sales(client, programme, consumer, database)
    run_id = await draft(database, programme.merchant["id"])
    assert await confirm(database, run_id)

    def paid(reference: str) -> Callable[[Any, PayoutLine], Awaitable[bool]]:
        return lambda session, line: mark_paid(
            session, line, reference=reference, paid_on=date(2026, 12, 7)
        )

    same = await both(
        on_line(database, run_id, paid("B-1")), on_line(database, run_id, paid("B-1"))
    )
    assert sorted(same, key=str) == [False, True]
    other = await on_line(database, run_id, paid("B-1"))
    assert other is False
    with pytest.raises(PayoutRefused):
        await on_line(database, run_id, paid("B-2"))

    def failed(session: Any, line: PayoutLine) -> Awaitable[bool]:
        return give_back(
            session, line, PayoutLineStatus.FAILED, actor="test", reason="returned by the bank"
        )

    returned = await both(on_line(database, run_id, failed), on_line(database, run_id, failed))
    assert sorted(returned, key=str) == [False, True]
    returns = (
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == LedgerKind.RETURNED)
    )
    assert await count(database, returns) == 1
    async with database.session() as session:
        (eur,) = await balances(session, programme.partner["id"], clock.now_ms() + LATER)
    # the failed payment's amount is payable again, and no longer counted as paid
    assert (eur.payable_minor, eur.paid_minor) == (1098, 0)
    await assert_ledger_adds_up(database)
