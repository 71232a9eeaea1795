"""The consumer: fills batches from the queue and hands them, parsed, to the flushers.

It starts filling only when a flusher is free (``permits``) and while this process holds its
worker id (``lease``): while batches N and N+1 commit, batch N+2 is being taken, and memory
stays bounded however long the queue is. Shutdown is a trigger: once ``stop`` is set it takes
nothing more and closes its end of the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Protocol

import trio

from trio_worker.errors import RedisUnavailable
from trio_worker.mysql.clock import ServerClock
from trio_worker.pipeline.batch import Batch, BatchIds, prepare
from trio_worker.pipeline.heartbeat import Lease
from trio_worker.pipeline.permits import Permits
from trio_worker.pipeline.shared import Shared, Task
from trio_worker.queue import (
    BATCH_BYTES,
    PREVIEW_BYTES,
    Item,
    Keys,
    LeaseLost,
    LostOwnership,
    Taken,
)
from trio_worker.retry import Backoff, retry

log = logging.getLogger("trio_worker.consumer")

# How long one blocking wait on an idle queue lasts; also the longest a SIGTERM waits for the
# consumer to notice. A Redis call's deadline is kept above it (``Boundary.open``).
BLOCK_S = 0.5


class Source(Protocol):
    """What the consumer needs of the queue (``queue.RedisQueue``; tests use fakes)."""

    keys: Keys

    async def ping(self) -> None: ...

    async def take(
        self,
        key: str,
        count: int,
        *,
        append: bool,
        drop: Sequence[str] = ...,
        budget: int = ...,
    ) -> Taken: ...

    async def wait_take(
        self, key: str, count: int, timeout_s: float, *, drop: Sequence[str] = ...
    ) -> Taken: ...

    async def read(self, key: str, *, rename_to: str | None = ...) -> list[Item]: ...


def _bytes(items: list[Item]) -> int:
    return sum(len(i) if type(i) is bytes else PREVIEW_BYTES for i in items)


class Consumer(Task):
    def __init__(
        self,
        shared: Shared,
        queue: Source,
        permits: Permits,
        lease: Lease,
        clock: ServerClock,
    ) -> None:
        super().__init__(shared)
        self.queue = queue
        self.permits = permits
        self.lease = lease
        self.clock = clock  # the MySQL server's: batch ids, and the time of unstamped votes
        self.ids = BatchIds(clock.now_ms)
        self._backoff = Backoff()
        self.pause_s = 0.0  # how long to wait before the next take (after a failed one)

    async def run(
        self,
        send: trio.MemorySendChannel[Batch],
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Take batches off the queue until ``stop``; then close the channel."""
        async with send:
            await retry(self.status.redis, self.queue.ping)  # its connection is open
            task_status.started()
            while not stop.is_set():
                # Waiting for a free flusher, or for our worker id, is not hanging.
                self.live.idle("consumer")
                if not self.lease.held:
                    with trio.move_on_after(BLOCK_S):  # and notice ``stop`` meanwhile
                        await self.lease.wait()
                    continue
                permit = await self.permits.acquire()
                self.live.busy("consumer")
                if stop.is_set():
                    permit.release()
                    break
                try:
                    batch = await self.fill(self.ids.next())
                except BaseException:
                    permit.release()
                    raise
                if batch is None:
                    permit.release()
                    pause, self.pause_s = self.pause_s, 0.0
                    if pause:
                        self.live.idle("consumer")  # backing off is not hanging
                        with trio.move_on_after(pause):
                            await stop.wait()
                    continue
                batch.permit = permit
                self.metrics.inflight.inc(batch.size)
                self.live.idle("consumer")
                try:
                    send.send_nowait(batch)  # a flusher waits for it (it holds our permit)
                except trio.WouldBlock:
                    await send.send(batch)
            self.live.forget("consumer")

    async def fill(self, batch_id: str) -> Batch | None:
        """One batch: whatever is queued, up to ``BATCH_SIZE``; blocks briefly on an idle queue.

        If Redis fails mid-fill, the in-flight list (not our memory) is the truth: once Redis
        answers again the batch is re-read from it, so a vote whose move succeeded but whose reply
        was lost is neither dropped nor left behind.
        """
        key = self.queue.keys.inflight(self.config.worker_id, batch_id)
        self.holdings.hold(key)
        try:
            items = await self._take_all(key)
            self._backoff.reset()
        except LostOwnership:
            # Taken over while we were paused: the list is the claimer's to finish.
            log.warning("batch given up while filling: taken over", extra={"batch_id": batch_id})
            items = []
        except LeaseLost:
            self._lease_lost(batch_id)
            items = []
        except RedisUnavailable as exc:
            self.status.redis.failed(exc)
            # Read under a fresh batch id: a take sent on the connection given up on may yet
            # land in the old list, where recovery finds it, not in what this batch commits.
            batch_id, old_key = self.ids.next(), key
            key = self.queue.keys.inflight(self.config.worker_id, batch_id)
            self.holdings.hold(key)
            step = partial(self.live.busy, "consumer")
            try:
                items = await retry(
                    self.status.redis,
                    lambda: self.queue.read(old_key, rename_to=key),
                    step=step,
                )
            except LeaseLost:
                self._lease_lost(batch_id)
                items = []
            self.holdings.release(old_key)
            # A take that keeps failing while reads succeed (a Redis that refuses writes) must
            # not spin: the next take waits.
            self.pause_s = self._backoff.next_delay()
        if not items:
            self.holdings.release(key)
            return None
        return prepare(batch_id, key, items, self.clock.now(), self.config, self.queue.keys)

    def _lease_lost(self, batch_id: str) -> None:
        """Our heartbeat no longer holds our token: another live process holds our worker id,
        or the key vanished (a Redis restarted without its data). Take nothing until the
        heartbeat holds the lease again (at its next beat, if the key is free)."""
        if self.lease.held:
            log.warning(
                "worker id lease lost while filling a batch: taking nothing until the heartbeat"
                " holds it again",
                extra={"batch_id": batch_id},
            )
        self.lease.lose()

    async def _take_all(self, key: str) -> list[Item]:
        c, queue, dropping = self.config, self.queue, self.holdings.dropping
        taken = await dropping(lambda drop: queue.take(key, c.batch_size, append=False, drop=drop))
        if not taken.items:
            taken = await dropping(
                lambda drop: queue.wait_take(key, c.batch_size, BLOCK_S, drop=drop)
            )
        items = taken.items
        deadline = trio.current_time() + c.flush_interval_s
        # An idle queue (nothing remaining) flushes at once; a busy one fills the batch.
        while (
            items
            and len(items) < c.batch_size
            and taken.remaining > 0
            and not taken.full
            and trio.current_time() < deadline
        ):
            budget = BATCH_BYTES - _bytes(items)
            want = c.batch_size - len(items)
            taken = await dropping(
                lambda drop: queue.take(key, want, append=True, drop=drop, budget=budget)  # noqa: B023
            )
            items.extend(taken.items)
        return items
