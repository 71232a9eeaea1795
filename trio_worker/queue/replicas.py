"""``REDIS_WAIT_REPLICAS``: a take is committed only once it reached that many replicas.

Else a failover could hand votes back to the queue after their batch was committed: the new
primary would not know they were taken. Each take (and re-read) is followed, on its own
connection and in the same round trip, by a marker write and ``WAIT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trio_worker.errors import RedisUnavailable
from trio_worker.queue.boundary import Boundary
from trio_worker.queue.errors import Kind
from trio_worker.queue.keys import Keys

# How long one take waits for its replicas (WAIT's timeout), and how long its marker lives.
WAIT_TIMEOUT_MS = 1000
_MARK_TTL_MS = 60_000


class Replicas:
    def __init__(self, boundary: Boundary, keys: Keys, worker_id: str, wanted: int) -> None:
        self._boundary = boundary
        self._keys = keys
        self.wanted = wanted  # 0: off
        self._mark = f"{keys.queue}:wait:{worker_id}"

    async def exchange(
        self, commands: Sequence[tuple[Any, ...]], *, replies: int
    ) -> tuple[list[Any], int]:
        """``commands``, then a write that always replicates, then ``WAIT``: one round trip on
        one connection. Returns the commands' replies and how many replicas acknowledged.

        ``WAIT`` counts the replication offset of its own connection's last write, and a script
        that changed nothing (or a ``BLMOVE`` served after blocking) may not move it; the marker
        ``SET`` always does. Replication is one ordered stream, so a replica that has the marker
        has everything the primary did before it: this take, and any take of the same list on
        another connection (a re-read after a lost reply covers the lost take too).
        """
        packet = [
            *commands,
            ("SET", self._mark, 1, "PX", _MARK_TTL_MS),
            ("WAIT", self.wanted, WAIT_TIMEOUT_MS),
        ]
        out = await self._boundary.round_trip(packet, replies=replies + 2, key=self._keys.queue)
        return out[:replies], int(out[-1])

    async def check(self, acked: int, holding: bool) -> None:
        """A batch is committed only once its votes' move reached ``REDIS_WAIT_REPLICAS``
        replicas: else a failover could hand them back to the queue after the commit.

        Too few replicas may also mean this server is no longer the primary (a failover left it
        behind, its replicas gone to the new one): the client finds the primary again before
        the caller's retry."""
        if acked < self.wanted:
            await self._boundary.rediscover()
        if holding and acked < self.wanted:
            raise RedisUnavailable(
                self._boundary.address,
                f"the take reached {acked} of {self.wanted} replicas within"
                f" {WAIT_TIMEOUT_MS} ms (REDIS_WAIT_REPLICAS); not committed until it does",
                kind=Kind.REPLICAS_BEHIND,
            )
