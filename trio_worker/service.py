"""The service: the one function that owns the root nursery.

    run(config)
    └── trio-asyncio loop (redis-py and asyncmy live on it; ``loop.open_loop``)
        └── root nursery
            ├── signals      SIGTERM/SIGINT → stop (a repeat within 1 s is the same request;
            │                a later one: stop without draining)
            ├── http         Quart-Trio app on Hypercorn, until ``finished``
            ├── watch        asks a store no task has reported on lately (/ready, store_up)
            ├── heartbeat    <queue>:worker:<id> with a TTL: the lease on our worker id; the
            │                queue's depth and age for the metrics
            ├── pruner       the ledger's rows older than LEDGER_RETENTION_S
            ├── flushers     channel → MySQL (ledger + rows, one transaction) → finish in Redis
            ├── recovery     stopped workers' batches → channel
            └── consumer     Redis → in-flight list → channel

Each pipeline task reports ``started`` only once its connections are open, so the service
reports ``running`` (``/ready`` 200) only when every connection the pipeline needs is open.
Until then HTTP answers (503), and ``stop`` abandons the start.

Shutdown has one path: ``stop`` is set; the consumer and recovery stop taking and close their
ends of the channel; the flushers commit what they hold and set ``drained``; then ``finished``
ends HTTP through Hypercorn's own shutdown trigger and the heartbeat, which deletes its key.
The root scope is cancelled only when ``SHUTDOWN_TIMEOUT_S`` passes first: in-flight votes then
stay in Redis for recovery (nothing is lost) and the exit status is 1.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from trio_worker import compat
from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.http import Probes, create_app, serve_http
from trio_worker.liveness import SLACK_S, Liveness
from trio_worker.loop import open_loop
from trio_worker.metrics import Metrics
from trio_worker.mysql.clock import ServerClock
from trio_worker.mysql.connection import Connection
from trio_worker.pipeline import BLOCK_S, FLUSHERS, Consumer, Flushers, Holdings, Permits, Recovery
from trio_worker.pipeline.batch import Batch
from trio_worker.pipeline.heartbeat import CLEANUP_S, Heartbeat, Lease
from trio_worker.pipeline.pruner import Pruner
from trio_worker.pipeline.shared import Shared
from trio_worker.queue import Boundary, RedisQueue
from trio_worker.status import Status
from trio_worker.version import version
from trio_worker.watch import StoreWatch

log = logging.getLogger("trio_worker.service")


# A repeat of the signal within this long is the same request: a supervisor and the process
# group (systemd's KillMode=control-group, `kill -TERM -<pgid>`) often both deliver it.
REPEAT_S = 1.0


async def watch_signals(
    signals: AsyncIterator[int],
    stop: trio.Event,
    give_up: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    """First SIGTERM/SIGINT: drain. One more within a second: the same request. A later one:
    give up on draining (nothing is lost either way: what is in flight stays in Redis)."""
    first_at: float | None = None
    with trio.CancelScope() as scope:
        task_status.started(scope)
        async for signum in signals:
            name = signal.Signals(signum).name
            if first_at is None:
                first_at = trio.current_time()
                log.info("draining", extra={"signal": name})
                stop.set()
            elif trio.current_time() - first_at < REPEAT_S:
                log.info("repeated signal: the same stop request", extra={"signal": name})
            else:
                log.warning("second signal: stopping without draining", extra={"signal": name})
                give_up.cancel()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


@dataclass(frozen=True)
class Pipeline:
    """The tasks ``run`` starts after HTTP, in dependency order."""

    heartbeat: Heartbeat
    pruner: Pruner
    flushers: Flushers
    recovery: Recovery
    consumer: Consumer

    async def start(
        self,
        root: trio.Nursery,
        stop: trio.Event,
        finished: trio.Event,
        drained: trio.Event,
    ) -> bool:
        """Start every task in ``root``, each once its connections are open; a stop before the
        end abandons the start. Returns whether the flushers run (then they set ``drained``)."""
        send, receive = trio.open_memory_channel[Batch](0)
        flushing = False
        async with send, trio.open_nursery() as starting:
            starting.start_soon(_cancel_when, stop, starting.cancel_scope)
            await root.start(self.heartbeat.run, finished)  # the worker id is ours
            await root.start(self.pruner.run, finished)
            await root.start(self.flushers.run, receive, drained)
            flushing = True
            await root.start(self.recovery.run, send.clone(), stop)
            await root.start(self.consumer.run, send.clone(), stop)
            starting.cancel_scope.cancel()
        return flushing


async def run(
    config: Config,
    *,
    stop: trio.Event | None = None,
    stopped_before: threading.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the worker until SIGTERM/SIGINT (or ``stop``); return the exit status.

    ``task_status.started`` reports the HTTP addresses once the server is bound (the pipeline
    may still be starting: ``/ready`` says when it runs). 0 means drained cleanly; 1 means the
    drain deadline passed. ``stopped_before``: set by whoever handled the signals before this
    ran (the command line), if one came then.

    The signal handlers stay installed until the very end, so that a repeat of the signal
    during the last of the shutdown is still the same request, not the default death.
    """
    stop = trio.Event() if stop is None else stop
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        if stopped_before is not None and stopped_before.is_set():
            stop.set()
        return await _run(config, signals, stop, task_status)


