"""The long tail: what an ordinary fleet does to a worker over months, each path once.

- a MySQL session abandoned, then another while reconnecting: both killed, their locks freed;
- a server that doesn't say when it booted (a proxy answering ``SHOW GLOBAL STATUS``);
- a take that lands after its batch was re-read (sent on a connection given up on);
- the heartbeat key vanishing mid-drain (a Redis restarted without its data);
- a burst of ``/health`` requests mid-drain.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
import trio_asyncio

from tests.support.faults import FaultProxy
from tests.support.servers import free_port
from tests.support.stores import (
    admin_sql,
    inflight_keys,
    mysql_connect,
    push_votes,
    row_count,
    voter_counts,
)
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql import connection as mysql_connection
from trio_worker.mysql.connection import Connection
from trio_worker.queue import scripts


def _alive(config: Config, session: int) -> bool:
    with mysql_connect(config, in_database=False) as admin, admin.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {session}")
        return bool(cur.fetchone()[0])  # type: ignore[index]


async def test_every_abandoned_session_is_killed_however_many_reconnects_fail(
    config: Config, nursery: trio.Nursery
) -> None:
    """A read timeout abandons session A (which holds a row lock); the reconnect then fails
    after the server's greeting, abandoning B. Before, B's record replaced A's: A kept its lock
    until the server's wait_timeout (10 minutes of 1205 errors for whoever needed the row)."""
    admin_sql(
        config,
        f"CREATE DATABASE `{config.mysql_database}`",
        f"CREATE TABLE `{config.mysql_database}`.t (k INT PRIMARY KEY)",
    )
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    cfg = replace(config, mysql_host="127.0.0.1", mysql_port=port, mysql_read_timeout_s=1)
    async with trio_asyncio.open_loop():
        conn = Connection(cfg)
        await conn.open()
        a = conn.server.session_id if conn.server else 0
        await conn.execute("INSERT INTO t VALUES (1)")  # A's transaction holds the row's lock
        # A frozen (a dead host: not even a close passes), then B, logged in but frozen while the
        # driver sets it up. Both stay open on the server.
        proxy.hold_reply_after(b"SELECT 1")
        with pytest.raises(MySQLUnavailable, match="no answer"):
            await conn.execute("SELECT 1")
        proxy.hold_reply_after(b"AUTOCOMMIT")
        with pytest.raises(MySQLUnavailable):
            await conn.open()
        sessions = [_session_at(config, port) for port in proxy.held_ports()]
        assert a in sessions
        (b,) = [s for s in sessions if s != a]
        assert b is not None
        await conn.open()  # the server answers again: both are killed
        await wait_until(lambda: not _alive(config, a) and not _alive(config, b), timeout_s=5)
        await conn.execute("INSERT INTO t VALUES (1)")  # A's lock is gone with it
        await conn.commit()
        conn.close()
    proxy.release()


def _session_at(config: Config, port: int) -> int | None:
    with mysql_connect(config, in_database=False) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE HOST = %s", (f"127.0.0.1:{port}",)
        )
        row = cur.fetchone()
    return int(row[0]) if row else None


