"""The fleet: starting, restarting, watching and finally draining the race's workers."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import trio

from tests.race.clients import Clients
from tests.race.report import Report
from tests.race.settings import SHUTDOWN_TIMEOUT_S
from tests.race.workers import (
    InProcWorker,
    ProcWorker,
    Proxies,
    Twin,
    Worker,
    kill,
    start_process,
    worker_config,
)
from tests.support.servers import free_port
from trio_worker import service
from trio_worker.config import Config


@contextmanager
def captured_log(path: Path) -> Iterator[None]:
    """The in-process worker's warnings and errors, in a file the checker scans like the
    processes' logs (tracebacks included)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


class Fleet:
    def __init__(self, config: Config, clients: Clients, report: Report, logs: Path) -> None:
        self.config = config
        self.clients = clients
        self.report = report
        self.logs = logs
        self.procs: list[ProcWorker] = []
        self.inprocs: list[InProcWorker] = []
        self.drained: set[str] = set()  # ids whose final drain must have deleted their heartbeat
        self.nursery: trio.Nursery | None = None

    def all(self) -> list[Worker]:
        return [*self.procs, *self.inprocs]

    def restartable(self) -> list[ProcWorker]:
        """The worker processes that faults may end and start again (not the steady ones)."""
        return [w for w in self.procs if not w.steady]

    async def start(self, nursery: trio.Nursery, procs: int, inprocs: int, steady: int) -> None:
        """``procs`` worker processes that faults restart, ``steady`` ones they never restart
        (every other fault may hit them), ``inprocs`` workers in this Trio run."""
        self.nursery = nursery
        names = [(f"p{i}", False) for i in range(procs)] + [(f"s{i}", True) for i in range(steady)]
        for name, is_steady in names:
            w = ProcWorker(name, Proxies(self.clients.stores), steady=is_steady)
            await w.proxies.start(nursery)
            await self.spawn(w)
            self.procs.append(w)
            nursery.start_soon(self.watch, w)
        for i in range(inprocs):
            iw = InProcWorker(f"i{i}", Proxies(self.clients.stores))
            await iw.proxies.start(nursery)
            await nursery.start(self.run_inproc, iw)
            self.inprocs.append(iw)

    async def run_inproc(
        self, w: InProcWorker, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        with captured_log(self.logs / f"{w.worker_id}-inprocess.log"):
            config = worker_config(self.config, w)
            status = await service.run(config, stop=w.stop, task_status=task_status)
        w.exit_status.append(status)

    async def spawn(self, w: ProcWorker) -> None:
        w.stale_token = await trio.to_thread.run_sync(self.heartbeat_of, w.worker_id)
        w.log = self.logs / f"{w.worker_id}.log"
        w.clock = self.logs / f"{w.name}.clock"
        w.http_port = free_port()
        config = replace(worker_config(self.config, w), http_port=w.http_port)
        w.proc = await start_process(config, w.log, w.clock)

    async def spawn_twin(self, w: ProcWorker, n: int) -> Twin:
        """Another process with ``w``'s id, its own proxies and a known HTTP port."""
        assert self.nursery is not None
        proxies = Proxies(self.clients.stores)
        await proxies.start(self.nursery)
        port = free_port()
        config = replace(worker_config(self.config, w, proxies), http_port=port)
        log = self.logs / f"{w.worker_id}-twin{n}.log"
        clock = self.logs / f"{w.worker_id}-twin{n}.clock"
        proc = await start_process(config, log, clock)
        return Twin(proc, proxies, f"http://127.0.0.1:{port}", log)

    async def restart(self, w: ProcWorker, *, same_id: bool) -> None:
        """Start the worker again, with its old id (recovers at once) or a new one (after TTL)."""
        w.proxies.heal()
        if not same_id:
            w.generation += 1
        await self.spawn(w)
        self.report.note(f"restart {w.worker_id} ({'same id' if same_id else 'new id'})")

    async def kill(self, w: ProcWorker) -> None:
        assert w.proc is not None
        await kill(w.proc, paused=w.paused)
        w.paused = False

    def heartbeat_of(self, worker_id: str) -> bytes | None:
        client = self.clients.redis("checker")
        try:
            value = client.get(f"{self.config.vote_queue}:worker:{worker_id}")
            return value if isinstance(value, bytes) else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    async def alive(self, w: ProcWorker, within_s: float = 15.0) -> bool:
        """Whether this process's service runs: it wrote a heartbeat (a fresh token each start)."""
        with trio.move_on_after(within_s):
            while True:
                token = await trio.to_thread.run_sync(self.heartbeat_of, w.worker_id)
                if token is not None and token != w.stale_token:
                    return True
                await trio.sleep(0.1)
        return False

    def lists_of(self, w: Worker) -> set[bytes]:
        client = self.clients.redis("checker")
        try:
            pattern = f"{self.config.vote_queue}:inflight:{w.worker_id}:*"
            return {k for k in client.scan_iter(match=pattern, count=1000) if client.llen(k)}
        except redis.RedisError:
            return set()
        finally:
            client.close()

    async def watch(self, w: ProcWorker) -> None:
        """A worker process that exits when nobody asked it to is a failure."""
        while True:
            proc = w.proc
            assert proc is not None
            status = await proc.wait()
            if proc is w.proc and not w.lock.locked() and not w.stopping:
                self.report.problem(f"{w.worker_id} exited on its own: status {status}")
                await self.restart(w, same_id=True)
            else:
                await trio.sleep(0.05)
                if w.stopping:
                    return

    def heal(self) -> None:
        for w in self.all():
            w.proxies.heal()
        for p in self.procs:
            if p.paused and p.proc is not None:
                p.proc.send_signal(signal.SIGCONT)
                p.paused = False

    async def stop_all(self) -> None:
        """SIGTERM every worker: each must drain and exit 0 within SHUTDOWN_TIMEOUT_S."""
        for w in self.procs:
            w.stopping = True
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
            self.drained.add(w.worker_id)
        for iw in self.inprocs:  # at the same time: their drains' deadlines run together
            iw.stop.set()
            self.drained.add(iw.worker_id)
        for w in self.procs:
            assert w.proc is not None
            with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 10):
                status = await w.proc.wait()
                if status != 0:
                    self.report.problem(f"{w.worker_id}: final drain exit status {status}")
            if w.proc.returncode is None:
                self.report.problem(f"{w.worker_id}: no exit after the final SIGTERM")
                await kill(w.proc)
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S + 5):
            for iw in self.inprocs:
                while not iw.exit_status:  # noqa: ASYNC110 (service.run's return value)
                    await trio.sleep(0.05)
        for iw in self.inprocs:
            if iw.exit_status != [0]:
                self.report.problem(f"{iw.worker_id}: in-process exit {iw.exit_status}")

    async def kill_all(self) -> None:
        """Whatever happened, no worker process outlives the run."""
        for w in self.procs:
            if w.proc is not None and w.proc.returncode is None:
                await kill(w.proc, paused=w.paused)
