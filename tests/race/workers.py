"""The race's workers: processes and the one in this Trio run, each behind its own proxies so that
a fault can target one worker at one step of the protocol."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from tests.race.settings import INSERT_LEDGER, TAKE, WORKER_CMD, WORKER_TZ, libfaketime
from tests.support.faults import FaultProxy
from tests.support.servers import OwnStores
from tests.support.workers import env_of
from trio_worker.config import Config


class Proxies:
    """A worker's own pair of proxies; each counts the requests that show the worker's progress
    (takes, commits)."""

    def __init__(self, stores: OwnStores) -> None:
        self.redis = FaultProxy("127.0.0.1", stores.redis.port)
        self.mysql = FaultProxy("127.0.0.1", stores.mysql.port)
        self.redis.watch(TAKE.data)
        self.mysql.watch(INSERT_LEDGER.data)

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
    # Never restarted by a fault (no SIGKILL, SIGTERM, twin, or new settings): it lives the whole
    # run, so that its memory and file descriptors over time say whether the worker leaks.
    steady: bool = False
    retention_s: int | None = None  # LEDGER_RETENTION_S if not the run's (mixed_retention)
    http_port: int = 0  # this process's, chosen at each start
    clock: Path | None = None  # its libfaketime offset file ("+0s" at each start)


@dataclass(eq=False)
class InProcWorker(Worker):
    stop: trio.Event = field(default_factory=trio.Event)
    exit_status: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Twin:
    """A second process started with a live worker's id."""

    proc: trio.Process
    proxies: Proxies
    url: str
    log: Path


def worker_config(base: Config, w: Worker, proxies: Proxies | None = None) -> Config:
    p = proxies or w.proxies
    config = replace(
        base,
        worker_id=w.worker_id,
        redis_host="127.0.0.1",
        redis_port=p.redis.port,
        mysql_host="127.0.0.1",
        mysql_port=p.mysql.port,
    )
    if isinstance(w, ProcWorker) and w.retention_s is not None:
        config = replace(config, ledger_retention_s=w.retention_s)
    return config


def set_clock(clock: Path, offset: str) -> None:
    """Write a worker process's wall-clock offset ("+400s", "-400s", "+0s") whole: libfaketime
    reads the file again within a second, and must never see it half written."""
    part = clock.with_name(clock.name + ".new")
    part.write_text(f"{offset}\n")
    os.replace(part, clock)


def faked(clock: Path) -> dict[str, str]:
    """The environment that runs a process under libfaketime from its start, its wall clock
    offset by what ``clock`` says, read again every second. Monotonic clocks are not faked (a
    real step leaves them alone), which makes libfaketime 0.9.10 fail time.sleep with EINVAL
    (``settings.BAD_LOG_LINES``). Without libfaketime, nothing (clock_step then can't run)."""
    lib = libfaketime()
    if lib is None:
        return {}
    set_clock(clock, "+0s")
    return {
        "LD_PRELOAD": lib,
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


async def start_process(config: Config, log: Path, clock: Path | None = None) -> trio.Process:
    """``python -P -X dev -W error -m trio_worker run`` configured by its environment; under
    libfaketime with the offset file ``clock``, if given."""
    level = os.environ.get("RACE_LOG_LEVEL", "warning")  # info or debug to find out why
    env = {**env_of(config), "LOG_LEVEL": level, "TZ": WORKER_TZ}
    if clock is not None:
        env.update(faked(clock))
    with log.open("ab") as out:
        return await trio.lowlevel.open_process(
            WORKER_CMD, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def kill(proc: trio.Process, *, paused: bool = False) -> None:
    proc.kill()
    if paused:
        proc.send_signal(signal.SIGCONT)
    with trio.CancelScope(shield=True):
        await proc.wait()