async def test_a_server_that_does_not_say_when_it_booted_is_still_served(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy in front of MySQL may answer SHOW GLOBAL STATUS itself, with no row: that was an
    IndexError at every connect (a crash loop). The real server, asked for a status it lacks,
    gives the same empty answer."""
    monkeypatch.setattr(
        mysql_connection, "_HELLO", mysql_connection._HELLO.replace("'Uptime'", "'No_such'")
    )
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await conn.open(database=False)
        assert conn.server is not None
        assert conn.server.booted_at is None
        assert conn.server.same_run(conn.server)
        conn.abandon()
        await conn.open(database=False)  # the abandoned session is still found and killed
        conn.close()


async def test_a_take_landing_after_its_batch_was_re_read_is_not_lost(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    """A take sent on a connection the worker gave up on (no reply in time) can still reach
    Redis after the worker re-read the batch's list on another connection. Before, it appended
    to that very list, which the batch's finish then deleted: those votes were never stored.
    Now the re-read moves the list to a fresh batch id first; the late take finds no list and
    moves nothing."""
    proxy = FaultProxy(config.redis_host, config.redis_port)
    port = await nursery.start(proxy.serve)
    cfg = replace(config, redis_host="127.0.0.1", redis_port=port, batch_size=2000)
    proxy.delay_before(b"$6\r\nappend")  # the second take of a batch (the first moves 1,000)
    proxy.deliver_delayed_after(scripts.READ.sha.encode())  # it lands right after the re-read
    ids = push_votes(rds, config, 3000)
    worker = await start_worker(cfg)
    with trio.fail_after(20):
        await proxy.delaying.wait()
    await wait_until(lambda: proxy.fired["delay_before"] == 1, what="the late take")
    await wait_until(lambda: row_count(config) >= 3000, timeout_s=30, what="every vote")
    worker.stop.set()
    await wait_until(lambda: worker.exit_status, what="the drain")
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert inflight_keys(rds, config) == []


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_a_vanished_heartbeat_is_set_again_without_a_busy_loop(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """A Redis restarted without its data loses the heartbeat key: every take then found its
    lease gone and warned, in a loop with no pause (638-2,854 warnings per deletion, 0.76 of a
    core while it lasted). Now the take hands the lease back to the heartbeat, which sets the
    key again at its next beat."""
    # Small batches: the queue stays deep while the key is gone, so takes keep coming.
    cfg = replace(config, http_port=free_port(), batch_size=10)
    log = tmp_path / "worker.log"
    ids: list[str] = []
    async with worker_process(cfg, log) as proc:
        beat = f"{cfg.vote_queue}:worker:{cfg.worker_id}"
        await wait_until(lambda: rds.exists(beat) == 1, what="the heartbeat")
        for n in range(3):
            ids += push_votes(rds, config, 20_000, prefix=f"d{n}-")
            stored = row_count(config)
            await wait_until(lambda: row_count(config) > stored + 500, what="the drain under way")  # noqa: B023
            warnings_before = log.read_text().count("warning")
            cpu_before, started = _cpu_s(proc.pid), time.monotonic()
            rds.delete(beat)
            await wait_until(lambda: rds.exists(beat) == 1, timeout_s=5, what="the beat again")
            await trio.sleep(2)
            warnings = log.read_text().count("warning") - warnings_before
            cpu_share = (_cpu_s(proc.pid) - cpu_before) / (time.monotonic() - started)
            assert warnings < 20, f"{warnings} warnings after deletion {n + 1}"
            total = len(ids)
            await wait_until(lambda: row_count(config) == total, timeout_s=60, what="drain")  # noqa: B023
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    print(f"\nlast deletion: {warnings} warnings, {cpu_share:.2f} of a core")


async def test_a_burst_of_health_checks_never_takes_the_pipelines_connections(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """/health's Redis check used the pipeline's pool (8 connections, one kept for scripts):
    200 concurrent checks took them all, and takes and heartbeats failed ("Too many
    connections"). Now the probes have a client of their own and run one at a time."""
    cfg = replace(config, http_port=free_port(), batch_size=200)
    url = f"http://127.0.0.1:{cfg.http_port}"
    log = tmp_path / "worker.log"
    async with worker_process(cfg, log) as proc:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=300)) as http:
            await wait_until(lambda: _answers(url + "/ready"), what="the worker ready")
            ids = push_votes(rds, config, 30_000)
            await wait_until(lambda: row_count(config) > 0, what="a first batch")
            statuses: list[int] = []

            async def check() -> None:
                statuses.append((await http.get(url + "/health")).status_code)

            for _ in range(5):
                async with trio.open_nursery() as burst:
                    for _ in range(200):
                        burst.start_soon(check)
                assert (await http.get(url + "/ready")).status_code == 200
        await wait_until(lambda: row_count(config) == len(ids), timeout_s=60, what="drain")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    text = log.read_text()
    assert "Too many connections" not in text
    assert set(statuses) == {200}
    assert voter_counts(config) == dict.fromkeys(ids, 1)
