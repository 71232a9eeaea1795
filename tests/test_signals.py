"""Stop requests as supervisors send them: doubled, repeated, SIGINT or SIGTERM."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from tests.support.faults import mysql_proxy, stall_with_a_batch_in_flight
from tests.support.stores import (
    exactly_once_or_queued,
    inflight_keys,
    push_votes,
    row_count,
    voter_counts,
)
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_repeated_within_a_second_is_the_same_request(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, signum: int
) -> None:
    """systemd (KillMode=control-group) or `kill -TERM -<pgid>` deliver the stop twice within
    milliseconds: the worker must still drain, not give up on the second one."""
    proxy, cfg = await mysql_proxy(nursery, config, stall=True, batch_size=200)
    ids = push_votes(rds, config, 3000)
    log = tmp_path / "worker.log"
    async with worker_process(cfg, log) as proc:
        await stall_with_a_batch_in_flight(proxy, rds, config)
        proc.send_signal(signum)
        await trio.sleep(0.05)
        proc.send_signal(signum)
        await trio.sleep(0.3)
        proxy.set_blackhole(False)  # now the drain can commit what it holds
        status = await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5)
    text = log.read_text()
    assert status == 0, text
    assert "stopping without draining" not in text
    exactly_once_or_queued(rds, config, ids)
    assert inflight_keys(rds, config) == []


async def test_a_later_second_signal_gives_up_draining_and_loses_nothing(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, start_worker: Any
) -> None:
    proxy, cfg = await mysql_proxy(nursery, config, stall=True, batch_size=200)
    ids = push_votes(rds, config, 3000)
    log = tmp_path / "worker.log"
    async with worker_process(cfg, log) as proc:
        await stall_with_a_batch_in_flight(proxy, rds, config)
        proc.send_signal(signal.SIGTERM)
        await trio.sleep(1.5)  # past the repeat window, the drain still stuck on MySQL
        proc.send_signal(signal.SIGTERM)
        status = await exit_status(proc, within_s=10)
    assert status == 1, log.read_text()
    assert "stopping without draining" in log.read_text()
    assert inflight_keys(rds, config), "what the worker held stays in Redis for recovery"
    # It deleted its heartbeat: another worker takes its batches over at once.
    proxy.cut_all()
    proxy.set_blackhole(False)
    other = await start_worker(replace(config, worker_id="other"))
    await wait_until(lambda: row_count(config) >= len(ids), what="every vote")
    other.stop.set()
    await wait_until(lambda: other.exit_status, what="the other worker to exit")
    assert voter_counts(config) == dict.fromkeys(ids, 1)
