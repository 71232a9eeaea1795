"""The worker as a real process (``python -m trio_worker run``), and ways to stall it."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import trio

from tests.conftest import WORKER_CMD, env_of, wait_until
from tests.faults import FaultProxy
from tests.helpers import inflight_keys, row_count, voter_counts
from trio_worker.config import Config


@asynccontextmanager
async def worker_process(config: Config, log: Path, **env: str) -> AsyncIterator[trio.Process]:
    """``python -m trio_worker run`` with ``config``; killed on exit if still running."""
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            WORKER_CMD, env={**env_of(config), **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


def exactly_once_or_queued(rds: redis.Redis, config: Config, ids: list[str]) -> None:
    """Every vote is stored once or still waiting in the queue; none twice, none lost."""
    stored = voter_counts(config)
    assert all(n == 1 for n in stored.values()), "a vote was stored twice"
    assert set(stored) <= set(ids)
    assert len(stored) + rds.llen(config.vote_queue) == len(ids)


async def mysql_proxy(
    nursery: trio.Nursery, config: Config, *, stall: bool = False, **changes: Any
) -> tuple[FaultProxy, Config]:
    """A proxy in front of MySQL, and ``config`` changed to go through it. With ``stall``, the
    first batch's packet is the last thing through: then MySQL is black-holed (its reply and
    every later packet wait), whatever the machine's speed (``stall_with_a_batch_in_flight``)."""
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    if stall:
        proxy.blackhole_after(b"INSERT INTO vote_batches")
    return proxy, replace(config, mysql_host="127.0.0.1", mysql_port=port, **changes)


async def stall_with_a_batch_in_flight(proxy: FaultProxy, rds: redis.Redis, config: Config) -> None:
    """Wait for the stall armed by ``mysql_proxy(stall=True)``: the first batch is committed but
    its worker has not heard (it holds the batch in flight), and later packets wait."""
    await wait_until(lambda: proxy.fired["blackhole_after"] == 1, what="the first batch sent")
    await wait_until(lambda: row_count(config) > 0, what="first rows")
    await wait_until(lambda: len(inflight_keys(rds, config)) > 0, what="a batch in flight")


async def exit_status(proc: trio.Process, within_s: float) -> int | None:
    with trio.move_on_after(within_s):
        return await proc.wait()
    return None
