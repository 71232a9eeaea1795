"""One race run: producers, workers (in this Trio run and as processes), faults, and the checker.

Every random choice (which fault, when, against whom, for how long; batch size; what producers
push) comes from one ``random.Random(seed)``, printed with the results. Timing still depends on
the machine, so a replay (``--stress-seed N``) injects the same schedule of choices, not the same
interleaving of events.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql
import redis
import trio

from tests.conftest import env_of
from tests.faults import FaultProxy
from tests.servers import OwnStores
from trio_worker import service
from trio_worker.config import Config, from_env
from trio_worker.queue import scripts

# The worker's scripts, by the SHA1 that EVALSHA sends: patterns for the proxies' cuts.
TAKE_SHA = scripts.TAKE.sha.encode()
FINISH_SHA = scripts.FINISH.sha.encode()
CLAIM_SHA = scripts.CLAIM.sha.encode()
REDIS_PATTERNS = [TAKE_SHA, FINISH_SHA, CLAIM_SHA, b"BLMOVE", b"SADD"]
MYSQL_PATTERNS = [b"COMMIT", b"INSERT INTO votes", b"INSERT INTO vote_batches"]

HEARTBEAT_TTL_S = 2.0
SHUTDOWN_TIMEOUT_S = 20.0
WORKER_CMD = [sys.executable, "-X", "dev", "-W", "error", "-m", "trio_worker", "run"]
# Lines a worker must never print: Trio/asyncio hygiene and crashes.
BAD_LOG_LINES = (
    "was never awaited",
    "ResourceWarning",
    "unclosed",
    "Traceback",
    "Task was destroyed",
)

FAULT_KINDS = [
    "sigkill",
    "sigkill_before_move",
    "sigkill_mid_batch",
    "sigkill_after_commit",
    "sigkill_during_recovery",
    "sigterm_drain",
    "pause_takeover",
    "proxy_cut",
    "proxy_blackhole",
    "proxy_latency",
    "proxy_cut_reply",
    "proxy_cut_before",
    "proxy_half_reply",
    "mysql_kill",
    "redis_client_kill",
    "restart_redis",
    "restart_mariadb",
]


@dataclass
class Report:
    """What one run did and what the checker found."""

    seed: int
    duration_s: float = 0.0
    votes: int = 0
    malformed: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_lettered: int = 0
    dead_wrong: int = 0
    inflight_left: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    schedule: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"seed={self.seed} votes={self.votes} malformed={self.malformed} "
            f"stored={self.stored} lost={self.lost} duplicated={self.duplicated} "
            f"dead_lettered={self.dead_lettered} faults={sum(self.faults.values())} "
            f"duration={self.duration_s:.0f}s"
        )


REPORTS: list[Report] = []


class Proxies:
    """A worker's own pair of proxies, so that a fault can target one worker precisely."""

    def __init__(self, stores: OwnStores) -> None:
        self.redis = FaultProxy("127.0.0.1", stores.redis.port)
        self.mysql = FaultProxy("127.0.0.1", stores.mysql.port)

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.redis.serve)
        await nursery.start(self.mysql.serve)

    def heal(self) -> None:
        for p in (self.redis, self.mysql):
            p.set_blackhole(False)
            p.latency_s = 0.0
            p.release()


@dataclass(eq=False)
class Worker:
    name: str
    proxies: Proxies
    lock: trio.Lock = field(default_factory=trio.Lock)
    generation: int = 0

    @property
    def worker_id(self) -> str:
        return f"{self.name}-g{self.generation}"


@dataclass(eq=False)
class ProcWorker(Worker):
    proc: trio.Process | None = None
    log: Path | None = None
    paused: bool = False
    stopping: bool = False
    stale_token: bytes | None = None  # the heartbeat a previous process with this id left


@dataclass(eq=False)
class InProcWorker(Worker):
    stop: trio.Event = field(default_factory=trio.Event)
    exit_status: list[int] = field(default_factory=list)


