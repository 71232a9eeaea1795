"""The pruner: forgets ledger rows the ledger no longer needs to vouch for.

Every tenth of ``LEDGER_RETENTION_S`` (at least every 10 minutes) it deletes the ledger rows
older than the retention, except those of batches that still have an in-flight list in Redis
(registered): such a list may yet be committed again, and only its ledger row can say it was
committed already. A batch older than the retention is never committed (see ``mysql.ledger``),
so a row older than that can only matter while its list exists.
"""

from __future__ import annotations

import logging

import trio

from trio_worker.errors import StoreUnavailable
from trio_worker.mysql import ledger
from trio_worker.mysql.clock import ServerClock
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import open_with_schema
from trio_worker.periodic import Every
from trio_worker.pipeline.shared import Shared, Task
from trio_worker.queue import RedisQueue
from trio_worker.retry import retry

log = logging.getLogger("trio_worker.pruner")


def period_s(retention_s: float) -> float:
    return min(600.0, retention_s / 10)


class Pruner(Task):
    def __init__(self, shared: Shared, queue: RedisQueue, clock: ServerClock) -> None:
        super().__init__(shared)
        self.queue = queue
        self.clock = clock

    async def run(
        self, done: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Prune now and every period until ``done``; started once its connection is open."""
        conn = Connection(self.config)
        period = period_s(self.config.ledger_retention_s)
        try:
            await retry(self.status.mysql, lambda: self._open(conn))
            task_status.started()
            ticks = Every(period, done)
            while await ticks.next():
                self.live.busy("pruner")
                try:
                    await self.prune(conn)
                except StoreUnavailable as exc:
                    # The stores' own tasks report the outage; the next period tries again.
                    log.info("pruning skipped", extra={"error": str(exc)})
                self.live.idle("pruner")
        finally:
            self.live.forget("pruner")
            conn.close()

    async def _open(self, conn: Connection) -> None:
        await open_with_schema(conn)
        assert conn.server is not None
        self.clock.set(conn.server.clock)

    async def prune(self, conn: Connection) -> int:
        """One pass: the registered lists' batches are spared."""
        if not conn.is_open or conn.idle_too_long():
            await self._open(conn)
        keys = self.queue.keys
        spared = sorted(
            {
                parts[1]
                for key in await self.queue.registered()
                if (parts := keys.split_inflight(key))
            }
        )
        deleted = await ledger.prune(conn, self.config.ledger_retention_s, spared)
        if deleted:
            log.info("pruned ledger", extra={"rows": deleted, "spared": len(spared)})
        return deleted
