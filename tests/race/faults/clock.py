"""clock_step: a worker process's wall clock steps 400 s forward or back mid-drain, and back.

Every worker process runs under libfaketime from its start (``workers.faked``), its wall clock
offset by what its own file says ("+0s"); its monotonic clocks are left alone, as an NTP step or
a resumed VM leaves them. The fault writes "+400s" or "-400s", sees the step in the process's
own HTTP ``Date`` header, holds it for 2-5 s while the worker commits batches, and sets it back.

Contract: no ``stale_batch`` letter from that worker for a batch of the step (checked here, on
the letters it pushed from the step until 2 s after the step back); every vote stored once,
and a vote without a timestamp stored within 10 s of the server's own time (the checker, for
every vote). Evidence that the step happened mid-drain: the batches the worker committed while
its clock was stepped (its MySQL proxy); a step during which it committed none is not counted.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx
import trio

from tests.race.faults.process import on_idle_proc
from tests.race.settings import CLOCK_STEP_S, INSERT_LEDGER
from tests.race.workers import ProcWorker, set_clock

if TYPE_CHECKING:
    from tests.race.run import Run

# libfaketime reads its file again every second: the step shows within this.
SHOWS_WITHIN_S = 5.0
# A worker's clock read within this of what its offset says is stepped (the Date header's whole
# seconds, a request's time).
CLOCK_SLACK_S = 3.0
# Past the step back, the batches taken under the step are committed or dead-lettered.
SETTLE_S = 2.0


async def worker_clock(w: ProcWorker) -> float | None:
    """The worker process's wall clock minus ours, read from its HTTP ``Date`` header."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            reply = await client.get(f"http://127.0.0.1:{w.http_port}/live")
        return parsedate_to_datetime(reply.headers["date"]).timestamp() - time.time()
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


async def clock_shows(w: ProcWorker, offset_s: int) -> bool:
    """Whether the worker's wall clock shows ``offset_s`` within SHOWS_WITHIN_S."""
    with trio.move_on_after(SHOWS_WITHIN_S):
        while True:
            seen = await worker_clock(w)
            if seen is not None and abs(seen - offset_s) <= CLOCK_SLACK_S:
                return True
            await trio.sleep(0.2)
    return False


async def clock_step(run: Run, w: ProcWorker, rng: random.Random) -> bool:
    if w.clock is None or not await run.fleet.alive(w):
        return False
    step = rng.choice((CLOCK_STEP_S, -CLOCK_STEP_S))
    dead = run.config.dead_letter_queue
    letters_before = await trio.to_thread.run_sync(run.clients.llen, dead)
    if letters_before is None:
        return False  # Redis is being restarted: the letters of the step could not be told apart
    commits = w.proxies.mysql.seen[INSERT_LEDGER.data]
    set_clock(w.clock, f"{step:+d}s")
    try:
        if not await clock_shows(w, step):
            run.report.problem(
                f"clock_step: {w.worker_id}'s wall clock did not step {step:+d} s within "
                f"{SHOWS_WITHIN_S:.0f}s (libfaketime not in effect?)"
            )
            return False
        run.report.note(f"clock_step {w.worker_id}: wall clock {step:+d}s")
        await trio.sleep(rng.uniform(2.0, 5.0))
        committed = w.proxies.mysql.seen[INSERT_LEDGER.data] - commits
    finally:
        set_clock(w.clock, "+0s")
    if not await clock_shows(w, 0):
        run.report.problem(f"clock_step: {w.worker_id}'s wall clock not back within 5 s")
    run.report.note(f"clock_step {w.worker_id}: back; {committed} batches committed stepped")
    await trio.sleep(SETTLE_S)
    letters = await trio.to_thread.run_sync(run.clients.letters_from, dead, letters_before)
    if letters is None:
        run.report.note(f"clock_step {w.worker_id}: letters unreadable (Redis restarting)")
        return False
    mine = [doc for doc in letters if doc.get("worker_id") == w.worker_id]
    stale = [doc for doc in mine if doc.get("reason") == "stale_batch"]
    if stale:
        run.report.problem(
            f"clock_step: {w.worker_id} dead-lettered {len(stale)} votes as stale_batch after "
            f"its wall clock stepped {step:+d} s"
        )
    run.report.details["clock_step: batches committed by a worker while its clock was stepped"] += (
        committed
    )
    return committed > 0


FAULTS = {"clock_step": on_idle_proc(clock_step, restarts=False)}
