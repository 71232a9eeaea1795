"""The Redis side: the vote list, in-flight lists, heartbeats and dead letters.

A vote leaves the queue only by an atomic move into an in-flight list of one batch,
``<queue>:inflight:<worker_id>:<batch_id>``, registered in the set ``<queue>:inflight``. The list
is deleted (and its dead letters pushed) in one atomic step after the batch is in MySQL: by FINISH,
or, for a batch without dead letters, by the next TAKE on its way (or DROP). Every script here is
one Redis round trip, atomic, and safe to repeat.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from trio_worker.bridge import RedisUnavailable, aio, describe
from trio_worker.config import Config

P = ParamSpec("P")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
T = TypeVar("T")

# Most items one script call moves: Lua's unpack() stops near 8000 values, and a short script
# keeps Redis responsive for everyone else.
TAKE_CHUNK = 1000

# Pops up to ARGV[1] votes from the queue's consuming end (ARGV[2] is LPOP or RPOP) and appends
# them to the batch's in-flight list. With ARGV[3] == 'append' the list must already exist: if it
# is gone, another worker has taken the batch over, and nothing is popped. On its way it drops the
# in-flight lists KEYS[4..] of committed batches that have no dead letters (see DROP), so that a
# batch costs one Redis round trip, not two.
_TAKE = """
for i = 4, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', KEYS[3], KEYS[i])
end
if ARGV[3] == 'append' and redis.call('EXISTS', KEYS[2]) == 0 then return false end
local items = redis.call(ARGV[2], KEYS[1], tonumber(ARGV[1]))
if not items then return {{}, 0} end
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('RPUSH', KEYS[2], unpack(items))
return {items, redis.call('LLEN', KEYS[1])}
"""

# Drops the in-flight lists KEYS[2..] of committed batches that have no dead letters, and
# unregisters them (KEYS[1] is the registry). Safe to repeat: a list already gone, or renamed by
# a takeover, is left as it is.
_DROP = """
for i = 2, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', KEYS[1], KEYS[i])
end
return 1
"""

# Ends a batch: pushes its dead letters (ARGV) and deletes its in-flight list, once. If the list is
# gone, the batch was finished already, or taken over by another worker who will finish it.
_FINISH = """
local done = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('DEL', KEYS[1])
  done = 1
