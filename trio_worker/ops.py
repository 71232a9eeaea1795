"""The operator's commands: check, produce, stats, dlq. Each is one short Trio program."""

from __future__ import annotations

import math
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import trio
import trio_asyncio

from trio_worker.bridge import MySQLUnavailable, RedisUnavailable, aio, describe
from trio_worker.config import Config
from trio_worker.messages import original
from trio_worker.queue import RedisQueue, connect
from trio_worker.store import MySQLStore, quote

CHECK_TIMEOUT_S = 10.0
DEFAULT_CHOICES = ("a", "b")

# Moves the first ARGV[2] dead letters back to the queue, only if they are still exactly the ones
# the caller read (ARGV[3..]): requeueing twice, or something another operator moved, can't happen.
_REQUEUE = """
local n = tonumber(ARGV[2])
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return -1 end
for i = 1, n do if head[i] ~= ARGV[2 + i] then return -1 end end
for i = 1, n do redis.call(ARGV[1], KEYS[2], ARGV[2 + n + i]) end
redis.call('LTRIM', KEYS[1], n, -1)
return n
"""

_PURGE = """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
"""
REQUEUE_CHUNK = 500


@asynccontextmanager
async def open_queue(config: Config) -> AsyncIterator[RedisQueue]:
    async with trio_asyncio.open_loop():
        client = connect(config, block_s=0)
        try:
            yield RedisQueue(client, config)
        finally:
            with trio.CancelScope(shield=True):
                await aio(client.aclose)


def producer_push(config: Config) -> str:
    """The command a producer uses: the opposite end of the one the worker takes from."""
    return "RPUSH" if config.consume_from == "left" else "LPUSH"


Report = Callable[[bool, str], None]
"""How a command reports one finding: ``report(ok, text)``."""


async def check(config: Config, report: Report) -> bool:
    """Reach both stores and report each; True if both answered.

    MySQL is checked at the server level: the database may not exist yet (``run`` creates it),
    so its absence is reported, not treated as a failure.
    """
    ok = True
    async with open_queue(config) as queue:
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                await queue.ping()
                report(True, f"Redis at {config.redis_address}: reachable")
            except RedisUnavailable as exc:
                report(False, str(exc))
                ok = False
        if scope.cancelled_caught:
            report(False, f"Redis at {config.redis_address}: timed out")
            ok = False
        # (inside open_queue: asyncmy needs the same asyncio loop)
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                version, exists = await _mysql_server(config)
            except MySQLUnavailable as exc:
                report(False, str(exc))
                ok = False
            else:
                db = config.mysql_database
                state = (
                    f"database {db!r} exists"
                    if exists
                    else f"database {db!r} does not exist yet (`trio-worker run` creates it)"
                )
                report(
                    True, f"MySQL at {config.mysql_address}: reachable (server {version}); {state}"
                )
        if scope.cancelled_caught:
            report(False, f"MySQL at {config.mysql_address}: timed out")
            ok = False
    return ok


async def _mysql_server(config: Config) -> tuple[str, bool]:
    """The server's version and whether the configured database exists (none selected).

    Runs on the asyncio loop that ``open_queue`` opened.
    """
    store = MySQLStore(config)
    try:
        await store.connect(use_database=False)
        version = (await store.execute("SELECT VERSION()"))[0][0]
        found = await store.execute(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA"
            f" WHERE SCHEMA_NAME = {quote(config.mysql_database)}"
        )
        await store.commit()
    except MySQLUnavailable:
        raise
    except Exception as exc:
        # Access denied and the like: the server answered, but not to us.
        raise MySQLUnavailable(config.mysql_address, describe(exc)) from exc
    finally:
        store.close()
    return str(version), int(found[0][0]) > 0


