"""The Redis scripts and commands of ``RedisQueue``, one at a time, against real Redis."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
import redis
import trio

from tests.support.stores import new_queue, open_queue
from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.queue import (
    PREVIEW_BYTES,
    LeaseLost,
    LostOwnership,
    RedisQueue,
    Taken,
    TooLarge,
)


def batch_key(queue: RedisQueue, n: int) -> str:
    return queue.keys.inflight(queue.worker_id, f"1700000000000-abcdef-{n}")


async def test_wait_take_keeps_the_list_it_moved_into_registered(
    config: Config, rds: redis.Redis
) -> None:
    """Regression: a takeover pass while BLMOVE blocks must not hide the vote it moves.

    Another worker's takeover pass, finding our freshly registered list empty (we were paused
    past our TTL), unregisters it. BLMOVE then moves a vote into that unregistered list: had we
    died before finishing it, no recovery would ever have found it.
    """
    async with open_queue(config) as queue:
        key = batch_key(queue, 1)

        async def takeover_pass_then_a_vote() -> None:
            while not rds.sismember(queue.keys.registry, key):  # noqa: ASYNC110 (Redis state)
                await trio.sleep(0.005)
            rds.srem(queue.keys.registry, key)  # what CLAIM does to an empty list
            rds.lpush(config.vote_queue, b"v")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(takeover_pass_then_a_vote)
            taken = await queue.wait_take(key, 10, 2.0)
    assert taken == Taken([b"v"], 0, False)
    assert rds.lrange(key, 0, -1) == [b"v"]
    assert rds.sismember(queue.keys.registry, key)


async def test_wait_take_on_an_idle_queue_leaves_nothing_behind(
    config: Config, rds: redis.Redis
) -> None:
    async with open_queue(config) as queue:
        key = batch_key(queue, 1)
        with trio.fail_after(5):
            assert await queue.wait_take(key, 10, 0.2) == Taken([], 0, False)
    assert not rds.exists(key)
    assert not rds.sismember(queue.keys.registry, key)


async def test_read_registers_the_list_again(config: Config, rds: redis.Redis) -> None:
    """Regression: a re-read after a lost reply must register the list again (a takeover pass
    may have unregistered it while we were paused), or a crash would leave it unfound."""
    async with open_queue(config) as queue:
        key = batch_key(queue, 1)
        rds.rpush(key, b"v1", b"v2")
        assert await queue.read(key) == [b"v1", b"v2"]
        assert rds.sismember(queue.keys.registry, key)
        rds.delete(key)
        assert await queue.read(key) == []
        assert not rds.sismember(queue.keys.registry, key)


async def test_take_drops_the_committed_lists_it_is_given(config: Config, rds: redis.Redis) -> None:
    """The take that follows a batch's commit drops its list: one round trip, not two."""
    async with open_queue(config) as queue:
        keys = queue.keys
        old = [batch_key(queue, i) for i in (1, 2)]
        for key in old:
            rds.rpush(key, b"committed")
            rds.sadd(keys.registry, key)
        rds.lpush(config.vote_queue, b"v1", b"v2")
        new = batch_key(queue, 3)
        assert await queue.take(new, 10, append=False, drop=old) == Taken([b"v1", b"v2"], 0, False)
        # Dropped even when the append finds its own list taken over, and again harmlessly.
        rds.rpush(old[0], b"again")
        with pytest.raises(LostOwnership):
            await queue.take(batch_key(queue, 4), 10, append=True, drop=old)
        await queue.drop(old)
    assert not any(rds.exists(key) for key in old)
    assert rds.smembers(keys.registry) == {new.encode()}
    assert rds.lrange(new, 0, -1) == [b"v1", b"v2"]


