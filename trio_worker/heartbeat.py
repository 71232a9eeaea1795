"""The heartbeat: proves this worker alive, and samples the queue for the metrics."""

from __future__ import annotations

import logging

import trio

from trio_worker.bridge import RedisUnavailable
from trio_worker.config import Config
from trio_worker.metrics import Metrics
from trio_worker.queue import RedisQueue
from trio_worker.status import Status

log = logging.getLogger("trio_worker.heartbeat")


def period_s(ttl_s: float) -> float:
    """Beat three times per TTL (a missed beat or two never looks like death), at most 1/s."""
    return min(1.0, ttl_s / 3)


async def beat(
    queue: RedisQueue,
    config: Config,
    token: str,
    status: Status,
    metrics: Metrics,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Refresh ``<queue>:worker:<id>`` with a TTL on a fixed period until cancelled."""
    period = period_s(config.heartbeat_ttl_s)
    deadline = trio.current_time()
    task_status.started()
    while True:
        try:
            await queue.heartbeat(config.worker_id, token, config.heartbeat_ttl_s)
            metrics.queue_depth.set(await queue.depth())
            status.redis_ok = True
        except RedisUnavailable as exc:
            if status.redis_ok:
                log.warning("heartbeat failed", extra={"error": str(exc)})
            status.redis_ok = False
            metrics.redis_errors.inc()
        metrics.ready.set(1 if status.ready else 0)
        # sleep_until a deadline, so the period doesn't drift with the time each beat takes.
        deadline = max(deadline + period, trio.current_time())
        await trio.sleep_until(deadline)
