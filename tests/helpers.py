"""Small helpers shared by the integration tests (queue pushes, row counts)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pymysql
import redis

from trio_worker.config import Config
from trio_worker.mysql.schema import LEDGER_TABLE, VOTES_TABLE


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


def sql(config: Config, query: str) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        host=config.mysql_host,
        port=config.mysql_port,
        user=config.mysql_user,
        password=config.mysql_password,
        database=config.mysql_database,
        autocommit=True,
        charset="utf8mb4",
    )
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
    conn = pymysql.connect(
        host=config.mysql_host,
        port=config.mysql_port,
        user=config.mysql_user,
        password=config.mysql_password,
        autocommit=True,
    )
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


def inflight_keys(rds: redis.Redis, config: Config) -> list[bytes]:
    return [k for k in rds.scan_iter(match=f"{config.vote_queue}:inflight:*") if rds.llen(k) > 0]


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


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """``trio-worker ARGS`` configured like ``config``, no terminal."""
    from tests.conftest import env_of

    return subprocess.run(
        [sys.executable, "-m", "trio_worker", *args],
        env=env_of(config),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
