"""Faults on a live worker's service: its heartbeat key deleted, a burst of health checks.

heartbeat_deleted: ``<queue>:worker:<id>`` is deleted (if it still holds the worker's token)
while the worker drains. Others may take its lists over meanwhile (it looks dead), which the
protocol allows; the worker must set its heartbeat again, with the same token, at its next beat,
and not spin meanwhile: fewer than WARNINGS_AT_MOST warning lines in its log from the deletion
until HEARTBEAT_TTL_S after it is back (a take that fails on the lease used to warn and retry
at once: thousands of lines and most of a core).

health_burst: hundreds of concurrent ``GET /health`` for 2-4 s against a worker process while it
drains. The probes have their own connections; the pipeline must not be starved: the worker
commits batches during the burst and its heartbeat holds its token throughout. A burst during
which another fault could stall the worker (its connections black-holed or frozen, a store
restarted) is not judged; each burst waits for a quiet moment (5 s with none of those, the
worker taking votes), and the fault tries up to three bursts.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

import redis
import trio

from tests.race import logtail
from tests.race.faults.process import on_idle_proc
from tests.race.settings import HEARTBEAT_TTL_S, INSERT_LEDGER, TAKE
from tests.race.workers import ProcWorker

if TYPE_CHECKING:
    from tests.race.run import Run

# The worker sets its heartbeat again within this (it beats every third of the TTL; a fault on
# its Redis connection or a Redis restart meanwhile may delay it).
BACK_WITHIN_S = 10.0
WARNINGS_AT_MOST = 20
# Deletes the heartbeat only if it still holds this token (a plain client, not the worker's code).
DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
HEALTH_CLIENTS = (200, 400)
BURST_TRIES = 3
QUIET_S = 5.0
QUIET_WITHIN_S = 15.0
REQUEST_TIMEOUT_S = 5.0


def heartbeat_key(run: Run, w: ProcWorker) -> str:
    return f"{run.config.vote_queue}:worker:{w.worker_id}"


def delete_heartbeat(run: Run, key: str, token: bytes) -> bool:
    client = run.clients.redis("faults")
    try:
        return bool(client.eval(DELETE_IF, 1, key, token))
    except redis.RedisError:
        return False
    finally:
        client.close()


def cpu_s(pid: int) -> float | None:
    """The CPU time a process has used (user + system), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def heartbeat_deleted(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    assert w.proc is not None
    assert w.log is not None
    if not await run.fleet.alive(w):
        return False
    await trio.sleep(rng.uniform(0.0, 1.0))
    key = heartbeat_key(run, w)
    token = await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id)
    if token is None:
        return False
    marks = logtail.mark([w.log])
    cpu = cpu_s(w.proc.pid)
    if not await trio.to_thread.run_sync(delete_heartbeat, run, key, token):
        return False
    deleted_at = trio.current_time()
    run.report.note(f"heartbeat_deleted {w.worker_id}")
    back: float | None = None
    with trio.move_on_after(BACK_WITHIN_S):
        while back is None:
            await trio.sleep(0.05)
            if await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id) == token:
                back = trio.current_time() - deleted_at
    if back is None:
        run.report.problem(
            f"heartbeat_deleted: {w.worker_id} did not set its heartbeat again within "
            f"{BACK_WITHIN_S:.0f}s"
        )
    # Long enough for a loop that warns at every turn to show.
    await trio.sleep(HEARTBEAT_TTL_S)
    warnings = [line for line in logtail.since(marks) if line.startswith("warning")]
    used = cpu_s(w.proc.pid)
    spent = None if cpu is None or used is None else used - cpu
    elapsed = trio.current_time() - deleted_at
    run.report.note(
        f"heartbeat_deleted {w.worker_id}: back after {back or 0:.2f}s, {len(warnings)} warnings, "
        f"{spent or 0:.2f}s of CPU in {elapsed:.1f}s"
    )
    if len(warnings) >= WARNINGS_AT_MOST:
        run.report.problem(
            f"heartbeat_deleted: {w.worker_id} logged {len(warnings)} warnings after its "
            f"heartbeat was deleted (a busy loop?), e.g. {warnings[0][:200]}"
        )
    run.report.details["heartbeat_deleted: warning lines after the deletions"] += len(warnings)
    return True


