"""The worker's Redis operations: taking votes, finishing batches, heartbeats, takeovers.

A vote leaves the queue only by an atomic move into the in-flight list of one batch,
``<queue>:inflight:<worker_id>:<batch_id>``, registered in the set ``<queue>:inflight``. The list
is deleted (and its dead letters pushed) in one atomic step after the batch is in MySQL: by
FINISH, or, for a batch without dead letters, by the next TAKE on its way (or DROP).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from trio_worker.config import Config
from trio_worker.queue import scripts
from trio_worker.queue.boundary import Boundary
from trio_worker.queue.keys import Keys

# Most items one script call moves: Lua's unpack() stops near 8000 values, and a short script
# keeps Redis responsive for everyone else.
TAKE_CHUNK = 1000


class LostOwnership(Exception):
    """The batch's in-flight list was taken over by another worker while we were filling it."""


class RedisQueue:
    """Redis operations of the worker; each raises ``RedisUnavailable`` when Redis can't."""

    def __init__(self, boundary: Boundary, config: Config) -> None:
        self.boundary = boundary
        self.keys = Keys(config.vote_queue, config.dead_letter_queue)
        self.address = boundary.address
        self._pop = "LPOP" if config.consume_from == "left" else "RPOP"
        self._end = "LEFT" if config.consume_from == "left" else "RIGHT"

    @property
    def _client(self) -> Any:
        return self.boundary.client

    async def ping(self) -> None:
        await self.boundary.call(self._client.ping)

    async def take(
        self, key: str, count: int, *, append: bool, drop: Sequence[str] = ()
    ) -> tuple[list[bytes], int]:
        """Move up to ``count`` votes into the in-flight list ``key``; also return what's left.

        The in-flight lists ``drop`` (committed, no dead letters) are dropped first, in the same
        atomic call; they are dropped even if ``LostOwnership`` is raised.
        """
        result = await self.boundary.run(
            scripts.TAKE,
            [self.keys.queue, key, self.keys.registry, *drop],
            [min(count, TAKE_CHUNK), self._pop, "append" if append else "new"],
        )
        if result is None:
            raise LostOwnership(key)
        items, remaining = result
        return list(items), int(remaining)

    async def wait_one(self, key: str, timeout_s: float) -> bytes | None:
        """Block up to ``timeout_s`` for one vote and move it into the in-flight list ``key``."""
        call, client, registry = self.boundary.call, self._client, self.keys.registry
        # Registered first, so that a vote moved by BLMOVE is never in an unregistered list.
        await call(client.sadd, registry, key)
        # BLMOVE takes fractional seconds; redis-py's stub says int.
        timeout: Any = timeout_s
        item = cast(
            "bytes | None",
            await call(client.blmove, self.keys.queue, key, timeout, self._end, "RIGHT"),
        )
        if item is None:
            await call(client.srem, registry, key)
        else:
            # Again: had we been paused past our TTL between SADD and BLMOVE, a takeover pass
            # found the list empty and unregistered it, and no recovery would look for it.
            await call(client.sadd, registry, key)
        return item

    async def finish(self, key: str, envelopes: list[bytes]) -> bool:
        """Push a batch's dead letters and drop its in-flight list, exactly once."""
        keys = [key, self.keys.registry, self.keys.dead]
        return bool(await self.boundary.run(scripts.FINISH, keys, envelopes))

    async def drop(self, keys: Sequence[str]) -> None:
        """Drop the in-flight lists of committed batches that have no dead letters."""
        if keys:
            await self.boundary.run(scripts.DROP, [self.keys.registry, *keys], [])

    async def heartbeat(self, worker_id: str, token: str, ttl_s: float) -> None:
        key = self.keys.heartbeat(worker_id)
        await self.boundary.call(self._client.set, key, token, px=int(ttl_s * 1000))

    async def drop_heartbeat(self, worker_id: str) -> None:
        await self.boundary.call(self._client.delete, self.keys.heartbeat(worker_id))

    async def registered(self) -> list[str]:
        """Every registered in-flight list, whoever owns it."""
        members = await self.boundary.call(self._client.smembers, self.keys.registry)
        return sorted(m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members)

    async def alive(self, worker_ids: list[str]) -> dict[str, bool]:
        """Which of these workers have a live heartbeat."""
        if not worker_ids:
            return {}
        keys = [self.keys.heartbeat(w) for w in worker_ids]
        values: list[Any] = await self.boundary.call(self._client.mget, keys)
        return {w: v is not None for w, v in zip(worker_ids, values, strict=True)}

    async def claim(self, key: str, new_key: str, owner: str) -> bool:
        """Take over ``key`` as ``new_key`` if its owner's heartbeat is gone."""
        keys = [key, new_key, self.keys.registry, self.keys.heartbeat(owner)]
        return int(await self.boundary.run(scripts.CLAIM, keys, [])) == 1

    async def read(self, key: str) -> list[bytes]:
        return cast("list[bytes]", await self.boundary.call(self._client.lrange, key, 0, -1))

    async def unregister(self, key: str) -> None:
        await self.boundary.call(self._client.srem, self.keys.registry, key)

    async def depth(self) -> int:
        return int(await self.boundary.call(self._client.llen, self.keys.queue))
