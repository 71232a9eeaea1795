"""Faults on worker processes: SIGKILL at chosen moments, SIGTERM drains (once or doubled), and
SIGSTOP pauses (past the heartbeat TTL, or past the ledger's retention)."""

from __future__ import annotations

import random
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from tests.race import logtail
from tests.race.settings import (
    CLAIM,
    COMMIT,
    HEARTBEAT_TTL_S,
    INSERT_VOTES,
    LEDGER_RETENTION_S,
    LONG_RETENTIONS_S,
    SHUTDOWN_TIMEOUT_S,
    TAKE,
)
from tests.race.workers import ProcWorker
from tests.support.faults import FaultProxy

if TYPE_CHECKING:
    from tests.race.run import Run

ProcFault = Callable[["Run", ProcWorker, random.Random], Awaitable[bool]]
# A worker paused this much longer than the retention wakes up past a prune of the ledger rows
# its batches' takeover committed (takeover after TTL + a recovery period, pruning at least
# every tenth of the retention).
BEYOND_RETENTION_S = (
    LEDGER_RETENTION_S + LEDGER_RETENTION_S / 10 + HEARTBEAT_TTL_S * 4 / 3 + 1.0,
    LEDGER_RETENTION_S + 11.0,
)


def on_idle_proc(
    fault: ProcFault, *, restarts: bool = True
) -> Callable[[Run, random.Random], Awaitable[bool]]:
    """Run ``fault`` on a worker process no other fault is using (none free: not injected);
    one that ends the process (``restarts``) leaves the steady ones alone."""

    async def run_on_idle(run: Run, rng: random.Random) -> bool:
        procs = run.fleet.restartable() if restarts else run.fleet.procs
        free = [w for w in procs if not w.lock.locked()]
        if not free:
            return False
        w = rng.choice(free)
        async with w.lock:
            return await fault(run, w, rng)

    return run_on_idle


