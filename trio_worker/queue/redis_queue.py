"""The worker's Redis operations: taking votes, finishing batches, heartbeats, takeovers.

A vote leaves the queue only by an atomic move into the in-flight list of one batch,
``<queue>:inflight:<worker_id>:<batch_id>``, registered in the set ``<queue>:inflight``. The list
is deleted (and its dead letters pushed) in one atomic step after the batch is in MySQL: by
FINISH, or, for a batch without dead letters, by the next TAKE on its way (or DROP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.messages import moment
from trio_worker.queue import scripts
from trio_worker.queue.boundary import Boundary
from trio_worker.queue.errors import Kind
from trio_worker.queue.keys import Keys
from trio_worker.queue.replicas import Replicas
from trio_worker.queue.wire import info

# Most votes one script call moves: Lua's unpack() stops near 8000 values, and a short script
# keeps Redis responsive for everyone else.
TAKE_CHUNK = 1000
# Most bytes of votes one batch holds in memory (a batch of BATCH_SIZE votes of up to
# MAX_MESSAGE_BYTES each could otherwise hold gigabytes): with the flushers' batches, the
# worker's memory stays bounded whatever is queued.
BATCH_BYTES = 8 << 20
# How much of an oversized message the worker reads (for the dead letter's preview).
PREVIEW_BYTES = 256
# The oldest Redis the worker runs on: RPOP with a count, BLMOVE and LMOVE came in 6.2.
MIN_VERSION = (6, 2)


class LostOwnership(Exception):
    """The batch's in-flight list was taken over by another worker while we were filling it."""


class LeaseLost(Exception):
    """Another live process holds this worker id (its token is in our heartbeat): take nothing."""


@dataclass(frozen=True)
class TooLarge:
    """An element over MAX_MESSAGE_BYTES, described but never read whole."""

    size: int
    preview: bytes


Item = bytes | TooLarge


class Taken(NamedTuple):
    items: list[Item]
    remaining: int  # votes left in the queue
    full: bool  # the batch's byte bound stopped the take


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _items(votes: list[bytes], large: list[Any]) -> list[Item]:
    items: list[Item] = list(votes)
    for i in range(0, len(large), 3):
        items[int(large[i])] = TooLarge(int(large[i + 1]), bytes(large[i + 2]))
    return items


