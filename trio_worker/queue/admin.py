"""The operator commands' Redis operations: pushing test votes, counting, and the dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from trio_worker.queue.redis_queue import RedisQueue
from trio_worker.queue.scripts import Script

# What to do with one dead letter (see SETTLE_DEAD): an action and its argument.
Action = tuple[str, bytes | str | int]

SETTLE_DEAD = Script(
    "settle_dead",
    # KEYS: 1 the dead-letter list, 2 the queue, 3.. originals of oversized letters
    # ARGV: 1 LPUSH or RPUSH (the producers' end), 2 offset, 3 n, 4..n+3 the n letters the
    #       caller read from the offset on, then one (action, argument) pair per letter:
    #       ('push', original bytes): back to the queue; ('move', k): move KEYS[k]'s original
    #       back to the queue (the letter stays if that original is gone); ('drop', k or 0):
    #       delete it (and KEYS[k]); ('keep', ''): leave it
    # Acts only if those letters are still exactly what the caller read, so nothing is
    # requeued or deleted twice. Kept letters stay where they were, in order. Returns n, or -1.
    """
local off, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local seen = redis.call('LRANGE', KEYS[1], off, off + n - 1)
if #seen ~= n then return -1 end
for i = 1, n do if seen[i] ~= ARGV[3 + i] then return -1 end end
local side = ARGV[1] == 'LPUSH' and 'LEFT' or 'RIGHT'
local kept = {}
for i = 1, n do
  local action, arg = ARGV[2 + n + 2 * i], ARGV[3 + n + 2 * i]
  if action == 'push' then
    redis.call(ARGV[1], KEYS[2], arg)
  elseif action == 'move' then
    -- an original someone deleted meanwhile: the letter stays, for the operator to see
    if not redis.call('LMOVE', KEYS[tonumber(arg)], KEYS[2], 'LEFT', side) then
      kept[#kept + 1] = seen[i]
    end
  elseif action == 'drop' then
    if tonumber(arg) > 0 then redis.call('DEL', KEYS[tonumber(arg)]) end
  else
    kept[#kept + 1] = seen[i]
  end
end
local before = {}
if off > 0 then before = redis.call('LRANGE', KEYS[1], 0, off - 1) end
redis.call('LTRIM', KEYS[1], off + n, -1)
for i = #kept, 1, -1 do redis.call('LPUSH', KEYS[1], kept[i]) end
for i = #before, 1, -1 do redis.call('LPUSH', KEYS[1], before[i]) end
return n
""",
)


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
        return int(await self.boundary.run(SETTLE_DEAD, keys, args)) >= 0

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
