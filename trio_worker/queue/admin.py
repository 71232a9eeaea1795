"""The operator commands' Redis operations: pushing test votes, counting, and the dead letters."""

from __future__ import annotations

from typing import cast

from trio_worker.queue import scripts
from trio_worker.queue.redis_queue import RedisQueue


class QueueAdmin(RedisQueue):
    """``RedisQueue`` plus what only an operator does; every call through the same boundary."""

    async def push(self, command: str, messages: list[bytes]) -> None:
        """``LPUSH``/``RPUSH`` messages onto the queue, as a producer does."""
        await self.boundary.call(self._client.execute_command, command, self.keys.queue, *messages)

    async def dead_count(self) -> int:
        return int(await self.boundary.call(self._client.llen, self.keys.dead))

    async def dead_head(self, n: int) -> list[bytes]:
        """The ``n`` oldest dead letters (the list's head), without removing them."""
        return cast(
            "list[bytes]", await self.boundary.call(self._client.lrange, self.keys.dead, 0, n - 1)
        )

    async def requeue_head(self, push: str, head: list[bytes], originals: list[bytes]) -> int:
        """Move the dead letters ``head`` back to the queue as ``originals``, if still the head.

        Returns how many moved: ``len(head)``, or -1 if the head changed since it was read.
        """
        args = [push, len(head), *head, *originals]
        return int(
            await self.boundary.run(scripts.REQUEUE, [self.keys.dead, self.keys.queue], args)
        )

    async def purge(self) -> int:
        """Delete the dead-letter list; return how many it held."""
        return int(await self.boundary.run(scripts.PURGE, [self.keys.dead], []))

    async def inflight_count(self) -> int:
        """Votes held in every worker's in-flight lists."""
        keys = await self.registered()
        if not keys:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        lengths: list[int] = await self.boundary.call(pipe.execute)
        return sum(lengths)
