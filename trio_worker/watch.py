"""The store watch: each store's health kept current while the pipeline leaves the store alone.

The pipeline's tasks report a store's health (``retry.StoreHealth``) each time they use it, and
``/ready`` and ``trio_worker_store_up`` read that. But an idle pipeline uses MySQL only to
commit: a MySQL that fails while no vote comes would still count as up until the next vote. So
a store that no task has reported on for ``QUIET_S`` is asked, with the ``/health`` probe's own
check and connection, and what the probe finds is reported the same way. ``QUIET_S`` is longer
than the retry loops' longest backoff, so the watch never speaks between the attempts of a task
that is retrying (a task's own findings about its own work are the better ones).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from trio_worker.errors import StoreUnavailable
from trio_worker.http import Probes
from trio_worker.periodic import Every
from trio_worker.retry import StoreHealth
from trio_worker.status import Status

# How often the watch looks, and how long a store may go without a report before it asks
# (above ``retry.Backoff.cap_s``, 2.5 s: a test holds it there).
PERIOD_S = 2.0
QUIET_S = 8.0


class StoreWatch:
    def __init__(self, status: Status, probes: Probes) -> None:
        self.status = status
        self.probes = probes

    async def run(
        self, done: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Look every ``PERIOD_S`` until ``done``."""
        task_status.started()
        watched: list[tuple[StoreHealth, Callable[[], Awaitable[StoreUnavailable | None]]]] = [
            (self.status.mysql, self.probes.mysql_failure),
            (self.status.redis, self.probes.redis_failure),
        ]
        ticks = Every(PERIOD_S, done, now=False)  # the tasks report first, at start
        while await ticks.next():
            for health, probe in watched:
                reported_at = health.reported_at
                if trio.current_time() - reported_at < QUIET_S:
                    continue
                error = await probe()
                if health.reported_at != reported_at:
                    continue  # a task reported meanwhile: its finding is the newer one
                if error is None:
                    health.succeeded()
                else:
                    health.failed(error)
