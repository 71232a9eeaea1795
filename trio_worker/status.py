"""What the worker is doing now, as /ready and /health report it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from trio_worker.errors import MySQLUnavailable, RedisUnavailable
from trio_worker.metrics import Metrics
from trio_worker.retry import StoreHealth

Phase = Literal["starting", "running", "draining", "stopped"]


@dataclass(eq=False)
class Status:
    """Written by the pipeline tasks, read by the HTTP handlers. One Trio thread: no locks."""

    redis: StoreHealth
    mysql: StoreHealth
    phase: Phase = "starting"
    # Another live process holds our worker id: we take nothing (see heartbeat.Lease).
    conflict: bool = False

    @classmethod
    def for_metrics(cls, metrics: Metrics) -> Status:
        status = cls(
            StoreHealth("redis", RedisUnavailable, metrics.redis_errors),
            StoreHealth("mysql", MySQLUnavailable, metrics.database_errors),
        )
        # trio_worker_store_up is read from the very state /ready and the retry loops use.
        for health in (status.redis, status.mysql):
            metrics.store_up.labels(health.name).set_function(partial(_up, health))
        return status

    @property
    def ready(self) -> bool:
        """Taking work: started, not draining, our worker id ours, and neither store cut off."""
        return (
            self.phase == "running"
            and not self.conflict
            and bool(self.redis.ok)
            and bool(self.mysql.ok)
        )


def _up(health: StoreHealth) -> float:
    """1 while the store answers; 0 once it has failed, and before anything has reached it."""
    return 1.0 if health.ok else 0.0
