"""Flusher permits: a batch is filled only when a flusher is free to commit it at once.

A batch taken earlier would wait in memory, its votes aging, while votes left in Redis would
join the next batch anyway; and memory stays bounded (one batch per flusher). The consumer (or
recovery) acquires a permit before it fills a batch, the permit travels on the batch, and the
flusher releases it once the batch is committed: its connection is then free for the next.
"""

from __future__ import annotations

import trio


class Permit:
    """One flusher's attention. ``release`` is idempotent."""

    def __init__(self, pool: trio.Semaphore) -> None:
        self._pool: trio.Semaphore | None = pool

    def release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release()


async def acquire(semaphore: trio.Semaphore) -> None:
    """``semaphore.acquire()``, without yielding when a token is free: on the hot path each
    yield is a Trio scheduling round, and the task yields at its next store call anyway."""
    try:
        semaphore.acquire_nowait()
    except trio.WouldBlock:
        await semaphore.acquire()


class Permits:
    def __init__(self, flushers: int) -> None:
        self._pool = trio.Semaphore(flushers)

    async def acquire(self) -> Permit:
        await acquire(self._pool)
        return Permit(self._pool)