async def test_an_oversized_message_is_described_never_returned_whole(
    config: Config, rds: redis.Redis
) -> None:
    """MAX_MESSAGE_BYTES is checked inside Redis: the worker gets a size and a preview; the
    original stays in the in-flight list, byte for byte, on every path that reads a list."""
    small = replace(config, max_message_bytes=1024)
    big = b"\xff" + b"x" * (5 << 20)
    async with open_queue(small) as queue:
        key = batch_key(queue, 1)
        rds.lpush(config.vote_queue, b"a", big, b"c")
        taken = await queue.take(key, 10, append=False)
        assert taken.items == [b"a", TooLarge(len(big), big[:PREVIEW_BYTES]), b"c"]
        assert rds.lindex(key, 1) == big
        assert await queue.read(key) == taken.items
        idle = batch_key(queue, 2)

        async def push_later() -> None:
            await trio.sleep(0.2)
            rds.lpush(config.vote_queue, big)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(push_later)
            waited = await queue.wait_take(idle, 10, 2.0)
        assert waited.items == [TooLarge(len(big), big[:PREVIEW_BYTES])]
        assert rds.lrange(idle, 0, -1) == [big]


async def test_a_take_stops_at_the_batch_byte_bound_and_leaves_the_rest_in_order(
    config: Config, rds: redis.Redis
) -> None:
    messages = [b"%d" % i + b"." * 1000 for i in range(10)]
    rds.lpush(config.vote_queue, *messages)  # the oldest is on the right: taken first
    async with open_queue(config) as queue:
        key = batch_key(queue, 1)
        taken = await queue.take(key, 10, append=False, budget=3500)
        assert (taken.items, taken.remaining, taken.full) == (messages[:3], 7, True)
        # The rest is still queued, in its order; a take with no budget left moves nothing.
        more = await queue.take(key, 7, append=True, budget=0)
        assert (more.items, more.remaining, more.full) == ([], 7, True)
        rest = await queue.take(batch_key(queue, 2), 10, append=False)
        assert rest.items == messages[3:]


async def test_a_twin_with_our_worker_id_moves_nothing(config: Config, rds: redis.Redis) -> None:
    """Regression: two live processes with one WORKER_ID. Whoever's token is in the heartbeat
    holds the id; the other's take, re-read and claim find it and move nothing."""
    async with open_queue(config) as first:
        twin = new_queue(config, token="twin")
        assert await twin.beat(30) > 0  # the first holds the id: the twin waits
        key = batch_key(first, 1)
        rds.lpush(config.vote_queue, b"v1", b"v2")
        assert (await first.take(key, 1, append=False)).items == [b"v1"]
        with pytest.raises(LeaseLost):
            await twin.take(key, 10, append=True)
        with pytest.raises(LeaseLost):
            await twin.take(batch_key(twin, 2), 10, append=False)
        with pytest.raises(LeaseLost):
            await twin.read(key)
        dead_key = twin.keys.inflight("gone", "1700000000000-abcdef-9")
        rds.rpush(dead_key, b"orphan")
        assert await twin.claim(dead_key, batch_key(twin, 9), "gone") is False
        assert rds.lrange(key, 0, -1) == [b"v1"]
        assert rds.lrange(config.vote_queue, 0, -1) == [b"v2"]
        # Once the first is gone, the twin holds the id.
        await first.unbeat()
        assert await twin.beat(30) == 0
        assert (await twin.take(key, 10, append=True)).items == [b"v2"]
        await twin.boundary.aclose()


