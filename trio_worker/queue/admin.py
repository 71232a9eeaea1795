"""The operator commands' Redis operations: pushing test votes, counting, and the dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from trio_worker.queue import scripts
from trio_worker.queue.redis_queue import RedisQueue

# What to do with one dead letter (see scripts.SETTLE_DEAD): an action and its argument.
Action = tuple[str, bytes | str | int]


class QueueAdmin(RedisQueue):
    """``RedisQueue`` plus what only an operator does; every call through the same boundary."""

    async def push(self, command: str, messages: list[bytes]) -> None:
        """``LPUSH``/``RPUSH`` messages onto the queue, as a producer does."""
        await self.boundary.call(self._client.execute_command, command, self.keys.queue, *messages)

    async def dead_count(self) -> int:
        return int(await self.boundary.call(self._client.llen, self.keys.dead))

    async def dead_letters(self, start: int, n: int) -> list[bytes]:
        """``n`` dead letters from position ``start`` (0: the oldest), without removing them."""
        items = await self.boundary.call(self._client.lrange, self.keys.dead, start, start + n - 1)
        return cast("list[bytes]", items)

    async def settle_dead(
        self,
        push: str,
        offset: int,
        seen: Sequence[bytes],
        actions: Sequence[Action],
        originals: Sequence[str],
    ) -> bool:
        """Apply ``actions`` to the letters ``seen`` at ``offset``, if they are still there
        (False if another operator or a purge changed them: read them again)."""
        keys = [self.keys.dead, self.keys.queue, *originals]
        args: list[bytes | str | int] = [push, offset, len(seen), *seen]
        for action, argument in actions:
            args += [action, argument]
        return int(await self.boundary.run(scripts.SETTLE_DEAD, keys, args)) >= 0

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