class RedisQueue:
    """Redis operations of the worker; each raises ``RedisUnavailable`` when Redis can't.

    ``token`` is this process's lease on its worker id (see ``heartbeat``).
    """

    def __init__(self, boundary: Boundary, config: Config, token: str = "") -> None:
        self.boundary = boundary
        self.keys = Keys(config.vote_queue, config.dead_letter_queue)
        self.address = boundary.address
        self.token = token
        self.worker_id = config.worker_id
        self.max_bytes = config.max_message_bytes
        self._pop = "LPOP" if config.consume_from == "left" else "RPOP"
        self._end = "LEFT" if config.consume_from == "left" else "RIGHT"
        self._replicas = Replicas(boundary, self.keys, self.worker_id, config.redis_wait_replicas)

    @property
    def _client(self) -> Any:
        return self.boundary.client

    @property
    def _beat_key(self) -> str:
        return self.keys.heartbeat(self.worker_id)

    async def ping(self) -> None:
        await self.boundary.call(self._client.ping)

    async def check_server(self) -> None:
        """Whether the server is one the worker runs on (Redis ``MIN_VERSION`` or later): a
        ``RedisUnavailable`` that says so if not. An account not allowed INFO is let through:
        the first command the server lacks then says it (``Kind.TOO_OLD``)."""
        try:
            reply = await self.boundary.call(self._client.info, "server")
        except RedisUnavailable as exc:
            if exc.kind != Kind.NO_PERMISSION:
                raise
            return
        version = info(reply).get("redis_version", "")
        numbers = tuple(int(n) for n in version.split(".")[:2] if n.isascii() and n.isdigit())
        if len(numbers) == 2 and numbers < MIN_VERSION:
            needed = ".".join(map(str, MIN_VERSION))
            raise RedisUnavailable(
                self.address,
                f"Redis {version}: the worker needs Redis {needed} or later (RPOP with a"
                " count, BLMOVE, LMOVE)",
                kind=Kind.TOO_OLD,
            )

    def _take_call(
        self, key: str, count: int, mode: str, budget: int, drop: Sequence[str]
    ) -> tuple[list[str], list[Any]]:
        keys = [self.keys.queue, key, self.keys.registry, self._beat_key, *drop]
        args = [min(count, TAKE_CHUNK), self._pop, mode, self.token, self.max_bytes]
        return keys, [*args, PREVIEW_BYTES, budget]

    @staticmethod
    def _taken(result: Any, key: str) -> Taken:
        if result == -1:
            raise LeaseLost(key)
        if result is None:
            raise LostOwnership(key)
        votes, remaining, large, full = result
        return Taken(_items(votes, large), int(remaining), bool(full))

    async def take(
        self,
        key: str,
        count: int,
        *,
        append: bool,
        drop: Sequence[str] = (),
        budget: int = BATCH_BYTES,
    ) -> Taken:
        """Move up to ``count`` votes (and ``budget`` bytes) into the in-flight list ``key``.

        The in-flight lists ``drop`` (committed, no dead letters) are dropped first, in the same
        atomic call, whatever else happens.
        """
        keys, args = self._take_call(key, count, "append" if append else "new", budget, drop)
        if not self._replicas.wanted:
            return self._taken(await self.boundary.run(scripts.TAKE, keys, args), key)
        (result,), acked = await self._replicas.exchange(
            [("EVAL", scripts.TAKE.source, len(keys), *keys, *args)], replies=1
        )
        taken = self._taken(result, key)
        await self._replicas.check(acked, bool(taken.items))
        return taken

    async def wait_take(
        self, key: str, count: int, timeout_s: float, *, drop: Sequence[str] = ()
    ) -> Taken:
        """Block up to ``timeout_s`` for a vote, then take up to ``count``: one round trip.

        ``BLMOVE`` moves the first vote into the in-flight list; its reply would carry the vote,
        whatever its size, so it is suppressed (``CLIENT REPLY SKIP``) and the TAKE that follows
        on the same connection returns what the list holds, oversized votes described, not read.
        The list is registered first, so that a vote BLMOVE moved is never in an unregistered
        list, even if the process dies before the TAKE.
        """
        keys, args = self._take_call(key, count, "waited", BATCH_BYTES, drop)
        commands: list[tuple[Any, ...]] = [
            ("SADD", self.keys.registry, key),
            ("CLIENT", "REPLY", "SKIP"),
            ("BLMOVE", self.keys.queue, key, self._end, "RIGHT", timeout_s),
            ("EVAL", scripts.TAKE.source, len(keys), *keys, *args),
        ]
        if not self._replicas.wanted:
            replies = await self.boundary.round_trip(commands, replies=2)
            return self._taken(replies[1], key)
        (_, result), acked = await self._replicas.exchange(commands, replies=2)
        taken = self._taken(result, key)
        await self._replicas.check(acked, bool(taken.items))
        return taken

    async def read(self, key: str, *, rename_to: str | None = None) -> list[Item]:
        """What one of our in-flight lists holds (registering it again); ``LeaseLost`` if a
        twin holds our worker id. With ``rename_to``, the list is moved there first and read
        under that name: no write sent before can land in what was read (``scripts.READ``)."""
        keys = [key, self.keys.registry, self._beat_key]
        if rename_to is not None:
            keys.append(rename_to)
        args = [self.token, self.max_bytes, PREVIEW_BYTES]
        acked = 0
        if not self._replicas.wanted:
            result = await self.boundary.run(scripts.READ, keys, args)
        else:
            (result,), acked = await self._replicas.exchange(
                [("EVAL", scripts.READ.source, len(keys), *keys, *args)], replies=1
            )
        if result == -1:
            raise LeaseLost(key)
        votes, large = result
        if self._replicas.wanted:
            await self._replicas.check(acked, bool(votes))
        return _items(votes, large)

    async def finish(
        self, key: str, envelopes: list[bytes], originals: Sequence[tuple[int, str]] = ()
    ) -> bool:
        """Push a batch's dead letters, move its oversized originals (position, list) and drop
        its in-flight list, exactly once."""
        keys = [key, self.keys.registry, self.keys.dead, *(k for _, k in originals)]
        args = [len(envelopes), *envelopes, *(pos for pos, _ in originals)]
        return bool(await self.boundary.run(scripts.FINISH, keys, args))

    async def drop(self, keys: Sequence[str]) -> None:
        """Drop the in-flight lists of committed batches that have no dead letters."""
        if keys:
            await self.boundary.run(scripts.DROP, [self.keys.registry, *keys], [])

    async def beat(self, ttl_s: float) -> int:
        """Refresh our heartbeat; 0 if it is ours now, else the ms until another process's
        heartbeat under our worker id expires (it holds the lease)."""
        ms = int(ttl_s * 1000)
        held, left = await self.boundary.run(scripts.BEAT, [self._beat_key], [self.token, ms])
        return 0 if int(held) == 1 else max(int(left), 1)

    async def unbeat(self) -> None:
        """Delete our heartbeat, if it is ours."""
        keys = [self._beat_key, self.keys.settings]
        await self.boundary.run(scripts.UNBEAT, keys, [self.token, self.worker_id])

    async def registered(self) -> list[str]:
        """Every registered in-flight list, whoever owns it."""
        members = await self.boundary.call(self._client.smembers, self.keys.registry)
        return sorted(_text(m) for m in members)

    async def alive(self, worker_ids: list[str]) -> dict[str, bool]:
        """Which of these workers have a live heartbeat."""
        if not worker_ids:
            return {}
        keys = [self.keys.heartbeat(w) for w in worker_ids]
        values: list[Any] = await self.boundary.call(self._client.mget, keys)
        return {w: v is not None for w, v in zip(worker_ids, values, strict=True)}

    async def claim(self, key: str, new_key: str, owner: str) -> bool:
        """Take over ``key`` as ``new_key`` if its owner's heartbeat is gone (and ours is ours)."""
        keys = [key, new_key, self.keys.registry, self.keys.heartbeat(owner), self._beat_key]
        return int(await self.boundary.run(scripts.CLAIM, keys, [self.token])) == 1

    async def depth(self) -> int:
        return int(await self.boundary.call(self._client.llen, self.keys.queue))

    async def sample(self) -> tuple[int, datetime | None]:
        """The queue's depth, and when its oldest waiting vote was cast (if it says)."""
        end = 0 if self._pop == "LPOP" else -1
        depth, stamp = await self.boundary.run(
            scripts.SAMPLE, [self.keys.queue], [end, self.max_bytes]
        )
        if stamp is None:
            return int(depth), None
        text = stamp.decode("utf-8", "replace")
        try:
            value: object = float(text)
        except ValueError:
            value = text
        return int(depth), moment(value)
