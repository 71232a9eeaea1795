"""Redis Cluster: with a hash-tagged ``VOTE_QUEUE`` every key of the worker lands in one slot,
the scripts stay atomic, and the blocking take's single-packet exchange goes to the node that
serves that slot, following it when the slot moves (MOVED, ASK) or its node fails over.

Clusters of the tests' own, made by ``redis-cli --cluster create`` (three primaries; three more
as their replicas for the failover). An independent check compares MySQL with what was pushed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
import trio
import trio_asyncio
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.support.commands import run_cli
from tests.support.figures import FIGURES
from tests.support.replicated import PUSH_WAIT_MS, ClusterNodes, redis_cluster
from tests.support.servers import RedisServer, command, need
from tests.support.services import Services, mysql_of, sql_connect
from tests.support.stores import new_votes_stored, queue_drained, stored, votes
from tests.support.waiting import wait_until
from tests.support.workers import tagged_env
from trio_worker.config import from_env
from trio_worker.errors import RedisUnavailable
from trio_worker.queue import Boundary, RedisQueue


@pytest.fixture
def cluster(short_dir: Path, tag: str) -> Iterator[ClusterNodes]:
    need("redis-server", "redis-cli")
    with redis_cluster(short_dir / f"cluster-{tag}", primaries=3) as nodes:
        yield nodes


@pytest.fixture
def cluster_with_replicas(short_dir: Path, tag: str) -> Iterator[ClusterNodes]:
    need("redis-server", "redis-cli")
    with redis_cluster(short_dir / f"cluster-{tag}", primaries=3, replicas=1) as nodes:
        yield nodes


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


def cluster_env(
    cluster: ClusterNodes, entry: RedisServer, tag: str, mysql: dict[str, str], **extra: str
) -> dict[str, str]:
    return {
        **tagged_env(tag),
        **mysql,
        "VOTE_QUEUE": f"{{tw{tag}}}",
        "REDIS_CLUSTER": "true",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(entry.port),
        **extra,
    }


def not_serving(cluster: ClusterNodes, slot: int) -> RedisServer:
    """A primary that does not serve ``slot``: the worker must find the one that does."""
    owner = cluster.owner(slot)
    return next(
        n for n in cluster.nodes if n is not owner and n.info("replication").get("role") == "master"
    )


def cluster_client(cluster: ClusterNodes) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster(
        host="127.0.0.1",
        port=cluster.entry.port,
        retry=Retry(NoBackoff(), 0),  # a push whose reply was lost is never sent twice
        socket_timeout=5,
    )


def test_the_queue_needs_a_hash_tag_and_a_cluster_needs_redis_cluster(
    cluster: ClusterNodes, services: Services, tag: str
) -> None:
    env = cluster_env(cluster, cluster.entry, tag, mysql_of(services))
    slot = slot_of(f"tw{tag}")
    result = run_cli(env, "check")
    assert result.returncode == 0, result.stderr
    owner = cluster.owner(slot)
    assert (
        f"ok: Redis at 127.0.0.1:{cluster.entry.port}: reachable (the queue's slot on"
        f" 127.0.0.1:{owner.port}, plain text, user 'default')"
    ) in result.stdout
    result = run_cli({**env, "VOTE_QUEUE": f"tw{tag}"}, "check")
    assert result.returncode == 2
    assert (
        "configuration error: VOTE_QUEUE: expected a hash tag with REDIS_CLUSTER=true"
        in result.stderr
    )
    result = run_cli({**env, "REDIS_CLUSTER": "false"}, "check")
    assert result.returncode == 1
    assert "a Redis Cluster node: set REDIS_CLUSTER=true" in result.stderr


@dataclass
class Producer:
    """Pushes unique votes in chunks; ``acknowledged`` are the chunks whose push returned."""

    push: Any  # (queue, ids) -> bool: acknowledged
    queue: str
    total: int
    rate_per_s: float
    chunk: int = 50
    acknowledged: list[str] = field(default_factory=list)
    unacknowledged: list[str] = field(default_factory=list)
    done: bool = False
    next_vote: int = 0  # the number of the next vote to push

    def run(self) -> None:
        start = time.monotonic()
        try:
            for n, first in enumerate(range(0, self.total, self.chunk)):
                self.next_vote = first
                ids = [f"c{i}" for i in range(first, first + self.chunk)]
                pause = start + n * self.chunk / self.rate_per_s - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                try:
                    ok = self.push(self.queue, ids)
                except (redis.RedisError, LookupError):  # no node serves the slot right now
                    ok = False
                    time.sleep(0.05)
                (self.acknowledged if ok else self.unacknowledged).extend(ids)
        finally:
            self.done = True


async def _stop(worker: Any) -> None:
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the worker's own drain")
    assert worker.exit_status == [0]


def _verify(counts: dict[str, int], producer: Producer) -> dict[str, int]:
    twice = sorted(v for v, n in counts.items() if n != 1)
    missing = sorted(set(producer.acknowledged) - set(counts))
    assert twice == [], f"stored twice: {twice[:10]}"
    assert missing == [], f"acknowledged, not stored: {missing[:10]}"
    assert set(counts) <= set(producer.acknowledged) | set(producer.unacknowledged)
    return {
        "pushed": len(producer.acknowledged) + len(producer.unacknowledged),
        "acknowledged": len(producer.acknowledged),
        "stored": len(counts),
        "duplicates": len(twice),
        "acknowledged_lost": len(missing),
    }


async def test_a_worker_drains_a_cluster_queue_with_dead_letters(
    cluster: ClusterNodes,
    services: Services,
    shared_mysql: dict[str, str],
    tag: str,
    start_worker: Any,
) -> None:
    slot = slot_of(f"tw{tag}")
    config = from_env(cluster_env(cluster, not_serving(cluster, slot), tag, shared_mysql))
    worker = await start_worker(config)
    client = cluster_client(cluster)
    sql = sql_connect(services)
    ids = [f"k{i}" for i in range(3000)]
    try:
        for start in range(0, len(ids), 500):
            client.lpush(config.vote_queue, *votes(ids[start : start + 500]))
        client.lpush(config.vote_queue, b"not json", b'{"voter_id": "x"}')
        await wait_until(
            lambda: len(stored(sql, config.mysql_database)) == len(ids), what="all stored"
        )
        await wait_until(
            lambda: client.llen(config.dead_letter_queue) == 2, what="two dead letters"
        )
        assert stored(sql, config.mysql_database) == dict.fromkeys(ids, 1)
        # Every key the worker made is in the queue's slot, on the node that serves it.
        owner = cluster.owner(slot).client()
        try:
            keys = [k.decode() for k in owner.scan_iter(match=f"{{tw{tag}}}*")]
        finally:
            owner.close()
        assert f"{config.vote_queue}:dead" in keys
        assert any(k.startswith(f"{config.vote_queue}:worker:") for k in keys)
        await _stop(worker)
    finally:
        worker.stop.set()
        client.close()
        sql.close()


def _move_slot(cluster: ClusterNodes, slot: int, source: RedisServer, target: RedisServer) -> int:
    """Move ``slot`` from ``source`` to ``target`` as ``redis-cli --cluster reshard`` does:
    IMPORTING/MIGRATING, MIGRATE the keys in small steps, then tell every node. Returns the
    number of keys moved."""
    src, dst = source.client(), target.client()
    moved = 0
    try:
        src_id, dst_id = cluster.node_id(source), cluster.node_id(target)
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := command(src, "CLUSTER", "GETKEYSINSLOT", slot, 3):
            command(src, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(0.02)  # let the worker meet the slot half-moved (ASK, TRYAGAIN)
        for node in cluster.nodes:
            client = node.client()
            try:
                command(client, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
    finally:
        src.close()
        dst.close()
    return moved


async def test_the_blocking_take_follows_its_slot_to_another_node(
    cluster: ClusterNodes, tag: str
) -> None:
    """The single-packet blocking take (SADD, CLIENT REPLY SKIP, BLMOVE, EVAL) is sent to the
    node its slot map names; after the slot moved, that node answers MOVED: the call fails
    (nothing ran there) and the next one reaches the new owner."""
    slot = slot_of(f"tw{tag}")
    source, target = cluster.owner(slot), not_serving(cluster, slot)
    config = from_env(cluster_env(cluster, cluster.entry, tag, {}))
    async with trio_asyncio.open_loop():
        queue = RedisQueue(Boundary.open(config, block_s=0.5), config, "tok")
        try:
            assert await queue.beat(30) == 0
            key = queue.keys.inflight(queue.worker_id, "1700000000000-cccccc-1")
            assert (await queue.wait_take(key, 10, 0.1)).items == []
            await trio.to_thread.run_sync(_move_slot, cluster, slot, source, target)
            client = cluster_client(cluster)
            try:
                client.lpush(config.vote_queue, *votes(["m1", "m2", "m3"]))
            finally:
                client.close()
            with pytest.raises(
                RedisUnavailable,
                match=rf"slot {slot} is served by 127.0.0.1:{target.port} \(MOVED\)",
            ):
                await queue.wait_take(key, 10, 0.1)
            assert len((await queue.wait_take(key, 10, 0.1)).items) == 3
        finally:
            await queue.boundary.aclose()


async def test_the_queue_slot_moves_to_another_node_mid_drain(
    cluster: ClusterNodes,
    services: Services,
    shared_mysql: dict[str, str],
    tag: str,
    start_worker: Any,
) -> None:
    slot = slot_of(f"tw{tag}")
    source = cluster.owner(slot)
    target = not_serving(cluster, slot)
    config = from_env(cluster_env(cluster, cluster.entry, tag, shared_mysql))
    worker = await start_worker(config)
    client = cluster_client(cluster)
    sql = sql_connect(services)

    def push(queue: str, ids: list[str]) -> bool:
        client.lpush(queue, *votes(ids))
        return True

    producer = Producer(push, config.vote_queue, total=6000, rate_per_s=1500)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, producer.run)
            await wait_until(
                lambda: len(stored(sql, config.mysql_database)) >= 1500, what="a quarter stored"
            )
            moved = await trio.to_thread.run_sync(_move_slot, cluster, slot, source, target)
            await wait_until(cluster.ok, what="the cluster to agree again")
            assert cluster.owner(slot) is target
            await wait_until(lambda: producer.done, timeout_s=60, what="the producer")
        await wait_until(
            lambda: queue_drained(client, config.vote_queue), timeout_s=60, what="the drain"
        )
        await _stop(worker)
        figures = _verify(stored(sql, config.mysql_database), producer)
        assert figures["acknowledged"] == 6000
        FIGURES.append(("cluster slot moved", {**figures, "keys_moved": moved}))
    finally:
        worker.stop.set()
        client.close()
        sql.close()


async def test_the_queue_nodes_failover_mid_drain(
    cluster_with_replicas: ClusterNodes,
    services: Services,
    shared_mysql: dict[str, str],
    tag: str,
    start_worker: Any,
) -> None:
    """The primary serving the queue's slot is SIGKILLed; the cluster promotes its replica and
    the killed node comes back as the new primary's replica. With REDIS_WAIT_REPLICAS=1 no
    batch commits meanwhile, every push a replica acknowledged is stored, none twice."""
    cluster = cluster_with_replicas
    slot = slot_of(f"tw{tag}")
    old = cluster.owner(slot)
    entry = next(n for n in cluster.nodes if n is not old)
    config = from_env(cluster_env(cluster, entry, tag, shared_mysql, REDIS_WAIT_REPLICAS="1"))
    worker = await start_worker(config)
    sql = sql_connect(services)
    owner_client: list[redis.Redis] = []

    def push(queue: str, ids: list[str]) -> bool:
        """LPUSH and WAIT 1 on one connection to the slot's current primary."""
        if not owner_client:
            owner_client.append(cluster.owner(slot).client(socket_timeout=2))
        try:
            pipe = owner_client[0].pipeline(transaction=False)
            pipe.lpush(queue, *votes(ids))
            pipe.execute_command("WAIT", 1, PUSH_WAIT_MS)  # type: ignore[no-untyped-call]
            _, replicas = pipe.execute()
        except redis.RedisError:
            owner_client.pop().close()
            raise
        return int(replicas) >= 1

    producer = Producer(push, config.vote_queue, total=6000, rate_per_s=1200)
    figures: dict[str, Any] = {}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, producer.run)
            await wait_until(
                lambda: len(stored(sql, config.mysql_database)) >= 1500, what="a quarter stored"
            )
            began = time.monotonic()
            await trio.to_thread.run_sync(old.crash)

            def promoted() -> bool:
                try:
                    return cluster.ok() and cluster.owner(slot) is not old
                except (redis.RedisError, LookupError):
                    return False

            await wait_until(promoted, what="the replica to take over the slot")
            figures["new_primary_s"] = time.monotonic() - began
            # The first chunk surely pushed after the new primary took over.
            pushed_after = producer.next_vote + 50
            # The shard's only replica is the new primary: WAIT 1 needs the old node back,
            # which rejoins as the new primary's replica.
            await trio.to_thread.run_sync(old.start_blocking)
            figures["old_node_back_s"] = time.monotonic() - began
            # New work flows again: a vote pushed to the new primary is stored.
            await new_votes_stored(sql, config.mysql_database, pushed_after)
            figures["new_votes_stored_s"] = time.monotonic() - began
            await wait_until(lambda: producer.done, timeout_s=120, what="the producer")
        client = cluster.owner(slot).client()
        try:

            def drained() -> bool:
                if client.llen(config.vote_queue):
                    return False
                return all(
                    client.llen(k) == 0 for k in client.smembers(f"{config.vote_queue}:inflight")
                )

            await wait_until(drained, timeout_s=60, what="the drain")
        finally:
            client.close()
        await _stop(worker)
        figures.update(_verify(stored(sql, config.mysql_database), producer))
        FIGURES.append(("cluster node failover", figures))
    finally:
        worker.stop.set()
        for c in owner_client:
            c.close()
        sql.close()
