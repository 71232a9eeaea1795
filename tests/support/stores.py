"""What a test puts into the stores and reads back from them, with clients of its own: votes
pushed as a producer pushes them, rows and batches in MySQL, dead letters and in-flight lists in
Redis; and the worker's own ``RedisQueue``, for tests of its scripts one call at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
import pymysql
import redis
import redis.cluster
import trio_asyncio

from tests.support.waiting import wait_until
from trio_worker.config import Config
from trio_worker.mysql.schema import LEDGER_TABLE, VOTES_TABLE
from trio_worker.queue import Boundary, RedisQueue

# --- Redis --------------------------------------------------------------------------------------


def push_votes(
    rds: redis.Redis, config: Config, n: int, prefix: str = "v", **extra: object
) -> list[str]:
    """Push ``n`` valid votes as a producer would; return their voter ids."""
    ids = [f"{prefix}{i}" for i in range(n)]
    push = rds.rpush if config.consume_from == "left" else rds.lpush
    for start in range(0, n, 1000):
        chunk = [
            orjson.dumps({"voter_id": v, "vote": "ab"[i % 2], **extra})
            for i, v in enumerate(ids[start : start + 1000], start)
        ]
        push(config.vote_queue, *chunk)
    return ids


def push_raw(rds: redis.Redis, config: Config, *messages: bytes | str) -> None:
    push = rds.rpush if config.consume_from == "left" else rds.lpush
    for m in messages:
        push(config.vote_queue, m)


def vote(voter_id: str, choice: str = "a") -> bytes:
    """One vote's message."""
    return orjson.dumps({"voter_id": voter_id, "vote": choice})


def votes(ids: list[str]) -> list[bytes]:
    """A vote for each voter id, ``a`` and ``b`` in turn."""
    return [f'{{"voter_id": "{v}", "vote": "{"ab"[i % 2]}"}}'.encode() for i, v in enumerate(ids)]


def push(client: redis.Redis, queue: str, ids: list[str]) -> None:
    """LPUSH a vote for each of ``ids``, as the seed's producers do (the worker takes from the
    right)."""
    for start in range(0, len(ids), 500):
        client.lpush(queue, *votes(ids[start : start + 500]))


def inflight_keys(rds: redis.Redis, config: Config) -> list[bytes]:
    """The in-flight lists that hold a vote."""
    return [k for k in rds.scan_iter(match=f"{config.vote_queue}:inflight:*") if rds.llen(k) > 0]


def queue_drained(client: redis.Redis | redis.cluster.RedisCluster, queue: str) -> bool:
    """The queue is empty and no in-flight list holds a vote (False while Redis fails)."""
    try:
        if client.llen(queue):
            return False
        return all(client.llen(k) == 0 for k in client.smembers(f"{queue}:inflight"))
    except redis.RedisError:
        return False


def letters(rds: redis.Redis, config: Config) -> list[dict[str, Any]]:
    """The dead-letter envelopes, oldest first."""
    return [orjson.loads(e) for e in rds.lrange(config.dead_letter_queue, 0, -1)]


def new_queue(config: Config, token: str = "t0k3n") -> RedisQueue:
    return RedisQueue(Boundary.open(config, block_s=0.5), config, token)


@asynccontextmanager
async def open_queue(config: Config) -> AsyncIterator[RedisQueue]:
    """A queue whose lease is held (its heartbeat written), on its own asyncio loop."""
    async with trio_asyncio.open_loop():
        queue = new_queue(config)
        try:
            assert await queue.beat(30) == 0
            yield queue
        finally:
            await queue.boundary.aclose()


# --- MySQL --------------------------------------------------------------------------------------


def mysql_connect(
    config: Config, *, in_database: bool = True, **options: Any
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """A connection of the test's own as the configured account, autocommit, to the configured
    database (with no database selected unless ``in_database``); ``options`` for PyMySQL."""
    settings: dict[str, Any] = {
        "host": config.mysql_host,
        "port": config.mysql_port,
        "user": config.mysql_user,
        "password": config.mysql_password,
        "database": config.mysql_database if in_database else None,
        "autocommit": True,
        "charset": "utf8mb4",
        **options,
    }
    return pymysql.connect(**settings)


def sql(config: Config, query: str) -> list[tuple[Any, ...]]:
    """``query``'s rows, in the configured database; none while its table does not exist."""
    conn = mysql_connect(config)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == 1146:  # the table doesn't exist yet
            return []
        raise
    finally:
        conn.close()


def admin_sql(config: Config, *statements: str) -> None:
    """Run statements as the configured account with no database selected (setup, teardown)."""
    conn = mysql_connect(config, in_database=False)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def row_count(config: Config) -> int:
    try:
        rows = sql(config, "SELECT COUNT(*) FROM votes")
    except pymysql.err.OperationalError:  # the database doesn't exist yet
        return 0
    return int(rows[0][0]) if rows else 0


def voter_counts(config: Config) -> dict[str, int]:
    return {
        str(v): int(n)
        for v, n in sql(config, "SELECT voter_id, COUNT(*) FROM votes GROUP BY voter_id")
    }


def stored(conn: pymysql.connections.Connection[Any], database: str) -> dict[str, int]:
    """voter_id -> how many rows (0 rows: an empty dict, also when the table is missing)."""
    with conn.cursor() as cur:
        try:
            cur.execute(f"SELECT voter_id, COUNT(*) FROM `{database}`.votes GROUP BY voter_id")
        except pymysql.err.ProgrammingError:
            return {}
        return {str(v): int(n) for v, n in cur.fetchall()}


def newer_than(counts: dict[str, int], first: int) -> bool:
    """Whether a vote numbered ``first`` or later (``s123``, ``c123``) is stored."""
    return any(int(v[1:]) >= first for v in counts)


async def new_votes_stored(
    conn: pymysql.connections.Connection[Any], database: str, first: int
) -> None:
    """Wait until a vote numbered ``first`` or later is stored: new work flows again."""
    await wait_until(
        lambda: newer_than(stored(conn, database), first),
        timeout_s=60,
        what="votes pushed after the failover stored",
    )


def create_schema(config: Config, *more: str, votes: str = VOTES_TABLE) -> None:
    """The database and both tables, as an operator prepares them (e.g. for an account without
    CREATE rights), then ``more`` statements; ``votes``: another DDL for the votes table."""
    db = config.mysql_database
    admin_sql(
        config,
        f"CREATE DATABASE `{db}`",
        f"CREATE TABLE `{db}`.votes {votes.split('votes', 1)[1]}",
        f"CREATE TABLE `{db}`.vote_batches {LEDGER_TABLE.split('vote_batches', 1)[1]}",
        *more,
    )


@contextmanager
def mysql_account(config: Config, password: str) -> Iterator[str]:
    """A MariaDB account with ``password`` and every right on the test's database only."""
    user = f"tw_{uuid.uuid4().hex[:10]}"
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    admin_sql(
        config,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{escaped}'",
        f"GRANT ALL PRIVILEGES ON `{config.mysql_database}`.* TO '{user}'@'%'",
    )
    try:
        yield user
    finally:
        admin_sql(config, f"DROP USER IF EXISTS '{user}'@'%'")


# --- both ---------------------------------------------------------------------------------------


def exactly_once_or_queued(rds: redis.Redis, config: Config, ids: list[str]) -> None:
    """Every vote is stored once or still waiting in the queue; none twice, none lost."""
    counts = voter_counts(config)
    assert all(n == 1 for n in counts.values()), "a vote was stored twice"
    assert set(counts) <= set(ids)
    assert len(counts) + rds.llen(config.vote_queue) == len(ids)
