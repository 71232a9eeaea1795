"""The Redis scripts and commands of ``RedisQueue``, one at a time, against real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import trio_asyncio

from trio_worker.config import Config
from trio_worker.queue import Boundary, LostOwnership, RedisQueue, connect


def open_queue(config: Config) -> RedisQueue:
    return RedisQueue(Boundary(connect(config, block_s=0.5), config.redis_address), config)


async def test_wait_one_leaves_the_list_it_moved_into_registered(
    config: Config, rds: redis.Redis
) -> None:
    """Regression: a takeover pass between the registry SADD and BLMOVE must not hide the vote.

    Another worker's takeover pass, finding our freshly registered list empty (we were paused
    past our TTL), unregisters it. BLMOVE then moves a vote into that unregistered list: had we
    died before finishing it, no recovery would ever have found it.
    """
    async with trio_asyncio.open_loop():
        queue = open_queue(config)
        client = queue.boundary.client
        key = queue.keys.inflight("me", "1700000000000-abcdef-1")
        blmove = client.blmove

        async def after_a_takeover_pass(*args: Any, **kwargs: Any) -> Any:
            rds.srem(queue.keys.registry, key)  # what _CLAIM does to an empty list
            return await blmove(*args, **kwargs)

        client.blmove = after_a_takeover_pass  # type: ignore[method-assign]
        rds.lpush(config.vote_queue, b"v")
        try:
            assert await queue.wait_one(key, 0.5) == b"v"
        finally:
            await queue.boundary.aclose()
    assert rds.lrange(key, 0, -1) == [b"v"]
    assert rds.sismember(queue.keys.registry, key)


async def test_take_drops_the_committed_lists_it_is_given(config: Config, rds: redis.Redis) -> None:
    """The take that follows a batch's commit drops its list: one round trip, not two."""
    async with trio_asyncio.open_loop():
        queue = open_queue(config)
        keys = queue.keys
        old = [keys.inflight("me", f"1700000000000-abcdef-{i}") for i in (1, 2)]
        for key in old:
            rds.rpush(key, b"committed")
            rds.sadd(keys.registry, key)
        rds.lpush(config.vote_queue, b"v1", b"v2")
        new = keys.inflight("me", "1700000000000-abcdef-3")
        try:
            assert await queue.take(new, 10, append=False, drop=old) == ([b"v1", b"v2"], 0)
            # Dropped even when the append finds its own list taken over, and again harmlessly.
            rds.rpush(old[0], b"again")
            gone = keys.inflight("me", "1700000000000-abcdef-4")
            with pytest.raises(LostOwnership):
                await queue.take(gone, 10, append=True, drop=old)
            await queue.drop(old)
        finally:
            await queue.boundary.aclose()
    assert not any(rds.exists(key) for key in old)
    assert rds.smembers(keys.registry) == {new.encode()}
    assert rds.lrange(new, 0, -1) == [b"v1", b"v2"]
