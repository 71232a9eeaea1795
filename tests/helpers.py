"""Small helpers shared by the integration tests (queue pushes, row counts)."""

from __future__ import annotations

from typing import Any

import orjson
import pymysql
import redis

from trio_worker.config import Config


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
