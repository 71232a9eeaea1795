"""The worker as a real process: SIGTERM drains, SIGKILL loses nothing, a restart recovers."""

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

# Past the drain's deadline the process still deletes its heartbeat (at most 3 s) and exits.
EXIT_AFTER_DRAIN_S = 10.0


def drain_bound(config: Config) -> float:
    """How long a SIGTERMed worker may take to exit: the contract lets a drain take up to
    SHUTDOWN_TIMEOUT_S, whatever its load."""
    return config.shutdown_timeout_s + EXIT_AFTER_DRAIN_S


async def test_sigterm_under_load_drains_and_exits_0(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    ids = push_votes(rds, config, 150_000)
    async with worker_process(config, tmp_path / "worker.log") as proc:
        await wait_until(lambda: row_count(config) > 0, what="first rows")
        proc.send_signal(signal.SIGTERM)
        status = await exit_status(proc, within_s=drain_bound(config))
    log = (tmp_path / "worker.log").read_text()
    assert status == 0, log
    assert "stopped cleanly" in log
    assert row_count(config) > 0
    exactly_once_or_queued(rds, config, ids)
    assert inflight_keys(rds, config) == []
    assert rds.exists(f"{config.vote_queue}:worker:{config.worker_id}") == 0


async def test_sigkill_mid_batch_then_another_worker_finishes_exactly_once(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, start_worker: Any
) -> None:
    # The first worker reaches MySQL through a proxy that we black-hole, so it is certainly
    # holding a taken batch (in its in-flight list) when it is killed.
    proxy, first = await mysql_proxy(nursery, config, stall=True, batch_size=400, heartbeat_ttl_s=1)
    ids = push_votes(rds, config, 20_000)
    async with worker_process(first, tmp_path / "first.log") as proc:
        await stall_with_a_batch_in_flight(proxy, rds, config)
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
    # The dead process's sockets close, as they would without the proxy: MySQL rolls back its
    # open transaction and releases the ledger row lock.
    proxy.cut_all()
    proxy.set_blackhole(False)
    held = sum(rds.llen(k) for k in inflight_keys(rds, config))
    assert held > 0
    stored_at_kill = row_count(config)
    assert stored_at_kill < 20_000

    # A different worker takes the dead one's batches over once its heartbeat expires.
    second = await start_worker(replace(config, worker_id="second", heartbeat_ttl_s=1))
    await wait_until(lambda: row_count(config) >= 20_000, what="all 20,000 rows")
    second.stop.set()
    await wait_until(lambda: second.exit_status, what="exit")
    assert second.exit_status == [0]
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert inflight_keys(rds, config) == []


async def test_restart_with_the_same_worker_id_recovers_once_the_old_heartbeat_expires(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A restart after SIGKILL can't tell the dead process from a live twin (a paused one):
    it takes nothing until the old heartbeat expires, then finishes its own lists first."""
    proxy, cfg = await mysql_proxy(nursery, config, stall=True, batch_size=300, heartbeat_ttl_s=3)
    ids = push_votes(rds, config, 5000)
    async with worker_process(cfg, tmp_path / "a.log") as proc:
        await stall_with_a_batch_in_flight(proxy, rds, config)
        proc.kill()
        await proc.wait()
    held = {k: rds.lrange(k, 0, -1) for k in inflight_keys(rds, config)}
    assert held
    proxy.set_blackhole(False)
    async with worker_process(cfg, tmp_path / "b.log") as proc:
        await wait_until(lambda: row_count(config) >= 5000, timeout_s=30, what="all rows")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=drain_bound(cfg)) == 0
    assert "worker id in use by another live process" in (tmp_path / "b.log").read_text()
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert inflight_keys(rds, config) == []


async def test_drain_deadline_keeps_votes_in_flight_and_exits_non_zero(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, start_worker: Any
) -> None:
    proxy, cfg = await mysql_proxy(
        nursery, config, stall=True, batch_size=200, shutdown_timeout_s=1
    )
    ids = push_votes(rds, config, 3000)
    async with worker_process(cfg, tmp_path / "w.log") as proc:
        await stall_with_a_batch_in_flight(proxy, rds, config)
        proc.send_signal(signal.SIGTERM)
        status = await exit_status(proc, within_s=drain_bound(cfg))
    assert status == 1, (tmp_path / "w.log").read_text()
    assert inflight_keys(rds, config), "the votes in hand stay in Redis"
    # It deleted its heartbeat on the way out, so the next worker takes over without waiting.
    proxy.set_blackhole(False)
    other = await start_worker(replace(config, worker_id="other"))
    await wait_until(lambda: row_count(config) >= 3000, what="all rows")
    other.stop.set()
    await wait_until(lambda: other.exit_status, what="exit")
    assert voter_counts(config) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("phase", ["starting", "running"])
async def test_sigterm_repeated_until_it_exits_within_a_second_still_exits_0(
    config: Config, rds: redis.Redis, tmp_path: Path, phase: str
) -> None:
    """Every repeat within a second of the first signal is the same request (a supervisor and
    the process group both deliver it, at any moment): none may kill the process the default
    way (-SIGTERM), however far its stop has gone, even once it has stopped listening.
    ``starting``: MySQL unreachable, so the stop abandons the start and ends at once."""
    cfg = replace(config, mysql_port=1) if phase == "starting" else config
    push_votes(rds, config, 20_000)
    log = tmp_path / "worker.log"
    async with worker_process(cfg, log) as proc:
        # The service runs (its signal handler is installed) once it writes its heartbeat.
        heartbeat = f"{config.vote_queue}:worker:{config.worker_id}"
        await wait_until(lambda: rds.exists(heartbeat), what="the heartbeat")
        if phase == "running":
            await wait_until(lambda: row_count(config) > 0, what="first rows")
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(signal_window_s := 0.9):
            while proc.returncode is None:
                await trio.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
        status = await exit_status(proc, within_s=drain_bound(cfg))
    assert signal_window_s < 1.0  # every repeat was within the second the contract names
    assert status == 0, log.read_text()
