"""twin_worker_id: a second process started with the id of a live worker.

Contract: while the other lives (its heartbeat is fresh) the twin takes no votes, logs an error
naming the conflict, says 503 on ``/ready`` and 1 on the ``worker_id_conflict`` gauge; once the
other is gone (SIGKILL: its heartbeat expires; SIGTERM: it drains and deletes it) the twin starts
working. "Takes no votes" is read at the twin's own Redis proxy: none of the requests that take
votes or lists (``settings.TAKING``) goes through it while the other lives; the same patterns
must go through once it works, so a pattern that stops matching fails here rather than passing.
"""

from __future__ import annotations

import random
import signal
from itertools import count
from typing import TYPE_CHECKING

import trio

from tests.race.faults.process import on_idle_proc
from tests.race.settings import HEARTBEAT_TTL_S, SHUTDOWN_TIMEOUT_S, TAKING
from tests.race.workers import ProcWorker, Twin, kill
from tests.support.http import answer, value_of

if TYPE_CHECKING:
    from tests.race.run import Run

# The twin must answer HTTP this soon after it starts (a Python process importing its modules).
START_S = 20.0
# Slack past the other's heartbeat TTL for the twin to notice it is gone and start.
SLACK_S = 10.0
_twins = count(1)


def taking(twin: Twin) -> int:
    return sum(twin.proxies.redis.seen[p] for p in TAKING)


def conflict_logged(twin: Twin, worker_id: str) -> bool:
    lines = twin.log.read_text(errors="replace").splitlines()
    return any(line.startswith(("error", "critical")) and worker_id in line for line in lines)


async def twin_worker_id(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    if not await run.fleet.alive(w):
        return False
    # The original's lease token: judged "alive" only while its heartbeat still holds it.
    lease = await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id)
    twin = await run.fleet.spawn_twin(w, next(_twins))
    for pattern in TAKING:
        twin.proxies.redis.watch(pattern)
    run.report.note(f"twin of {w.worker_id} started")
    try:
        if await while_the_other_lives(run, w, twin, lease, rng):
            await end_the_other(run, w, rng)
            await once_the_other_is_gone(run, w, twin)
    finally:
        if twin.proc.returncode is None:
            await kill(twin.proc)
        twin.proxies.heal()
    await run.fleet.restart(w, same_id=True)
    return True


async def while_the_other_lives(
    run: Run, w: ProcWorker, twin: Twin, lease: bytes | None, rng: random.Random
) -> bool:
    """The twin answers, and for a while says 503, conflict 1, and takes nothing, as long as
    the heartbeat holds the original's ``lease`` token (the conflict's gauge and error line are
    not judged if Redis restarted meanwhile: the twin may not have reached it yet)."""
    problem = run.report.problem
    redis_restarts = run.clients.stores.redis.restarts

    async def lapsed() -> bool:
        # A blackhole or a Redis restart may let it lapse, and the twin may then rightly take
        # the id: the heartbeat holds the twin's token then, not the original's.
        token = await trio.to_thread.run_sync(run.fleet.heartbeat_of, w.worker_id)
        if lease is None or token != lease:
            run.report.note(f"twin of {w.worker_id}: the original's heartbeat lapsed")
            return True
        return False

    with trio.move_on_after(START_S):
        while await answer(twin.url + "/live") is None:
            if twin.proc.returncode is not None:
                problem(f"twin of {w.worker_id} exited {twin.proc.returncode} instead of waiting")
                return False
            await trio.sleep(0.1)
    if twin.proc.returncode is not None or await answer(twin.url + "/live") is None:
        problem(f"twin of {w.worker_id}: no HTTP within {START_S:.0f}s")
        return False
    with trio.move_on_after(rng.uniform(1.0, 3.0)):
        while True:
            ready = await answer(twin.url + "/ready")
            took = taking(twin)
            # Judged only after: whatever the twin did, it did while the lease was the other's.
            if await lapsed():
                return True
            if ready is not None and ready.status_code != 503:
                problem(f"twin of {w.worker_id}: /ready {ready.status_code} while the other lives")
                break
            if took:
                problem(f"twin of {w.worker_id} took votes while the other lives")
                break
            await trio.sleep(0.1)
    metrics = await answer(twin.url + "/metrics")
    value = value_of(metrics.text, "worker_id_conflict") if metrics is not None else None
    with trio.move_on_after(5):
        while not conflict_logged(twin, w.worker_id):  # noqa: ASYNC110 (a log file)
            await trio.sleep(0.1)
    if redis_restarts != run.clients.stores.redis.restarts or run.restarting["redis"].locked():
        # The twin may not have reached Redis yet, between restarts: it can't know of the other.
        run.report.note(f"twin of {w.worker_id}: Redis restarted meanwhile; conflict not judged")
        return True
    if value != 1 and not await lapsed():
        problem(f"twin of {w.worker_id}: worker_id_conflict {value} while the other lives")
    if not conflict_logged(twin, w.worker_id):
        problem(f"twin of {w.worker_id}: no error line naming the conflict in {twin.log.name}")
    return True


async def end_the_other(run: Run, w: ProcWorker, rng: random.Random) -> None:
    assert w.proc is not None
    if rng.random() < 0.5:
        run.report.note(f"SIGKILL {w.worker_id}, the twin's original")
        await run.fleet.kill(w)
        return
    run.report.note(f"SIGTERM {w.worker_id}, the twin's original")
    w.proc.send_signal(signal.SIGTERM)
    status = None
    with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
        status = await w.proc.wait()
    if status != 0:
        run.report.problem(f"{w.worker_id} (with a twin) drained with exit {status}")
        await run.fleet.kill(w)


async def once_the_other_is_gone(run: Run, w: ProcWorker, twin: Twin) -> None:
    """The twin starts working, then drains on SIGTERM like any worker."""
    problem = run.report.problem
    before = taking(twin)
    working = False
    with trio.move_on_after(HEARTBEAT_TTL_S + SLACK_S):
        while not working:
            ready = await answer(twin.url + "/ready")
            working = ready is not None and ready.status_code == 200 and taking(twin) > before
            await trio.sleep(0.1)
    if not working:
        problem(f"twin of {w.worker_id} did not start working once the other was gone")
    else:
        run.report.details["twins that took over once the original was gone"] += 1
        metrics = await answer(twin.url + "/metrics")
        value = value_of(metrics.text, "worker_id_conflict") if metrics is not None else None
        if value != 0:
            problem(f"twin of {w.worker_id}: worker_id_conflict {value} once working")
    twin.proc.send_signal(signal.SIGTERM)
    status = None
    with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
        status = await twin.proc.wait()
    if status != 0:
        problem(f"twin of {w.worker_id} drained with exit {status}")
    run.report.note(f"twin of {w.worker_id} exited {status}")


FAULTS = {"twin_worker_id": on_idle_proc(twin_worker_id)}
