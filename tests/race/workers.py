"""The race's workers: processes and the one in this Trio run, each behind its own proxies so that
a fault can target one worker at one step of the protocol."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from tests.race.settings import WORKER_CMD, WORKER_TZ
from tests.support.faults import FaultProxy
from tests.support.servers import OwnStores
from tests.support.workers import env_of
from trio_worker.config import Config


class Proxies:
    """A worker's own pair of proxies."""

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


@dataclass(eq=False)
class Twin:
    """A second process started with a live worker's id."""

    proc: trio.Process
    proxies: Proxies
    url: str
    log: Path


def worker_config(base: Config, w: Worker, proxies: Proxies | None = None) -> Config:
    p = proxies or w.proxies
    return replace(
        base,
        worker_id=w.worker_id,
        redis_host="127.0.0.1",
        redis_port=p.redis.port,
        mysql_host="127.0.0.1",
        mysql_port=p.mysql.port,
    )


async def start_process(config: Config, log: Path) -> trio.Process:
    """``python -P -X dev -W error -m trio_worker run`` configured by its environment."""
    level = os.environ.get("RACE_LOG_LEVEL", "warning")  # info or debug to find out why
    env = {**env_of(config), "LOG_LEVEL": level, "TZ": WORKER_TZ}
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
