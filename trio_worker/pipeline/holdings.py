"""Which in-flight lists this process stands for, and which its next take drops.

A list is *held* from the moment the consumer names it (before anything is moved into it) or
recovery claims it, until its batch is finished or dropped. Recovery takes over any list under
this worker's own name that no batch holds: one left by a past process with the same id, or a
claim whose reply was lost.

A batch committed with no dead letters while votes are still queued is not finished by a Redis
call of its own: the consumer's next take drops its list on the way (one Redis round trip per
batch, not two). This module is the one place that bookkeeping lives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from trio_worker.errors import RedisUnavailable
from trio_worker.queue import LeaseLost, LostOwnership, Taken
from trio_worker.retry import StoreHealth, retry


class Dropper(Protocol):
    async def drop(self, keys: Sequence[str]) -> None: ...


class Settled(Protocol):
    """What ``settle`` reads of a committed batch."""

    @property
    def key(self) -> str: ...

    @property
    def dead(self) -> Sequence[bytes]: ...


class Holdings:
    def __init__(self) -> None:
        self._held: set[str] = set()
        self._to_drop: list[str] = []
        # Votes left in the queue at the last take: while some are, another take comes soon.
        self.queued = 0

    def hold(self, key: str) -> None:
        self._held.add(key)

    def holds(self, key: str) -> bool:
        return key in self._held

    def release(self, key: str) -> None:
        """The list is gone (finished, dropped, or found empty): nothing stands for it now."""
        self._held.discard(key)

    def settle(self, batch: Settled) -> bool:
        """Call once ``batch`` is committed. True: finish it now (it has dead letters, or no
        take is coming to drop its list). False: the next take drops its list."""
        if batch.dead or not self.queued:
            return True
        self._to_drop.append(batch.key)
        return False

    async def dropping(self, take: Callable[[Sequence[str]], Awaitable[Taken]]) -> Taken:
        """``take(drop)``: a take that drops on its way the lists of batches committed since the
        last (``queue.take`` and ``queue.wait_take`` take them as ``drop``)."""
        drop, self._to_drop = self._to_drop, []
        try:
            taken = await take(drop)
        except RedisUnavailable:
            # Dropped or not, we can't tell: they go with the next call (dropping is idempotent).
            self._to_drop.extend(drop)
            raise
        except (LostOwnership, LeaseLost):
            self._held.difference_update(drop)  # the script drops them before it checks
            raise
        self._held.difference_update(drop)
        self.queued = taken.remaining
        return taken

    async def drop_rest(self, queue: Dropper, health: StoreHealth) -> None:
        """Drop the committed lists that no take will drop now: the consumer has stopped."""
        if self._to_drop:
            drop = self._to_drop
            await retry(health, lambda: queue.drop(drop))
            self._held.difference_update(drop)
            self._to_drop = []