end
redis.call('SREM', KEYS[2], KEYS[1])
return done
"""

# Takes over a dead worker's batch: only if its heartbeat (KEYS[4]) is gone. Renaming keeps the
# batch id (the key's last part), so the MySQL ledger still recognises the batch.
_CLAIM = """
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('SREM', KEYS[3], KEYS[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
"""


class LostOwnership(Exception):
    """The batch's in-flight list was taken over by another worker while we were filling it."""


@dataclass(frozen=True)
class Keys:
    """Every key the worker writes, all under ``<queue>:``."""

    queue: str
    dead: str

    @property
    def registry(self) -> str:
        return f"{self.queue}:inflight"

    def inflight(self, worker_id: str, batch_id: str) -> str:
        return f"{self.queue}:inflight:{worker_id}:{batch_id}"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.queue}:worker:{worker_id}"

    def split_inflight(self, key: str) -> tuple[str, str] | None:
        """``(worker_id, batch_id)`` of an in-flight key, or None if it isn't one."""
        prefix = f"{self.queue}:inflight:"
        if not key.startswith(prefix):
            return None
        owner, sep, batch_id = key[len(prefix) :].partition(":")
        if sep and _NAME.fullmatch(owner) and _NAME.fullmatch(batch_id):
            return owner, batch_id
        return None


def connect(config: Config, *, block_s: float) -> aredis.Redis:
    """A client whose socket timeout stays above any blocking command's timeout (redis-py #2807)."""
    return aredis.Redis(
        host=config.redis_host,
        port=config.redis_port,
        db=config.redis_db,
        password=config.redis_password,
        socket_timeout=block_s + 5.0,
        socket_connect_timeout=5.0,
        health_check_interval=0,
        # No retries inside redis-py: a script whose reply was lost must not run twice behind
        # our back. Our own loops retry, knowing what each command did (see pipeline._fill).
        retry=Retry(NoBackoff(), 0),
        max_connections=8,
    )


class RedisQueue:
    """Redis operations of the worker, each mapped to ``RedisUnavailable`` on failure."""

    def __init__(self, client: aredis.Redis, config: Config) -> None:
        self.client = client
        self.keys = Keys(config.vote_queue, config.dead_letter_queue)
        self.address = config.redis_address
        self._pop = "LPOP" if config.consume_from == "left" else "RPOP"
        self._end = "LEFT" if config.consume_from == "left" else "RIGHT"
        self._take = client.register_script(_TAKE)
        self._finish = client.register_script(_FINISH)
        self._drop = client.register_script(_DROP)
        self._claim = client.register_script(_CLAIM)

    async def _call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kw: P.kwargs) -> T:
        try:
            return await aio(fn, *args, **kw)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RedisUnavailable(self.address, describe(exc)) from exc

    async def ping(self) -> None:
        await self._call(self.client.ping)

    async def take(
        self, key: str, count: int, *, append: bool, drop: Sequence[str] = ()
    ) -> tuple[list[bytes], int]:
        """Move up to ``count`` votes into the in-flight list ``key``; also return what's left.

        The in-flight lists ``drop`` (committed, no dead letters) are dropped first, in the same
        atomic call; they are dropped even if ``LostOwnership`` is raised.
        """
        result: Any = await self._call(
            self._take,
            keys=[self.keys.queue, key, self.keys.registry, *drop],
            args=[min(count, TAKE_CHUNK), self._pop, "append" if append else "new"],
        )
        if result is None:
            raise LostOwnership(key)
        items, remaining = result
        return list(items), int(remaining)

    async def wait_one(self, key: str, timeout_s: float) -> bytes | None:
        """Block up to ``timeout_s`` for one vote and move it into the in-flight list ``key``."""
        # Registered first, so that a vote moved by BLMOVE is never in an unregistered list.
        await self._call(self.client.sadd, self.keys.registry, key)
        # BLMOVE takes fractional seconds; redis-py's stub says int.
        timeout: Any = timeout_s
        item = cast(
            "bytes | None",
            await self._call(self.client.blmove, self.keys.queue, key, timeout, self._end, "RIGHT"),
        )
        if item is None:
            await self._call(self.client.srem, self.keys.registry, key)
        else:
            # Again: had we been paused past our TTL between SADD and BLMOVE, a takeover pass
            # found the list empty and unregistered it, and no recovery would look for it.
            await self._call(self.client.sadd, self.keys.registry, key)
        return item

    async def finish(self, key: str, envelopes: list[bytes]) -> bool:
        """Push a batch's dead letters and drop its in-flight list, exactly once."""
        done = await self._call(
            self._finish, keys=[key, self.keys.registry, self.keys.dead], args=envelopes
        )
        return bool(done)

    async def drop(self, keys: Sequence[str]) -> None:
        """Drop the in-flight lists of committed batches that have no dead letters."""
        if keys:
            await self._call(self._drop, keys=[self.keys.registry, *keys], args=[])

    async def heartbeat(self, worker_id: str, token: str, ttl_s: float) -> None:
        await self._call(
            self.client.set, self.keys.heartbeat(worker_id), token, px=int(ttl_s * 1000)
        )

    async def drop_heartbeat(self, worker_id: str) -> None:
        await self._call(self.client.delete, self.keys.heartbeat(worker_id))

    async def registered(self) -> list[str]:
        """Every registered in-flight list, whoever owns it."""
        members = await self._call(self.client.smembers, self.keys.registry)
        return sorted(m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members)

    async def alive(self, worker_ids: list[str]) -> dict[str, bool]:
        """Which of these workers have a live heartbeat."""
        if not worker_ids:
            return {}
        values: list[Any] = await self._call(
            self.client.mget, [self.keys.heartbeat(w) for w in worker_ids]
        )
        return {w: v is not None for w, v in zip(worker_ids, values, strict=True)}

    async def claim(self, key: str, new_key: str, owner: str) -> bool:
        """Take over ``key`` as ``new_key`` if its owner's heartbeat is gone."""
        result = await self._call(
            self._claim,
            keys=[key, new_key, self.keys.registry, self.keys.heartbeat(owner)],
            args=[],
        )
        return int(result) == 1

    async def read(self, key: str) -> list[bytes]:
        return cast("list[bytes]", await self._call(self.client.lrange, key, 0, -1))

    async def unregister(self, key: str) -> None:
        await self._call(self.client.srem, self.keys.registry, key)

    async def depth(self) -> int:
        return int(await self._call(self.client.llen, self.keys.queue))

    async def dead_count(self) -> int:
        return int(await self._call(self.client.llen, self.keys.dead))

    async def inflight_count(self) -> int:
        """Votes held in every worker's in-flight lists."""
        keys = await self.registered()
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        lengths: list[int] = await self._call(pipe.execute)
        return sum(lengths)
