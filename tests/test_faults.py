"""Connections cut at the worst moments, through a fault-injecting proxy: still exactly once."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio

from tests.support.faults import FaultProxy
from tests.support.http import metric, wait_metric, wait_ready
from tests.support.stores import admin_sql, inflight_keys, push_votes, row_count, sql, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config
from trio_worker.queue import scripts


async def drained(worker: Any, rds: redis.Redis, config: Config) -> None:
    """Stop the worker with its drain, and check it left nothing behind in Redis."""
    worker.stop.set()
    await wait_until(lambda: worker.exit_status, what="the worker to exit")
    assert worker.exit_status == [0]
    assert inflight_keys(rds, config) == []
    assert rds.llen(config.vote_queue) == 0


@pytest.mark.parametrize(
    ("arm", "committed_before_retry"),
    [("cut_reply_after", True), ("cut_before", False)],
    ids=["reply-lost-after-commit", "cut-before-commit"],
)
async def test_mysql_connection_cut_at_commit(
    config: Config,
    rds: redis.Redis,
    start_worker: Any,
    nursery: trio.Nursery,
    arm: str,
    committed_before_retry: bool,
) -> None:
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    worker = await start_worker(config, mysql_host="127.0.0.1", mysql_port=port, batch_size=500)
    await wait_ready(worker.url)  # the schema is in place: the cuts hit batch commits only
    for _ in range(3):
        getattr(proxy, arm)(b"COMMIT")
    ids = push_votes(rds, config, 3000)
    await wait_until(lambda: row_count(config) >= 3000, what="3000 rows")
    assert await metric(worker.url, "database_errors_total") >= 3
    # Sizes are observed when a flusher hears its COMMIT's reply, a moment after the rows show.
    await wait_metric(worker.url, "vote_batch_size_sum", 3000)
    committed = await metric(worker.url, "vote_batch_size_count")
    await drained(worker, rds, config)
    assert proxy.pending == 0
    assert proxy.fired["cut_reply" if committed_before_retry else "cut_before"] == 3
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    # The flusher observes each batch's size once, when it is committed (after any retries), and
    # each committed batch has exactly one ledger row, whose vote count agrees with the table.
    batches = sql(config, "SELECT COUNT(*), SUM(votes) FROM vote_batches")[0]
    assert (int(batches[0]), int(batches[1])) == (committed, 3000)
    assert committed >= 3000 / 500


async def test_redis_reply_lost_after_the_take_script_ran(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    """The votes were moved into the in-flight list but the worker never heard: re-read it."""
    proxy = FaultProxy(config.redis_host, config.redis_port)
    port = await nursery.start(proxy.serve)
    ids = push_votes(rds, config, 2000)
    for _ in range(2):
        proxy.cut_reply_after(b"RPOP")  # the take script's argument: its reply is lost
    worker = await start_worker(config, redis_host="127.0.0.1", redis_port=port, batch_size=300)
    await wait_until(lambda: row_count(config) >= 2000, what="2000 rows")
    assert await metric(worker.url, "redis_errors_total") >= 2
    await drained(worker, rds, config)
    assert proxy.fired["cut_reply"] == 2
    assert voter_counts(config) == dict.fromkeys(ids, 1)


async def test_stores_cut_off_and_back(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    """MySQL black-holed mid-stream: /ready goes 503, nothing exits, all lands once."""
    mysql = FaultProxy(config.mysql_host, config.mysql_port)
    mport = await nursery.start(mysql.serve)
    ids = push_votes(rds, config, 2000)
    worker = await start_worker(config, mysql_host="127.0.0.1", mysql_port=mport, batch_size=200)
    await wait_until(lambda: row_count(config) > 0, what="first rows")
    mysql.set_blackhole(True)
    mysql.cut_all()
    ids += push_votes(rds, config, 2000, prefix="late")
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(200):
            if (await client.get(worker.url + "/ready")).status_code == 503:
                break
            await trio.sleep(0.05)
        assert (await client.get(worker.url + "/ready")).status_code == 503
    mysql.set_blackhole(False)
    await wait_until(lambda: row_count(config) >= 4000, what="4000 rows")
    assert worker.exit_status == []
    await drained(worker, rds, config)
    assert voter_counts(config) == dict.fromkeys(ids, 1)


@pytest.mark.slow
async def test_a_redis_reply_that_never_comes_is_given_up_on_at_the_deadline(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    """The take script ran, then its connection froze (a dead host sends no FIN, and no reply):
    the call gives up at its deadline, not never, and the batch is re-read from its list."""
    proxy = FaultProxy(config.redis_host, config.redis_port)
    port = await nursery.start(proxy.serve)
    ids = push_votes(rds, config, 2000)
    proxy.hold_reply_after(b"RPOP")  # the take script's argument
    started = time.monotonic()
    worker = await start_worker(config, redis_host="127.0.0.1", redis_port=port, batch_size=200)
    await wait_until(lambda: row_count(config) >= 2000, what="2000 rows")
    # Given up after the deadline (0.5 s of BLMOVE + 5 s), not a kernel timeout of minutes.
    assert 5 < time.monotonic() - started < 20
    assert proxy.fired["hold_reply"] == 1
    assert await metric(worker.url, "redis_errors_total") >= 1
    await drained(worker, rds, config)
    proxy.release()
    assert voter_counts(config) == dict.fromkeys(ids, 1)


@pytest.mark.slow
async def test_claim_whose_reply_is_lost_is_still_finished(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    """Regression: a takeover (RENAME to our key) whose reply was lost must not strand the batch.

    The claim script ran, so the dead worker's list now carries our name; our later recovery
    passes skipped our own keys, so the votes stayed in flight until this worker restarted.
    """
    claim_sha = scripts.CLAIM.sha.encode()
    proxy = FaultProxy(config.redis_host, config.redis_port)
    port = await nursery.start(proxy.serve)
    worker = await start_worker(config, redis_host="127.0.0.1", redis_port=port)
    registry = f"{config.vote_queue}:inflight"
    # Batch ids carry their start time: a fresh one, or the batch would be too old to commit.
    now_ms = int(time.time() * 1000)
    # The first pass after start looks at our own keys anyway, so the cut claim must come in a
    # later pass. A first dead worker's list, finished before the second one appears, proves
    # that a pass has run (a sleep would prove nothing on a slow machine, and pass the test).
    first = f"{config.vote_queue}:inflight:ghost0:{now_ms}-abcdef-1"
    rds.rpush(first, b'{"voter_id": "g-first", "vote": "a"}')
    rds.sadd(registry, first)
    await wait_ready(worker.url)
    await wait_until(
        lambda: row_count(config) == 1 and not rds.exists(first), what="a first recovery pass"
    )
    dead = f"{config.vote_queue}:inflight:ghost:{now_ms}-abcdef-2"
    votes = [f'{{"voter_id": "g{i}", "vote": "a"}}'.encode() for i in range(50)]
    proxy.cut_reply_after(claim_sha)
    rds.rpush(dead, *votes)
    rds.sadd(registry, dead)
    await wait_until(lambda: proxy.fired["cut_reply"] == 1, what="the claim's reply to be cut")
    await wait_until(lambda: row_count(config) >= 51, timeout_s=10, what="the claimed votes")
    await drained(worker, rds, config)
    assert voter_counts(config) == {"g-first": 1, **{f"g{i}": 1 for i in range(50)}}


@pytest.mark.slow
@pytest.mark.parametrize(
    "step",
    [b"AUTOCOMMIT", b"SET SESSION"],
    ids=["driver-set-up", "session-settings"],
)
async def test_a_connection_frozen_while_it_is_set_up_has_its_session_killed(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery, step: bytes
) -> None:
    """A store that stops answering right after the login (the driver's own ``SET
    AUTOCOMMIT``, or the worker's session settings), without closing the connection: the
    worker must give up within MYSQL_READ_TIMEOUT_S, go on, and KILL the abandoned session,
    not leave it to the server's wait_timeout (the contract: "without waiting for the server
    to time out a session it abandoned"), whatever step it was frozen at."""
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    cfg = replace(config, mysql_host="127.0.0.1", mysql_port=port, mysql_read_timeout_s=2)
    admin_sql(config, f"CREATE DATABASE `{config.mysql_database}`")  # for the process list
    proxy.hold_reply_after(step)  # the first connection freezes at that step
    ids = push_votes(rds, config, 500)
    async with worker_process(cfg, tmp_path / "worker.log") as proc:
        with trio.fail_after(20):
            await proxy.holding.wait()
        (frozen_port,) = proxy.held_ports()
        session = session_at(config, frozen_port)
        assert session is not None
        await wait_until(lambda: row_count(config) == 500, what="the worker going on")
        await wait_until(
            lambda: session_at(config, frozen_port) is None,
            timeout_s=cfg.mysql_read_timeout_s + 7,
            what=f"the frozen session {session} to be killed",
        )
        assert proxy.held_ports() == [frozen_port]  # still frozen: the worker's KILL ended it
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 10) == 0
    proxy.release()
    assert voter_counts(config) == dict.fromkeys(ids, 1)


def session_at(config: Config, port: int) -> int | None:
    """The server's session whose client socket is the proxy's ``127.0.0.1:<port>``."""
    rows = sql(
        config, f"SELECT ID FROM information_schema.PROCESSLIST WHERE HOST = '127.0.0.1:{port}'"
    )
    return int(rows[0][0]) if rows else None
