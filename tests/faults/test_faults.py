"""Nothing lost, nothing doubled: numbered events through real processes under each fault.

Every test sends ``N`` events over HTTP while (or before) the fault happens, lets the system
drain, and audits in SQL (``Audit.check``): every acknowledged event stored exactly once,
nothing stored that was not sent, the rollup equal to the rows, nothing left in the stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from arq.constants import default_queue_name
from sqlalchemy import select

from backend.domain.events import encode_event
from backend.storage.db.models import RejectedEventRow
from backend.storage.streams.entries import encode_entry
from tests.faults.cron_worker import TICKS
from tests.faults.harness import Ledger, Outcome, Stack
from tests.faults.storage import SmallDisk, integrity_check, writes_blocked
from tests.support import POISON_MINOR, queued_conversion

N = 1500
KILLS = 3
POSTBACKS = 300  # each sent three times
OUTAGE_POSTBACKS = 30  # sent while Redis is down, then again once it is back
# DESIGN asks for 60 s; the default keeps the suite short and still outlasts SQLite's
# busy_timeout (10 s), so the worker sees "database is locked" and backs off at least once.
LOCK_HOLD_S = float(os.environ.get("CLICKTRAIL_FAULT_LOCK_S", "12"))


def report(name: str, **figures: object) -> None:
    """One line per fault run, shown with ``pytest -s``."""
    print(f"\n[fault] {name}: " + ", ".join(f"{key}={value}" for key, value in figures.items()))


async def until(condition: Callable[[], Awaitable[bool]], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def answered(ledger: Ledger, count: int) -> bool:
    return len(ledger.outcomes) > count


async def logged(stack: Stack, *messages: str) -> bool:
    """Whether a worker has logged one of ``messages`` (the proof that a fault hit)."""
    log = stack.worker_logs(lines=10_000)
    return any(message in log for message in messages)


async def some_written(stack: Stack) -> bool:
    return (await stack.stored()).total() > 0


async def test_worker_killed_mid_stream(stack: Stack) -> None:
    """SIGKILL with a batch in hand, three times; the next worker takes the batch over.

    Events arrive in one wave per kill, so that each kill finds the worker busy however fast
    the machine (a single wave could be written before the last kill)."""
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    in_hand, takeover_s, seconds = [], [], 0.0

    async def has_pending() -> bool:
        return (await stack.backlog())[1] > 0

    async def taken_over() -> bool:
        return await stack.dead_consumers_pending() == 0

    for wave in range(KILLS):
        numbers = range(wave * N // KILLS, (wave + 1) * N // KILLS)
        sending = asyncio.create_task(stack.send(numbers, ledger))
        await until(has_pending, within_s=10)
        in_hand.append((await stack.backlog())[1])
        stack.workers[-1].kill()
        await asyncio.to_thread(stack.start_worker)
        ready = time.monotonic()
        await until(taken_over, within_s=30)  # the claim idle time and a batch, on a busy host
        takeover_s.append(round(time.monotonic() - ready, 2))
        seconds += await sending
    drain_s = await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    left_group = time.monotonic()

    async def only_the_live_consumer() -> bool:
        return await stack.dead_consumers() == set()

    await until(only_the_live_consumer, within_s=10)
    report(
        "worker SIGKILL",
        n=N,
        send_s=round(seconds, 2),
        pending_at_kill=in_hand,
        takeover_after_restart_s=takeover_s,
        drain_s=round(drain_s, 2),
        dead_consumers_gone_after_s=round(time.monotonic() - left_group, 2),
        audit=audit.summary,
    )
    audit.check()


async def test_redis_killed_and_restarted(stack: Stack) -> None:
    """The web answers from the spool while Redis is down and replays it once it is back."""
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    sending = asyncio.create_task(stack.send(range(N), ledger))
    await until(lambda: answered(ledger, N // 3), within_s=30)
    await stack.kill_redis()
    answered_at_kill = len(ledger.outcomes)
    refused = await stack.post_postbacks(range(OUTAGE_POSTBACKS), ledger, copies=1)
    await asyncio.sleep(2.0)
    answered_while_down = len(ledger.outcomes) - answered_at_kill - OUTAGE_POSTBACKS
    await asyncio.to_thread(stack.restart_redis)
    await sending
    retried = await stack.post_postbacks(range(OUTAGE_POSTBACKS), ledger, copies=1)
    drain_s = await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    report(
        "redis SIGKILL",
        n=N,
        answered_while_down=answered_while_down,
        drain_after_restart_s=round(drain_s, 2),
        worker_alive=stack.workers[-1].alive,
        postbacks_while_down=dict(refused),
        postbacks_retried=dict(retried),
        audit=audit.summary,
    )
    assert answered_while_down > 100
    assert refused == Counter(unavailable=OUTAGE_POSTBACKS), "a sender is told to retry"
    assert retried == Counter(queued=OUTAGE_POSTBACKS), "a refused postback is no replay"
    assert stack.workers[-1].alive, "the worker did not ride out the outage"
    assert ledger.keys(Outcome.ACKNOWLEDGED) == set(ledger.outcomes)  # 302, GIF, 202 all along
    audit.check()


async def test_database_locked(stack: Stack) -> None:
    """Writes blocked for a while: nothing is acknowledged before commit, then it all drains.

    SQLite: a held ``BEGIN EXCLUSIVE``. PostgreSQL (which these tests cannot restart): the
    event tables locked, and the worker's connections killed twice meanwhile.
    """
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    url = stack.settings.database_url
    async with writes_blocked(stack.database, url, LOCK_HOLD_S) as blocked:
        send_s = await stack.send(range(N), ledger)
        while not blocked.done():
            queued = await stack.queued_events()
            assert queued == len(ledger.keys(Outcome.ACKNOWLEDGED)), "acknowledged early"
            assert (await stack.stored()).total() == 0
            await asyncio.sleep(0.5)
        backlog_when_released = await stack.backlog()
    drain_s = await stack.drained(within_s=60)
    audit = await stack.audit(ledger)
    retries = stack.worker_logs(lines=10_000).count("waiting")
    report(
        f"database locked {LOCK_HOLD_S:g}s",
        n=N,
        send_s=round(send_s, 2),
        backlog_when_released=backlog_when_released,
        worker_retries=retries,
        drain_s=round(drain_s, 2),
        audit=audit.summary,
    )
    assert retries > 0, "the worker never hit the lock"
    audit.check()


async def test_disk_full_under_the_database(small_disk_stack: tuple[Stack, SmallDisk]) -> None:
    """No room for the write: nothing acknowledged, the file intact, all drains after."""
    stack, disk = small_disk_stack
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    with disk.full() as filled:
        await stack.send(range(N), ledger)
        await until(lambda: logged(stack, "No space left on device", "disk is full"), 20)
        assert await stack.queued_events() == len(ledger.keys(Outcome.ACKNOWLEDGED))
        assert (await stack.stored()).total() == 0
    drain_s = await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    report(
        "disk full",
        n=N,
        disk=filled,
        drain_after_space_s=round(drain_s, 2),
        audit=audit.summary,
    )
    assert await integrity_check(stack.database) == "ok"
    audit.check()


async def test_poison_event_inside_a_batch(stack: Stack) -> None:
    """The poison (a value the database refuses) ends in rejected_events at its first failure,
    without retries; its batch-mates commit."""
    programme = await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    sending = asyncio.create_task(stack.send(range(N), ledger))
    await until(lambda: answered(ledger, N // 2), within_s=30)
    poison = queued_conversion(programme.merchant["id"], "POISON", POISON_MINOR)
    await stack.redis.xadd(stack.settings.stream, {"e": encode_entry([encode_event(poison)])})
    await sending
    drain_s = await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    async with stack.database.session() as session:
        (dead,) = (await session.scalars(select(RejectedEventRow))).all()
    report("poison", n=N, drain_s=round(drain_s, 2), detail=dead.detail[:60], audit=audit.summary)
    audit.check(rejected={"poison": 1})
    assert dead.reason == "poison"
    assert "the database refuses it" in dead.detail


async def test_tenth_of_events_delivered_twice(stack: Stack) -> None:
    """Redelivered entries, in the same batch and after commit, change no count."""
    await stack.start_web()
    ledger = Ledger()
    await stack.send(range(N), ledger)  # no worker yet: the stream holds them all
    entries = await stack.redis.xrange(stack.settings.stream)
    again = [fields for index, (_, fields) in enumerate(entries) if index % 10 == 0]
    for fields in again:
        await stack.redis.xadd(stack.settings.stream, fields)
    await asyncio.to_thread(stack.start_worker)
    await stack.drained(within_s=30)
    before = await stack.audit(ledger)
    for fields in again:
        await stack.redis.xadd(stack.settings.stream, fields)
    await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    report("10% twice", n=N, redelivered=2 * len(again), audit=audit.summary)
    audit.check()  # nothing rejected: a redelivery is not a duplicate order
    assert audit.stored == before.stored
    assert audit.stored.total() == N


async def test_every_postback_sent_three_times(stack: Stack) -> None:
    """A sender's replays, at once and one after another, among browser events: each order
    stored once, every copy after the first answered ``{"duplicate": true}``."""
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger = Ledger()
    _, answers = await asyncio.gather(
        stack.send(range(N), ledger), stack.post_postbacks(range(POSTBACKS), ledger, copies=3)
    )
    await stack.drained(within_s=30)
    before = await stack.audit(ledger)
    stored_again = await stack.post_postbacks(range(POSTBACKS), ledger=Ledger(), copies=1)
    await stack.drained(within_s=30)
    audit = await stack.audit(ledger)
    report(
        "postbacks three times",
        postbacks=POSTBACKS,
        answers=dict(answers),
        replayed_after_storing=dict(stored_again),
        audit=audit.summary,
    )
    assert answers == Counter(queued=POSTBACKS, duplicate=2 * POSTBACKS)
    assert ledger.keys(Outcome.ACKNOWLEDGED) == set(ledger.outcomes)
    assert stored_again == Counter(duplicate=POSTBACKS)
    audit.check()
    assert audit.stored == before.stored
    assert audit.stored.total() == N + POSTBACKS
    assert (audit.rollup_conversions, audit.rollup_revenue) == (
        before.rollup_conversions,
        before.rollup_revenue,
    )


async def test_two_workers_run_each_cron_tick_once(stack: Stack) -> None:
    """Two workers with an every-second cron (the purge's flags); one stalls and catches up."""
    for _ in range(2):
        await asyncio.to_thread(stack.start_worker, "tests.faults.cron_worker")
    await asyncio.sleep(3)
    stalled = stack.workers[1].pid
    os.kill(stalled, signal.SIGSTOP)  # a long pause (CPU starvation, swapping, a debugger)
    await asyncio.sleep(2.5)
    os.kill(stalled, signal.SIGCONT)
    await asyncio.sleep(3)
    ticks: dict[bytes, bytes] = await stack.redis.hgetall(TICKS)  # type: ignore[misc]
    runs = {key.decode(): int(value) for key, value in ticks.items()}
    # arq keeps a finished cron job's in-progress mark for 60 s, so a tick enqueued again
    # after it ran waits in the queue and runs twice a minute later: look there too.
    queued = {job.decode() for job in await stack.redis.zrange(default_queue_name, 0, -1)}
    report(
        "cron",
        ticks=len(runs),
        runs_per_tick=sorted(set(runs.values())),
        ran_and_queued_again=len(queued & set(runs)),
    )
    assert len(runs) >= 6
    assert set(runs.values()) == {1}, {tick: n for tick, n in runs.items() if n != 1}
    assert queued & set(runs) == set(), "ticks that ran are queued to run again"


async def test_sigterm_drains_in_flight_batches(stack: Stack) -> None:
    """SIGTERM with the stream full: what was written is acknowledged, the rest waits."""
    await stack.start_web()
    ledger = Ledger()
    await stack.send(range(N), ledger)
    # Small batches, so that SIGTERM surely finds the worker in the middle of the stream.
    await asyncio.to_thread(stack.start_worker, CLICKTRAIL_BATCH_SIZE="5")
    await until(lambda: some_written(stack), within_s=10)
    exit_code = await asyncio.to_thread(stack.workers[-1].terminate)
    in_stream, pending = await stack.stream_keys()
    stored = await stack.stored()
    report(
        "SIGTERM",
        n=N,
        exit_code=exit_code,
        stored_before_exit=stored.total(),
        left_in_stream=len(in_stream),
        left_pending=len(pending),
    )
    assert exit_code == 0
    assert 0 < stored.total() < N, "stopped with nothing or everything done: no test"
    assert set(stored) & in_stream == set(), "committed but not acknowledged"
    assert ledger.keys(Outcome.ACKNOWLEDGED) <= set(stored) | in_stream

    await asyncio.to_thread(stack.start_worker)
    await stack.drained(within_s=30)
    (await stack.audit(ledger)).check()
