"""Redis Sentinel: the worker finds the primary, follows a failover mid-drain without a
restart, and with ``REDIS_WAIT_REPLICAS=1`` stores every vote whose push a replica acknowledged
(``WAIT``), none twice.

A primary, its replica and three Sentinels of the tests' own (quorum 2, a primary is down after
1 s). With one replica, ``WAIT 1`` means "every replica": whichever is promoted has every
acknowledged write, which is what makes "none lost, none twice" a guarantee rather than a
likelihood (with more replicas than ``WAIT`` asks for, it holds only if Sentinel promotes one
that had the write; see docs/reliability.md). A producer pushes unique votes at a steady rate,
each chunk followed by ``WAIT 1`` on its connection: a chunk is *acknowledged* when the replica
had it. Once a third of the votes are stored, the primary is SIGKILLed and, once the replica
has taken over, restarted as its replica (``WAIT 1`` needs one);
or, in the graceful case, ``SENTINEL FAILOVER`` demotes it while it runs (the worker then meets
READONLY). The producer goes on through the outage, then the queue drains, the worker stops on
its own drain, and an independent check compares MySQL with what was pushed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.commands import run_cli
from tests.support.figures import FIGURES
from tests.support.replicated import PUSH_WAIT_MS, SentinelGroup, sentinel_group
from tests.support.servers import command, need
from tests.support.services import Services, sql_connect
from tests.support.stores import new_votes_stored, queue_drained, stored, votes
from tests.support.waiting import wait_until
from tests.support.workers import tagged_env
from trio_worker.config import from_env

TOTAL = 9000
CHUNK = 50
RATE_PER_S = 1500  # pushes spread over about six seconds: the failover lands mid-stream


@pytest.fixture
def group(short_dir: Path, tag: str) -> Iterator[SentinelGroup]:
    need("redis-server")
    with sentinel_group(short_dir / f"sentinel-{tag}", replicas=1, sentinels=3) as found:
        yield found


@dataclass
class Producer:
    """Pushes ``TOTAL`` unique votes in chunks, each chunk LPUSH + WAIT 1 on one connection."""

    group: SentinelGroup
    queue: str
    acknowledged: list[str] = field(default_factory=list)
    unacknowledged: list[str] = field(default_factory=list)  # failed, or no replica had it
    done: bool = False
    next_vote: int = 0  # the number of the next vote to push

    def run(self) -> None:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [("127.0.0.1", s.port) for s in self.group.sentinels],
            sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),  # a push whose reply was lost is never sent twice
        )
        client = sentinel.master_for(self.group.master)  # type: ignore[no-untyped-call]
        start = time.monotonic()
        try:
            for n, first in enumerate(range(0, TOTAL, CHUNK)):
                self.next_vote = first
                ids = [f"s{i}" for i in range(first, first + CHUNK)]
                pause = start + n * CHUNK / RATE_PER_S - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                try:
                    pipe = client.pipeline(transaction=False)
                    pipe.lpush(self.queue, *votes(ids))
                    pipe.execute_command("WAIT", 1, PUSH_WAIT_MS)
                    _, replicas = pipe.execute()
                except redis.RedisError:
                    self.unacknowledged += ids
                    time.sleep(0.05)
                    continue
                (self.acknowledged if int(replicas) >= 1 else self.unacknowledged).extend(ids)
                if int(replicas) < 1:  # as the worker does: maybe a primary left behind
                    client.connection_pool.disconnect()
        finally:
            client.close()
            for s in sentinel.sentinels:
                s.close()
            self.done = True


def _primary_client(group: SentinelGroup) -> redis.Redis | None:
    primary = group.current_primary()
    return None if primary is None else primary.client()


def _drained(group: SentinelGroup, queue: str) -> bool:
    """The queue is empty and no in-flight list holds a vote, on the current primary."""
    client = _primary_client(group)
    if client is None:
        return False
    try:
        return queue_drained(client, queue)
    finally:
        client.close()


def test_check_names_the_primary_sentinel_chose(
    group: SentinelGroup, services: Services, tag: str
) -> None:
    env = {
        **tagged_env(tag),
        "REDIS_SENTINELS": group.addresses,
        "REDIS_WAIT_REPLICAS": "1",
        "MYSQL_HOST": services.mysql_host,
        "MYSQL_PORT": str(services.mysql_port),
        "MYSQL_USER": services.mysql_user,
        "MYSQL_PASSWORD": services.mysql_password,
    }
    result = run_cli(env, "check")
    assert result.returncode == 0, result.stderr
    assert (
        f"ok: Redis at mymaster via Sentinel {group.addresses}: reachable (primary"
        f" 127.0.0.1:{group.primary.port}, plain text, user 'default', 1 replica connected,"
        " REDIS_WAIT_REPLICAS=1)"
    ) in result.stdout
    result = run_cli({**env, "REDIS_WAIT_REPLICAS": "2"}, "check")
    assert result.returncode == 1
    assert "1 replica connected, REDIS_WAIT_REPLICAS=2): too few replicas" in result.stderr


def test_check_logs_in_to_sentinels_that_want_a_password(
    short_dir: Path, services: Services, tag: str, tmp_path: Path
) -> None:
    need("redis-server")
    password = f"sentinel-pw-{tag}"
    secret = tmp_path / "sentinel-password"
    secret.write_text(password + "\n")
    env = {
        **tagged_env(tag),
        "MYSQL_HOST": services.mysql_host,
        "MYSQL_PORT": str(services.mysql_port),
        "MYSQL_USER": services.mysql_user,
        "MYSQL_PASSWORD": services.mysql_password,
    }
    with sentinel_group(
        short_dir / f"sentinel-pw-{tag}", replicas=1, sentinel_password=password
    ) as group:
        env["REDIS_SENTINELS"] = group.addresses
        result = run_cli({**env, "REDIS_SENTINEL_PASSWORD_FILE": str(secret)}, "check")
        assert result.returncode == 0, result.stderr
        assert f"reachable (primary 127.0.0.1:{group.primary.port}," in result.stdout
        refused = run_cli(env, "check")
    assert refused.returncode == 1
    assert (
        "no Sentinel named a primary for 'mymaster': 3 did not answer (unreachable, or refusing"
        " REDIS_SENTINEL_PASSWORD)"
    ) in refused.stderr
    assert password not in result.stdout + result.stderr + refused.stdout + refused.stderr


@pytest.mark.parametrize("how", ["sigkill", "sentinel-failover"])
async def test_a_failover_mid_drain_stores_every_acknowledged_vote_once(
    group: SentinelGroup,
    services: Services,
    shared_mysql: dict[str, str],
    tag: str,
    how: str,
    start_worker: Any,
) -> None:
    env = {
        **tagged_env(tag),
        **shared_mysql,
        "REDIS_SENTINELS": group.addresses,
        "REDIS_SENTINEL_MASTER": group.master,
        "REDIS_WAIT_REPLICAS": "1",
    }
    config = from_env(env)
    worker = await start_worker(config)
    sql = sql_connect(services)
    producer = Producer(group, config.vote_queue)
    old = group.primary
    figures: dict[str, Any] = {"how": how}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, producer.run)
            await wait_until(
                lambda: len(stored(sql, config.mysql_database)) >= TOTAL // 3,
                what="a third of the votes stored",
            )
            began = time.monotonic()
            if how == "sigkill":
                await trio.to_thread.run_sync(old.crash)
            else:
                sentinel = group.sentinels[0].client()
                try:
                    command(sentinel, "SENTINEL", "FAILOVER", group.master)
                finally:
                    sentinel.close()
            await wait_until(
                lambda: (p := group.current_primary()) is not None and p is not old,
                what="the Sentinels to agree on a new primary",
            )
            figures["new_primary_s"] = time.monotonic() - began
            # The first chunk surely pushed after the new primary took over.
            pushed_after = producer.next_vote + 50
            if how == "sigkill":
                # The new primary has no replica left: WAIT 1 needs the old node back, which
                # its supervisor restarts as the new primary's replica.
                new = group.current_primary()
                assert new is not None
                old.extra += ["--replicaof", "127.0.0.1", str(new.port)]
                await trio.to_thread.run_sync(old.start_blocking)
                await wait_until(
                    lambda: group.in_sync(group.current_primary() or old, 1),
                    what="the old primary to rejoin as a replica",
                )
                figures["replica_back_s"] = time.monotonic() - began
            # New work flows again: a vote pushed to the new primary is stored.
            await new_votes_stored(sql, config.mysql_database, pushed_after)
            figures["new_votes_stored_s"] = time.monotonic() - began
            await wait_until(lambda: producer.done, timeout_s=120, what="the producer")
        await wait_until(lambda: _drained(group, config.vote_queue), timeout_s=60, what="the drain")
        worker.stop.set()
        await wait_until(lambda: bool(worker.exit_status), what="the worker's own drain")
        assert worker.exit_status == [0]

        counts = stored(sql, config.mysql_database)
        pushed = set(producer.acknowledged) | set(producer.unacknowledged)
        twice = sorted(v for v, n in counts.items() if n != 1)
        missing = sorted(set(producer.acknowledged) - set(counts))
        assert twice == [], f"stored twice: {twice[:10]}"
        assert missing == [], f"acknowledged, not stored: {missing[:10]}"
        assert set(counts) <= pushed
        figures.update(
            pushed=len(pushed),
            acknowledged=len(producer.acknowledged),
            unacknowledged=len(producer.unacknowledged),
            stored=len(counts),
            unacknowledged_stored=len(set(producer.unacknowledged) & set(counts)),
            duplicates=len(twice),
            acknowledged_lost=len(missing),
        )
        FIGURES.append(("sentinel failover", figures))
    finally:
        worker.stop.set()
        sql.close()