def stalling(run: Run, w: ProcWorker) -> bool:
    """Whether another fault can stall this worker now: its connections black-holed or frozen,
    or a store restarting (a cut, latency or a killed connection only slows it)."""
    proxies = (w.proxies.redis, w.proxies.mysql)
    return (
        any(p.blackhole or p.holding.is_set() for p in proxies)
        or run.restarting["redis"].locked()
        or run.restarting["mariadb"].locked()
    )


def restarts(run: Run) -> tuple[int, int]:
    return run.clients.stores.redis.restarts, run.clients.stores.mysql.restarts


async def get_health(port: int, until: float, statuses: Counter[str]) -> None:
    """``GET /health`` again and again, each on a new connection, until ``until``."""
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while trio.current_time() < until:
        status = "no answer"
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                statuses["refused"] += 1
                await trio.sleep(0.1)
                continue
            async with stream:
                try:
                    await stream.send_all(request)
                    head = b""
                    while b"\r\n" not in head:
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        head += chunk
                    status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "cut"
                except (trio.BrokenResourceError, OSError):
                    status = "cut"
        statuses[status] += 1


async def health_burst(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    """Up to BURST_TRIES bursts, each at a quiet moment, until one is not stalled by another
    fault: that one is judged."""
    if not await run.fleet.alive(w):
        return False
    for _ in range(BURST_TRIES):
        if await quiet(run, w) and await burst(run, w, rng):
            return True
    return False


async def quiet(run: Run, w: ProcWorker) -> bool:
    """Wait, up to QUIET_WITHIN_S, for a moment when nothing could have stalled the worker for
    QUIET_S (its retries back off up to 5 s after a store comes back) and it is taking votes
    (it took some within the last second): a burst then, not a fault before it, would be what
    stops it."""
    seen: list[tuple[float, int]] = []
    since, stores = trio.current_time(), restarts(run)
    with trio.move_on_after(QUIET_WITHIN_S):
        while True:
            await trio.sleep(0.25)
            now = trio.current_time()
            if stalling(run, w) or restarts(run) != stores:
                since, stores = now, restarts(run)
            seen.append((now, w.proxies.redis.seen[TAKE.data]))
            before = [n for t, n in seen if t <= now - 1.0]
            taking = bool(before) and seen[-1][1] > before[-1]
            if now - since >= QUIET_S and taking:
                return True
    return False


async def burst(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    """One burst; False if another fault could have stalled the worker meanwhile (not judged)."""
    clients, seconds = rng.randint(*HEALTH_CLIENTS), rng.uniform(2.0, 4.0)
    token = await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id)
    stores = restarts(run)
    stalled = stalling(run, w)
    takes, commits = w.proxies.redis.seen[TAKE.data], w.proxies.mysql.seen[INSERT_LEDGER.data]
    statuses: Counter[str] = Counter()
    lapsed = False
    run.report.note(f"health_burst {w.worker_id}: {clients} clients for {seconds:.1f}s")
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        until = trio.current_time() + seconds
        for _ in range(clients):
            nursery.start_soon(get_health, w.http_port, until, statuses)
        while trio.current_time() < until:
            await trio.sleep(0.25)
            stalled |= stalling(run, w)
            held = await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id)
            lapsed |= held != token
    stalled |= stalling(run, w) or restarts(run) != stores
    took = w.proxies.redis.seen[TAKE.data] - takes
    committed = w.proxies.mysql.seen[INSERT_LEDGER.data] - commits
    answered = sum(n for s, n in statuses.items() if s.isdigit())
    run.report.note(
        f"health_burst {w.worker_id}: {answered} answers in {time.monotonic() - started:.1f}s "
        f"({dict(statuses)}); meanwhile {took} takes, {committed} batches committed"
        + (", heartbeat lapsed" if lapsed else "")
        + ("; another fault could stall it meanwhile: not judged" if stalled else "")
    )
    if stalled:
        return False
    if not answered:
        run.report.problem(f"health_burst: {w.worker_id} answered none of {clients} clients")
    if lapsed or not committed:
        run.report.problem(
            f"health_burst: {w.worker_id}'s pipeline starved by {clients} /health clients: "
            f"{committed} batches committed in {seconds:.1f}s"
            + (", its heartbeat lapsed" if lapsed else "")
        )
    run.report.details["health_burst: /health answers"] += answered
    run.report.details["health_burst: batches committed during the bursts"] += committed
    return True


FAULTS = {
    "heartbeat_deleted": on_idle_proc(heartbeat_deleted, restarts=False),
    "health_burst": on_idle_proc(health_burst, restarts=False),
}
