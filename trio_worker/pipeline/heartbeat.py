"""The heartbeat: this process's lease on its worker id, and the queue depth for the metrics.

The heartbeat key ``<queue>:worker:<id>`` holds a token of this process, with a TTL, refreshed
three times per TTL. It is a lease: while it holds our token, no other process can take votes
under our id (every script that takes votes checks it), and while another live process's
token is there (a twin: a second process started with our WORKER_ID, or a restart while the old
process is only paused), we take none, say so loudly, and wait for it to go.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.liveness import Liveness
from trio_worker.metrics import Metrics
from trio_worker.periodic import Every
from trio_worker.queue import RedisQueue
from trio_worker.retry import retry
from trio_worker.status import Status

log = logging.getLogger("trio_worker.heartbeat")

# Deleting the heartbeat on the way out gets this long, whatever cancelled us.
CLEANUP_S = 3.0


# The queue's depth and age are sampled with each beat: at least once a second.
SAMPLE_S = 1.0


def third_of(ttl_s: float) -> float:
    """A third of the heartbeat's TTL: a missed beat or two never looks like death, and a
    stopped worker's lists are taken over within TTL + TTL/3 (``recovery``)."""
    return ttl_s / 3


def period_s(ttl_s: float) -> float:
    """Beat three times per TTL, and at least every ``SAMPLE_S``."""
    return min(SAMPLE_S, third_of(ttl_s))


class Lease:
    """Whether this process holds its worker id: tasks that take votes wait for it."""

    def __init__(self) -> None:
        self._held = trio.Event()

    @property
    def held(self) -> bool:
        return self._held.is_set()

    async def wait(self) -> None:
        await self._held.wait()

    def hold(self) -> None:
        self._held.set()

    def lose(self) -> None:
        if self._held.is_set():
            self._held = trio.Event()


class Heartbeat:
    def __init__(
        self,
        queue: RedisQueue,
        config: Config,
        status: Status,
        metrics: Metrics,
        live: Liveness,
        lease: Lease,
    ) -> None:
        self.queue = queue
        self.config = config
        self.status = status
        self.metrics = metrics
        self.live = live
        self.lease = lease

    async def run(
        self, done: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Beat until ``done``; started once the lease is ours. On the way out the key is
        deleted (if ours), so that other workers take over what we leave at once."""
        period = period_s(self.config.heartbeat_ttl_s)
        try:
            await retry(self.status.redis, self.queue.check_server)
            while not self.lease.held:
                await retry(self.status.redis, self._beat, writes=True)
                if not self.lease.held:
                    await trio.sleep(period)
            task_status.started()
            ticks = Every(period, done)
            while await ticks.next():
                self.live.busy("heartbeat")
                self.metrics.ready.set(1 if self.status.ready else 0)
                try:
                    await self._beat()
                except RedisUnavailable as exc:
                    self.status.redis.failed(exc)
                else:
                    self.status.redis.succeeded(wrote=True)
        finally:
            self.live.forget("heartbeat")
            self.metrics.ready.set(0)
            shielded = trio.CancelScope(shield=True)
            with shielded, trio.move_on_after(CLEANUP_S), contextlib.suppress(RedisUnavailable):
                await self.queue.unbeat()

    async def _beat(self) -> None:
        left_ms = await self.queue.beat(self.config.heartbeat_ttl_s)
        if left_ms:
            self._conflict(left_ms)
        elif not self.lease.held:
            if self.status.conflict:
                log.warning("worker id free again: taking votes", extra=self._who())
            self.status.conflict = False
            self.metrics.worker_id_conflict.set(0)
            self.lease.hold()
        depth, oldest = await self.queue.sample()
        self.metrics.queue_depth.set(depth)
        self.metrics.oldest_vote.cast_at = oldest

    def _conflict(self, left_ms: int) -> None:
        if not self.status.conflict:
            log.error(
                "worker id in use by another live process (its heartbeat is fresh): taking no"
                " votes until it is gone; two live processes must never share a WORKER_ID",
                extra={**self._who(), "other_expires_in_ms": left_ms},
            )
        self.status.conflict = True
        self.metrics.worker_id_conflict.set(1)
        self.lease.lose()

    def _who(self) -> dict[str, str]:
        return {"worker_id": self.config.worker_id}
