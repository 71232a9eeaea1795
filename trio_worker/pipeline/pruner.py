"""The pruner: forgets ledger rows the ledger no longer needs to vouch for.

Every tenth of ``LEDGER_RETENTION_S`` (at least every 10 minutes) it deletes the ledger rows
older than the retention, except those of batches that still have an in-flight list in Redis
(registered): such a list may yet be committed again, and only its ledger row can say it was
committed already. A batch older than the retention is never committed (see ``mysql.ledger``),
so a row older than that can only matter while its list exists.

It also shares this worker's ``LEDGER_RETENTION_S`` with the other live workers on the queue
(``<queue>:settings``) every ``COMPARE_S``, and says so when theirs differs: a rolling change is
safe (the rows of batches still in flight are spared, whoever prunes), but the shortest
retention decides how long rows last.
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
from trio_worker.queue.settings import share_settings
from trio_worker.retry import retry
from trio_worker.version import version

log = logging.getLogger("trio_worker.pruner")


# How often the live workers' settings are compared (a rolling change is seen within this).
COMPARE_S = 30.0


def period_s(retention_s: float) -> float:
    return min(600.0, retention_s / 10)


class Pruner(Task):
    def __init__(self, shared: Shared, queue: RedisQueue, clock: ServerClock) -> None:
        super().__init__(shared)
        self.queue = queue
        self.clock = clock
        self._disagreement: tuple[tuple[str, str], ...] = ()  # the last one logged

    async def run(
        self, done: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Prune now and every period until ``done``, and compare settings with the other live
        workers every ``COMPARE_S``; started once its connection is open."""
        conn = Connection(self.config)
        period = period_s(self.config.ledger_retention_s)
        try:
            await retry(self.status.mysql, lambda: self._open(conn))
            task_status.started()
            ticks = Every(min(period, COMPARE_S), done)
            next_prune = trio.current_time()
            while await ticks.next():
                self.live.busy("pruner")
                try:
                    await self._compare_settings()
                    if trio.current_time() >= next_prune:
                        next_prune = trio.current_time() + period
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
        assert conn.server is not None
        self.clock.set(await conn.server_time())
        return deleted

    async def _compare_settings(self) -> None:
        """Share our LEDGER_RETENTION_S with the other live workers on this queue, and say so
        when theirs differs (a rolling change, or a mistake). No row another worker relies on
        is pruned meanwhile: rows of batches whose in-flight list is registered are spared,
        whoever prunes; but the shortest retention decides how long rows last."""
        me, mine = self.config.worker_id, self.config.ledger_retention_s
        shared = await share_settings(
            self.queue, {"ledger_retention_s": mine, "version": version()}
        )
        differ = {
            worker: settings.get("ledger_retention_s")
            for worker, settings in shared.items()
            if worker != me and settings.get("ledger_retention_s") != mine
        }
        seen = tuple(sorted((w, str(r)) for w, r in differ.items()))
        if differ and seen != self._disagreement:
            log.warning(
                "live workers on this queue differ in LEDGER_RETENTION_S: the shortest decides how"
                " long ledger rows last (rows of batches still in flight are always spared)",
                extra={"ledger_retention_s": mine, "others": differ},
            )
        self._disagreement = seen
