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

from trio_worker.errors import MySQLUnavailable
from trio_worker.messages import REJECTED_BY_DATABASE, envelope
from trio_worker.mysql import ledger
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import open_with_schema
from trio_worker.pipeline.batch import Batch
from trio_worker.pipeline.shared import Shared, Task
from trio_worker.queue import RedisQueue
from trio_worker.retry import retry

log = logging.getLogger("trio_worker.flusher")

# MySQL connections committing batches side by side, and how many of them may be inserting at
# once (the others' packets wait until one batch's rows are in, its COMMIT still running): the
# figures that chose them are in docs/benchmarks.md.
FLUSHERS = 3
INSERTING = 2

# Ledger rows are kept this long, pruned every PRUNE_EVERY_S.
LEDGER_RETENTION_S = 24 * 3600
PRUNE_EVERY_S = 600.0


class InsertTurn:
    """One of the ``INSERTING`` turns: taken before a batch's packet is sent, given back as soon
    as its rows are in, or when the attempt ends, whichever is first."""

    def __init__(self, turns: trio.Semaphore) -> None:
        self._turns = turns
        self._held = False

    async def take(self) -> None:
        await self._turns.acquire()
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._turns.release()


class Flushers(Task):
    def __init__(self, shared: Shared, queue: RedisQueue) -> None:
        super().__init__(shared)
        self.queue = queue
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
                    await retry(self.status.mysql, partial(open_with_schema, conn))
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
        next_prune = trio.current_time()
        step = partial(self.live.busy, name)
        self.live.idle(name)
        async with receive:
            async for batch in receive:
                step()
                if trio.current_time() >= next_prune:
                    next_prune = trio.current_time() + PRUNE_EVERY_S
                    await self._prune(conn)
                await retry(self.status.mysql, partial(self._commit, conn, batch), step=step)
                self.metrics.inflight.dec(batch.size)
                self.metrics.batch_size.observe(batch.size)
                self.metrics.vote_process_duration.observe(time.perf_counter() - batch.taken_at)
                if batch.permit is not None:
                    batch.permit.release()  # this connection is free: the next batch fills
                if self.holdings.settle(batch):
                    await self._finish(batch, step)
                self.live.idle(name)
        self.live.forget(name)

    async def _commit(self, conn: Connection, batch: Batch) -> None:
        """One attempt at committing the batch's rows (``retry`` makes it exactly once)."""
        if not batch.rows:
            return
        if not conn.is_open or conn.idle_too_long():
            # On every reconnect: an operator may have dropped a table.
            await open_with_schema(conn)
        started = time.perf_counter()
        try:
            committed = await ledger.commit(
                conn, batch.batch_id, batch.rows, InsertTurn(self._turns)
            )
        except ledger.BatchRejected as exc:
            log.warning("batch rejected, retrying row by row", extra={"error": str(exc)})
            self.metrics.database_errors.inc()
            committed, refused = await ledger.commit_row_by_row(conn, batch.batch_id, batch.rows)
            self._reject_rows(batch, refused)
        self.metrics.commit_duration.observe(time.perf_counter() - started)
        if committed:
            self.metrics.count_votes(batch.vote_counts())

    def _reject_rows(self, batch: Batch, refused: list[int]) -> None:
        now = datetime.now(UTC)
        for i in refused:
            raw = batch.sources[i]
            batch.dead.append(envelope(raw, REJECTED_BY_DATABASE, self.config.worker_id, now))
            batch.dead_reasons[REJECTED_BY_DATABASE] += 1
        refused_set = set(refused)
        batch.rows = [r for i, r in enumerate(batch.rows) if i not in refused_set]

    async def _finish(self, batch: Batch, step: Callable[[], None]) -> None:
        """Dead-letter the invalid messages and drop the in-flight list, in one atomic step."""
        finish = partial(self.queue.finish, batch.key, batch.dead, batch.originals)
        done = await retry(self.status.redis, finish, step=step)
        self.holdings.release(batch.key)
        if done:
            for reason, n in batch.dead_reasons.items():
                self.metrics.dead_letters.labels(reason).inc(n)

    async def _prune(self, conn: Connection) -> None:
        """Forget old ledger rows; on failure, leave it to the next time (the commit retries)."""
        try:
            if not conn.is_open:
                await open_with_schema(conn)
            deleted = await ledger.prune(conn, LEDGER_RETENTION_S)
        except MySQLUnavailable as exc:
            self.status.mysql.failed(exc)
            return
        if deleted:
            log.info("pruned ledger", extra={"rows": deleted})