async def _run(
    config: Config,
    signals: AsyncIterator[int],
    stop: trio.Event,
    task_status: trio.TaskStatus[list[str]],
) -> int:
    log.info("starting", extra={"version": version(), "worker_id": config.worker_id})
    metrics = Metrics(config.vote_choices)
    status = Status.for_metrics(metrics)
    drained = trio.Event()
    finished = trio.Event()
    compat.report()
    async with open_loop(fast_path=config.trio_asyncio_fast_path):
        boundary = Boundary.open(config, block_s=BLOCK_S)
        queue = RedisQueue(boundary, config, token=secrets.token_hex(8))
        lease = Lease()
        probe = Connection(config)
        # The probes' own Redis client: a burst of /health never takes the pipeline's.
        probe_queue = RedisQueue(Boundary.open(config, block_s=0), config)
        live = Liveness(config.mysql_read_timeout_s + SLACK_S)
        shared = Shared(config, status, metrics, Holdings(), live)
        permits, clock = Permits(FLUSHERS), ServerClock()
        pipeline = Pipeline(
            Heartbeat(queue, config, status, metrics, live, lease),
            Pruner(shared, queue, clock),
            Flushers(shared, queue, clock),
            Recovery(shared, queue, permits, lease),
            Consumer(shared, queue, permits, lease, clock),
        )
        probes = Probes(probe_queue, probe)
        app = create_app(status, metrics, probes, live)
        try:
            async with trio.open_nursery() as root:
                watching = await root.start(watch_signals, signals, stop, root.cancel_scope)
                binds = await root.start(serve_http, app, config, finished.wait)
                task_status.started(binds)
                await root.start(StoreWatch(status, probes).run, finished)
                if not await pipeline.start(root, stop, finished, drained):
                    drained.set()  # nothing was taken: there is nothing to drain
                if not stop.is_set():
                    status.phase = "running"
                    log.info(
                        "started",
                        extra={"version": version(), "worker_id": config.worker_id, "http": binds},
                    )
                await stop.wait()
                status.phase = "draining"
                root.cancel_scope.deadline = trio.current_time() + config.shutdown_timeout_s
                await drained.wait()
                finished.set()
                watching.cancel()
        finally:
            status.phase = "stopped"
            with trio.CancelScope(shield=True):
                probe.close()
                await _close(boundary, probe_queue.boundary)
    if drained.is_set():
        log.info("stopped cleanly")
        return 0
    log.error("drain deadline passed; in-flight votes stay in Redis for recovery")
    return 1


async def _close(*boundaries: Boundary) -> None:
    """Close the Redis connections within ``CLEANUP_S``. The votes are stored or left for
    recovery by now, so a failure here is logged, not raised."""
    with trio.move_on_after(CLEANUP_S) as scope:
        for boundary in boundaries:
            try:
                await boundary.aclose()
            except RedisUnavailable as exc:
                log.warning("closing the Redis connections failed", extra={"error": str(exc)})
    if scope.cancelled_caught:
        log.warning("closing the Redis connections took over %g s; gave up on them", CLEANUP_S)
