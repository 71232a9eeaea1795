"""Batches older than the ledger can vouch for: never committed a second time.

Ledger rows go after LEDGER_RETENTION_S (30 s here, the least accepted), so a copy of a batch
older than that could commit again: a worker frozen past the retention, a Redis restored from
an old snapshot. Such a batch is dead-lettered as stale_batch instead, unless the ledger still
knows it (the pruner spares the rows of batches whose lists are still in Redis).
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import trio

from tests.support.commands import run_cli
from tests.support.faults import mysql_proxy, stall_with_a_batch_in_flight
from tests.support.stores import (
    admin_sql,
    create_schema,
    inflight_keys,
    letters,
    push_votes,
    row_count,
    sql,
    voter_counts,
)
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config

RETENTION_S = 30


def old_batch(config: Config, owner: str, age_s: float, n: int) -> str:
    """An in-flight list as a Redis snapshot restored from ``age_s`` ago would hold."""
    batch_id = f"{int((time.time() - age_s) * 1000)}-0123456789ab-1"
    return f"{config.vote_queue}:inflight:{owner}:{batch_id}"


@pytest.mark.slow
async def test_a_worker_frozen_past_the_retention_never_commits_its_batch_again(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, start_worker: Any
) -> None:
    """Regression: a worker frozen (SIGSTOP, a paused container, a suspended VM) for longer
    than the retention resumed and committed the batch another worker had taken over and
    committed, once its ledger row was pruned."""
    cfg = replace(config, ledger_retention_s=RETENTION_S, heartbeat_ttl_s=2, batch_size=100)
    create_schema(config)
    proxy, frozen_cfg = await mysql_proxy(nursery, cfg, stall=True, mysql_read_timeout_s=2)
    ids = push_votes(rds, config, 1000)
    log = tmp_path / "frozen.log"
    async with worker_process(frozen_cfg, log) as frozen:
        await stall_with_a_batch_in_flight(proxy, rds, config)  # its batch is sent, held
        frozen.send_signal(signal.SIGSTOP)
        other = await start_worker(replace(cfg, worker_id="other"))  # takes the lists over
        await wait_until(
            lambda: row_count(config) == 1000 and not inflight_keys(rds, config),
            what="the other worker to store everything",
        )
        # Past the retention, the ledger rows of finished batches go (the pruner's job; done
        # here too, so that the code before this change, which kept them a day, meets it).
        await trio.sleep(RETENTION_S + 5)
        sql(
            config,
            f"DELETE FROM vote_batches WHERE committed_at < NOW() - INTERVAL {RETENTION_S} SECOND",
        )
        proxy.set_blackhole(False)  # the frozen worker's packet reaches the server now
        frozen.send_signal(signal.SIGCONT)
        frozen.send_signal(signal.SIGTERM)
        assert await exit_status(frozen, within_s=cfg.shutdown_timeout_s + 5) == 0
        other.stop.set()
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert "stale batch" in log.read_text()
    assert letters(rds, config) == []  # its list was gone: nothing to quarantine


@pytest.mark.slow
async def test_a_batch_from_a_restored_snapshot_is_quarantined_not_stored_twice(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: Redis restored from an old snapshot hands back lists whose batches were
    committed long ago (their ledger rows pruned): recovery stored them a second time."""
    cfg = replace(config, ledger_retention_s=RETENTION_S)
    votes = [orjson.dumps({"voter_id": f"s{i}", "vote": "a"}) for i in range(3)]
    key = old_batch(config, "ghost", 2 * RETENTION_S, 3)
    rds.rpush(key, *votes)
    rds.sadd(f"{config.vote_queue}:inflight", key)
    async with worker_process(cfg, tmp_path / "worker.log") as proc:
        await wait_until(lambda: rds.llen(config.dead_letter_queue) == 3, what="the quarantine")
        assert row_count(config) == 0
        found = letters(rds, config)
        assert {(e["reason"], e["may_be_stored"]) for e in found} == {("stale_batch", True)}
        assert sorted(e["message"].encode() for e in found) == sorted(votes)
        # An operator's `requeue --all` leaves them: their votes may already be stored.
        done = run_cli(cfg, "dlq", "requeue", "--all")
        assert "requeued 0 dead letters" in done.stdout
        assert "left 3 stale_batch letters" in done.stderr
        assert rds.llen(config.dead_letter_queue) == 3
        # Asked for by reason (after checking MySQL), they go back and are stored once.
        done = run_cli(cfg, "dlq", "requeue", "--all", "--reason", "stale_batch")
        assert "requeued 3 dead letters" in done.stdout
        await wait_until(lambda: row_count(config) == 3, what="the requeued votes")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    assert voter_counts(config) == {"s0": 1, "s1": 1, "s2": 1}


@pytest.mark.slow
async def test_the_ledger_rows_of_lists_still_in_redis_are_never_pruned(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """A worker died with committed lists not yet dropped, and none ran for longer than the
    retention: the pruner must spare those lists' ledger rows, so that recovery recognises the
    batches as committed instead of storing them again (or quarantining them)."""
    db = config.mysql_database
    key = old_batch(config, "dead", 2 * 86400, 2)
    batch_id = key.rsplit(":", 1)[1]
    votes = [orjson.dumps({"voter_id": f"d{i}", "vote": "a"}) for i in range(2)]
    create_schema(config)
    admin_sql(
        config,
        # The dead worker committed them two days ago; its list is still in Redis.
        f"INSERT INTO `{db}`.votes (voter_id, vote, timestamp) VALUES"
        " ('d0', 'a', NOW()), ('d1', 'a', NOW())",
        f"INSERT INTO `{db}`.vote_batches (batch_id, votes, committed_at) VALUES"
        f" ('{batch_id}', 2, NOW() - INTERVAL 2 DAY), ('gone', 1, NOW() - INTERVAL 2 DAY),"
        " ('young', 1, NOW())",
    )
    rds.rpush(key, *votes)
    rds.sadd(f"{config.vote_queue}:inflight", key)
    # Not taken over until the test lets it: the pruner passes twice meanwhile (the first
    # publishes the ledger's horizon, the second prunes past it).
    rds.set(f"{config.vote_queue}:worker:dead", "alive", px=30_000)
    ids = push_votes(rds, config, 10)  # a batch flushes: the code before this change pruned then
    cfg = replace(config, ledger_retention_s=RETENTION_S)
    async with worker_process(cfg, tmp_path / "worker.log") as proc:
        await wait_until(
            lambda: sql(config, "SELECT batch_id FROM vote_batches WHERE batch_id = 'gone'") == [],
            what="the pruner",
        )
        spared = sql(config, f"SELECT COUNT(*) FROM vote_batches WHERE batch_id = '{batch_id}'")
        assert spared == [(1,)]
        rds.delete(f"{config.vote_queue}:worker:dead")  # the dead worker's lease ends
        await wait_until(lambda: not inflight_keys(rds, config), timeout_s=15, what="the recovery")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    assert voter_counts(config) == {"d0": 1, "d1": 1} | dict.fromkeys(ids, 1)
    assert letters(rds, config) == []
