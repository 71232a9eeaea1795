"""MySQL's long tail: a host that stops answering, a packet limit, refusals of every kind."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis
import trio

from tests.support.faults import FaultProxy
from tests.support.http import get
from tests.support.servers import free_port, own_mariadb
from tests.support.stores import (
    admin_sql,
    create_schema,
    inflight_keys,
    push_raw,
    push_votes,
    row_count,
    sql,
    voter_counts,
)
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config
from trio_worker.mysql.schema import VOTES_TABLE

pytestmark = pytest.mark.slow


def sessions(config: Config) -> set[int]:
    rows = sql(
        config,
        "SELECT ID FROM information_schema.PROCESSLIST"
        f" WHERE DB = '{config.mysql_database}' AND ID <> CONNECTION_ID()",
    )
    return {int(r[0]) for r in rows}


async def test_a_frozen_connection_is_given_up_on_and_its_session_killed(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Regression: a MySQL host that stops answering without a FIN left a flusher waiting for
    TCP keepalive (about 2 hours) with its batch, its insert turn and its list in Redis."""
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    cfg = replace(
        config, mysql_host="127.0.0.1", mysql_port=port, mysql_read_timeout_s=2, batch_size=100
    )
    log = tmp_path / "worker.log"
    async with worker_process(cfg, log) as proc:
        push_votes(rds, config, 100, prefix="warm")
        await wait_until(lambda: row_count(config) == 100, what="the first batch")
        before = sessions(config)
        proxy.hold_reply_after(b"INSERT INTO vote_batches")  # forwarded; the reply never comes
        ids = push_votes(rds, config, 2000)
        with trio.fail_after(10):
            await proxy.holding.wait()
        # Within the read timeout (and backoff) the batch is finished on a new connection,
        # while the old one stays frozen, open, in the proxy.
        await wait_until(
            lambda: row_count(config) == 2100 and not inflight_keys(rds, config),
            timeout_s=20,
            what="every batch finished past the frozen connection",
        )
        await wait_until(lambda: "killed the abandoned session" in log.read_text(), what="KILL")
        assert len(before - sessions(config)) == 1  # the frozen session is gone on the server
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    proxy.release()
    counts = voter_counts(config)
    assert all(counts[i] == 1 for i in ids)


async def test_batches_are_sized_under_the_servers_max_allowed_packet(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: a batch larger than max_allowed_packet was sent as one packet; the server
    refused it (1153) and dropped the connection, and it was resent forever."""
    with own_mariadb(tmp_path / "mysql", "--max-allowed-packet=65536") as server:
        cfg = replace(config, mysql_host="127.0.0.1", mysql_port=server.port, mysql_user="root")
        cfg = replace(cfg, mysql_password="", http_port=free_port())
        long = "x" * 240
        ids = push_votes(rds, config, 3000, prefix=long)  # batches of ~270 KB
        async with worker_process(cfg, tmp_path / "worker.log") as proc:
            await wait_until(lambda: row_count(cfg) >= 3000, timeout_s=30, what="every vote")
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
        assert voter_counts(cfg) == dict.fromkeys(ids, 1)


async def test_a_row_failing_a_check_constraint_is_dead_lettered(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: server errors numbered 3000 and up (3819 CHECK constraint on MySQL 8, 4025
    on MariaDB) counted as connection errors: the batch was retried forever."""
    checked = VOTES_TABLE.replace(
        "INDEX idx_vote", "CONSTRAINT vote_ok CHECK (vote <> 'bad'), INDEX idx_vote"
    )
    create_schema(config, votes=checked)
    bad = b'{"voter_id": "b", "vote": "bad"}'
    push_raw(
        rds, config, b'{"voter_id": "g1", "vote": "a"}', bad, b'{"voter_id": "g2", "vote": "b"}'
    )
    async with worker_process(config, tmp_path / "worker.log") as proc:
        await wait_until(lambda: rds.llen(config.dead_letter_queue) == 1, what="the dead letter")
        await wait_until(lambda: row_count(config) == 2, what="the two other votes")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=config.shutdown_timeout_s + 5) == 0
    letter = orjson.loads(rds.lindex(config.dead_letter_queue, 0) or b"")
    assert (letter["reason"], letter["message"].encode()) == ("rejected_by_database", bad)


async def test_a_refusal_of_the_schema_or_account_kind_keeps_the_worker_alive_and_503(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: a table dropped under an account without CREATE made the reconnect's
    CREATE TABLE fail (1142) outside the retry loop: the service crashed into a restart loop."""
    user = f"lim_{config.vote_queue[1:9]}"
    db = config.mysql_database
    create_schema(
        config,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* TO '{user}'@'%'",
    )
    cfg = replace(config, mysql_user=user, mysql_password="pw", http_port=free_port())
    url = f"http://127.0.0.1:{cfg.http_port}"
    try:
        ids = push_votes(rds, config, 200)
        async with worker_process(cfg, tmp_path / "worker.log") as proc:
            await wait_until(lambda: row_count(config) == 200, what="the first votes")
            admin_sql(config, f"DROP TABLE `{db}`.votes")
            ids += push_votes(rds, config, 200, prefix="later")
            with trio.fail_after(20):
                while (await get(url + "/ready")).status_code != 503:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await trio.sleep(2)  # several retries
            assert proc.returncode is None, "the worker must not exit"
            assert (await get(url + "/live")).status_code == 200
            admin_sql(config, f"CREATE TABLE `{db}`.votes {VOTES_TABLE.split('votes', 1)[1]}")
            await wait_until(lambda: row_count(config) == 200, timeout_s=20, what="the later votes")
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
        # The outage is logged once, naming the refusal, with the server's error code.
        assert "(error 1142)" in (tmp_path / "worker.log").read_text()
        assert voter_counts(config) == dict.fromkeys(ids[200:], 1)
    finally:
        admin_sql(config, f"DROP USER IF EXISTS '{user}'@'%'")
