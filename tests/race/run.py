"""One race run: workers, producers and faults for a while, then the drain and the checker.

Every random choice (which fault, when, against whom, for how long; batch size; what producers
push) comes from the seed, printed with the results. Timing still depends on the machine, so a
replay (``--stress-seed N``) injects the same schedule of choices, not the same interleaving.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from pathlib import Path

import redis
import trio

from tests.race.checker import Checker
from tests.race.clients import Clients, as_bytes
from tests.race.faults import inject
from tests.race.faults.process import BEYOND_RETENTION_S
from tests.race.fleet import Fleet
from tests.race.kinds import Schedule, enabled, pattern_quotas, quotas
from tests.race.leftovers import check_keys, check_logs, describe
from tests.race.producers import Producers
from tests.race.report import Report
from tests.race.resources import Sampler
from tests.race.settings import HEARTBEAT_TTL_S, LEDGER_RETENTION_S
from tests.support.servers import OwnStores
from trio_worker.config import Config

# Batches of at least 100: a burst of long voter ids then always makes one over the packet limit.
BATCH_SIZES = (100, 250, 500, 1000)
DRAIN_WITHIN_S = 120.0
STUCK_S = 45.0


class Run:
    def __init__(
        self, seed: int, duration_s: float, stores: OwnStores, base: Config, logs: Path
    ) -> None:
        self.rng = random.Random(f"{seed}-faults")
        self.duration_s = duration_s
        self.report = Report(
            seed,
            planned_s=duration_s,
            quotas=quotas(duration_s),
            pattern_quotas=pattern_quotas(duration_s),
        )
        tag = f"{seed:x}{os.getpid():x}"
        self.config = replace(
            base,
            vote_queue=f"race{tag}",
            dead_letter_queue=f"race{tag}:dead",
            mysql_database=f"race_{tag}",
            batch_size=random.Random(seed).choice(BATCH_SIZES),
        )
        self.clients = Clients(stores)
        self.producers = Producers(seed, self.config.vote_queue, self.clients, self.report)
        self.fleet = Fleet(self.config, self.clients, self.report, logs)
        self.logs = logs
        self.killed_sessions: set[int] = set()  # by mysql_kill, not by a worker
        self.kills_issued = 0  # KILL statements mysql_kill sent
        self.restarting = {"redis": trio.Lock(), "mariadb": trio.Lock()}
        self.until = 0.0  # when faults stop (Trio's clock), once they run
        self.sampler = Sampler()

    async def execute(self, procs: int, inprocs: int, steady: int) -> Report:
        await trio.to_thread.run_sync(
            self.clients.sql, f"CREATE DATABASE `{self.config.mysql_database}`"
        )
        self.report.note(
            f"config: batch_size={self.config.batch_size} ttl={HEARTBEAT_TTL_S}s "
            f"retention={LEDGER_RETENTION_S}s workers={procs} processes + {steady} steady "
            f"+ {inprocs} in this run"
        )
        try:
            await self._execute(procs, inprocs, steady)
        finally:
            with trio.CancelScope(shield=True):
                await self.fleet.kill_all()
        self.report.duration_s = time.monotonic() - self.report.started
        await trio.to_thread.run_sync(self.check)
        return self.report

    async def _execute(self, procs: int, inprocs: int, steady: int) -> None:
        async with trio.open_nursery() as nursery:
            await self.fleet.start(nursery, procs, inprocs, steady)
            sampling = trio.CancelScope()
            async with trio.open_nursery() as load:
                load.start_soon(self.producers.run)
                load.start_soon(self.sample, sampling)
                await self.faults(trio.current_time() + self.duration_s)
                self.producers.producing = False
                sampling.cancel()
            self.report.note("faults and producers stopped; draining")
            self.fleet.heal()
            await self.wait_drained()
            await self.fleet.stop_all()
            nursery.cancel_scope.cancel()

    async def sample(self, scope: trio.CancelScope) -> None:
        """The worker processes' memory and descriptors, while producers and faults run."""
        with scope:
            await self.sampler.run(self.fleet.procs, trio.current_time())

    async def faults(self, until: float) -> None:
        """Faults at random moments, several at once, until ``until`` (and until each has
        ended); the kinds below their minimum first (``kinds.Schedule``), and past ``until``
        while one is still below it, for up to half the run's length again."""
        self.until = until
        schedule = Schedule(self.duration_s, self.rng)
        # Often enough that each short kind comes up more than once per run.
        mean_s = min(0.5, self.duration_s / (1.3 * len(schedule.kinds)))
        async with trio.open_nursery() as nursery:
            for kind in enabled(self.duration_s):
                if kind.cost == "long":
                    latest = max(0.5, until - trio.current_time() - BEYOND_RETENTION_S[1] - 5)
                    start = trio.current_time() + self.rng.uniform(0.5, latest)
                    nursery.start_soon(self._long_fault, kind.name, start, until)
            # A kind still below its minimum at the end gets up to half as long again.
            grace = until + self.duration_s / 2
            while trio.current_time() < until or (schedule.short() and trio.current_time() < grace):
                await trio.sleep(self.rng.uniform(0.2, 1.8) * mean_s)
                if trio.current_time() >= until and not schedule.behind():
                    continue  # past the end, only kinds below their minimum are drawn
                kind_name = schedule.next()
                # Each fault draws from its own generator, seeded in schedule order, so that
                # faults running at the same time don't change each other's choices.
                rng = random.Random(self.rng.random())
                nursery.start_soon(self._one_fault, schedule, kind_name, rng)

    async def _one_fault(self, schedule: Schedule, kind: str, rng: random.Random) -> None:
        injected = await inject(self, kind, rng)
        schedule.done(kind, injected)
        (self.report.faults if injected else self.report.skipped)[kind] += 1

    async def _long_fault(self, kind: str, start: float, until: float) -> None:
        """A long fault, tried again until a worker is free for it while it still fits."""
        rng = random.Random(self.rng.random())
        await trio.sleep_until(start)
        while trio.current_time() < until:
            if await inject(self, kind, rng):
                self.report.faults[kind] += 1
                return
            self.report.skipped[kind] += 1
            await trio.sleep(0.5)

    async def wait_drained(self) -> None:
        """Until, for a second, the queue and every in-flight list are empty and each registry
        entry belongs to a live worker (a dead one's are claimed once its heartbeat expires).
        A drain that moves nothing for STUCK_S is given up on (and fails the run)."""
        client = self.clients.redis("checker")
        try:
            stable, last, since = 0, (-1, -1), trio.current_time()
            with trio.move_on_after(DRAIN_WITHIN_S) as scope:
                while stable < 5:
                    done, left = await trio.to_thread.run_sync(self.drained, client)
                    stable = stable + 1 if done else 0
                    if left != last:
                        last, since = left, trio.current_time()
                    elif trio.current_time() - since > STUCK_S:
                        stuck = await trio.to_thread.run_sync(self.stuck, client)
                        self.report.problem(
                            f"drain stuck for {STUCK_S:.0f}s: {left} left; " + "; ".join(stuck)
                        )
                        return
                    await trio.sleep(0.2)
            if scope.cancelled_caught:
                self.report.problem(f"not drained within {DRAIN_WITHIN_S:.0f}s")
        finally:
            client.close()

    def drained(self, client: redis.Redis) -> tuple[bool, tuple[int, int]]:
        """Whether all is drained; (votes queued, votes in flight)."""
        q = self.config.vote_queue
        queued = int(client.llen(q))
        lists = list(client.scan_iter(match=f"{q}:inflight:*", count=1000))
        held = sum(int(client.llen(k)) for k in lists)
        owners = {as_bytes(m).decode().split(":")[-2] for m in client.smembers(f"{q}:inflight")}
        done = not queued and not held and all(client.exists(f"{q}:worker:{o}") for o in owners)
        return done, (queued, held)

    def stuck(self, client: redis.Redis) -> list[str]:
        """The in-flight lists that still hold votes, described."""
        keys = client.scan_iter(match=f"{self.config.vote_queue}:inflight:*", count=1000)
        return describe(self.config, client, [k for k in keys if client.llen(k)][:5])

    def check(self) -> None:
        checker = Checker(self.config, self.producers, self.report, self.clients)
        checker.run()
        check_keys(self.config, self.clients, self.report, self.fleet.drained, checker.originals)
        check_logs(self.logs, self.report)
        self.report.resources = self.sampler.series
        for series in self.sampler.series:
            if grown := series.growth():
                self.report.problem(
                    f"{series.worker_id} (pid {series.pid}) grew over {series.span_s:.0f}s: "
                    + "; ".join(grown)
                )