async def test_script_calls_keep_one_connection_and_give_back_the_ones_that_fail(
    config: Config, rds: redis.Redis
) -> None:
    """Scripts run on a connection kept between calls: one in use however many calls, one
    each for calls at the same time, and none left behind by calls that fail or by a server
    that closed the kept one while it sat idle (the next call opens a fresh one, no error)."""
    async with open_queue(config) as queue:
        pool = queue.boundary.client.connection_pool  # type: ignore[union-attr]

        def in_use() -> int:
            return len(pool._in_use_connections)

        for _ in range(20):
            assert await queue.beat(30) == 0
        assert in_use() == 1
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(queue.beat, 30)
        assert in_use() == 1
        # An operator's key of the wrong type: each take fails, and gives its connection back.
        rds.set(config.vote_queue, "not a list")
        for n in range(2 * 8):  # twice the pool's size: a leak would exhaust it
            with pytest.raises(RedisUnavailable, match="WRONGTYPE"):
                await queue.take(batch_key(queue, n), 1, append=False)
        assert in_use() == 0
        rds.delete(config.vote_queue)
        assert await queue.beat(30) == 0
        # The server closes the kept connection while it is idle: the next call takes a fresh one.
        # Only that connection: other clients of the shared server are not this test's to cut.
        kept = queue.boundary._scripts._kept
        host, port = kept._writer.get_extra_info("sockname")[:2]
        assert rds.client_kill_filter(_type="normal", addr=f"{host}:{port}") == 1
        await trio.sleep(0.1)  # the loop reads the end of the stream
        assert await queue.beat(30) == 0
        assert in_use() == 1


@pytest.mark.parametrize(
    ("oldest", "cast_at"),
    [
        (
            b'{"voter_id": "v", "vote": "a", "timestamp": "2026-11-29T10:00:00+01:00"}',
            datetime(2026, 11, 29, 9),
        ),
        (
            b'{"voter_id": "v", "vote": "a", "timestamp": 1795860000.5}',
            datetime(2026, 11, 28, 10, 0, 0, 500000),
        ),
        (b'{"voter_id": "v", "vote": "a"}', None),
        (b"not json", None),
        (b'{"timestamp": "2026-11-29T09:00:00", "pad": "' + b"x" * 2000 + b'"}', None),
    ],
)
async def test_sample_reads_the_oldest_votes_timestamp_inside_redis(
    config: Config, rds: redis.Redis, oldest: bytes, cast_at: datetime | None
) -> None:
    async with open_queue(replace(config, max_message_bytes=1024)) as queue:
        rds.lpush(config.vote_queue, oldest, b'{"voter_id": "newer", "vote": "b", "timestamp": 1}')
        depth, found = await queue.sample()
    assert (depth, found) == (2, cast_at)


async def test_a_vote_moved_in_while_the_lease_was_lost_stays_where_recovery_finds_it(
    config: Config, rds: redis.Redis
) -> None:
    """A worker waits on an empty queue with an empty in-flight list it registered. Its
    heartbeat vanishes; another worker's recovery claims the list, finds it empty and
    unregisters it; then a vote comes and the waiting BLMOVE moves it in. The TAKE after it
    finds the lease gone and takes nothing. Before, the list stayed unregistered, and its vote
    lost; now the TAKE registers it again."""
    async with open_queue(config) as waiting:
        rescuer = new_queue(replace(config, worker_id="rescuer"), token="other")
        try:
            assert await rescuer.beat(30) == 0
            key = waiting.keys.inflight(config.worker_id, "1-lost-1")
            async with trio.open_nursery() as nursery:
                outcome: list[BaseException] = []

                async def wait() -> None:
                    try:
                        await waiting.wait_take(key, 100, 3.0)
                    except LeaseLost as exc:
                        outcome.append(exc)

                nursery.start_soon(wait)
                with trio.fail_after(5):
                    while not rds.sismember(waiting.keys.registry, key):  # noqa: ASYNC110
                        await trio.sleep(0.01)
                rds.delete(waiting.keys.heartbeat(config.worker_id))
                claimed = rescuer.keys.inflight("rescuer", "1-lost-1")
                assert await rescuer.claim(key, claimed, config.worker_id) is False  # empty
                assert not rds.sismember(waiting.keys.registry, key)
                rds.lpush(config.vote_queue, b'{"voter_id": "v", "vote": "a"}')
            assert len(outcome) == 1
        finally:
            await rescuer.boundary.aclose()
    assert rds.lrange(key, 0, -1) == [b'{"voter_id": "v", "vote": "a"}']
    assert rds.sismember(waiting.keys.registry, key)
