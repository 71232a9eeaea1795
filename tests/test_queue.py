"""The Redis scripts and commands of ``RedisQueue``, one at a time, against real Redis."""

from __future__ import annotations

from typing import Any

import redis
import trio_asyncio

from trio_worker.bridge import aio
from trio_worker.config import Config
from trio_worker.queue import RedisQueue, connect


async def test_wait_one_leaves_the_list_it_moved_into_registered(
    config: Config, rds: redis.Redis
) -> None:
    """Regression: a takeover pass between the registry SADD and BLMOVE must not hide the vote.

    Another worker's takeover pass, finding our freshly registered list empty (we were paused
    past our TTL), unregisters it. BLMOVE then moves a vote into that unregistered list: had we
    died before finishing it, no recovery would ever have found it.
    """
    async with trio_asyncio.open_loop():
        client = connect(config, block_s=0.5)
        queue = RedisQueue(client, config)
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
            await aio(client.aclose)
    assert rds.lrange(key, 0, -1) == [b"v"]
    assert rds.sismember(queue.keys.registry, key)