@dataclass
class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    total: int
    label: str
    # Looked up when the bar is made: sys.stderr may have been replaced since import.
    enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    done: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        pct = 100 * self.done // max(self.total, 1)
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} {pct}% {self.done / elapsed:,.0f}/s"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def produce(
    config: Config, count: int, choices: list[str], rate: float | None, progress: Progress
) -> int:
    """Push ``count`` well-formed votes with unique voter ids, at most ``rate`` per second."""
    chunk = 1000 if rate is None else max(1, min(1000, math.ceil(rate / 20)))
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random()
    push = producer_push(config)
    async with open_queue(config) as queue:
        start = trio.current_time()
        sent = 0
        while sent < count:
            n = min(chunk, count - sent)
            now = datetime.now(UTC).isoformat()
            messages = [
                orjson.dumps(
                    {
                        "voter_id": f"{run_id}-{sent + i}",
                        "vote": rng.choice(choices),
                        "timestamp": now,
                    }
                )
                for i in range(n)
            ]
            await aio(queue.client.execute_command, push, queue.keys.queue, *messages)
            sent += n
            progress.advance(n)
            if rate is not None:
                await trio.sleep_until(start + sent / rate)
    return sent


async def stats(config: Config) -> dict[str, Any]:
    """Queue depth, in flight, dead letters (Redis) and stored totals by vote (MySQL)."""
    async with open_queue(config) as queue:
        depth = await queue.depth()
        inflight = await queue.inflight_count()
        dead = await queue.dead_count()
        workers = sorted(
            {parts[0] for k in await queue.registered() if (parts := queue.keys.split_inflight(k))}
        )
        alive = await queue.alive(workers)
        totals = await _stored_totals(config)
    return {
        "queue": config.vote_queue,
        "queue_depth": depth,
        "in_flight": inflight,
        "workers_with_in_flight": workers,
        "workers_with_in_flight_dead": [w for w in workers if not alive[w]],
        "dead_letter_queue": config.dead_letter_queue,
        "dead_letters": dead,
        "database": config.mysql_database,
        "database_exists": totals is not None,
        "stored_by_vote": totals or {},
        "stored_total": sum((totals or {}).values()),
    }


async def _stored_totals(config: Config) -> dict[str, int] | None:
    """Rows by vote, or None when the database or its table doesn't exist yet."""
    db = config.mysql_database
    store = MySQLStore(config)
    try:
        await store.connect(use_database=False)
        found = await store.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = {quote(db)} AND TABLE_NAME = 'votes'"
        )
        if int(found[0][0]) == 0:
            await store.commit()
            return None
        rows = await store.execute(
            f"SELECT vote, COUNT(*) FROM `{db}`.votes GROUP BY vote ORDER BY vote"
        )
        await store.commit()
    finally:
        store.close()
    return {str(v): int(n) for v, n in rows}


async def dlq_list(config: Config, limit: int) -> list[dict[str, Any]]:
    async with open_queue(config) as queue:
        items = cast("list[bytes]", await aio(queue.client.lrange, queue.keys.dead, 0, limit - 1))
    out = []
    for raw in items:
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            out.append({"unreadable_envelope": raw.decode("utf-8", "replace")})
    return out


async def dlq_requeue(config: Config, limit: int | None) -> int:
    """Move dead letters (oldest first) back to the queue, atomically and once each.

    ``limit=None`` moves the dead letters there are now, not ones that arrive meanwhile: a
    message that is still invalid comes back to the dead-letter list, and must not be requeued
    again in a loop.
    """
    moved = 0
    async with open_queue(config) as queue:
        if limit is None:
            limit = await queue.dead_count()
        script = queue.client.register_script(_REQUEUE)
        push = producer_push(config)
        while moved < limit:
            want = min(REQUEUE_CHUNK, limit - moved)
            head = cast("list[bytes]", await aio(queue.client.lrange, queue.keys.dead, 0, want - 1))
            if not head:
                break
            try:
                originals = [original(e) for e in head]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(
                    f"dead letter {moved + 1} in {queue.keys.dead} is not a readable envelope"
                    f" ({exc}); inspect it with `trio-worker dlq list`"
                ) from exc
            # -1: the head changed under us (another operator, a purge); read it again.
            n = int(
                await aio(
                    script,
                    keys=[queue.keys.dead, queue.keys.queue],
                    args=[push, len(head), *head, *originals],
                )
            )
            if n > 0:
                moved += n
    return moved


async def dlq_purge(config: Config) -> int:
    """Delete the dead-letter list; return how many it held (counted in the same step)."""
    async with open_queue(config) as queue:
        return int(await aio(queue.client.register_script(_PURGE), keys=[queue.keys.dead]))


async def dead_letter_count(config: Config) -> int:
    async with open_queue(config) as queue:
        return await queue.dead_count()