async def sigkill(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    await trio.sleep(rng.uniform(0, 0.5))
    run.report.note(f"SIGKILL {w.worker_id} at a random moment")
    await run.fleet.kill(w)
    await trio.sleep(rng.uniform(0, 1.5))
    await run.fleet.restart(w, same_id=rng.random() < 0.5)
    return True


def sigkill_at(kind: str) -> ProcFault:
    """SIGKILL while the proxy holds a request (``before_move``) or its reply."""

    async def fault(run: Run, w: ProcWorker, rng: random.Random) -> bool:
        proxy, pattern, before = {
            "sigkill_before_move": (w.proxies.redis, TAKE, True),
            "sigkill_mid_batch": (w.proxies.mysql, INSERT_VOTES, False),
            "sigkill_after_commit": (w.proxies.mysql, COMMIT, False),
        }[kind]
        if proxy.holding.is_set():
            return False  # another fault holds a connection of this proxy
        (proxy.hold_before if before else proxy.hold_reply_after)(pattern.data)
        if not await held_within(proxy, 5):
            # Disarmed, not released: other faults may have armed this proxy meanwhile.
            if proxy.disarm("hold_before" if before else "hold_reply", pattern.data):
                return False
            await held_within(proxy, 5)  # it matched just now: its reply comes
        run.report.patterns[pattern.name] += 1
        run.report.note(f"SIGKILL {w.worker_id}: {kind.removeprefix('sigkill_')}")
        await run.fleet.kill(w)
        proxy.release()  # cut the frozen connection, as the dead process's socket would be
        await run.fleet.restart(w, same_id=rng.random() < 0.5)
        return True

    return fault


async def held_within(proxy: FaultProxy, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        await proxy.holding.wait()
        return True
    return False


async def hold_mid_batch(w: ProcWorker) -> bool:
    """Freeze ``w``'s MySQL connection at a batch's rows (True), so that ``w`` certainly holds
    a batch now; False if none came within 5 s."""
    proxy = w.proxies.mysql
    if proxy.holding.is_set():
        return False
    proxy.hold_reply_after(INSERT_VOTES.data)
    if await held_within(proxy, 5):
        return True
    if proxy.disarm("hold_reply", INSERT_VOTES.data):
        return False
    return await held_within(proxy, 5)


async def sigkill_during_recovery(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    """SIGKILL ``w`` mid-batch, then SIGKILL the worker process that claims a list, at its
    claim's reply: every other free process is armed, the first to claim is the one."""
    rescuers: list[ProcWorker] = []
    for other in run.fleet.restartable():
        if other is not w and not other.lock.locked() and not other.proxies.redis.holding.is_set():
            other.lock.acquire_nowait()
            rescuers.append(other)
    try:
        # Killed mid-batch, so that it certainly leaves a list to claim.
        if not rescuers or not await hold_mid_batch(w):
            return False
        for other in rescuers:
            other.proxies.redis.hold_reply_after(CLAIM.data)
        run.report.note(f"SIGKILL {w.worker_id}, then whichever process claims first")
        await run.fleet.kill(w)
        w.proxies.mysql.release()
        # A new id for the dead one: its lists wait for heartbeat expiry, then a claim.
        rescuer = await first_holding(rescuers, HEARTBEAT_TTL_S * 3 + 2)
        for other in rescuers:
            if other is not rescuer and not other.proxies.redis.disarm("hold_reply", CLAIM.data):
                await held_within(other.proxies.redis, 5)  # it claimed too: its reply is lost
                other.proxies.redis.release()
        if rescuer is not None:
            run.report.patterns[CLAIM.name] += 1
            run.report.details["rescuers SIGKILLed mid-claim"] += 1
            run.report.note(f"SIGKILL {rescuer.worker_id} during its claim")
            await run.fleet.kill(rescuer)
            rescuer.proxies.redis.release()
        await run.fleet.restart(w, same_id=False)
        if rescuer is not None:
            await run.fleet.restart(rescuer, same_id=rng.random() < 0.5)
        return rescuer is not None
    finally:
        for other in rescuers:
            other.lock.release()


async def first_holding(candidates: list[ProcWorker], seconds: float) -> ProcWorker | None:
    """The first of ``candidates`` whose Redis proxy holds a connection, within ``seconds``."""
    with trio.move_on_after(seconds):
        while True:
            for candidate in candidates:
                if candidate.proxies.redis.holding.is_set():
                    return candidate
            await trio.sleep(0.02)
    return None


def sigterm(times: int) -> ProcFault:
    """SIGTERM under load (``times`` = 2: twice within 50 ms, the same request): the worker must
    drain and exit 0 within SHUTDOWN_TIMEOUT_S."""

    async def fault(run: Run, w: ProcWorker, rng: random.Random) -> bool:
        assert w.proc is not None
        # A SIGTERM before Python has even imported Trio kills it the default way (-15); the
        # drain path starts once the service runs, which its heartbeat proves.
        if not await run.fleet.alive(w):
            return False
        run.report.note(f"SIGTERM x{times} {w.worker_id} under load")
        w.proc.send_signal(signal.SIGTERM)
        for _ in range(times - 1):
            await trio.sleep(0.05)
            w.proc.send_signal(signal.SIGTERM)
        status: int | None = None
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
            status = await w.proc.wait()
        if status is None:
            run.report.problem(f"{w.worker_id} did not exit after SIGTERM x{times}")
            await run.fleet.kill(w)
        elif status != 0:
            run.report.problem(f"{w.worker_id} drained (SIGTERM x{times}) with exit {status}")
        run.report.note(f"{w.worker_id} exited {status}")
        await run.fleet.restart(w, same_id=rng.random() < 0.5)
        return True

    return fault


def pause(kind: str) -> ProcFault:
    """SIGSTOP, then SIGCONT: past the heartbeat TTL and a recovery period, so the worker's lists
    are taken over while it sleeps (``pause_takeover``), or past the ledger's retention too
    (``pause_beyond_retention``): it wakes up holding batches older than the ledger vouches for,
    which it must not commit (they go to the dead letters as ``stale_batch``)."""

    async def fault(run: Run, w: ProcWorker, rng: random.Random) -> bool:
        assert w.proc is not None
        mid_batch = False
        if kind == "pause_beyond_retention":
            # Paused holding a batch (its connection cut while it sleeps): it wakes up with a
            # batch the ledger can no longer vouch for.
            if not await run.fleet.alive(w) or not await hold_mid_batch(w):
                return False
            seconds = rng.uniform(*BEYOND_RETENTION_S)
            mid_batch = True
        else:
            seconds = HEARTBEAT_TTL_S + HEARTBEAT_TTL_S / 3 + rng.uniform(0.5, 2.5)
        run.report.note(f"SIGSTOP {w.worker_id} for {seconds:.1f}s ({kind})")
        w.proc.send_signal(signal.SIGSTOP)
        w.paused = True
        if mid_batch:
            w.proxies.mysql.release()
        held = await trio.to_thread.run_sync(run.fleet.lists_of, w)
        await trio.sleep(seconds)
        left = await trio.to_thread.run_sync(run.fleet.lists_of, w)
        w.proc.send_signal(signal.SIGCONT)
        w.paused = False
        taken = len(held - left)
        run.report.details[f"{kind}: lists taken over while paused"] += taken
        run.report.note(f"SIGCONT {w.worker_id}: {taken} of its {len(held)} lists taken over")
        return True

    return fault


# What a worker logs when a live worker on its queue has another LEDGER_RETENTION_S.
DIFFER = "differ in LEDGER_RETENTION_S"
# Workers share their setting when their pruner starts and every 30 s (COMPARE_S) after, and the
# others compare every 3 s: one of them says so within this, even if a first share failed.
DIFFER_WITHIN_S = 45.0
# How long the worker keeps the other retention, as any worker of the fleet (when the run's end
# comes first: until then).
MIXED_FOR_S = (15.0, 30.0)


async def mixed_retention(run: Run, rng: random.Random) -> bool:
    """A rolling change of LEDGER_RETENTION_S: a worker process is drained (SIGTERM) and started
    again with a longer retention (300 s, or the default of a week) than the others' 30 s, whose
    pruners delete ledger rows older than 30 s every 3 s. It then works as any worker for 15-30 s
    (every other fault may hit it, and a restart keeps its retention), and is drained and started
    again with the run's setting. The checker's 0 doubled, 0 lost is the verdict; the workers'
    own warning that live workers differ in LEDGER_RETENTION_S is the evidence (it must come)."""
    free = [w for w in run.fleet.restartable() if not w.lock.locked() and w.retention_s is None]
    if not free:
        return False
    w = rng.choice(free)
    retention = rng.choice(LONG_RETENTIONS_S)
    async with w.lock:
        if not await run.fleet.alive(w):
            return False
        marks = logtail.mark(logtail.worker_logs(run.logs))
        run.report.note(f"mixed_retention {w.worker_id}: LEDGER_RETENTION_S={retention}")
        await drain(run, w, "mixed_retention")
        w.retention_s = retention
        await run.fleet.restart(w, same_id=rng.random() < 0.5)
    started = trio.current_time()
    back_at = started + max(0.0, min(rng.uniform(*MIXED_FOR_S), run.until - started))
    said = 0
    while not said and trio.current_time() < started + DIFFER_WITHIN_S:
        await trio.sleep(0.5)
        lines = logtail.since(marks, logtail.worker_logs(run.logs))
        said = sum(DIFFER in line for line in lines)
    if not said:
        run.report.problem(
            f"mixed_retention: no worker said within {DIFFER_WITHIN_S:.0f}s that live workers "
            f"differ in LEDGER_RETENTION_S ({w.worker_id} has {retention})"
        )
    run.report.details["mixed_retention: 'differ in LEDGER_RETENTION_S' warnings"] += said
    await trio.sleep_until(back_at)
    async with w.lock:
        run.report.note(f"mixed_retention {w.worker_id}: back to the run's LEDGER_RETENTION_S")
        # Restarted by another fault meanwhile: its service must run before SIGTERM can drain.
        if await run.fleet.alive(w):
            await drain(run, w, "mixed_retention")
        else:
            await run.fleet.kill(w)
        w.retention_s = None
        await run.fleet.restart(w, same_id=rng.random() < 0.5)
    return True


async def drain(run: Run, w: ProcWorker, why: str) -> None:
    """SIGTERM: the worker must drain and exit 0 within SHUTDOWN_TIMEOUT_S."""
    assert w.proc is not None
    w.proc.send_signal(signal.SIGTERM)
    status: int | None = None
    with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
        status = await w.proc.wait()
    if status is None:
        run.report.problem(f"{w.worker_id} did not exit after SIGTERM ({why})")
        await run.fleet.kill(w)
    elif status != 0:
        run.report.problem(f"{w.worker_id} drained ({why}) with exit {status}")


FAULTS = {
    "sigkill": on_idle_proc(sigkill),
    **{
        k: on_idle_proc(sigkill_at(k))
        for k in ("sigkill_before_move", "sigkill_mid_batch", "sigkill_after_commit")
    },
    "sigkill_during_recovery": on_idle_proc(sigkill_during_recovery),
    "sigterm_drain": on_idle_proc(sigterm(1)),
    "sigterm_twice": on_idle_proc(sigterm(2)),
    "pause_takeover": on_idle_proc(pause("pause_takeover"), restarts=False),
    "pause_beyond_retention": on_idle_proc(pause("pause_beyond_retention"), restarts=False),
    "mixed_retention": mixed_retention,
}
