"""The flushers: commit each batch to MySQL exactly once, then finish it in Redis.

One flusher per MySQL connection, all taking from the same channel: while one waits for its
COMMIT's log flush, others send their rows, so MariaDB works on both cores and always has a
batch in hand. Batches may therefore commit out of order (ids follow arrival order within a
batch, not across batches in flight together); each still commits exactly once (the ledger),
and its in-flight list goes only after its commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import trio

from trio_worker.messages import REJECTED_BY_DATABASE, STALE_BATCH, envelope
from trio_worker.mysql import ledger
from trio_worker.mysql.clock import ServerClock, fresh_bounds
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import open_with_schema
from trio_worker.pipeline.batch import Batch, started_ms
from trio_worker.pipeline.permits import acquire
from trio_worker.pipeline.shared import Shared, Task
from trio_worker.queue import RedisQueue
from trio_worker.retry import retry

log = logging.getLogger("trio_worker.flusher")

# MySQL connections committing batches side by side, and how many of them may be inserting at
# once (the others' packets wait until one batch's rows are in, its COMMIT still running): the
# figures that chose them are in docs/performance.md.
FLUSHERS = 3
INSERTING = 2


class InsertTurn:
    """One of the ``INSERTING`` turns: taken before a batch's packet is sent, given back as soon
    as its rows are in, or when the attempt ends, whichever is first."""

    def __init__(self, turns: trio.Semaphore) -> None:
        self._turns = turns
        self._held = False

    async def take(self) -> None:
        await acquire(self._turns)
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._turns.release()


class Flushers(Task):
    def __init__(self, shared: Shared, queue: RedisQueue, clock: ServerClock) -> None:
        super().__init__(shared)
        self.queue = queue
        self.clock = clock
        self._turns = trio.Semaphore(INSERTING)

    async def run(
        self,
        receive: trio.MemoryReceiveChannel[Batch],
        drained: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open every connection, then commit what arrives; set ``drained`` when it ends."""
        conns = [Connection(self.config) for _ in range(FLUSHERS)]
        try:
            async with receive:
                for conn in conns:
                    await retry(self.status.mysql, partial(self._open, conn))
                task_status.started()
                async with trio.open_nursery() as nursery:
                    for n, conn in enumerate(conns, 1):
                        nursery.start_soon(self._flush, f"flusher-{n}", conn, receive.clone())
            await self.holdings.drop_rest(self.queue, self.status.redis)
            drained.set()
        finally:
            for conn in conns:
                conn.close()

    async def _flush(
        self, name: str, conn: Connection, receive: trio.MemoryReceiveChannel[Batch]
    ) -> None:
        step = partial(self.live.busy, name)
        self.live.idle(name)
        async with receive:
            async for batch in receive:
                step()
                await retry(
                    self.status.mysql,
                    partial(self._commit, conn, batch, step),
                    step=step,
                    writes=True,
                )
                self.metrics.inflight.dec(batch.size)
                self.metrics.batch_size.observe(batch.size)
                self.metrics.vote_process_duration.observe(time.perf_counter() - batch.taken_at)
                if batch.permit is not None:
                    batch.permit.release()  # this connection is free: the next batch fills
                if self.holdings.settle(batch):
                    await self._finish(batch, step)
                self.live.idle(name)
        self.live.forget(name)

    async def _open(self, conn: Connection) -> None:
        # On every (re)connect: an operator may have dropped a table.
        await open_with_schema(conn)
        assert conn.server is not None
        self.clock.set(conn.server.clock)

    async def _commit(self, conn: Connection, batch: Batch, step: Callable[[], None]) -> None:
        """One attempt at committing the batch's rows (``retry`` makes it exactly once);
        ``step()`` at each statement of the slow path (progress, for liveness)."""
        if not batch.rows:
            return
        if not conn.is_open or conn.idle_too_long():
            await self._open(conn)
        elif self.clock.stale():
            self.clock.set(await conn.server_time())
        started = time.perf_counter()
        fresh = fresh_bounds(started_ms(batch.batch_id), self.config.ledger_retention_s)
        try:
            try:
                done = await ledger.commit(
                    conn, batch.batch_id, batch.rows, InsertTurn(self._turns), fresh
                )
            except ledger.BatchRejected as exc:
                log.warning("batch rejected, retrying in parts", extra={"error": str(exc)})
                self.metrics.database_errors.inc()
                done = await ledger.commit_apart(conn, batch.batch_id, batch.rows, fresh, step=step)
        except ledger.StaleBatch:
            self._quarantine(batch)
            return
        if done.refused:
            self._reject_rows(batch, done.refused)
        self.metrics.commit_duration.observe(time.perf_counter() - started)
        if done.now:
            self.metrics.count_votes(batch.counts)

    def _quarantine(self, batch: Batch) -> None:
        """A batch older than the ledger can vouch for may be stored already: its votes go to
        the dead letters as ``stale_batch``, marked so, for an operator to check and requeue."""
        log.error(
            "stale batch: older than the ledger can vouch for; its votes are dead-lettered as"
            " stale_batch (they may already be stored: check before requeueing)",
            extra={"batch_id": batch.batch_id, "votes": len(batch.rows)},
        )
        now = datetime.now(UTC)
        worker_id = self.config.worker_id
        for raw in batch.sources:
            batch.dead.append(envelope(raw, STALE_BATCH, worker_id, now, may_be_stored=True))
        batch.dead_reasons[STALE_BATCH] += len(batch.sources)
        batch.drop_rows(range(len(batch.rows)))

    def _reject_rows(self, batch: Batch, refused: list[int]) -> None:
        now = datetime.now(UTC)
        for i in refused:
            raw = batch.sources[i]
            batch.dead.append(envelope(raw, REJECTED_BY_DATABASE, self.config.worker_id, now))
            batch.dead_reasons[REJECTED_BY_DATABASE] += 1
        batch.drop_rows(refused)

    async def _finish(self, batch: Batch, step: Callable[[], None]) -> None:
        """Dead-letter the invalid messages and drop the in-flight list, in one atomic step."""
        finish = partial(self.queue.finish, batch.key, batch.dead, batch.originals)
        done = await retry(self.status.redis, finish, step=step)
        self.holdings.release(batch.key)
        if done:
            for reason, n in batch.dead_reasons.items():
                self.metrics.dead_letters.labels(reason).inc(n)
