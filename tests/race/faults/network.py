"""Faults on one worker's connections, at its proxies: cuts, stalls, latency, lost or half
replies at chosen requests, and a MySQL connection frozen mid-commit."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from tests.race.faults.process import held_within
from tests.race.settings import (
    EVERY_BATCH,
    INSERT_LEDGER,
    MYSQL_PATTERNS,
    MYSQL_READ_TIMEOUT_S,
    REDIS_PATTERNS,
    Pattern,
)
from tests.race.workers import Worker
from tests.support.faults import FaultProxy

# The packet that commits a batch: the ledger row, the rows and COMMIT.
BATCH = INSERT_LEDGER

if TYPE_CHECKING:
    from tests.race.run import Run

# How long an armed request fault waits for its request.
AT_REQUEST_WAIT_S = 5.0
# Past MYSQL_READ_TIMEOUT_S, the worker has this long to reconnect and KILL the frozen session.
KILL_SLACK_S = 7.0


def target(run: Run, rng: random.Random) -> tuple[Worker, str, FaultProxy]:
    w = rng.choice(run.fleet.all())
    if rng.random() < 0.5:
        return w, "redis", w.proxies.redis
    return w, "mysql", w.proxies.mysql


async def proxy_cut(run: Run, rng: random.Random) -> bool:
    w, store, proxy = target(run, rng)
    proxy.cut_all()
    run.report.note(f"proxy_cut {w.worker_id}/{store}")
    return True


async def proxy_blackhole(run: Run, rng: random.Random) -> bool:
    w, store, proxy = target(run, rng)
    hold = rng.uniform(0.3, 3.0)
    run.report.note(f"proxy_blackhole {w.worker_id}/{store} for {hold:.1f}s")
    proxy.set_blackhole(True)
    await trio.sleep(hold)
    proxy.set_blackhole(False)
    return True


async def proxy_latency(run: Run, rng: random.Random) -> bool:
    w, store, proxy = target(run, rng)
    delay, hold = rng.uniform(0.01, 0.2), rng.uniform(1.0, 4.0)
    run.report.note(f"proxy_latency {w.worker_id}/{store} {delay * 1000:.0f}ms for {hold:.1f}s")
    proxy.latency_s = delay
    await trio.sleep(hold)
    proxy.latency_s = 0.0
    return True


def least_fired(run: Run, rng: random.Random, patterns: tuple[Pattern, ...]) -> Pattern:
    """The pattern that has fired least so far (ties from the seed): each gets its turn."""
    low = min(run.report.patterns[p.name] for p in patterns)
    return rng.choice([p for p in patterns if run.report.patterns[p.name] == low])


def at_request(kind: str) -> Callable[[Run, random.Random], Awaitable[bool]]:
    """``proxy_cut_reply``, ``proxy_cut_before``, ``proxy_half_reply`` at a chosen request.

    The least-caught pattern first, so that each gets its turn; one that does not come within
    ``AT_REQUEST_WAIT_S`` (a claim, say, needs a dead worker's lists) gives way to one that
    every batch sends, so the kind still happens while the worker is busy."""
    fault = kind.removeprefix("proxy_")

    async def inject(run: Run, rng: random.Random) -> bool:
        w, store, proxy = target(run, rng)
        patterns = REDIS_PATTERNS if store == "redis" else MYSQL_PATTERNS
        first = least_fired(run, rng, patterns)
        tries = [first]
        if first not in EVERY_BATCH:
            tries.append(least_fired(run, rng, tuple(p for p in patterns if p in EVERY_BATCH)))
        for pattern in tries:
            if await fire_at(proxy, fault, pattern):
                run.report.note(f"{kind} {w.worker_id}/{store} on {pattern.name}")
                run.report.patterns[pattern.name] += 1
                return True
        return False

    return inject


async def fire_at(proxy: FaultProxy, fault: str, pattern: Pattern) -> bool:
    """Arm ``fault`` at ``pattern`` and wait for it to fire: False if it did not within
    ``AT_REQUEST_WAIT_S`` (then it is disarmed: it would fire at a moment we no longer chose)."""
    arm = {
        "cut_reply": proxy.cut_reply_after,
        "cut_before": proxy.cut_before,
        "half_reply": proxy.half_reply_after,
    }[fault]
    before = proxy.fired[fault]
    arm(pattern.data)
    with trio.move_on_after(AT_REQUEST_WAIT_S):
        while proxy.fired[fault] == before:  # noqa: ASYNC110 (the proxy counts)
            await trio.sleep(0.05)
    return proxy.fired[fault] != before or not proxy.disarm(fault, pattern.data)


async def frozen_mysql(run: Run, rng: random.Random) -> bool:
    """Freeze one of a worker's MySQL connections while it commits a batch (at the packet that
    carries the ledger row, the rows and COMMIT): the request reaches the server, the reply never
    comes back, and the connection stays open (no FIN, no RST) for longer than
    MYSQL_READ_TIMEOUT_S. The worker must notice within its timeout, reconnect (a new connection
    through the same proxy) and KILL the abandoned session from there, while it is still frozen
    (so nothing else, like the server's own wait_timeout, can have ended it). A connection frozen
    while it is being set up is tests/test_faults.py's."""
    free = [x for x in run.fleet.all() if not x.lock.locked()]
    if not free:
        return False
    w = rng.choice(free)
    async with w.lock:
        proxy = w.proxies.mysql
        if proxy.holding.is_set():
            return False
        proxy.hold_reply_after(BATCH.data)
        if not await held_within(proxy, 5):
            if proxy.disarm("hold_reply", BATCH.data):
                return False
            await held_within(proxy, 5)
        try:
            return await judge_frozen(run, w, proxy)
        finally:
            proxy.release()


async def judge_frozen(run: Run, w: Worker, proxy: FaultProxy) -> bool:
    ports = proxy.held_ports()
    sessions = [await trio.to_thread.run_sync(run.clients.session_of, p) for p in ports]
    if not ports or sessions[0] is None:
        return False  # cut meanwhile (another fault), or the server restarted under it
    port, session = ports[0], sessions[0]
    connections, restarts = proxy.connections_seen, run.clients.stores.mysql.restarts
    kills, ours = await trio.to_thread.run_sync(run.clients.kills), run.kills_issued
    run.report.patterns[BATCH.name] += 1
    run.report.note(f"frozen_mysql {w.worker_id}: session {session} frozen committing a batch")
    killed = restarting = False
    with trio.move_on_after(MYSQL_READ_TIMEOUT_S + KILL_SLACK_S):
        while not killed:
            restarting |= run.restarting["mariadb"].locked()
            await trio.sleep(0.2)
            alive = await trio.to_thread.run_sync(run.clients.session_alive, session)
            killed = alive is False
    restarting |= run.restarting["mariadb"].locked()
    if (
        restarting
        or port not in proxy.held_ports()
        or restarts != run.clients.stores.mysql.restarts
    ):
        run.report.note(f"frozen_mysql {w.worker_id}: inconclusive (cut, or MariaDB restarted)")
        return False
    if session in run.killed_sessions:
        return False  # mysql_kill chose this very session
    # Gone by a KILL, not because the server ended it (an error, a packet over its limit).
    after = await trio.to_thread.run_sync(run.clients.kills)
    by_workers = (
        None if kills is None or after is None else after - kills - (run.kills_issued - ours)
    )
    if killed and not by_workers:
        run.report.note(f"frozen_mysql {w.worker_id}: session {session} ended, not by a KILL")
        return False
    if not killed:
        run.report.problem(
            f"frozen_mysql: {w.worker_id} left its frozen session {session} alive for "
            f"{MYSQL_READ_TIMEOUT_S + KILL_SLACK_S:.0f}s (MYSQL_READ_TIMEOUT_S="
            f"{MYSQL_READ_TIMEOUT_S:g})"
        )
    elif proxy.connections_seen == connections:
        run.report.problem(f"frozen_mysql: {w.worker_id}'s session {session} is gone, no new one")
    else:
        run.report.details["frozen MySQL sessions killed by their worker"] += 1
    return True


FAULTS = {
    "proxy_cut": proxy_cut,
    "proxy_blackhole": proxy_blackhole,
    "proxy_latency": proxy_latency,
    "proxy_cut_reply": at_request("proxy_cut_reply"),
    "proxy_cut_before": at_request("proxy_cut_before"),
    "proxy_half_reply": at_request("proxy_half_reply"),
    "frozen_mysql": frozen_mysql,
}
