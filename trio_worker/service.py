"""The service: the one function that owns the root nursery.

    run(config)
    └── trio-asyncio loop (redis-py and asyncmy live on it)
        └── root nursery
            ├── signals      SIGTERM/SIGINT → stop (a second signal cancels at once)
            ├── http         Quart-Trio app on Hypercorn, until the pipeline is done
            ├── heartbeat    <queue>:worker:<id> with a TTL, queue depth gauge
            ├── flushers     channel → MySQL (ledger + rows, one transaction) → finish in Redis
            └── consumer     Redis → in-flight list → channel; recovers dead workers' batches

Shutdown: ``stop`` is set; the consumer stops taking and closes its channel; the flusher commits
what it holds and sets ``drained``; then HTTP and the heartbeat stop and connections close. If
``SHUTDOWN_TIMEOUT_S`` passes first, everything is cancelled: in-flight votes stay in Redis for
recovery (nothing is lost) and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal

import trio
import trio_asyncio

from trio_worker.batch import Batch
from trio_worker.bridge import StoreUnavailable, aio
from trio_worker.config import Config
from trio_worker.heartbeat import beat
from trio_worker.http import Probes, create_app, serve_http
from trio_worker.metrics import Metrics
from trio_worker.pipeline import BLOCK_S, FLUSHERS, Pipeline
from trio_worker.queue import RedisQueue, connect
from trio_worker.status import Status
from trio_worker.store import MySQLStore

log = logging.getLogger("trio_worker.service")

# Cleanup that must finish (deleting the heartbeat, closing sockets) gets this long, shielded.
CLEANUP_S = 3.0


async def watch_signals(
    stop: trio.Event,
    cancel: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """First SIGTERM/SIGINT: drain. Second: give up on draining (nothing is lost either way)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not stop.is_set():
                log.info("draining", extra={"signal": signal.Signals(signum).name})
                stop.set()
            else:
                log.warning("second signal: stopping without draining")
                cancel.cancel()


async def run(
    config: Config,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the worker until SIGTERM/SIGINT (or ``stop``); return the exit status.

    ``task_status.started`` reports the HTTP addresses once the server is bound and the pipeline
    tasks are running. 0 means drained cleanly; 1 means the drain deadline passed.
    """
    stop = trio.Event() if stop is None else stop
    status = Status()
    metrics = Metrics(config.vote_choices)
    token = secrets.token_hex(8)
    drained = trio.Event()
    clean = False
    async with trio_asyncio.open_loop():
        client = connect(config, block_s=BLOCK_S)
        queue = RedisQueue(client, config)
        stores = [MySQLStore(config) for _ in range(FLUSHERS)]
        probe = MySQLStore(config)
        pipeline = Pipeline(config, queue, status, metrics)
        app = create_app(status, metrics, Probes(queue, probe))
        http_done = trio.Event()
        try:
            async with trio.open_nursery() as root:
                await root.start(watch_signals, stop, root.cancel_scope)
                binds = await root.start(serve_http, app, config, http_done.wait)
                await root.start(beat, queue, config, token, status, metrics)
                send, receive = trio.open_memory_channel[Batch](0)
                await root.start(pipeline.flush, stores, receive, drained)
                await root.start(pipeline.consume, send, stop)
                status.phase = "running"
                log.info("started", extra={"worker_id": config.worker_id, "http": binds})
                task_status.started(binds)
                await stop.wait()
                status.phase = "draining"
                with trio.move_on_after(config.shutdown_timeout_s):
                    await drained.wait()
                clean = drained.is_set()
                http_done.set()
                # The pipeline is done (or out of time); the heartbeat and HTTP go with it.
                root.cancel_scope.cancel()
        finally:
            status.phase = "stopped"
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_S):
                # Deleting the heartbeat lets other workers take over anything left at once.
                with contextlib.suppress(StoreUnavailable):
                    await queue.drop_heartbeat(config.worker_id)
                for store in stores:
                    store.close()
                probe.close()
                await aio(client.aclose)
    if clean:
        log.info("stopped cleanly")
        return 0
    log.error("drain deadline passed; in-flight votes stay in Redis for recovery")
    return 1
