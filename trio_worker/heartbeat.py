"""The heartbeat: proves this worker alive, and samples the queue for the metrics."""

from __future__ import annotations

import contextlib
import logging

import trio

from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.liveness import Liveness
from trio_worker.metrics import Metrics
from trio_worker.queue import RedisQueue
from trio_worker.retry import retry
from trio_worker.status import Status

log = logging.getLogger("trio_worker.heartbeat")

# Deleting the heartbeat on the way out gets this long, whatever cancelled us.
CLEANUP_S = 3.0


def period_s(ttl_s: float) -> float:
    """Beat three times per TTL (a missed beat or two never looks like death), at most 1/s."""
    return min(1.0, ttl_s / 3)


async def beat(
    queue: RedisQueue,
    config: Config,
    token: str,
    status: Status,
    metrics: Metrics,
    live: Liveness,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh ``<queue>:worker:<id>`` with a TTL on a fixed period until ``done``.

    Started once the first beat is written. On the way out the key is deleted, so that other
    workers take over anything this one leaves in flight at once.
    """

    async def once() -> None:
        await queue.heartbeat(config.worker_id, token, config.heartbeat_ttl_s)
        metrics.queue_depth.set(await queue.depth())

    period = period_s(config.heartbeat_ttl_s)
    try:
        await retry(status.redis, once)
        task_status.started()
        deadline = trio.current_time()
        while not done.is_set():
            live.busy("heartbeat")
            metrics.ready.set(1 if status.ready else 0)
            # sleep_until a deadline, so the period doesn't drift with the time each beat takes.
            deadline = max(deadline + period, trio.current_time())
            with trio.move_on_at(deadline):
                await done.wait()
                break
            try:
                await once()
            except RedisUnavailable as exc:
                status.redis.failed(exc)
            else:
                status.redis.succeeded()
    finally:
        live.forget("heartbeat")
        metrics.ready.set(0)
        shielded = trio.CancelScope(shield=True)
        with shielded, trio.move_on_after(CLEANUP_S), contextlib.suppress(RedisUnavailable):
            await queue.drop_heartbeat(config.worker_id)
