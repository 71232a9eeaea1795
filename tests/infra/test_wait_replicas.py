"""``REDIS_WAIT_REPLICAS``: a take counts only once a replica has it; no batch commits before.

A primary and one replica of the tests' own; the replica is stopped (SIGSTOP) to make WAIT
come back short. Also: a plain (non-Sentinel) client that meets a replica (READONLY) drops its
idle connections, so that the next ones find whatever the address now points at.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.replicated import primary_server, replica_server
from tests.support.servers import RedisServer, command, free_port, need
from tests.support.services import Services, sql_connect
from tests.support.stores import open_queue, push, stored
from tests.support.waiting import wait_for, wait_until
from tests.support.workers import tagged_env
from trio_worker.config import Config, from_env
from trio_worker.errors import RedisUnavailable


class Pair:
    def __init__(self, primary: RedisServer, replica: RedisServer) -> None:
        self.primary = primary
        self.replica = replica

    def stop_replica(self) -> None:
        assert self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.proc is not None
        self.replica.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def pair(short_dir: Path, tag: str) -> Iterator[Pair]:
    need("redis-server")
    servers: list[RedisServer] = []
    try:
        primary = primary_server(f"p{tag}", short_dir / f"p{tag}")
        primary.start_blocking()
        servers.append(primary)
        replica = replica_server(f"r{tag}", short_dir / f"r{tag}", primary)
        replica.start_blocking()
        servers.append(replica)
        wait_for(
            lambda: (
                replica.info("replication").get("master_link_status") == "up"
                and primary.replicas_online() == 1
            ),
            "the replica to sync",
        )
        yield Pair(primary, replica)
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGCONT)
            server.stop()


def config_for(server: RedisServer, tag: str, **extra: str) -> Config:
    return from_env(
        {
            **tagged_env(tag),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(server.port),
            "REDIS_WAIT_REPLICAS": "1",
            **extra,
        }
    )


async def test_a_take_returns_only_once_a_replica_has_it(pair: Pair, tag: str) -> None:
    config = config_for(pair.primary, tag)
    primary, replica = pair.primary.client(), pair.replica.client()
    try:
        async with open_queue(config) as queue:
            key = queue.keys.inflight(queue.worker_id, "1700000000000-aaaaaa-1")
            push(primary, config.vote_queue, [f"w{i}" for i in range(10)])
            taken = await queue.take(key, 100, append=False)
            assert len(taken.items) == 10
            # WAIT's promise: when the take returned, the replica had the in-flight list.
            assert replica.llen(key) == 10

            pair.stop_replica()
            key2 = queue.keys.inflight(queue.worker_id, "1700000000000-aaaaaa-2")
            push(primary, config.vote_queue, [f"x{i}" for i in range(5)])
            with pytest.raises(RedisUnavailable, match=r"reached 0 of 1 replicas"):
                await queue.take(key2, 100, append=False)
            # Not lost: moved into its in-flight list, which the caller re-reads ...
            assert primary.llen(key2) == 5
            with pytest.raises(RedisUnavailable, match=r"reached 0 of 1 replicas"):
                await queue.read(key2)
            # ... and an empty take has nothing at stake: it is not refused.
            empty = await queue.take(
                queue.keys.inflight(queue.worker_id, "1700000000000-aaaaaa-3"), 100, append=False
            )
            assert empty.items == []
            pair.resume_replica()
            assert len(await queue.read(key2)) == 5
            assert replica.llen(key2) == 5

            # The blocking take (BLMOVE) too: its move reached the replica before it returned.
            key4 = queue.keys.inflight(queue.worker_id, "1700000000000-aaaaaa-4")

            async def vote_once_blocked() -> None:
                def blocked() -> bool:
                    return any(c["cmd"] == "blmove" for c in primary.client_list())

                await wait_until(blocked, what="BLMOVE to block")
                push(primary, config.vote_queue, ["late"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(vote_once_blocked)
                waited = await queue.wait_take(key4, 100, 4.0)
            assert len(waited.items) == 1
            assert replica.llen(key4) == 1
    finally:
        primary.close()
        replica.close()


async def test_no_batch_commits_while_its_take_has_reached_no_replica(
    pair: Pair,
    tag: str,
    shared_mysql: dict[str, str],
    services: Services,
    start_worker: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_for(pair.primary, tag, **shared_mysql)
    worker = await start_worker(config)
    primary = pair.primary.client()
    sql = sql_connect(services)
    ids = [f"n{i}" for i in range(300)]
    try:
        pair.stop_replica()
        push(primary, config.vote_queue, ids)

        def refused() -> bool:
            return any("replicas within" in str(getattr(r, "error", "")) for r in caplog.records)

        await wait_until(refused, what="a take refused for want of a replica")
        # The worker has taken votes (they are in flight) and could not get them replicated:
        # nothing may be in MySQL.
        assert primary.scard(f"{config.vote_queue}:inflight") >= 1
        assert stored(sql, config.mysql_database) == {}
        pair.resume_replica()
        await wait_until(
            lambda: len(stored(sql, config.mysql_database)) == len(ids), what="all stored"
        )
        assert stored(sql, config.mysql_database) == dict.fromkeys(ids, 1)
    finally:
        pair.resume_replica()
        worker.stop.set()
        await wait_until(lambda: bool(worker.exit_status), what="the drain")
        sql.close()
        primary.close()
    assert worker.exit_status == [0]


async def test_a_replica_reply_drops_the_idle_connections(pair: Pair, tag: str) -> None:
    """READONLY means "you are on a replica now": the client drops its idle connections, so
    that the next ones connect afresh (to whatever the name points at after a failover)."""
    config = from_env(
        {**tagged_env(tag), "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(pair.primary.port)}
    )
    admin = pair.primary.client()
    try:
        async with open_queue(config) as queue:
            # Several idle connections in the pool.
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(queue.depth)
            ours = [c for c in admin.client_list() if c["cmd"] != "client|list"]
            assert len(ours) >= 2
            # A failover demotes it (its new primary need not even answer for that).
            command(admin, "REPLICAOF", "127.0.0.1", str(free_port()))
            key = queue.keys.inflight(queue.worker_id, "1700000000000-bbbbbb-1")
            with pytest.raises(RedisUnavailable, match="read only replica"):
                await queue.take(key, 10, append=False)

            def dropped() -> bool:
                return not [
                    c
                    for c in admin.client_list()
                    if c["cmd"] != "client|list" and "S" not in c["flags"] and "M" not in c["flags"]
                ]

            await wait_until(dropped, what="the idle connections to be dropped")
            command(admin, "REPLICAOF", "NO", "ONE")
            assert await queue.beat(30) == 0
    finally:
        admin.close()
