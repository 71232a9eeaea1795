"""The two baselines, small loops here: MariaDB's own ingest ceiling, and the one-at-a-time
design the worker replaces (pop one vote, insert one row).

Neither uses the worker's code: the ceiling's INSERT text and session settings are built here
(generated ASCII values need no escaping, so the worker's ``NO_BACKSLASH_ESCAPES`` quoting is
irrelevant), and only the ``votes`` table's DDL is shared (``bench.stores``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.common import CAST_PER_S, QUEUE, done_progress, progress
from bench.stores import Stores, push_backlog, reset, servers

CEILING_ROWS_PER_STATEMENT = 5000
# UTC timestamps, and a row MariaDB would have to truncate or convert is an error, not a warning.
SESSION = "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', time_zone='+00:00'"


def insert_sql(rows: list[tuple[str, str, str]]) -> str:
    """One multi-row INSERT into ``votes``; the values are generated ASCII without quotes."""
    return "INSERT INTO votes (voter_id, vote, timestamp) VALUES " + ",".join(
        [f"('{v}','{c}','{t}')" for v, c, t in rows]
    )


def ceiling(stores: Stores, n: int, step: int = CEILING_ROWS_PER_STATEMENT) -> dict[str, Any]:
    """MariaDB's own ingest rate: prebuilt ``step``-row INSERTs, one commit each, one connection.
    The rows' timestamps spread as the bench's backlog's do (``push_backlog``: ``CAST_PER_S``
    votes a second, until now)."""
    reset(stores, table=True)
    first = time.time() - n / CAST_PER_S
    stamps = [
        datetime.fromtimestamp(first + second, UTC).strftime("%Y-%m-%d %H:%M:%S")
        for second in range(n // CAST_PER_S + 2)
    ]
    rows = [(f"c{i}", "ab"[i & 1], stamps[i // CAST_PER_S]) for i in range(n)]
    statements = [insert_sql(rows[i : i + step]) for i in range(0, n, step)]
    del rows
    conn = stores.sql(autocommit=False)
    mariadb = servers(stores).get("mariadb")
    with conn.cursor() as cur:
        cur.execute(SESSION)
        conn.commit()
        cpu_before = sum(mariadb.cpu_times()[:2]) if mariadb else 0.0
        started = time.perf_counter()
        for k, statement in enumerate(statements):
            cur.execute(statement)
            conn.commit()
            if k % 20 == 0:
                progress(f"  ceiling: {min(n, (k + 1) * step):,}/{n:,}")
        elapsed = time.perf_counter() - started
        cpu = sum(mariadb.cpu_times()[:2]) - cpu_before if mariadb else float("nan")
    conn.close()
    done_progress()
    return {
        "votes": n,
        "rows_per_statement": step,
        "seconds": elapsed,
        "votes_per_s": n / elapsed,
        "mariadb_cpu_us_per_vote": cpu / n * 1e6,
    }


def one_at_a_time(stores: Stores, n: int) -> dict[str, Any]:
    """The replaced design's loop: BRPOP one vote, INSERT it with autocommit, repeat."""
    reset(stores, table=True)
    push_backlog(stores, n, "s")
    r = stores.redis()
    conn = stores.sql()
    with conn.cursor() as cur:
        started = time.perf_counter()
        for k in range(n):
            popped = r.brpop([QUEUE], timeout=5)
            if popped is None:
                raise SystemExit("one at a time: queue ran dry")
            doc = orjson.loads(popped[1])
            cur.execute(
                "INSERT INTO votes (voter_id, vote, timestamp) VALUES (%s, %s, UTC_TIMESTAMP())",
                (doc["voter_id"], doc["vote"]),
            )
            if k % 500 == 0:
                progress(f"  one at a time: {k:,}/{n:,}")
        elapsed = time.perf_counter() - started
    done_progress()
    conn.close()
    r.close()
    return {"votes": n, "seconds": elapsed, "votes_per_s": n / elapsed}
