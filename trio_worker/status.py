"""What the worker is doing now, as /ready and /health report it."""

from __future__ import annotations

from dataclasses import dataclass
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
        return cls(
            StoreHealth("redis", RedisUnavailable, metrics.redis_errors),
            StoreHealth("mysql", MySQLUnavailable, metrics.database_errors),
        )

    @property
    def ready(self) -> bool:
        """Taking work: started, not draining, our worker id ours, and neither store cut off."""
        return (
            self.phase == "running"
            and not self.conflict
            and bool(self.redis.ok)
            and bool(self.mysql.ok)
        )
