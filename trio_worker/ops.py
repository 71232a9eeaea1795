"""The operator's commands: check, produce, stats, dlq. Each is one short Trio program."""

from __future__ import annotations

import math
import random
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import trio
import trio_asyncio

from trio_worker.bridge import RedisUnavailable, aio
from trio_worker.config import Config
from trio_worker.messages import original
from trio_worker.queue import RedisQueue, connect
from trio_worker.store import MySQLStore

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


async def check(config: Config, say: Callable[[str], None]) -> bool:
    """Reach both stores; report each; True if both answered."""
    ok = True
    async with open_queue(config) as queue:
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                await queue.ping()
                say(f"ok: Redis at {config.redis_address}")
            except RedisUnavailable as exc:
                say(f"error: {exc}")
                ok = False
        if scope.cancelled_caught:
            say(f"error: Redis at {config.redis_address}: timed out")
            ok = False
        store = MySQLStore(config)
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                await store.connect()
                await store.ping()
                say(f"ok: MySQL at {config.mysql_address}, database {config.mysql_database}")
            except Exception as exc:
                say(f"error: {exc}")
                ok = False
            finally:
                store.close()
        if scope.cancelled_caught:
            say(f"error: MySQL at {config.mysql_address}: timed out")
            ok = False
    return ok


@dataclass
class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    total: int
    label: str
    enabled: bool = sys.stderr.isatty()
    done: int = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.enabled:
            width = 30
            filled = width * self.done // max(self.total, 1)
            pct = 100 * self.done // max(self.total, 1)
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {pct}%")
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
    async with open_queue(config) as queue:
        depth = await queue.depth()
        inflight = await queue.inflight_count()
        dead = await queue.dead_count()
        workers = sorted(
            {parts[0] for k in await queue.registered() if (parts := queue.keys.split_inflight(k))}
        )
        store = MySQLStore(config)
        try:
            await store.connect()
            totals = await store.totals()
        finally:
            store.close()
    return {
        "queue": config.vote_queue,
        "queue_depth": depth,
        "in_flight": inflight,
        "workers_with_in_flight": workers,
        "dead_letters": dead,
        "stored_by_vote": totals,
        "stored_total": sum(totals.values()),
    }


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
    """Move dead letters (oldest first) back to the queue, atomically and once each."""
    moved = 0
    async with open_queue(config) as queue:
        script = queue.client.register_script(_REQUEUE)
        push = producer_push(config)
        while limit is None or moved < limit:
            want = 500 if limit is None else min(500, limit - moved)
            head = cast("list[bytes]", await aio(queue.client.lrange, queue.keys.dead, 0, want - 1))
            if not head:
                break
            try:
                originals = [original(e) for e in head]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"dead letter {moved + 1} is not a readable envelope: {exc}"
                ) from exc
            n = await aio(
                script,
                keys=[queue.keys.dead, queue.keys.queue],
                args=[push, len(head), *head, *originals],
            )
            if int(n) > 0:
                moved += int(n)
    return moved


async def dlq_purge(config: Config) -> int:
    async with open_queue(config) as queue:
        n = await queue.dead_count()
        await aio(queue.client.delete, queue.keys.dead)
    return n
