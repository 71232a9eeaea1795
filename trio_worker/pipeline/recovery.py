"""Recovery: finishing in-flight lists that no running batch stands for.

Every third of ``HEARTBEAT_TTL_S`` it looks at the registry of in-flight lists and sends a batch to
the flushers for each list that is

- a stopped worker's (its heartbeat expired): claimed first, by an atomic rename to our name
  that keeps the batch id, so the ledger still recognises the batch;
- our own but not held by any batch of this process: left by a past process with our id, or a
  claim whose reply was lost.

Committing a recovered batch that was committed before is a no-op (the ledger), so recovery
never needs to know how far the stopped worker got.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from trio_worker.periodic import Every
from trio_worker.pipeline.batch import Batch, prepare, started_at
from trio_worker.pipeline.heartbeat import Lease, third_of
from trio_worker.pipeline.permits import Permits
from trio_worker.pipeline.shared import Shared, Task
from trio_worker.queue import LeaseLost, RedisQueue
from trio_worker.retry import retry

log = logging.getLogger("trio_worker.recovery")


class Recovery(Task):
    def __init__(self, shared: Shared, queue: RedisQueue, permits: Permits, lease: Lease) -> None:
        super().__init__(shared)
        self.queue = queue
        self.permits = permits
        self.lease = lease

    async def run(
        self,
        send: trio.MemorySendChannel[Batch],
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """A recovery pass now and every TTL/3 until ``stop``; then close the channel."""
        async with send:
            task_status.started()
            step = partial(self.live.busy, "recovery")
            ticks = Every(third_of(self.config.heartbeat_ttl_s), stop)
            while await ticks.next():
                if self.lease.held:  # a twin holds our worker id: its lists are its own
                    await retry(self.status.redis, lambda: self.recover(send), step=step)
                self.live.idle("recovery")
            self.live.forget("recovery")

    async def recover(self, send: trio.MemorySendChannel[Batch]) -> None:
        """One pass: send a batch for each list that needs finishing."""
        me = self.config.worker_id
        queue, keys = self.queue, self.queue.keys
        found = [(k, parts) for k in await queue.registered() if (parts := keys.split_inflight(k))]
        owners = sorted({owner for _, (owner, _) in found if owner != me})
        alive = await queue.alive(owners)
        for key, (owner, batch_id) in found:
            if owner == me:
                if self.holdings.holds(key):
                    continue
                new_key = key
            else:
                if alive.get(owner, True):
                    continue
                new_key = keys.inflight(me, batch_id)
                if not await queue.claim(key, new_key, owner):
                    continue
            # Once claimed, the key is ours: if Redis fails from here on, the next pass finds it
            # under our name, not held, and picks it up again.
            try:
                raws = await queue.read(new_key)
            except LeaseLost:
                return  # a twin holds our worker id now: its lists are its own
            if not raws:
                continue
            self.holdings.hold(new_key)
            log.info(
                "recovering batch", extra={"batch_id": batch_id, "from": owner, "votes": len(raws)}
            )
            self.metrics.batches_recovered.inc()
            self.metrics.inflight.inc(len(raws))
            batch = prepare(batch_id, new_key, raws, started_at(batch_id), self.config, queue.keys)
            self.live.idle("recovery")  # waiting for a free flusher is not hanging
            batch.permit = await self.permits.acquire()
            await send.send(batch)
            self.live.busy("recovery")