class Run:
    def __init__(
        self, seed: int, duration_s: float, stores: OwnStores, base: Config, logs: Path
    ) -> None:
        self.rng = random.Random(f"{seed}-faults")
        self.report = Report(seed)
        self.duration_s = duration_s
        self.stores = stores
        self.logs = logs
        tag = f"{seed:x}{os.getpid():x}"
        self.config = replace(
            base,
            vote_queue=f"race{tag}",
            dead_letter_queue=f"race{tag}:dead",
            mysql_database=f"race_{tag}",
            batch_size=random.Random(seed).choice([20, 100, 500, 1000]),
            heartbeat_ttl_s=HEARTBEAT_TTL_S,
            shutdown_timeout_s=SHUTDOWN_TIMEOUT_S,
            http_port=0,
            http_host="127.0.0.1",
        )
        self.pushed: dict[str, bytes] = {}  # voter id → message
        self.malformed: set[bytes] = set()
        self.uncertain: set[str] = set()
        self.uncertain_bad: set[bytes] = set()
        self.procs: list[ProcWorker] = []
        self.inprocs: list[InProcWorker] = []
        self.producing = True
        self.pushes_open = trio.Event()
        self.pushes_open.set()
        self.pushing = 0
        self.store_locks = {"restart_redis": trio.Lock(), "restart_mariadb": trio.Lock()}
        self.start = 0.0

    # ------------------------------------------------------------------ clients

    def redis_client(self, name: str) -> redis.Redis:
        return redis.Redis(
            port=self.stores.redis.port,
            client_name=name,
            socket_timeout=10,
            socket_connect_timeout=5,
        )

    def sql(self, query: str, database: str | None = None) -> list[tuple[Any, ...]]:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=self.stores.mysql.port,
            user="root",
            database=database,
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=5,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())
        finally:
            conn.close()

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.start:7.2f}s {text}"
        self.report.schedule.append(line)

    # ------------------------------------------------------------------ workers

    def worker_config(self, w: Worker) -> Config:
        return replace(
            self.config,
            worker_id=w.worker_id,
            redis_host="127.0.0.1",
            redis_port=w.proxies.redis.port,
            mysql_host="127.0.0.1",
            mysql_port=w.proxies.mysql.port,
        )

    async def spawn(self, w: ProcWorker) -> None:
        w.stale_token = await trio.to_thread.run_sync(self.heartbeat_of, w)
        w.log = self.logs / f"{w.worker_id}.log"
        env = {**env_of(self.worker_config(w)), "LOG_LEVEL": "warning"}
        with w.log.open("ab") as out:
            w.proc = await trio.lowlevel.open_process(
                WORKER_CMD, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def restart(self, w: ProcWorker, *, same_id: bool) -> None:
        """Start the worker again, with its old id (recovers at once) or a new one (after TTL)."""
        w.proxies.heal()
        if not same_id:
            w.generation += 1
        await self.spawn(w)
        self.note(f"restart {w.worker_id} ({'same id' if same_id else 'new id'})")

    async def kill(self, w: ProcWorker) -> None:
        assert w.proc is not None
        w.proc.kill()
        if w.paused:
            w.proc.send_signal(signal.SIGCONT)
            w.paused = False
        await w.proc.wait()

    async def run_inproc(
        self, w: InProcWorker, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        status = await service.run(self.worker_config(w), stop=w.stop, task_status=task_status)
        w.exit_status.append(status)

    # ---------------------------------------------------------------- producers

    async def produce(self, n: int) -> None:
        client = self.redis_client(f"producer{n}")
        rng = random.Random(f"{self.report.seed}-producer{n}")
        i = 0
        try:
            while self.producing:
                await self.pushes_open.wait()
                chunk: list[bytes] = []
                ids: list[str] = []
                bad: list[bytes] = []
                for _ in range(rng.randint(1, 40)):
                    i += 1
                    if rng.random() < 0.02:
                        bad.append(self.bad_message(rng, n, i))
                        chunk.append(bad[-1])
                    else:
                        voter = f"s{self.report.seed}-p{n}-{i}"
                        msg = json.dumps({"voter_id": voter, "vote": rng.choice("abc")}).encode()
                        self.pushed[voter] = msg
                        ids.append(voter)
                        chunk.append(msg)
                self.malformed.update(bad)
                self.pushing += 1
                try:
                    await trio.to_thread.run_sync(client.lpush, self.config.vote_queue, *chunk)
                except redis.RedisError as exc:
                    # Did it land? Can't tell: such votes may be stored once or not at all.
                    self.uncertain.update(ids)
                    self.uncertain_bad.update(bad)
                    self.note(f"producer{n}: push failed ({exc}); {len(ids)} votes uncertain")
                finally:
                    self.pushing -= 1
                await trio.sleep(rng.uniform(0.02, 0.12))
        finally:
            client.close()

    def bad_message(self, rng: random.Random, n: int, i: int) -> bytes:
        tag = f"{self.report.seed}-{n}-{i}"
        return rng.choice(
            [
                f"not json {tag}".encode(),
                json.dumps({"voter_id": f"x{tag}"}).encode(),
                json.dumps({"voter_id": f"x{tag}", "vote": "much too long"}).encode(),
                json.dumps([tag]).encode(),
                json.dumps({"voter_id": f"x{tag}", "vote": "a", "timestamp": "soon"}).encode(),
                b"\xff\xfe" + tag.encode(),
                json.dumps({"voter_id": 42, "vote": "a", "tag": tag}).encode(),
            ]
        )

    # ------------------------------------------------------------------- faults

    def idle_proc(self, rng: random.Random) -> ProcWorker | None:
        free = [w for w in self.procs if not w.lock.locked()]
        return rng.choice(free) if free else None

    def any_worker(self, rng: random.Random) -> Worker:
        return rng.choice([*self.procs, *self.inprocs])

    def proxy_of(self, rng: random.Random, w: Worker) -> tuple[str, FaultProxy]:
        if rng.random() < 0.5:
            return "redis", w.proxies.redis
        return "mysql", w.proxies.mysql

    async def fault(self, kind: str, rng: random.Random) -> bool:
        """Inject one fault of ``kind``; False if it could not be injected now."""
        if kind.startswith(("sigkill", "sigterm", "pause")):
            w = self.idle_proc(rng)
            if w is None:
                return False
            async with w.lock:
                return await self.process_fault(kind, w, rng)
        if kind.startswith("proxy"):
            anyone = self.any_worker(rng)
            which, proxy = self.proxy_of(rng, anyone)
            target = f"{anyone.worker_id}/{which}"
            patterns = REDIS_PATTERNS if which == "redis" else MYSQL_PATTERNS
            if kind == "proxy_cut":
                proxy.cut_all()
                self.note(f"{kind} {target}")
            elif kind == "proxy_blackhole":
                hold = rng.uniform(0.3, 3.0)
                self.note(f"{kind} {target} for {hold:.1f}s")
                proxy.set_blackhole(True)
                await trio.sleep(hold)
                proxy.set_blackhole(False)
            elif kind == "proxy_latency":
                delay, hold = rng.uniform(0.01, 0.2), rng.uniform(1.0, 4.0)
                self.note(f"{kind} {target} {delay * 1000:.0f}ms for {hold:.1f}s")
                proxy.latency_s = delay
                await trio.sleep(hold)
                proxy.latency_s = 0.0
            else:
                pattern = rng.choice(patterns)
                arm = {
                    "proxy_cut_reply": proxy.cut_reply_after,
                    "proxy_cut_before": proxy.cut_before,
                    "proxy_half_reply": proxy.half_reply_after,
                }[kind]
                key = kind.removeprefix("proxy_")
                before = proxy.fired[key]
                arm(pattern)
                self.note(f"{kind} {target} on {pattern[:24]!r}")
                with trio.move_on_after(5):
                    while proxy.fired[key] == before:  # noqa: ASYNC110 (the proxy counts)
                        await trio.sleep(0.05)
                if proxy.fired[key] == before:
                    proxy.release()  # disarm: it would fire at a moment we no longer chose
                    return False
            return True
        if kind == "mysql_kill":
            try:
                rows = await trio.to_thread.run_sync(
                    self.sql,
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    f"WHERE DB = '{self.config.mysql_database}' AND ID <> CONNECTION_ID()",
                )
            except pymysql.err.MySQLError:
                return False  # MariaDB is being restarted by another fault
            if not rows:
                return False
            victim = rng.choice(sorted(r[0] for r in rows))
            self.note(f"mysql KILL {victim}")
            try:
                await trio.to_thread.run_sync(self.sql, f"KILL {victim}")
            except pymysql.err.MySQLError:
                return False
            return True
        if kind == "redis_client_kill":
            client = self.redis_client("faults")
            try:
                clients = await trio.to_thread.run_sync(client.client_list)
                victims = sorted(int(c["id"]) for c in clients if not c.get("name"))
                if not victims:
                    return False
                victim = rng.choice(victims)
                self.note(f"redis CLIENT KILL ID {victim}")
                await trio.to_thread.run_sync(lambda: client.client_kill_filter(_id=str(victim)))
            except redis.RedisError:
                return False
            finally:
                client.close()
            return True
        if kind in ("restart_redis", "restart_mariadb"):
            lock = self.store_locks[kind]
            if lock.locked():
                return False
            async with lock:
                down = rng.uniform(0.2, 2.0)
                if kind == "restart_redis":
                    self.note(f"restart own redis (SIGKILL, down {down:.1f}s)")
                    # Producers hold back: a push whose reply is lost might or might not be in.
                    self.pushes_open = trio.Event()
                    with trio.fail_after(30):
                        while self.pushing:  # noqa: ASYNC110 (a counter)
                            await trio.sleep(0.01)
                    try:
                        await self.stores.redis.restart(signal.SIGKILL, down)
                    finally:
                        self.pushes_open.set()
                else:
                    self.note(f"restart own mariadb (SIGTERM, down {down:.1f}s)")
                    await self.stores.mysql.restart(signal.SIGTERM, down)
                self.note(f"{kind} done")
            return True
        raise AssertionError(kind)

    async def process_fault(self, kind: str, w: ProcWorker, rng: random.Random) -> bool:
        assert w.proc is not None
        same_id = rng.random() < 0.5
        if kind == "sigkill":
            await trio.sleep(rng.uniform(0, 0.5))
            self.note(f"SIGKILL {w.worker_id} at a random moment")
            await self.kill(w)
            await trio.sleep(rng.uniform(0, 1.5))
            await self.restart(w, same_id=same_id)
            return True
        if kind in ("sigkill_before_move", "sigkill_mid_batch", "sigkill_after_commit"):
            proxy, pattern = {
                "sigkill_before_move": (w.proxies.redis, TAKE_SHA),
                "sigkill_mid_batch": (w.proxies.mysql, b"INSERT INTO votes"),
                "sigkill_after_commit": (w.proxies.mysql, b"COMMIT"),
            }[kind]
            if kind == "sigkill_before_move":
                proxy.hold_before(pattern)
            else:
                proxy.hold_reply_after(pattern)
            fired = False
            with trio.move_on_after(5):
                await proxy.holding.wait()
                fired = True
            if fired:
                self.note(
                    f"SIGKILL {w.worker_id}: {kind.removeprefix('sigkill_')} ({pattern[:20]!r})"
                )
                await self.kill(w)
            proxy.release()
            if not fired:
                return False
            await self.restart(w, same_id=same_id)
            return True
        if kind == "sigkill_during_recovery":
            others = [o for o in self.procs if o is not w and not o.lock.locked()]
            if not others:
                return False
            rescuer = rng.choice(others)
            async with rescuer.lock:
                rescuer.proxies.redis.hold_reply_after(CLAIM_SHA)
                self.note(f"SIGKILL {w.worker_id}, then {rescuer.worker_id} when it claims")
                await self.kill(w)
                # A new id for the dead one: its lists wait for heartbeat expiry, then a claim.
                fired = False
                with trio.move_on_after(HEARTBEAT_TTL_S * 3 + 2):
                    await rescuer.proxies.redis.holding.wait()
                    fired = True
                if fired:
                    self.report.details["rescuers killed mid-claim"] += 1
                    self.note(f"SIGKILL {rescuer.worker_id} during its claim")
                    await self.kill(rescuer)
                rescuer.proxies.redis.release()
                await self.restart(w, same_id=False)
                if fired:
                    await self.restart(rescuer, same_id=rng.random() < 0.5)
                else:
                    self.report.skipped["sigkill_during_recovery (rescuer)"] += 1
                    self.report.faults["sigkill"] += 1
                return fired
        if kind == "sigterm_drain":
            # A SIGTERM before Python has even imported Trio kills it the default way (-15);
            # the drain path starts once the service runs, which its heartbeat key proves.
            if not await self.alive(w):
                return False
            self.note(f"SIGTERM {w.worker_id} under load")
            w.proc.send_signal(signal.SIGTERM)
            status: int | None = None
            with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
                status = await w.proc.wait()
            if status is None:
                self.report.problems.append(f"{w.worker_id} did not exit after SIGTERM")
                await self.kill(w)
            elif status != 0:
                self.report.problems.append(f"{w.worker_id} drained with exit status {status}")
            self.note(f"{w.worker_id} exited {status}")
            await self.restart(w, same_id=same_id)
            return True
        if kind == "pause_takeover":
            pause = HEARTBEAT_TTL_S + HEARTBEAT_TTL_S / 3 + rng.uniform(0.5, 2.5)
            self.note(f"SIGSTOP {w.worker_id} for {pause:.1f}s")
            w.proc.send_signal(signal.SIGSTOP)
            w.paused = True
            held = await trio.to_thread.run_sync(self.lists_of, w)
            await trio.sleep(pause)
            left = await trio.to_thread.run_sync(self.lists_of, w)
            w.proc.send_signal(signal.SIGCONT)
            w.paused = False
            taken = len(held - left)
            self.report.details["paused worker's lists taken over"] += taken
            self.note(f"SIGCONT {w.worker_id}: {taken} of its {len(held)} lists taken over")
            return True
        raise AssertionError(kind)

    def heartbeat_of(self, w: Worker) -> bytes | None:
        client = self.redis_client("checker")
        try:
            value = client.get(f"{self.config.vote_queue}:worker:{w.worker_id}")
            return value if isinstance(value, bytes) else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    async def alive(self, w: ProcWorker, within_s: float = 15.0) -> bool:
        """Whether this process's service runs: it wrote a heartbeat (a fresh token each start)."""
        with trio.move_on_after(within_s):
            while True:
                token = await trio.to_thread.run_sync(self.heartbeat_of, w)
                if token is not None and token != w.stale_token:
                    return True
                await trio.sleep(0.1)
        return False

    def lists_of(self, w: Worker) -> set[bytes]:
        client = self.redis_client("checker")
        try:
            pattern = f"{self.config.vote_queue}:inflight:{w.worker_id}:*"
            return {k for k in client.scan_iter(match=pattern, count=1000) if client.llen(k)}
        except redis.RedisError:
            return set()
        finally:
            client.close()

    async def faults(self, until: float) -> None:
        """Inject faults at random moments, several at once, until ``until``."""
        async with trio.open_nursery() as nursery:
            while trio.current_time() < until:
                await trio.sleep(self.rng.uniform(0.1, 0.9))
                kind = self.rng.choice(FAULT_KINDS)
                # Each fault draws from its own generator, seeded in schedule order, so that
                # faults running at the same time don't change each other's choices.
                nursery.start_soon(self._one_fault, kind, random.Random(self.rng.random()))

    async def _one_fault(self, kind: str, rng: random.Random) -> None:
        if await self.fault(kind, rng):
            self.report.faults[kind] += 1
        else:
            self.report.skipped[kind] += 1

    # ---------------------------------------------------------------- the run

    async def watch(self, w: ProcWorker) -> None:
        """A worker process that exits when nobody asked it to is a failure."""
        while True:
            proc = w.proc
            assert proc is not None
            status = await proc.wait()
            if proc is w.proc and not w.lock.locked() and not w.stopping:
                self.report.problems.append(f"{w.worker_id} exited on its own: status {status}")
                self.note(f"{w.worker_id} exited on its own ({status}); restarting")
                await self.restart(w, same_id=True)
            else:
                await trio.sleep(0.05)
                if w.stopping:
                    return

    async def execute(self, procs: int, inprocs: int) -> Report:
        self.start = time.monotonic()
        await trio.to_thread.run_sync(self.sql, f"CREATE DATABASE `{self.config.mysql_database}`")
        self.note(
            f"config: batch_size={self.config.batch_size} ttl={HEARTBEAT_TTL_S}s "
            f"workers={procs} processes + {inprocs} in this run"
        )
        try:
            await self._execute(procs, inprocs)
        finally:
            # Whatever happened, no worker process outlives the run.
            for w in self.procs:
                if w.proc is not None and w.proc.returncode is None:
                    w.proc.kill()
                    if w.paused:
                        w.proc.send_signal(signal.SIGCONT)
                    with trio.CancelScope(shield=True):
                        await w.proc.wait()
        self.report.duration_s = time.monotonic() - self.start
        await trio.to_thread.run_sync(self.check)
        return self.report

    async def _execute(self, procs: int, inprocs: int) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(procs):
                w = ProcWorker(f"p{i}", Proxies(self.stores))
                await w.proxies.start(nursery)
                await self.spawn(w)
                self.procs.append(w)
                nursery.start_soon(self.watch, w)
            for i in range(inprocs):
                iw = InProcWorker(f"i{i}", Proxies(self.stores))
                await iw.proxies.start(nursery)
                await nursery.start(self.run_inproc, iw)
                self.inprocs.append(iw)
            async with trio.open_nursery() as producers:
                for n in range(3):
                    producers.start_soon(self.produce, n)
                await self.faults(trio.current_time() + self.duration_s)
                self.producing = False
            self.note("faults and producers stopped; draining")
            await self.heal()
            await self.wait_drained()
            await self.stop_all()
            nursery.cancel_scope.cancel()

    async def heal(self) -> None:
        for w in [*self.procs, *self.inprocs]:
            w.proxies.heal()
        for p in self.procs:
            if p.paused and p.proc is not None:
                p.proc.send_signal(signal.SIGCONT)
                p.paused = False

    async def wait_drained(self) -> None:
        client = self.redis_client("checker")
        try:
            stable = 0
            with trio.move_on_after(120) as scope:
                while stable < 5:
                    depth = await trio.to_thread.run_sync(client.llen, self.config.vote_queue)
                    held = await trio.to_thread.run_sync(self.inflight_votes, client)
                    stable = stable + 1 if depth == 0 and held == 0 else 0
                    await trio.sleep(0.2)
            if scope.cancelled_caught:
                self.report.problems.append("not drained within 120 s")
        finally:
            client.close()

    def inflight_votes(self, client: redis.Redis) -> int:
        keys = list(client.scan_iter(match=f"{self.config.vote_queue}:inflight:*", count=1000))
        return sum(int(client.llen(k)) for k in keys)

    async def stop_all(self) -> None:
        for w in self.procs:
            w.stopping = True
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
        for w in self.procs:
            assert w.proc is not None
            with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
                status = await w.proc.wait()
                if status != 0:
                    self.report.problems.append(f"{w.worker_id}: final drain exit status {status}")
            if w.proc.returncode is None:
                self.report.problems.append(f"{w.worker_id}: no exit after the final SIGTERM")
                w.proc.kill()
                await w.proc.wait()
        for iw in self.inprocs:
            iw.stop.set()
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 5):
            for iw in self.inprocs:
                while not iw.exit_status:  # noqa: ASYNC110 (service.run's return value)
                    await trio.sleep(0.05)
        for iw in self.inprocs:
            if iw.exit_status != [0]:
                self.report.problems.append(f"{iw.worker_id}: in-process exit {iw.exit_status}")

    # ------------------------------------------------------------------ checker

    def check(self) -> None:
        """Compare what producers pushed with what the stores hold, with plain sync clients."""
        r = self.report
        r.votes = len(self.pushed)
        r.malformed = len(self.malformed)
        rows = self.sql(
            "SELECT voter_id, COUNT(*) FROM votes GROUP BY voter_id", self.config.mysql_database
        )
        stored = {str(v): int(n) for v, n in rows}
        r.stored = sum(stored.values())
        first: list[str] = []
        for voter, n in sorted(stored.items()):
            if n > 1:
                r.duplicated += n - 1
                first.append(f"duplicated: {voter} stored {n} times")
            if voter not in self.pushed:
                first.append(f"stored but never pushed: {voter}")
        for voter in self.pushed:
            if voter not in stored and voter not in self.uncertain:
                r.lost += 1
                first.append(f"lost: {voter} ({self.pushed[voter]!r})")
        client = self.redis_client("checker")
        try:
            dead = client.lrange(self.config.dead_letter_queue, 0, -1)
            r.inflight_left = self.inflight_votes(client)
            leftover = client.llen(self.config.vote_queue)
        finally:
            client.close()
        originals: Counter[bytes] = Counter()
        for env in dead:
            doc = json.loads(env)
            msg = doc["message"]
            originals[base64.b64decode(msg) if doc["encoding"] == "base64" else msg.encode()] += 1
        r.dead_lettered = sum(originals.values())
        for msg, n in originals.items():
            if n != 1 or msg not in self.malformed:
                r.dead_wrong += 1
                first.append(
                    f"dead letter {msg!r} x{n} (pushed malformed: {msg in self.malformed})"
                )
        for msg in self.malformed - set(originals) - self.uncertain_bad:
            r.dead_wrong += 1
            first.append(f"malformed message never dead-lettered: {msg!r}")
        if r.inflight_left:
            r.problems.append(f"{r.inflight_left} votes left in in-flight lists")
        if leftover:
            r.problems.append(f"{leftover} messages left in the queue")
        if first:
            r.problems.append(f"first wrong vote: {first[0]} ({len(first)} in all)")
        for path in sorted(self.logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if any(bad in line for bad in BAD_LOG_LINES):
                    r.problems.append(f"{path.name}: {line.strip()[:300]}")
                    break


def base_config(stores: OwnStores) -> Config:
    return from_env(
        {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(stores.redis.port),
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": str(stores.mysql.port),
            "MYSQL_USER": "root",
            "MYSQL_PASSWORD": "",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warning",
        }
    )
