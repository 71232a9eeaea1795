"""The two tasks that move votes: the consumer (Redis → channel) and the flusher (→ MySQL).

The consumer fills one batch at a time into its own in-flight list and hands it, parsed, to the
flushers (one per MySQL connection) through an unbuffered memory channel, and starts filling
only when a flusher is free: while batches N and N+1 commit, batch N+2 is being taken, and
memory stays bounded however long the queue is. Shutdown is a trigger: when ``stop`` is set the
consumer takes nothing more and closes its end; the flusher's ``async for`` ends once it has
committed what was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from trio_worker.backoff import Backoff
from trio_worker.batch import Batch, BatchIds, prepare, started_at
from trio_worker.bridge import MySQLUnavailable, RedisUnavailable, describe
from trio_worker.config import Config
from trio_worker.messages import REJECTED_BY_DATABASE, envelope
from trio_worker.metrics import Metrics
from trio_worker.queue import LostOwnership, RedisQueue
from trio_worker.status import Status
from trio_worker.store import BatchRejected, MySQLStore

log = logging.getLogger("trio_worker.pipeline")

# How long one blocking wait on an idle queue lasts; also the longest a SIGTERM waits for the
# consumer to notice. Redis' socket timeout is kept above it (redis-py #2807).
BLOCK_S = 0.5

# Ledger rows are kept this long (see MySQLStore.prune_ledger), pruned every PRUNE_EVERY_S.
LEDGER_RETENTION_S = 24 * 3600
PRUNE_EVERY_S = 600.0

# MySQL connections committing batches side by side. One leaves MariaDB idle while the worker
# finishes a batch and fills the next; three kept it busiest on a 2-core machine (four only
# added latch contention inside InnoDB). See docs/benchmarks.md.
FLUSHERS = 3

# INSERTs MariaDB runs at once, whatever the number of connections. Three inserting into the same
# index pages spin on InnoDB latches (5.5-6.4 us of MariaDB CPU per vote against 5.1-5.4 with
# two); with the third connection's packet held back until one of the two INSERTs is in, MariaDB
# always has an INSERT and a COMMIT to work on, and wastes less. See docs/benchmarks.md.
INSERTING = 2


class InsertSlot:
    """One of the ``INSERTING`` slots: taken before a batch's packet is sent, given back as soon
    as its rows are in (its COMMIT still running), or when the attempt ends, whichever is first."""

    def __init__(self, slots: trio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        await self._slots.acquire()
        self._held = True

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


@dataclass
class Pipeline:
    """The dependencies the two tasks share; built once by ``service.run``."""

    config: Config
    queue: RedisQueue
    status: Status
    metrics: Metrics
    # One token per flusher not busy with a batch; the consumer holds one while it fills.
    flusher_free: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(FLUSHERS))
    inserting: trio.Semaphore = field(default_factory=lambda: trio.Semaphore(INSERTING))
    # In-flight keys of ours that a batch in this process stands for (being filled, in the
    # channel, or in the flusher) until finished. Any other key under our name is recovered:
    # one left by our past self, or a claim that ran but whose reply was lost.
    held: set[str] = field(default_factory=set)
    # In-flight lists of batches committed, with no dead letters, while votes were still queued:
    # the consumer's next take drops them on its way (one Redis round trip per batch, not two).
    # Still held until then.
    committed: list[str] = field(default_factory=list)
    # Votes left in the queue at the last take: while some are, the consumer is about to take again.
    queued: int = 0

    def _redis_failed(self, exc: RedisUnavailable) -> None:
        if self.status.redis_ok:
            log.warning("redis unavailable", extra={"error": str(exc)})
        self.status.redis_ok = False
        self.metrics.redis_errors.inc()

    def _batch(self, batch_id: str, key: str, raws: list[bytes], taken: datetime) -> Batch:
        c = self.config
        return prepare(batch_id, key, raws, taken, c.vote_choices, c.worker_id)

    # ----------------------------------------------------------------- consumer

    async def consume(
        self,
        send: trio.MemorySendChannel[Batch],
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Take batches off the queue until ``stop``; then close the channel."""
        ids = BatchIds()
        backoff = Backoff()
        recover_every = max(self.config.heartbeat_ttl_s / 3, 0.2)
        next_recovery = trio.current_time()
        async with send:
            task_status.started()
            while not stop.is_set():
                try:
                    if trio.current_time() >= next_recovery:
                        await self._recover(send)
                        next_recovery = trio.current_time() + recover_every
                    batch = await self._fill_when_free(ids.next())
                    self.status.redis_ok = True
                    backoff.reset()
                except RedisUnavailable as exc:
                    self._redis_failed(exc)
                    await backoff.sleep()
                    continue
                if batch is not None:
                    self.metrics.inflight.inc(batch.size)
                    await send.send(batch)

    async def _fill_when_free(self, batch_id: str) -> Batch | None:
        """``fill``, started only once a flusher is free to commit the batch at once.

        A batch taken earlier would wait in memory, its votes aging, while votes left in Redis
        join the next batch anyway. The token goes with the batch; its flusher gives it back.
        """
        await self.flusher_free.acquire()
        try:
            batch = await self.fill(batch_id)
        except BaseException:
            self.flusher_free.release()
            raise
        if batch is None:
            self.flusher_free.release()
        return batch

    async def fill(self, batch_id: str) -> Batch | None:
        """One batch: whatever is queued, up to ``BATCH_SIZE``; blocks briefly on an idle queue.

        If Redis fails mid-fill, the in-flight list (not our memory) is the truth: once Redis
        answers again the batch is re-read from it, so a vote whose move succeeded but whose reply
        was lost is neither dropped nor left behind.
        """
        c = self.config
        key = self.queue.keys.inflight(c.worker_id, batch_id)
        self.held.add(key)
        batch = await self._fill_into(batch_id, key)
        if batch is None:
            self.held.discard(key)
        return batch

    async def _fill_into(self, batch_id: str, key: str) -> Batch | None:
        c = self.config
        items: list[bytes] = []
        try:
            items, remaining = await self._take(key, c.batch_size, append=False)
            if not items:
                first = await self.queue.wait_one(key, BLOCK_S)
                if first is None:
                    return None
                items, remaining = [first], 1
            deadline = trio.current_time() + c.flush_interval_s
            # An idle queue (nothing remaining) flushes at once; a busy one fills the batch.
            while len(items) < c.batch_size and remaining > 0 and trio.current_time() < deadline:
                more, remaining = await self._take(key, c.batch_size - len(items), append=True)
                items.extend(more)
        except LostOwnership:
            # Another worker took this batch over while we were paused; it is theirs now.
            log.warning("batch taken over while filling", extra={"batch_id": batch_id})
            return None
        except RedisUnavailable as exc:
            self._redis_failed(exc)
            items = await self._reread(key)
            if not items:
                return None
        return self._batch(batch_id, key, items, datetime.now(UTC))

    async def _take(self, key: str, count: int, *, append: bool) -> tuple[list[bytes], int]:
        """``queue.take``, dropping on its way the lists of batches committed since the last."""
        drop, self.committed = self.committed, []
        try:
            items, self.queued = await self.queue.take(key, count, append=append, drop=drop)
        except RedisUnavailable:
            # Dropped or not, we can't tell: they go with the next call (dropping is idempotent).
            self.committed.extend(drop)
            drop = []
            raise
        finally:
            self.held.difference_update(drop)
        return items, self.queued

    async def _reread(self, key: str) -> list[bytes]:
        backoff = Backoff()
        while True:
            await backoff.sleep()
            try:
                return await self.queue.read(key)
            except RedisUnavailable as exc:
                self._redis_failed(exc)

    async def _recover(self, send: trio.MemorySendChannel[Batch]) -> None:
        """Finish in-flight lists left by stopped workers, and our own that no batch holds."""
        me = self.config.worker_id
        keys = self.queue.keys
        found = [
            (k, parts) for k in await self.queue.registered() if (parts := keys.split_inflight(k))
        ]
        owners = sorted({owner for _, (owner, _) in found if owner != me})
        alive = await self.queue.alive(owners)
        for key, (owner, batch_id) in found:
            if owner == me:
                if key in self.held:
                    continue
                new_key = key
            else:
                if alive.get(owner, True):
                    continue
                new_key = keys.inflight(me, batch_id)
                if not await self.queue.claim(key, new_key, owner):
                    continue
            # Once claimed, the key is ours: if Redis fails from here on, the next pass finds it
            # under our name, not held, and picks it up again.
            raws = await self.queue.read(new_key)
            if not raws:
                await self.queue.unregister(new_key)
                continue
            self.held.add(new_key)
            log.info(
                "recovering batch", extra={"batch_id": batch_id, "from": owner, "votes": len(raws)}
            )
            self.metrics.batches_recovered.inc()
            self.metrics.inflight.inc(len(raws))
            await self.flusher_free.acquire()
            batch = self._batch(batch_id, new_key, raws, started_at(batch_id))
            await send.send(batch)

    # ------------------------------------------------------------------ flusher

    async def flush(
        self,
        stores: Sequence[MySQLStore],
        receive: trio.MemoryReceiveChannel[Batch],
        drained: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Commit each batch, then finish it in Redis; set ``drained`` when the channel ends.

        One flusher per store (MySQL connection), all taking from the same channel: while one
        waits for its COMMIT's log flush, others send their rows, so MariaDB works on both cores
        and always has a batch in hand. Batches may therefore commit out of order (ids follow
        arrival order within a batch, not across batches in flight together); each still
        commits exactly once (the ledger), and its in-flight list goes only after its commit.
        """
        task_status.started()
        await self._connect(stores[0])
        async with receive, trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(self._flush_from, store, receive.clone())
        await self._drop_committed()
        drained.set()

    async def _flush_from(
        self, store: MySQLStore, receive: trio.MemoryReceiveChannel[Batch]
    ) -> None:
        next_prune = trio.current_time()
        async with receive:
            async for batch in receive:
                if trio.current_time() >= next_prune:
                    next_prune = trio.current_time() + PRUNE_EVERY_S
                    await self._prune(store)
                await self._commit(store, batch)
                self.metrics.inflight.dec(batch.size)
                self.metrics.batch_size.observe(batch.size)
                self.metrics.vote_process_duration.observe(time.perf_counter() - batch.taken_at)
                # This connection is free: the consumer fills its next batch meanwhile.
                self.flusher_free.release()
                if batch.dead or not self.queued:
                    await self._finish(batch)
                    self.held.discard(batch.key)
                else:
                    # Votes are queued, so the consumer takes again soon: that take drops the list.
                    self.committed.append(batch.key)

    async def _drop_committed(self) -> None:
        """Drop the committed lists that no take will drop now: the consumer has stopped."""
        backoff = Backoff()
        while self.committed:
            try:
                await self.queue.drop(self.committed)
            except RedisUnavailable as exc:
                self._redis_failed(exc)
                await backoff.sleep()
                continue
            self.held.difference_update(self.committed)
            self.committed = []

    async def _prune(self, store: MySQLStore) -> None:
        try:
            await self._connect(store)
            deleted = await store.prune_ledger(LEDGER_RETENTION_S)
        except MySQLUnavailable as exc:
            self._mysql_failed(exc)  # the batch's own commit will reconnect
            return
        if deleted:
            log.info("pruned ledger", extra={"rows": deleted})

    async def _connect(self, store: MySQLStore) -> None:
        """(Re)connect, making sure the schema is there: an operator may have dropped a table."""
        backoff = Backoff()
        while not store.connected:
            try:
                await store.ensure_schema()
                self.status.mysql_ok = True
            except MySQLUnavailable as exc:
                self._mysql_failed(exc)
                await backoff.sleep()

    def _mysql_failed(self, exc: MySQLUnavailable) -> None:
        if self.status.mysql_ok:
            log.warning("mysql unavailable", extra={"error": str(exc)})
        self.status.mysql_ok = False
        self.metrics.database_errors.inc()

    async def _commit(self, store: MySQLStore, batch: Batch) -> None:
        """Commit the batch's rows exactly once, retrying through any connection failure."""
        if not batch.rows:
            return
        backoff = Backoff()
        while True:
            await self._connect(store)
            started = time.perf_counter()
            slot = InsertSlot(self.inserting)
            try:
                try:
                    committed = await store.commit_batch(
                        batch.batch_id,
                        batch.rows,
                        wait_to_insert=slot.take,
                        insert_done=slot.give_back,
                    )
                except BatchRejected as exc:
                    log.warning("batch rejected, retrying row by row", extra={"error": str(exc)})
                    self.metrics.database_errors.inc()
                    committed, refused = await store.commit_rows_one_by_one(
                        batch.batch_id, batch.rows
                    )
                    self._reject_rows(batch, refused)
            except MySQLUnavailable as exc:
                self._mysql_failed(exc)
                await backoff.sleep()
                continue
            except Exception as exc:
                # MySQL refused the transaction itself (a dropped table, a revoked right): the
                # votes stay in flight and we keep trying, loudly, rather than exit.
                log.exception("batch commit failed", extra={"batch_id": batch.batch_id})
                store.close()
                self._mysql_failed(MySQLUnavailable(store.address, describe(exc)))
                await backoff.sleep()
                continue
            self.status.mysql_ok = True
            self.metrics.commit_duration.observe(time.perf_counter() - started)
            if committed:
                self.metrics.count_votes(batch.vote_counts())
            return

    def _reject_rows(self, batch: Batch, refused: list[int]) -> None:
        now = datetime.now(UTC)
        for i in refused:
            raw = batch.sources[i]
            batch.dead.append(envelope(raw, REJECTED_BY_DATABASE, self.config.worker_id, now))
            batch.dead_reasons[REJECTED_BY_DATABASE] += 1
        refused_set = set(refused)
        batch.rows = [r for i, r in enumerate(batch.rows) if i not in refused_set]

    async def _finish(self, batch: Batch) -> None:
        """Dead-letter the invalid messages and drop the in-flight list, in one atomic step."""
        backoff = Backoff()
        while True:
            try:
                done = await self.queue.finish(batch.key, batch.dead)
            except RedisUnavailable as exc:
                self._redis_failed(exc)
                await backoff.sleep()
                continue
            self.status.redis_ok = True
            if done:
                for reason, n in batch.dead_reasons.items():
                    self.metrics.dead_letters.labels(reason).inc(n)
            return
