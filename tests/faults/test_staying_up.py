"""Staying up: a dead child of ``clicktrail run`` restarted while the rest keeps answering, a
worker that outlives any Redis outage, a Redis that stops answering without closing anything
(SIGSTOP), and idle workers that stay in the consumer group. Every run ends with the audit of
``test_faults``: each acknowledged event stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
from redis.exceptions import ResponseError

from tests.faults.harness import ANSWER_TIMEOUT_S, Ledger, Outcome, Stack
from tests.faults.supervised import RunStack, running
from tests.faults.test_faults import OUTAGE_POSTBACKS, report, until

N = 1500
OUTAGE_S = 35.0  # past the 20 s the worker used to survive, and past 30 s
STALL_S = 8.0  # longer than a client waits for an answer (ANSWER_TIMEOUT_S)


async def consumers(stack: Stack) -> set[str]:
    """The names the consumer group lists (none before a worker made the group)."""
    try:
        listed = await stack.redis.xinfo_consumers(
            stack.settings.stream, stack.settings.consumer_group
        )
    except ResponseError:
        return set()
    return {consumer["name"].decode() for consumer in listed}


async def test_idle_workers_stay_in_the_group_and_a_killed_one_leaves(stack: Stack) -> None:
    """Two workers with nothing to read for five claim idle times both stay consumers of the
    group (each proves it is alive); one killed with SIGKILL is dropped by the other."""
    for _ in range(2):
        await asyncio.to_thread(stack.start_worker)
    first, second = (worker.consumer_name for worker in stack.workers)

    async def both_listed() -> bool:
        return await consumers(stack) == {first, second}

    await until(both_listed, within_s=30)
    quiet_until = time.monotonic() + 5 * stack.settings.claim_idle_ms / 1000
    while time.monotonic() < quiet_until:
        assert await consumers(stack) == {first, second}, "a live, idle worker left the group"
        await asyncio.sleep(0.1)

    stack.workers[0].kill()

    async def only_the_live_one() -> bool:
        return await consumers(stack) == {second}

    await until(only_the_live_one, within_s=60)
    report("idle workers", listed_after_quiet=2, left_after_kill=first)


async def test_worker_rides_out_a_long_redis_outage(stack: Stack) -> None:
    """Redis gone for over 30 s: the same worker process is there when it is back, and
    everything the web spooled meanwhile is stored once."""
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    worker = stack.workers[-1]
    ledger = Ledger()
    await stack.send(range(N // 3), ledger)
    await stack.kill_redis()
    down_at = time.monotonic()
    await stack.send(range(N // 3, 2 * N // 3), ledger)  # spooled
    while time.monotonic() - down_at < OUTAGE_S:
        assert worker.alive, f"the worker exited during the outage:\n{worker.log_tail()}"
        await asyncio.sleep(0.5)
    await asyncio.to_thread(stack.restart_redis)
    await stack.send(range(2 * N // 3, N), ledger)
    drain_s = await stack.drained(within_s=90)
    audit = await stack.audit(ledger)
    report(
        "long redis outage",
        n=N,
        outage_s=OUTAGE_S,
        drain_after_restart_s=round(drain_s, 2),
        worker_alive=worker.alive,
        audit=audit.summary,
    )
    assert worker.alive, "the worker did not ride out the outage"
    assert ledger.keys(Outcome.ACKNOWLEDGED) == set(ledger.outcomes)
    audit.check()


async def test_stalled_redis(stack: Stack) -> None:
    """Redis stopped (SIGSTOP) with its connections open, as a hung host or a partition: the
    pixel, redirect and beacon still answer (spooled), postbacks are told to retry, /readyz
    says why it is not ready; once Redis runs again everything lands once."""
    await stack.start_web()
    await asyncio.to_thread(stack.start_worker)
    ledger, during = Ledger(), Ledger()
    await stack.send(range(N // 3), ledger)
    pid = await stack.redis_pid()
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        await stack.send(range(N // 3, 2 * N // 3), during)
        async with httpx.AsyncClient(base_url=stack.origin, timeout=ANSWER_TIMEOUT_S) as client:
            ready = await client.get("/readyz")
        refused = await stack.post_postbacks(range(OUTAGE_POSTBACKS), ledger, copies=1)
        await asyncio.sleep(max(0.0, STALL_S - (time.monotonic() - stopped_at)))
    finally:
        os.kill(pid, signal.SIGCONT)
    ledger.outcomes.update(during.outcomes)

    async def web_ready() -> bool:
        async with httpx.AsyncClient(base_url=stack.origin, timeout=ANSWER_TIMEOUT_S) as client:
            return (await client.get("/readyz")).status_code == 200

    await until(web_ready, within_s=30)
    await stack.send(range(2 * N // 3, N), ledger)
    retried = await stack.post_postbacks(range(OUTAGE_POSTBACKS), ledger, copies=1)
    drain_s = await stack.drained(within_s=60)
    audit = await stack.audit(ledger)
    report(
        "redis SIGSTOP",
        n=N,
        stall_s=STALL_S,
        answered_while_stalled=during.summary,
        readyz_while_stalled=ready.json(),
        postbacks_while_stalled=dict(refused),
        postbacks_retried=dict(retried),
        drain_after_resume_s=round(drain_s, 2),
        audit=audit.summary,
    )
    assert during.keys(Outcome.ACKNOWLEDGED) == set(during.outcomes), during.summary
    assert ready.status_code == 503
    assert any("did not answer" in reason for reason in ready.json()["reasons"]), ready.json()
    assert refused == Counter(unavailable=OUTAGE_POSTBACKS), "a sender is told to retry"
    assert retried == Counter(queued=OUTAGE_POSTBACKS), "a refused postback is no replay"
    assert ledger.keys(Outcome.ACKNOWLEDGED) == set(ledger.outcomes)
    audit.check()


async def test_run_restarts_each_child_that_dies(run_stack: RunStack) -> None:
    """Under ``clicktrail run`` the worker, the web process and Redis are each SIGKILLed in
    turn: each is started again, the rest answers meanwhile (requests made while the web
    restarts wait for it), nothing is lost; Ctrl-C stops it all, web first and Redis last."""
    await run_stack.start_run()
    ledger = Ledger()
    wave = N // 6
    killed: dict[str, int] = {}
    answered_meanwhile: dict[str, str] = {}
    for index, kind in enumerate(("worker", "web", "redis")):
        await run_stack.send(range(2 * index * wave, (2 * index + 1) * wave), ledger)
        killed[kind] = run_stack.kill_child(kind)
        during = Ledger()
        await run_stack.send(range((2 * index + 1) * wave, (2 * index + 2) * wave), during)
        ledger.outcomes.update(during.outcomes)
        answered_meanwhile[kind] = during.summary

        async def restarted(kind: str = kind) -> bool:
            return run_stack.children().get(kind, killed[kind]) != killed[kind]

        await until(restarted, within_s=60)
        assert during.keys(Outcome.FAILED) == set(), f"{kind} down: {during.summary}"
    drain_s = await run_stack.drained(within_s=60)
    audit = await run_stack.audit(ledger)
    children = run_stack.children()
    exit_code = await asyncio.to_thread(run_stack.interrupt)
    log = run_stack.run_log()
    report(
        "clicktrail run, children SIGKILLed",
        n=N,
        answered_while_down=answered_meanwhile,
        drain_s=round(drain_s, 2),
        audit=audit.summary,
        exit_code=exit_code,
    )
    for kind, pid in killed.items():
        assert f"{kind} (pid {pid}) was killed by SIGKILL" in log, log[-3000:]
    audit.check()
    assert exit_code == 0
    assert not any(map(running, children.values())), "children left running"
    assert not (run_stack.settings.var_dir / "redis.sock").exists()
    order = ("web", "worker", "redis")
    stopped = [log.index(f"{kind} (pid {children[kind]}) stopped") for kind in order]
    assert stopped == sorted(stopped), "stopped out of order"
