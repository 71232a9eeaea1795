"""The HTTP face: /health, /ready, /live and /metrics, a Quart-Trio app served by Hypercorn."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response
from quart_trio import QuartTrio

from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable, RedisUnavailable, StoreUnavailable
from trio_worker.liveness import Liveness
from trio_worker.metrics import Metrics
from trio_worker.mysql.connection import Connection
from trio_worker.queue import RedisQueue
from trio_worker.status import Status
from trio_worker.version import version

log = logging.getLogger("trio_worker.http")

# A health check that takes longer than this reports the store as down rather than hanging.
PROBE_TIMEOUT_S = 2.0


class _Check:
    """One check under way, and its outcome once ``done``."""

    def __init__(self, pending: StoreUnavailable) -> None:
        self.done = trio.Event()
        self.error: StoreUnavailable | None = pending


class _OneAtATime:
    """A store's check, run once at a time: a burst of callers shares the check under way
    (one connection, never more), and each caller has its answer within the probe timeout."""

    def __init__(self, check: Callable[[], Awaitable[StoreUnavailable | None]]) -> None:
        self._check = check
        self._under_way: _Check | None = None

    async def __call__(self, pending: StoreUnavailable) -> StoreUnavailable | None:
        check = self._under_way
        if check is None:
            check = self._under_way = _Check(pending)
            try:
                check.error = await self._check()
            finally:
                check.done.set()
                self._under_way = None
            return check.error
        with trio.move_on_after(PROBE_TIMEOUT_S):
            await check.done.wait()
        return check.error


class Probes:
    """Live checks of both stores for /health (and the store watch), on connections of their
    own: a burst of /health requests never takes a connection the pipeline needs. ``queue``
    is a Redis client of the probes' own (``service.run`` opens it)."""

    def __init__(self, queue: RedisQueue, conn: Connection) -> None:
        self.queue = queue
        self.conn = conn
        self._redis = _OneAtATime(self._check_redis)
        self._mysql = _OneAtATime(self._check_mysql)

    async def redis(self) -> bool:
        return await self.redis_failure() is None

    async def mysql(self) -> bool:
        return await self.mysql_failure() is None

    async def redis_failure(self) -> StoreUnavailable | None:
        """None if Redis answers a PING within the probe timeout; else why not."""
        return await self._redis(RedisUnavailable(self.queue.address, "check under way"))

    async def mysql_failure(self) -> StoreUnavailable | None:
        """None if MySQL answers within the probe timeout; else why not."""
        return await self._mysql(MySQLUnavailable(self.conn.address, "check under way"))

    async def _check_redis(self) -> StoreUnavailable | None:
        with trio.move_on_after(PROBE_TIMEOUT_S):
            try:
                await self.queue.ping()
                return None
            except StoreUnavailable as exc:
                return exc
        return RedisUnavailable(self.queue.address, f"no answer within {PROBE_TIMEOUT_S:g} s")

    async def _check_mysql(self) -> StoreUnavailable | None:
        with trio.move_on_after(PROBE_TIMEOUT_S):
            try:
                if not self.conn.is_open or self.conn.idle_too_long():
                    # The server answering is health; the database may not exist yet.
                    await self.conn.open(database=False)
                await self.conn.execute("SELECT 1")
                await self.conn.commit()
                return None
            except StoreUnavailable as exc:
                self.conn.close()
                return exc
        self.conn.close()
        return MySQLUnavailable(self.conn.address, f"no answer within {PROBE_TIMEOUT_S:g} s")


def create_app(status: Status, metrics: Metrics, probes: Probes, live: Liveness) -> QuartTrio:
    app = QuartTrio("trio_worker")

    @app.get("/live")
    async def liveness() -> tuple[dict[str, object], int]:
        # Answering at all proves the event loop runs; no store is asked.
        hung = live.hung()
        return {"live": not hung, "hung": hung}, 503 if hung else 200

    @app.get("/health")
    async def health() -> tuple[dict[str, str], int]:
        results: dict[str, bool] = {}

        async def check(name: str, probe: Callable[[], Awaitable[bool]]) -> None:
            results[name] = await probe()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(check, "redis", probes.redis)
            nursery.start_soon(check, "database", probes.mysql)
        healthy = results["redis"] and results["database"]
        metrics.health_checks.labels("healthy" if healthy else "unhealthy").inc()
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "service": "worker",
            "redis": "connected" if results["redis"] else "disconnected",
            "database": "connected" if results["database"] else "disconnected",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": version(),
        }
        return body, 200 if healthy else 503

    @app.get("/ready")
    async def ready() -> tuple[dict[str, object], int]:
        body: dict[str, object] = {
            "ready": status.ready,
            "phase": status.phase,
            "worker_id_conflict": status.conflict,
            "redis": bool(status.redis.ok),
            "database": bool(status.mysql.ok),
        }
        return body, 200 if status.ready else 503

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), status=200, content_type=CONTENT_TYPE_LATEST)

    return app


async def serve_http(
    app: QuartTrio,
    config: Config,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns; ``started`` reports the bound addresses."""
    hc = HypercornConfig()
    host = config.http_host
    hc.bind = [f"[{host}]:{config.http_port}" if ":" in host else f"{host}:{config.http_port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 2.0
    await serve(app, hc, shutdown_trigger=shutdown_trigger, task_status=task_status)
